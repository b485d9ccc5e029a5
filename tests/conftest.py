"""Shared fixtures: the real web text in ../shared/data/webtext, read, never committed.

Without it (a clone on its own), the tests read a stand-in in the same layout,
written once per session from English that ships with Python
(`tests/standin_corpus.py`), so no test is skipped for want of data.
"""
import gzip
import json
import logging
import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
WEBTEXT = pathlib.Path(os.environ.get("EQINFO_WEBTEXT",
                                      REPO.parent / "shared" / "data" / "webtext"))


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


def read_docs(root: pathlib.Path, split: str, limit: int | None = None,
              pattern: str = "*.jsonl.gz") -> list[str]:
  """Returns up to `limit` document texts of a split of `root`, in file-name order."""
  docs = []
  for path in sorted((root / split).glob(pattern)):
    with gzip.open(path, "rt", encoding="utf-8") as f:
      for line in f:
        docs.append(json.loads(line)["text"])
        if limit is not None and len(docs) >= limit:
          return docs
  return docs


def has_webtext() -> bool:
  """Whether the shared web text is here (else the tests read the stand-in)."""
  return (WEBTEXT / "validation").is_dir()


@pytest.fixture(scope="session")
def webtext_dir(tmp_path_factory) -> pathlib.Path:
  """The shared web text, or the stand-in from Python's own English where it is absent."""
  if has_webtext():
    return WEBTEXT
  from tests import standin_corpus  # pylint: disable=import-outside-toplevel
  return standin_corpus.write(tmp_path_factory.mktemp("standin_webtext"))


@pytest.fixture(scope="session")
def validation_docs(webtext_dir) -> list[str]:
  """The first 200 documents of the validation split (real C4 first)."""
  return read_docs(webtext_dir, "validation", limit=200)


@pytest.fixture(scope="session")
def train_docs(webtext_dir) -> list[str]:
  """The first 1,000 documents of the train split."""
  return read_docs(webtext_dir, "train", limit=1000)


@pytest.fixture()
def rng() -> np.random.Generator:
  return np.random.default_rng(0)


TINY_TFDS_SPEC = "tfds:eqinfo_tiny_text:1.0.0:validation"


@pytest.fixture(scope="session")
def tiny_tfds(tmp_path_factory) -> pathlib.Path:
  """A TFDS data_dir holding a real build of 30 short documents (`TINY_TFDS_SPEC`), made here:
  document i is "document i " repeated i + 1 times (the split orders them by TFDS's hash
  of their keys)."""
  tfds = pytest.importorskip("tensorflow_datasets")
  data_dir = tmp_path_factory.mktemp("tfds")

  class EqinfoTinyText(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    __module__ = "eqinfo_tiny_text"  # not in a package: tfds looks for no code path

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {"validation": self._generate_examples()}

    def _generate_examples(self):
      for i in range(30):
        yield i, {"text": f"document {i} " * (i + 1)}

  EqinfoTinyText(data_dir=str(data_dir)).download_and_prepare()
  return data_dir
