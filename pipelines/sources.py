"""Corpus sources: documents with stable ids, read the same way in and out of Beam.

An input spec names a corpus:

- `builtin:pydoc`: Python's own documentation topics (no download);
- `tfds:NAME` (e.g. `tfds:c4/en:3.1.0`): a prepared TFDS dataset, read in
  chunks of `--tfds_chunk_docs` examples with `shuffle_files=False`;
- a glob whose files are all JSON lines by name (`*.json`, `*.json.gz`,
  `*.jsonl`, `*.jsonl.gz`, the allenai/c4 layout), or `jsonl:GLOB` for any names;
- `text:GLOB`, or a glob of other files: one document per file.

Paths may be local or gs:// (Beam's `FileSystems`; `.gz` is decompressed).

Every document gets a stable id (file index in the sorted file list, line
index within the file), so the groups of 128 documents downstream are the same
whatever the runner's parallelism. Documents are raw bytes: JSON strings are
encoded back to UTF-8 with `surrogateescape`, so invalid UTF-8 survives. Lines
that do not parse are not documents: they go to the `errors` output as
`Dropped` records with their size.
"""
import dataclasses
import gzip
import json
import zlib
from typing import Iterator, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

ERRORS = "errors"
_NAMESPACE = "eqinfo"
_JSONL_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
# Errors that retrying cannot fix: the file is counted as dropped. Anything else
# (e.g. a transient storage error) propagates, so the runner retries the read.
_PERMANENT_ERRORS = (FileNotFoundError, IsADirectoryError, zlib.error, EOFError,
                     gzip.BadGzipFile)
_TF_PERMANENT_ERRORS = ("DataLossError", "NotFoundError")  # tf.errors, matched by name


def _file_error(source: str, e: Exception) -> "Dropped":
  missing = (isinstance(e, (FileNotFoundError, IsADirectoryError))
             or type(e).__name__ == "NotFoundError")
  reason = "missing_file" if missing else "corrupt_file"
  return Dropped(source, reason, 0, "read", f"{type(e).__name__}: {str(e)[:200]}")


