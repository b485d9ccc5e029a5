"""Fixtures of the pipeline tests: small JSON-lines corpora."""
import gzip
import json
import pathlib

import pytest

LARGE_DOC_BYTES = 1 << 20


@pytest.fixture(scope="session")
def small_jsonl(tmp_path_factory, validation_docs) -> pathlib.Path:
  """The first 50 validation documents as one C4-layout *.json.gz file."""
  path = tmp_path_factory.mktemp("small") / "c4-validation.00000-of-00001.json.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    for i, text in enumerate(validation_docs[:50]):
      f.write(json.dumps({"text": text, "url": f"https://example.com/{i}",
                          "timestamp": "2019-04-25T12:00:00Z"}) + "\n")
  return path


@pytest.fixture(scope="session")
def two_jsonl(tmp_path_factory, validation_docs) -> str:
  """The first 50 validation documents as two C4-layout files of 25; returns their glob."""
  directory = tmp_path_factory.mktemp("two")
  for f in range(2):
    with gzip.open(directory / f"c4-validation.{f:05d}-of-00002.json.gz", "wt",
                   encoding="utf-8") as out:
      for text in validation_docs[25 * f:25 * (f + 1)]:
        out.write(json.dumps({"text": text}) + "\n")
  return str(directory / "c4-validation.*.json.gz")


BAD_LINES = [
    json.dumps({"text": "A good first document.\nWith two lines."}).encode(),
    b'{"text": "unterminated',                                  # malformed_json
    json.dumps({"text": ""}).encode(),                           # empty_document
    json.dumps({"text": "NUL \x00 inside"}).encode(),            # coded as bytes
    b'{"text": "invalid UTF-8: \xff\xfe and \xc3("}',            # coded as raw bytes
    b"",                                                         # blank_line
    json.dumps({"body": "no text field"}).encode(),              # missing_text_field
    json.dumps({"text": "lone surrogate \ud800 escape"}).encode(),
    json.dumps({"text": "x" * LARGE_DOC_BYTES}).encode(),        # ~1 MB document
    json.dumps({"text": "The last document."}).encode(),
]


@pytest.fixture()
def large_doc_bytes() -> int:
  """Size of the large document in `bad_jsonl`."""
  return LARGE_DOC_BYTES


@pytest.fixture()
def bad_jsonl(tmp_path) -> pathlib.Path:
  """A .jsonl file with one line of each kind of bad input (see BAD_LINES)."""
  path = tmp_path / "bad" / "bad.jsonl"
  path.parent.mkdir()
  path.write_bytes(b"\n".join(BAD_LINES) + b"\n")
  return path


@pytest.fixture(scope="session")
def m2_run(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
  """(shard directory of `eqinfo demo` on 12 topics, a tiny M2 trained 4 steps on it)."""
  from pipelines import cli  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp("m2_run")
  shards, run = root / "shards", root / "m2"
  assert cli.main(["demo", "--max_docs", "12", "--output", str(shards)]) == 0
  glob = str(shards / "train-*.array_record")
  assert cli.main(["train-m2", "--train", glob, "--validation", glob, "--size", "tiny",
                   "--steps", "4", "--batch_size", "4", "--seq_len", "512", "--warmup", "2",
                   "--log_every", "2", "--checkpoint_every", "4", "--eval_batches", "1",
                   "--no_progress", "--out", str(run)]) == 0
  return shards, run
