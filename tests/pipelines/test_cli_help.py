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


@pytest.mark.parametrize("argv", [
    ["train-m1", "--train", "builtin:pydoc", "--steps", "1", "--out", "{tmp}/m1"],
    ["train-m2", "--train", "{tmp}/none-*.array_record", "--steps", "1", "--out", "{tmp}/m2"],
    ["eval", "--checkpoint", "{tmp}/m2", "--data", "x"],
    ["generate", "--checkpoint", "{tmp}/m2", "--shards", "{tmp}/shards"],
    ["check-devices"],
    ["compress", "--input", "builtin:pydoc", "--method", "bytes", "--output", "{tmp}/out"],
], ids=lambda argv: argv[0])
def test_an_accelerator_that_is_not_there_is_a_one_line_error(tmp_path, capsys, argv):
  """--accelerator gpu on a machine where JAX sees none stops before any work."""
  import jax  # pylint: disable=import-outside-toplevel
  if jax.default_backend() != "cpu":
    pytest.skip("this machine has an accelerator")
  argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
  assert cli.main([*argv, "--accelerator", "gpu"]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert "--accelerator gpu: JAX sees no GPU here (it would run on cpu)" in err
  assert "LD_LIBRARY_PATH" in err and "--accelerator cpu" in err
  assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("argv", [
    ["codec", "--input", "{spec}", "--method", "bytes"],
    ["check-devices", "--text", "{spec}", "--sequences", "2", "--seq_len", "16"],
    ["quantize-m1", "--m1", "{tmp}/m1", "--calibration", "{spec}", "--calibration_docs", "4",
     "--calibration_sequences", "2", "--calibration_seq_len", "16", "--eval_sequences", "2",
     "--eval_seq_len", "16", "--out", "{tmp}/exact"],
    ["train-m1", "--train", "{spec}", "--size", "tiny", "--seq_len", "32", "--batch_size", "2",
     "--steps", "1", "--no-exact", "--no_progress", "--out", "{tmp}/run"],
], ids=lambda argv: argv[0])
def test_every_command_that_reads_text_reads_a_tfds_build_from_its_data_dir(
    tmp_path, capsys, tiny_tfds, argv):
  """`tfds:` specs with --tfds_data_dir on each command that takes corpus specs (README)."""
  from tests.conftest import TINY_TFDS_SPEC  # pylint: disable=import-outside-toplevel
  from training.m1 import float_m1  # pylint: disable=import-outside-toplevel
  float_m1.M1Model.random(float_m1.m1_config("tiny", max_len=32)).save(tmp_path / "m1")
  argv = [a.replace("{spec}", TINY_TFDS_SPEC).replace("{tmp}", str(tmp_path)) for a in argv]
  assert cli.main([*argv, "--tfds_data_dir", str(tmp_path / "empty")]) == 1
  err = capsys.readouterr().err
  assert "is not prepared under --tfds_data_dir" in err and str(tmp_path / "empty") in err
  assert cli.main([*argv, "--tfds_data_dir", str(tiny_tfds)]) == 0, capsys.readouterr().err


def test_a_text_field_that_a_tfds_build_lacks_is_a_one_line_error(tmp_path, capsys, tiny_tfds):
  from tests.conftest import TINY_TFDS_SPEC  # pylint: disable=import-outside-toplevel
  assert cli.main(["compress", "--input", TINY_TFDS_SPEC, "--tfds_data_dir", str(tiny_tfds),
                   "--method", "bytes", "--text_field", "body",
                   "--output", str(tmp_path / "out")]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "--text_field 'body' is not a feature" in err
  assert "(it has text); pass one of them" in err and not (tmp_path / "out").exists()


def test_a_model_fitted_on_a_tfds_build_names_its_data_dir_in_the_spec(tiny_tfds):
  from pipelines import m1_loader  # pylint: disable=import-outside-toplevel
  from tests.conftest import TINY_TFDS_SPEC  # pylint: disable=import-outside-toplevel
  model = m1_loader.load_model(f"unigram[fit={TINY_TFDS_SPEC},tfds_data_dir={tiny_tfds}]")
  from compressor.models import UnigramModel  # pylint: disable=import-outside-toplevel
  from compressor.symbols import symbols_from_text  # pylint: disable=import-outside-toplevel
  documents = [symbols_from_text(f"document {i} " * (i + 1)) for i in range(30)]
  assert model == UnigramModel.fit(documents)  # the build's 30 documents, in any order
  with pytest.raises(FileNotFoundError, match="not prepared"):
    m1_loader.load_model(f"unigram[fit={TINY_TFDS_SPEC},tfds_data_dir={tiny_tfds}/none]")