class Document(NamedTuple):
  """One input document.

  Attributes:
    file_index: index of its file (TFDS chunk) in the sorted input list.
    doc_index: its line (example) index within that file.
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
  """A resolved `--input`.

  Attributes:
    kind: "builtin", "tfds", "jsonl" or "text".
    name: the spec as given.
    tasks: [(index, locator)] read tasks in a fixed order: file paths, or
      "start:end" example ranges of a TFDS split.
  """
  kind: str
  name: str
  tasks: tuple[tuple[int, str], ...]


def text_to_bytes(text: str) -> bytes:
  """UTF-8 bytes of a JSON string; escaped invalid bytes come back as they were."""
  try:
    return text.encode("utf-8", errors="surrogateescape")
  except UnicodeEncodeError:  # lone surrogates from "\\udXXX" escapes: keep them as bytes
    return text.encode("utf-8", errors="surrogatepass")


def parse_json_line(line: bytes, text_field: str = "text") -> bytes:
  """Returns the document of one JSON line.

  Raises:
    BadInput: if the line is blank, not a JSON object, or lacks a string `text_field`.
  """
  if not line.strip():
    raise BadInput("blank_line", "no JSON on this line")
  try:
    obj = json.loads(line.decode("utf-8", errors="surrogateescape"))
  except ValueError as e:
    raise BadInput("malformed_json", str(e)[:200]) from None
  if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
    raise BadInput("missing_text_field", f"no string field {text_field!r}")
  return text_to_bytes(obj[text_field])


def _kind(spec: str) -> tuple[str | None, str]:
  """(explicit kind or None, the rest of the spec)."""
  for prefix in ("builtin", "tfds", "jsonl", "text"):
    if spec.startswith(prefix + ":"):
      return prefix, spec[len(prefix) + 1:]
  return None, spec


def _tfds_tasks(name: str, split: str, data_dir: str | None, chunk: int):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  try:
    num = tfds.builder(name, data_dir=data_dir).info.splits[split].num_examples
  except Exception as e:  # pylint: disable=broad-except
    raise FileNotFoundError(
        f"TFDS dataset {name!r} split {split!r} is not prepared under --tfds_data_dir "
        f"{data_dir!r} ({type(e).__name__}); prepare it with `tfds build` first") from None
  return tuple((i, f"{start}:{min(start + chunk, num)}")
               for i, start in enumerate(range(0, num, chunk)))


def resolve_input(spec: str, split: str = "train", tfds_data_dir: str | None = None,
                  tfds_chunk_docs: int = 128 * 1024) -> InputSpec:
  """Resolves an input spec to an ordered list of read tasks.

  Raises:
    FileNotFoundError: if a glob matches no file or a TFDS dataset is missing.
    ValueError: on an unknown builtin corpus.
  """
  kind, rest = _kind(spec)
  if kind == "builtin":
    if rest != "pydoc":
      raise ValueError(f"unknown builtin corpus {spec!r}; the only one is builtin:pydoc")
    return InputSpec(kind, spec, ((0, "pydoc"),))
  if kind == "tfds":
    return InputSpec(kind, spec, _tfds_tasks(rest, split, tfds_data_dir, tfds_chunk_docs))
  try:
    metadata = FileSystems.match([rest])[0].metadata_list
  except Exception:  # pylint: disable=broad-except  (Beam raises on a missing directory)
    metadata = []
  paths = sorted(m.path for m in metadata)
  if not paths:
    raise FileNotFoundError(f"--input {spec!r} matches no files; check the path or glob")
  if kind is None:  # JSON lines if every matched name says so, else one document per file
    kind = "jsonl" if all(p.endswith(_JSONL_SUFFIXES) for p in paths) else "text"
  return InputSpec(kind, spec, tuple(enumerate(paths)))


def _open_lines(path: str) -> Iterator[bytes]:
  with FileSystems.open(path) as f:  # compression from the extension
    yield from iter(f.readline, b"")


def read_jsonl_file(file_index: int, path: str, text_field: str = "text",
                    max_docs: int | None = None) -> Iterator[Document | Dropped]:
  """Yields the documents of one JSON-lines file, and Dropped records for bad lines.

  A missing or corrupt file yields what it read, then one Dropped record; a
  truncated .gz file ends early, its last line usually counted as malformed.
  """
  index = -1
  try:
    for index, line in enumerate(_open_lines(path)):
      if max_docs is not None and index >= max_docs:
        return
      source = f"{path}:{index + 1}"
      try:
        yield Document(file_index, index, source, parse_json_line(line, text_field))
      except BadInput as e:
        yield Dropped(source, e.reason, len(line.rstrip(b"\r\n")), "read", e.detail)
  except _PERMANENT_ERRORS as e:
    yield _file_error(f"{path}:{index + 2}", e)


def read_text_file(file_index: int, path: str) -> Iterator[Document | Dropped]:
  """Yields a whole file as one document (or a Dropped record if it cannot be read)."""
  try:
    with FileSystems.open(path) as f:
      data = f.read()
  except _PERMANENT_ERRORS as e:
    yield _file_error(path, e)
    return
  yield Document(file_index, 0, path, data)


def read_builtin(max_docs: int | None = None) -> Iterator[Document]:
  """Yields the `builtin:pydoc` documents in topic order."""
  from training import corpus  # pylint: disable=import-outside-toplevel
  for index, (source, text) in enumerate(corpus.builtin_pydoc_documents()[:max_docs]):
    yield Document(0, index, source, text_to_bytes(text))


def read_tfds_chunk(builder, name: str, split: str, chunk_index: int, locator: str,
                    text_field: str = "text",
                    max_docs: int | None = None) -> Iterator[Document | Dropped]:
  """Yields the documents of examples [start, end) of a TFDS split, in order."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  start, end = (int(x) for x in locator.split(":"))
  if max_docs is not None:
    end = min(end, start + max_docs)
  try:
    ds = builder.as_dataset(split=f"{split}[{start}:{end}]", shuffle_files=False)
    for i, ex in enumerate(tfds.as_numpy(ds)):
      if i >= end - start:
        break
      yield Document(chunk_index, i, f"tfds:{name}/{split}[{start + i}]", bytes(ex[text_field]))
  except Exception as e:  # pylint: disable=broad-except
    if not (isinstance(e, _PERMANENT_ERRORS) or type(e).__name__ in _TF_PERMANENT_ERRORS):
      raise  # transient: let the runner retry the chunk
    yield _file_error(f"tfds:{name}/{split}[{locator}]", e)


