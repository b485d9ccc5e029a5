"""Documents from corpora, as (source, text) pairs, outside Beam.

A corpus spec is one of:

- `builtin:pydoc`: Python's own documentation topics (no download).
- `tfds:c4/en:3.1.0[:split]`: a TensorFlow Datasets build already prepared in
  `data_dir` (never downloaded here); the split defaults to `train`.
- a glob (local or `gs://`) of C4-layout JSON lines (`*.jsonl`, `*.json`,
  `*.jsonl.gz`, `*.json.gz`; one JSON object per line with key "text") or of
  plain text files (one document per file).

Files are read in sorted name order, so the document order is deterministic.

Every document has a position (part, item): for a glob, the index of its file
in that order and its line number (1 for a plain text file); for
`builtin:pydoc` and TFDS, (0, n) for the n-th document, counting from 1.
`read_positioned(spec, start=position)` starts at a document without parsing
the ones before it.
"""
import collections
import glob as globlib
import gzip
import io
import itertools
import json
import logging
import os
from typing import Iterator

Position = tuple[int, int]  # (part, item): see the module doc
START: Position = (0, 1)   # the first position of every spec (items of a part count from 1)

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
TFDS_PREFIX = "tfds:"
BUILTIN_PYDOC = "builtin:pydoc"


def builtin_pydoc_documents() -> list[tuple[str, str]]:
  """Returns Python's own documentation topics (`pydoc_data.topics`), sorted by name.

  About 460 KB of English prose that ships with every Python: the corpus of
  `builtin:pydoc`, which needs no download.

  Returns:
    [(source, text)] with source "builtin:pydoc/<topic>".
  """
  from pydoc_data import topics  # pylint: disable=import-outside-toplevel
  return [(f"builtin:pydoc/{name}", topics.topics[name]) for name in sorted(topics.topics)]


def _is_remote(path: str) -> bool:
  return "://" in path


def list_files(pattern: str) -> list[str]:
  """Returns the files matching a glob (local or `gs://`), sorted by name.

  Raises:
    FileNotFoundError: if nothing matches.
  """
  if _is_remote(pattern):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    paths = tf.io.gfile.glob(pattern)
  else:
    paths = [p for p in globlib.glob(pattern, recursive=True) if not os.path.isdir(p)]
  if not paths:
    raise FileNotFoundError(
        f"no files match {pattern!r}; pass a glob of .jsonl[.gz]/.json.gz or text files, "
        f"'{BUILTIN_PYDOC}' or 'tfds:c4/en:3.1.0[:split]'")
  return sorted(paths)


