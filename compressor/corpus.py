"""The one reader of a corpus spec: `eqinfo compress` (inside Beam), `train-m1`, the M1
tools and `eqinfo codec` read their documents here, so M1 trains on exactly the documents
the pipeline compresses (docs/DESIGN.md, "Corpora").

A corpus spec is one of:

- `builtin:pydoc`: Python's own documentation topics (no download);
  `builtin:pydoc:validation` holds out about a tenth of their bytes, whole topics,
  and `builtin:pydoc:train` is the rest;
- `tfds:NAME[:SPLIT]` (e.g. `tfds:c4/en:3.1.0:validation`): a TFDS build already
  prepared under `tfds_data_dir` (never downloaded), read in chunks of
  `tfds_chunk_docs` examples with `shuffle_files=False`; SPLIT defaults to the
  caller's split;
- `jsonl:GLOB`, `text:GLOB`, or a bare GLOB: JSON lines (one object per line,
  its "text" the document) if every matched name ends in `.json`, `.jsonl`,
  `.json.gz` or `.jsonl.gz` (the allenai/c4 layout), else one document per file.

Paths may be local or gs:// (Beam's `FileSystems`; `.gz` is decompressed).
Files are read in sorted name order.

Every document has a position (file_index, doc_index): its read task (file,
TFDS chunk) in that order and its line (example) within it, from 0. Reading can
start at a position without parsing the documents before it. Documents are
bytes: JSON strings go back to UTF-8 with `surrogateescape`, so invalid UTF-8
survives. A line that is not a document is a `Dropped` record with its source,
reason and size; nothing is skipped silently.
"""
import collections
import dataclasses
import gzip
import itertools
import json
import logging
import re
import zlib
from typing import Iterator, NamedTuple

from compressor import symbols

BUILTIN_PYDOC = "builtin:pydoc"
PYDOC_SPLITS = ("train", "validation")
PYDOC_VALIDATION_SHARE = 0.1  # of builtin:pydoc's bytes held out as builtin:pydoc:validation
TFDS_CHUNK_DOCS = 128 * 1024
SPEC_FORMS = "a glob of .jsonl[.gz]/.json[.gz] or text files, jsonl:GLOB, text:GLOB, " \
             f"{BUILTIN_PYDOC}[:train|:validation] or tfds:NAME[:SPLIT]"
_KINDS = ("builtin", "tfds", "jsonl", "text")
_JSONL_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
_VERSION = re.compile(r"^\d+(\.\d+)*$")
# Errors that retrying cannot fix: the file is counted as dropped. Anything else
# (e.g. a transient storage error) propagates, so a runner retries the read.
_PERMANENT_ERRORS = (FileNotFoundError, IsADirectoryError, zlib.error, EOFError,
                     gzip.BadGzipFile)
_TF_PERMANENT_ERRORS = ("DataLossError", "NotFoundError")  # tf.errors, matched by name

Position = tuple[int, int]  # (file_index, doc_index): see the module doc
START: Position = (0, 0)


class Document(NamedTuple):
  """One input document.

  Attributes:
    file_index: index of its read task (file, TFDS chunk) in the spec's order.
    doc_index: its line (example) index within that task.
    source: provenance, e.g. "gs://bucket/c4-train.00000-of-01024.json.gz:17".
    data: the document's bytes (EOS is added later).
  """
  file_index: int
  doc_index: int
  source: str
  data: bytes

  def __repr__(self):
    return (f"Document({self.file_index}, {self.doc_index}, {self.source!r}, "
            f"<{len(self.data)} bytes>)")


class Dropped(NamedTuple):
  """Input, or part of it, that no record holds.

  Attributes:
    source: provenance of the input (file:line, or an example key).
    reason: e.g. "malformed_json", "empty_document", "too_large", "truncated".
    num_bytes: symbols (or raw line bytes, at stage "read") dropped.
    stage: "read" for input that never became a document (its bytes count
      towards bytes_in on their own); later stages drop document symbols.
    detail: a short explanation (e.g. the parser's message).
  """
  source: str
  reason: str
  num_bytes: int
  stage: str = "read"
  detail: str = ""

  def to_json(self) -> str:
    return json.dumps(self._asdict(), sort_keys=True)