def iter_documents(spec: InputSpec, text_field: str = "text", max_docs_per_file: int | None = None,
                   tfds_data_dir: str | None = None,
                   split: str = "train") -> Iterator[Document | Dropped]:
  """Reads a resolved input outside Beam, in id order (used to fit models and in tests)."""
  builder = None
  if spec.kind == "tfds":
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    builder = tfds.builder(spec.name[len("tfds:"):], data_dir=tfds_data_dir)
  for index, locator in spec.tasks:
    if spec.kind == "builtin":
      yield from read_builtin(max_docs_per_file)
    elif spec.kind == "jsonl":
      yield from read_jsonl_file(index, locator, text_field, max_docs_per_file)
    elif spec.kind == "text":
      yield from read_text_file(index, locator)
    else:
      yield from read_tfds_chunk(builder, spec.name[len("tfds:"):], split, index, locator,
                                 text_field, max_docs_per_file)


class ReadTaskFn(beam.DoFn):
  """Reads one task (file or TFDS chunk): Documents out, Dropped to the `errors` output."""

  def __init__(self, kind: str, name: str, text_field: str = "text",
               max_docs: int | None = None, tfds_data_dir: str | None = None,
               split: str = "train"):
    super().__init__()
    self._kind = kind
    self._name = name
    self._text_field = text_field
    self._max_docs = max_docs
    self._tfds_data_dir = tfds_data_dir
    self._split = split
    self._builder = None
    self._docs = beam.metrics.Metrics.counter(_NAMESPACE, "documents_read")
    self._bytes = beam.metrics.Metrics.counter(_NAMESPACE, "document_bytes_read")
    self._bad = beam.metrics.Metrics.counter(_NAMESPACE, "inputs_dropped_at_read")
    self._bytes_in = beam.metrics.Metrics.counter(_NAMESPACE, "bytes_in")

  def setup(self):
    if self._kind == "tfds":
      import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
      self._builder = tfds.builder(self._name[len("tfds:"):], data_dir=self._tfds_data_dir)

  def _read(self, index: int, locator: str):
    if self._kind == "builtin":
      return read_builtin(self._max_docs)
    if self._kind == "jsonl":
      return read_jsonl_file(index, locator, self._text_field, self._max_docs)
    if self._kind == "text":
      return read_text_file(index, locator)
    return read_tfds_chunk(self._builder, self._name[len("tfds:"):], self._split, index, locator,
                           self._text_field, self._max_docs)

  def process(self, task):
    index, locator = task
    for item in self._read(index, locator):
      if isinstance(item, Dropped):
        self._bad.inc()
        self._bytes_in.inc(item.num_bytes)
        beam.metrics.Metrics.counter(_NAMESPACE, f"dropped_{item.reason}").inc()
        yield beam.pvalue.TaggedOutput(ERRORS, item)
      else:
        self._docs.inc()
        self._bytes.inc(len(item.data))
        yield item


class ReadDocuments(beam.PTransform):
  """PBegin -> {"documents": Document, "errors": Dropped} for a resolved input."""

  def __init__(self, spec: InputSpec, text_field: str = "text", max_docs_per_file=None,
               tfds_data_dir=None, split: str = "train"):
    super().__init__()
    self._spec = spec
    self._fn = ReadTaskFn(spec.kind, spec.name, text_field, max_docs_per_file, tfds_data_dir,
                          split)

  def expand(self, pbegin):
    outputs = (
        pbegin
        | "ListTasks" >> beam.Create(list(self._spec.tasks))
        | "SpreadTasks" >> beam.Reshuffle()
        | "ReadTask" >> beam.ParDo(self._fn).with_outputs(ERRORS, main="documents"))
    return {"documents": outputs.documents, "errors": outputs[ERRORS]}
