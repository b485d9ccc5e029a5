"""Every eqinfo command's --help: each flag says what it is, and shows its default."""
import argparse
import importlib

import pytest

from compressor import help_format
from pipelines import cli


class _Caught(Exception):
  """Carries the parser a command built, before it parses anything."""


def command_parser(monkeypatch, name: str) -> argparse.ArgumentParser:
  """The argparse parser of `eqinfo NAME`, caught where the command first parses."""

  def catch(parser, *args, **kwargs):
    raise _Caught(parser)

  monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
  module = importlib.import_module(cli.COMMANDS[name][0])
  with pytest.raises(_Caught) as caught:
    module.run([])
  monkeypatch.undo()
  return caught.value.args[0]


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_shows_every_flag_and_default(monkeypatch, name):
  parser = command_parser(monkeypatch, name)
  assert parser.formatter_class is help_format.HelpFormatter
  text = parser.format_help()
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, argparse._HelpAction):  # pylint: disable=protected-access
      continue
    assert action.help, f"eqinfo {name}: {action.option_strings or action.dest} has no help"
    if action.default not in (None, argparse.SUPPRESS) and not action.required:
      assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


def test_help_of_every_command_runs(capsys):
  for name in cli.COMMANDS:
    with pytest.raises(SystemExit) as done:
      cli.main([name, "--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out