class BadInput(ValueError):
  """A line that is not a document; `reason` names why."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """A resolved corpus spec.

  Attributes:
    kind: "builtin", "tfds", "jsonl" or "text".
    name: the spec as given.
    tasks: [(index, locator)] read tasks in a fixed order: file paths, or
      "start:end" example ranges of a TFDS split.
    tfds_name: the TFDS dataset (e.g. "c4/en:3.1.0"); "" for other kinds.
    split: the TFDS split read; "" for other kinds.
  """
  kind: str
  name: str
  tasks: tuple[tuple[int, str], ...]
  tfds_name: str = ""
  split: str = ""


def parse_json_line(line: bytes, text_field: str = "text") -> bytes:
  """Returns the document of one JSON line.

  Raises:
    BadInput: if the line is blank, not a JSON object, or lacks a string `text_field`.
  """
  if not line.strip():
    raise BadInput("blank_line", "no JSON on this line")
  try:
    obj = json.loads(line.decode("utf-8", errors="surrogateescape"))
  except (ValueError, RecursionError) as e:  # RecursionError: nested too deep to parse
    raise BadInput("malformed_json", (str(e) or type(e).__name__)[:200]) from None
  if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
    raise BadInput("missing_text_field", f"no string field {text_field!r}")
  return symbols.text_bytes(obj[text_field])


def builtin_pydoc_documents(split: str | None = None) -> list[tuple[str, str]]:
  """Python's own documentation topics (`pydoc_data.topics`), sorted by name.

  About 460 KB of English prose that ships with every Python: the corpus of
  `builtin:pydoc`, which needs no download.

  Args:
    split: None for every topic; "validation" for the topics held out: in name order, a
      topic is held out while the held-out bytes are under `PYDOC_VALIDATION_SHARE` of
      the bytes so far (about 50 KB of 466 KB); "train" for the others.

  Returns:
    [(source, text)] with source "builtin:pydoc/<topic>".
  """
  from pydoc_data import topics  # pylint: disable=import-outside-toplevel
  docs = [(f"{BUILTIN_PYDOC}/{name}", topics.topics[name]) for name in sorted(topics.topics)]
  if split is None:
    return docs
  held, seen, parts = 0, 0, {"train": [], "validation": []}
  for doc in docs:
    size = len(symbols.text_bytes(doc[1]))
    part = "validation" if held < PYDOC_VALIDATION_SHARE * seen else "train"
    parts[part].append(doc)
    held += size if part == "validation" else 0
    seen += size
  return parts[split]


def _filesystems():
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  return FileSystems


def _kind(spec: str) -> tuple[str | None, str]:
  """(explicit kind or None, the rest of the spec)."""
  for prefix in _KINDS:
    if spec.startswith(prefix + ":"):
      return prefix, spec[len(prefix) + 1:]
  return None, spec


def parse_tfds_spec(rest: str, split: str = "train") -> tuple[str, str]:
  """The TFDS dataset and split of a `tfds:` spec's body.

  "c4/en:3.1.0:validation" -> ("c4/en:3.1.0", "validation"); "c4/en:3.1.0" and
  "c4/en" -> (that, `split`); "c4/en:validation" -> ("c4/en", "validation").

  Raises:
    ValueError: for more parts than NAME[:VERSION][:SPLIT].
  """
  parts = rest.split(":")
  if len(parts) == 1 or (len(parts) == 2 and _VERSION.match(parts[1])):
    return rest, split
  if len(parts) in (2, 3) and not _VERSION.match(parts[-1]):
    return ":".join(parts[:-1]), parts[-1]
  raise ValueError(f"bad TFDS spec 'tfds:{rest}'; expected tfds:NAME[:VERSION][:SPLIT], "
                   "e.g. tfds:c4/en:3.1.0:validation")


def tfds_builder(spec: InputSpec, tfds_data_dir: str | None):
  """The TFDS builder of a `tfds` spec (None for other kinds)."""
  if spec.kind != "tfds":
    return None
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  return tfds.builder(spec.tfds_name, data_dir=tfds_data_dir)


def check_text_field(spec: InputSpec, text_field: str, tfds_data_dir: str | None) -> None:
  """Refuses a `--text_field` that a TFDS dataset's examples do not have (JSON lines drop
  each line without it instead, as they may differ line by line).

  Raises:
    ValueError: naming the dataset's features.
  """
  if spec.kind != "tfds":
    return
  features = list(tfds_builder(spec, tfds_data_dir).info.features.keys())
  if text_field not in features:
    raise ValueError(f"--text_field {text_field!r} is not a feature of tfds:{spec.tfds_name} "
                     f"(it has {', '.join(sorted(features))}); pass one of them")


def _tfds_tasks(name: str, split: str, tfds_data_dir: str | None, chunk: int):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  try:
    num = tfds.builder(name, data_dir=tfds_data_dir).info.splits[split].num_examples
  except Exception as e:  # pylint: disable=broad-except
    raise FileNotFoundError(
        f"TFDS dataset {name!r} split {split!r} is not prepared under --tfds_data_dir "
        f"{tfds_data_dir!r} ({type(e).__name__}); prepare it with `tfds build` first") from None
  return tuple((i, f"{start}:{min(start + chunk, num)}")
               for i, start in enumerate(range(0, num, chunk)))


def resolve(spec: str, split: str = "train", tfds_data_dir: str | None = None,
            tfds_chunk_docs: int = TFDS_CHUNK_DOCS) -> InputSpec:
  """Resolves a corpus spec to an ordered list of read tasks.

  Raises:
    FileNotFoundError: if a glob matches no file or a TFDS dataset is not prepared.
    ValueError: on an unknown builtin corpus or a malformed tfds: spec.
  """
  kind, rest = _kind(spec)
  if kind == "builtin":
    name, _, part = rest.partition(":")
    if name != "pydoc" or (part and part not in PYDOC_SPLITS):
      raise ValueError(f"unknown builtin corpus {spec!r}; the only one is {BUILTIN_PYDOC}, "
                       f"or its split {BUILTIN_PYDOC}:train or {BUILTIN_PYDOC}:validation")
    return InputSpec(kind, spec, ((0, rest),))
  if kind == "tfds":
    name, split = parse_tfds_spec(rest, split)
    return InputSpec(kind, spec, _tfds_tasks(name, split, tfds_data_dir, tfds_chunk_docs),
                     name, split)
  try:
    metadata = _filesystems().match([rest])[0].metadata_list
  except Exception:  # pylint: disable=broad-except  (Beam raises on a missing directory)
    metadata = []
  paths = sorted(m.path for m in metadata)
  if not paths:
    raise FileNotFoundError(f"{spec!r} matches no files; pass {SPEC_FORMS}")
  if kind is None:  # JSON lines if every matched name says so, else one document per file
    kind = "jsonl" if all(p.endswith(_JSONL_SUFFIXES) for p in paths) else "text"
  return InputSpec(kind, spec, tuple(enumerate(paths)))


def _file_error(source: str, e: Exception) -> Dropped:
  missing = (isinstance(e, (FileNotFoundError, IsADirectoryError))
             or type(e).__name__ == "NotFoundError")
  reason = "missing_file" if missing else "corrupt_file"
  return Dropped(source, reason, 0, "read", f"{type(e).__name__}: {str(e)[:200]}")


def _open_lines(path: str) -> Iterator[bytes]:
  with _filesystems().open(path) as f:  # compression from the extension
    yield from iter(f.readline, b"")


def read_jsonl_file(file_index: int, path: str, text_field: str = "text",
                    max_docs: int | None = None, first: int = 0) -> Iterator[Document | Dropped]:
  """The documents of one JSON-lines file from line `first` on, and Dropped records for
  bad lines (lines before `first` are read past, unparsed).

  A missing or corrupt file yields what it read, then one Dropped record; a
  truncated .gz file ends early, its last line usually counted as malformed.
  """
  index = -1
  try:
    for index, line in enumerate(_open_lines(path)):
      if max_docs is not None and index >= max_docs:
        return
      if index < first:
        continue
      source = f"{path}:{index + 1}"
      try:
        yield Document(file_index, index, source, parse_json_line(line, text_field))
      except BadInput as e:
        yield Dropped(source, e.reason, len(line.rstrip(b"\r\n")), "read", e.detail)
  except _PERMANENT_ERRORS as e:
    yield _file_error(f"{path}:{index + 2}", e)


def read_text_file(file_index: int, path: str, first: int = 0) -> Iterator[Document | Dropped]:
  """A whole file as one document (or a Dropped record if it cannot be read)."""
  if first > 0:
    return
  try:
    with _filesystems().open(path) as f:
      data = f.read()
  except _PERMANENT_ERRORS as e:
    yield _file_error(path, e)
    return
  yield Document(file_index, 0, path, data)


def read_builtin(max_docs: int | None = None, first: int = 0,
                 locator: str = "pydoc") -> Iterator[Document]:
  """The documents of `builtin:LOCATOR` (pydoc[:train|:validation]) in topic order, from the
  `first`-th on."""
  split = locator.partition(":")[2] or None
  for index, (source, text) in enumerate(builtin_pydoc_documents(split)[:max_docs]):
    if index >= first:
      yield Document(0, index, source, symbols.text_bytes(text))


def read_tfds_chunk(builder, name: str, split: str, chunk_index: int, locator: str,
                    text_field: str = "text", max_docs: int | None = None,
                    first: int = 0) -> Iterator[Document | Dropped]:
  """The documents of examples [start + first, end) of a TFDS split, in order."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  start, end = (int(x) for x in locator.split(":"))
  if max_docs is not None:
    end = min(end, start + max_docs)
  begin = start + first
  if begin >= end:
    return
  try:
    ds = builder.as_dataset(split=f"{split}[{begin}:{end}]", shuffle_files=False)
    for i, ex in enumerate(tfds.as_numpy(ds), start=first):
      if i >= end - start:
        break
      yield Document(chunk_index, i, f"tfds:{name}/{split}[{start + i}]", bytes(ex[text_field]))
  except Exception as e:  # pylint: disable=broad-except
    if not (isinstance(e, _PERMANENT_ERRORS) or type(e).__name__ in _TF_PERMANENT_ERRORS):
      raise  # transient: let the runner retry the chunk
    yield _file_error(f"tfds:{name}/{split}[{locator}]", e)


