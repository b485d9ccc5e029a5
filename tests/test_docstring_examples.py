"""The examples in docstrings (`>>>`) run and print what they say."""
import doctest
import importlib

import pytest

from tests.conftest import REPO

MODULES = sorted(".".join(path.relative_to(REPO).with_suffix("").parts)
                 for package in ("compressor", "training", "pipelines")
                 for path in (REPO / package).rglob("*.py") if ">>> " in path.read_text())


def test_there_are_examples_to_run():
  assert "pipelines.report" in MODULES and "pipelines.claims" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  result = doctest.testmod(importlib.import_module(name))
  assert result.attempted > 0 and result.failed == 0, name
