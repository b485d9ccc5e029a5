"""Documents from corpora, as (source, text) pairs, outside Beam.

A corpus spec is one of:

- `builtin:pydoc`: Python's own documentation topics (no download).
- `tfds:c4/en:3.1.0[:split]`: a TensorFlow Datasets build already prepared in
  `data_dir` (never downloaded here); the split defaults to `train`.
- a glob (local or `gs://`) of C4-layout JSON lines (`*.jsonl`, `*.json`,
  `*.jsonl.gz`, `*.json.gz`; one JSON object per line with key "text") or of
  plain text files (one document per file).

Files are read in sorted name order, so the document order is deterministic.
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


def read_json_lines(path: str, counts: collections.Counter | None = None
                    ) -> Iterator[tuple[str, str]]:
  """Yields (f"{path}:{line}", text) for each document of a JSON-lines file.

  Line numbers start at 1. A malformed line (bad JSON, bad UTF-8, no "text")
  is skipped, counted in `counts["malformed_lines"]` and logged with its
  source; blank lines are skipped silently.
  """
  counts = collections.Counter() if counts is None else counts
  with _open_binary(path) as f:
    for number, line in enumerate(f, start=1):
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
      yield source, text


def read_text_file(path: str, counts: collections.Counter | None = None
                   ) -> Iterator[tuple[str, str]]:
  """Yields (path, text): a plain text file is one document (bad UTF-8 kept as surrogates)."""
  counts = collections.Counter() if counts is None else counts
  with _open_binary(path) as f:
    data = f.read()
  counts["documents"] += 1
  yield path, data.decode("utf-8", errors="surrogateescape")


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
              counts: collections.Counter | None = None) -> Iterator[tuple[str, str]]:
  """Yields (f"{spec}:{i}", text) from a prepared TFDS build; never downloads.

  Raises:
    FileNotFoundError: if the dataset is not prepared under `data_dir`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  counts = collections.Counter() if counts is None else counts
  name, split = parse_tfds_spec(spec)
  builder = tfds.builder(name, data_dir=data_dir)
  try:
    ds = builder.as_dataset(split=split, shuffle_files=False)
  except AssertionError:  # tfds's way of saying "not prepared"
    raise FileNotFoundError(
        f"TFDS dataset {name} is not prepared under data_dir={data_dir!r}; "
        "prepare it with `tfds build` (or the C4 Beam pipeline) and pass --data_dir") from None
  for i, example in enumerate(tfds.as_numpy(ds)):
    counts["documents"] += 1
    yield f"tfds:{name}:{split}:{i}", example["text"].decode("utf-8", errors="surrogateescape")


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
  counts = collections.Counter() if counts is None else counts
  if spec == BUILTIN_PYDOC:
    for source, text in builtin_pydoc_documents():
      counts["documents"] += 1
      yield source, text
    return
  if spec.startswith(TFDS_PREFIX):
    yield from read_tfds(spec, data_dir, counts)
    return
  for path in list_files(spec):
    reader = read_json_lines if path.endswith(JSON_SUFFIXES) else read_text_file
    yield from reader(path, counts)


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