def read_task(spec: InputSpec, index: int, locator: str, text_field: str = "text",
              max_docs: int | None = None, builder=None,
              first: int = 0) -> Iterator[Document | Dropped]:
  """One read task of a resolved spec, from its `first`-th document on.

  Args:
    spec: the resolved spec.
    index, locator: one of `spec.tasks`.
    text_field: the JSON (or TFDS) field holding the text.
    max_docs: read only the task's first `max_docs` lines (JSON lines: blank and malformed
      ones count, so positions stay line numbers), topics or examples (None: all).
    builder: `tfds_builder(spec, ...)` for a tfds spec.
    first: the doc_index to start at.
  """
  if spec.kind == "builtin":
    return read_builtin(max_docs, first, locator)
  if spec.kind == "jsonl":
    return read_jsonl_file(index, locator, text_field, max_docs, first)
  if spec.kind == "text":
    return read_text_file(index, locator, first)
  return read_tfds_chunk(builder, spec.tfds_name, spec.split, index, locator, text_field,
                         max_docs, first)


def iter_documents(spec: InputSpec, text_field: str = "text", max_docs_per_file: int | None = None,
                   tfds_data_dir: str | None = None,
                   start: Position = START) -> Iterator[Document | Dropped]:
  """Reads a resolved spec outside Beam, in position order, from `start` on."""
  builder = tfds_builder(spec, tfds_data_dir)
  for index, locator in spec.tasks:
    if index >= start[0]:
      yield from read_task(spec, index, locator, text_field, max_docs_per_file, builder,
                           first=start[1] if index == start[0] else 0)