def _open_binary(path: str) -> io.BufferedIOBase:
  """Opens a local or `gs://` file for binary reading, gunzipping `*.gz`."""
  if _is_remote(path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    raw = tf.io.gfile.GFile(path, "rb")
  else:
    raw = open(path, "rb")  # pylint: disable=consider-using-with
  return gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw


def _json_text(line: bytes) -> str:
  """Returns the "text" of one JSON line.

  Raises:
    ValueError: if the line is not a JSON object with a string "text".
  """
  record = json.loads(line)
  if not isinstance(record, dict) or not isinstance(record.get("text"), str):
    raise ValueError("not a JSON object with a string 'text'")
  return record["text"]


def read_json_lines(path: str, counts: collections.Counter | None = None, first_line: int = 1
                    ) -> Iterator[tuple[int, str, str]]:
  """Yields (line, f"{path}:{line}", text) for each document of a JSON-lines file.

  Line numbers start at 1; lines before `first_line` are skipped unparsed. A
  malformed line (bad JSON, bad UTF-8, no "text") is skipped, counted in
  `counts["malformed_lines"]` and logged with its source; blank lines are
  skipped silently.
  """
  counts = collections.Counter() if counts is None else counts
  with _open_binary(path) as f:
    for _ in itertools.islice(f, first_line - 1):
      pass
    for number, line in enumerate(f, start=first_line):
      if not line.strip():
        continue
      source = f"{path}:{number}"
      try:
        text = _json_text(line)
      except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError too
        counts["malformed_lines"] += 1
        logging.warning("skipping malformed JSON line %s: %s", source, e)
        continue
      counts["documents"] += 1
      yield number, source, text


def read_text_file(path: str, counts: collections.Counter | None = None, first_line: int = 1
                   ) -> Iterator[tuple[int, str, str]]:
  """Yields (1, path, text): a plain text file is one document (bad UTF-8 kept as surrogates)."""
  counts = collections.Counter() if counts is None else counts
  if first_line > 1:
    return
  with _open_binary(path) as f:
    data = f.read()
  counts["documents"] += 1
  yield 1, path, data.decode("utf-8", errors="surrogateescape")


def parse_tfds_spec(spec: str) -> tuple[str, str]:
  """Splits 'tfds:c4/en:3.1.0[:split]' into ('c4/en:3.1.0', split)."""
  body = spec[len(TFDS_PREFIX):]
  parts = body.split(":")
  if len(parts) == 3:
    return ":".join(parts[:2]), parts[2]
  if len(parts) in (1, 2):
    return body, "train"
  raise ValueError(f"bad TFDS spec {spec!r}; expected 'tfds:c4/en:3.1.0[:split]'")


def read_tfds(spec: str, data_dir: str | None = None,
              counts: collections.Counter | None = None, first: int = 0
              ) -> Iterator[tuple[int, str, str]]:
  """Yields (i, f"{spec}:{i}", text) from a prepared TFDS build, from example `first` on.

  Examples before `first` are skipped by TFDS's split slicing (`train[first:]`),
  unread. Never downloads.

  Raises:
    FileNotFoundError: if the dataset is not prepared under `data_dir`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  counts = collections.Counter() if counts is None else counts
  name, split = parse_tfds_spec(spec)
  builder = tfds.builder(name, data_dir=data_dir)
  try:
    ds = builder.as_dataset(split=f"{split}[{first}:]" if first else split, shuffle_files=False)
  except AssertionError:  # tfds's way of saying "not prepared"
    raise FileNotFoundError(
        f"TFDS dataset {name} is not prepared under data_dir={data_dir!r}; "
        "prepare it with `tfds build` (or the C4 Beam pipeline) and pass --data_dir") from None
  for i, example in enumerate(tfds.as_numpy(ds), start=first):
    counts["documents"] += 1
    yield i, f"tfds:{name}:{split}:{i}", example["text"].decode("utf-8", errors="surrogateescape")


def read_positioned(spec: str, data_dir: str | None = None,
                    counts: collections.Counter | None = None, start: Position = START
                    ) -> Iterator[tuple[Position, str, str]]:
  """Yields (position, source, text) for every document of a corpus spec from `start` on.

  Args:
    spec: `builtin:pydoc`, `tfds:NAME[:split]` or a file glob (see module doc).
    data_dir: TFDS data directory (only for `tfds:` specs).
    counts: optional Counter that receives "documents" and "malformed_lines"
      (of what is read: documents before `start` are not).
    start: the position of the first document to yield (`START`: all of them).

  Raises:
    FileNotFoundError: if a glob matches nothing or a TFDS build is missing.
  """
  counts = collections.Counter() if counts is None else counts
  part, item = start
  if spec == BUILTIN_PYDOC:
    for i, (source, text) in enumerate(builtin_pydoc_documents()[item - 1:], start=item):
      counts["documents"] += 1
      yield (0, i), source, text
    return
  if spec.startswith(TFDS_PREFIX):
    for i, source, text in read_tfds(spec, data_dir, counts, first=item - 1):
      yield (0, i + 1), source, text
    return
  paths = list_files(spec)
  for f in range(part, len(paths)):
    reader = read_json_lines if paths[f].endswith(JSON_SUFFIXES) else read_text_file
    for line, source, text in reader(paths[f], counts, first_line=item if f == part else 1):
      yield (f, line), source, text


def read_documents(spec: str, data_dir: str | None = None,
                   counts: collections.Counter | None = None) -> Iterator[tuple[str, str]]:
  """Yields (source, text) for every document of a corpus spec, in a fixed order.

  Args:
    spec: `builtin:pydoc`, `tfds:NAME[:split]` or a file glob (see module doc).
    data_dir: TFDS data directory (only for `tfds:` specs).
    counts: optional Counter that receives "documents" and "malformed_lines".

  Raises:
    FileNotFoundError: if a glob matches nothing or a TFDS build is missing.
  """
  for _, source, text in read_positioned(spec, data_dir, counts):
    yield source, text


def check_spec(spec: str, flag: str, data_dir: str | None = None,
               min_documents: int = 1, why: str = "asked") -> None:
  """Reads the first documents of a corpus spec, so that a wrong path fails at once.

  Args:
    spec: a corpus spec (see `read_documents`).
    flag: the command-line flag that gave it, named in the error.
    data_dir: TFDS data directory (only for `tfds:` specs).
    min_documents: how many documents it must hold at least.
    why: what needs them, ending the error ("... fewer than the 257 {why}").

  Raises:
    FileNotFoundError: if the spec names no files or an unprepared TFDS build.
    ValueError: if it holds fewer than `min_documents` documents.
  """
  try:
    found = sum(1 for _ in itertools.islice(read_documents(spec, data_dir), min_documents))
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{flag}: {e}") from None
  if found == 0:
    raise ValueError(f"{flag}: {spec!r} holds no documents; check the path")
  if found < min_documents:
    raise ValueError(f"{flag}: {spec!r} holds {found} documents, fewer than the "
                     f"{min_documents} {why}")
