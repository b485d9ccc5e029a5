"""Shared fixtures: the real web text in ../shared/data/webtext, read, never committed."""
import gzip
import json
import logging
import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
WEBTEXT = pathlib.Path(os.environ.get("EQINFO_WEBTEXT", REPO.parent / "shared" / "data" / "webtext"))


@pytest.fixture(autouse=True)
def logging_of_commands_ends_with_the_test():
  """A command run in-process sets up logging for a process (`training.log_setup`);
  undone after each test, so no test sees another's log lines."""
  from training import log_setup  # pylint: disable=import-outside-toplevel
  root = logging.getLogger()
  levels = {name: logging.getLogger(name).level for name in ("", *log_setup.QUIET)}
  yield
  for handler in [h for h in root.handlers if h.get_name() == log_setup.HANDLER]:
    root.removeHandler(handler)
  for name, level in levels.items():
    logging.getLogger(name).setLevel(level)


def read_docs(split: str, limit: int | None = None, pattern: str = "*.jsonl.gz") -> list[str]:
  """Returns up to `limit` document texts of a webtext split, in file-name order."""
  docs = []
  for path in sorted((WEBTEXT / split).glob(pattern)):
    with gzip.open(path, "rt", encoding="utf-8") as f:
      for line in f:
        docs.append(json.loads(line)["text"])
        if limit is not None and len(docs) >= limit:
          return docs
  return docs


@pytest.fixture(scope="session")
def webtext_dir() -> pathlib.Path:
  if not (WEBTEXT / "validation").is_dir():
    pytest.skip(f"shared web text not found at {WEBTEXT} (set EQINFO_WEBTEXT)")
  return WEBTEXT


@pytest.fixture(scope="session")
def validation_docs(webtext_dir) -> list[str]:
  """The first 200 documents of the validation split (real C4 first)."""
  return read_docs("validation", limit=200)


@pytest.fixture(scope="session")
def train_docs(webtext_dir) -> list[str]:
  """The first 1,000 documents of the train split."""
  return read_docs("train", limit=1000)


@pytest.fixture()
def rng() -> np.random.Generator:
  return np.random.default_rng(0)