def read_documents(spec: str, tfds_data_dir: str | None = None,
                   counts: collections.Counter | None = None, start: Position = START,
                   split: str = "train") -> Iterator[Document]:
  """The documents of a corpus spec in position order, from `start` on, outside Beam.

  Input that is not a document is logged with its source and counted in
  `counts[reason]` (and its bytes in `counts["dropped_bytes"]`); documents are
  counted in `counts["documents"]`.

  Raises:
    FileNotFoundError: if a glob matches nothing or a TFDS build is missing.
  """
  counts = collections.Counter() if counts is None else counts
  for item in iter_documents(resolve(spec, split, tfds_data_dir), tfds_data_dir=tfds_data_dir,
                             start=start):
    if isinstance(item, Dropped):
      if item.reason != "blank_line":
        logging.warning("skipping %s (%s): %s", item.source, item.reason, item.detail)
      counts[item.reason] += 1
      counts["dropped_bytes"] += item.num_bytes
      continue
    counts["documents"] += 1
    yield item


def check_spec(spec: str, flag: str, tfds_data_dir: str | None = None,
               min_documents: int = 1, why: str = "asked") -> None:
  """Reads the first documents of a corpus spec, so that a wrong path fails at once.

  Args:
    spec: a corpus spec (module doc).
    flag: the command-line flag that gave it, named in the error.
    tfds_data_dir: TFDS data directory (only for `tfds:` specs).
    min_documents: how many documents it must hold at least.
    why: what needs them, ending the error ("... fewer than the 257 {why}").

  Raises:
    FileNotFoundError: if the spec names no files or an unprepared TFDS build.
    ValueError: if it holds fewer than `min_documents` documents, or is malformed.
  """
  try:
    found = sum(1 for _ in itertools.islice(read_documents(spec, tfds_data_dir), min_documents))
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{flag}: {e}") from None
  except ValueError as e:
    raise ValueError(f"{flag}: {e}") from None
  if found == 0:
    raise ValueError(f"{flag}: {spec!r} holds no documents; check the path")
  if found < min_documents:
    raise ValueError(f"{flag}: {spec!r} holds {found} documents, fewer than the "
                     f"{min_documents} {why}")
