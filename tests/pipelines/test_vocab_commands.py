"""`eqinfo build-vocab`, `eqinfo compress --vocab` and `eqinfo inspect --vocab`."""
import json

import pytest

from compressor import window_vocab
from pipelines import cli

M1 = "context[order=3,fit=builtin:pydoc]"


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "window_vocab.json"
  assert cli.main(["build-vocab", "--m1", M1, "--out", str(path), "--no_progress"]) == 0
  return path


def test_build_vocab_writes_the_file_compress_writes(vocab_file, tmp_path, capsys):
  capsys.readouterr()
  out = tmp_path / "shards"
  assert cli.main(["compress", "--input", "builtin:pydoc", "--method",
                   "equal_info_ac[b=16,v=65k]", "--m1", M1, "--output", str(out),
                   "--max_docs_per_file", "20"]) == 0
  assert (out / window_vocab.FILENAME).read_bytes() == vocab_file.read_bytes()
  stats = json.loads((out / "stats.json").read_text())
  assert stats["window_vocab"]["digest"] == window_vocab.WindowVocabulary.load(vocab_file).digest
  with_file = tmp_path / "with_file"
  assert cli.main(["compress", "--input", "builtin:pydoc", "--method",
                   "equal_info_ac[b=16,v=65k]", "--m1", M1, "--vocab", str(vocab_file),
                   "--output", str(with_file), "--max_docs_per_file", "20"]) == 0
  shard = "train-equal_info_ac_b_16_v_65k-f00000-00000.array_record"
  assert (with_file / shard).read_bytes() == (out / shard).read_bytes()
  assert json.loads((with_file / "stats.json").read_text())["window_vocab"]["from_file"] == \
      str(vocab_file)


@pytest.mark.parametrize("argv, expected", [
    (["--m1", M1.replace("order=3", "order=2")], "was built from M1"),
    (["--m1", M1, "--coder", "arithmetic"], "leave out --vocab"),
    (["--m1", M1, "--method", "equal_info_ac[b=32,v=65k]"], "leave out --vocab"),
])
def test_a_vocabulary_that_does_not_fit_is_a_one_line_error(vocab_file, tmp_path, capsys, argv,
                                                            expected):
  base = {"--input": "builtin:pydoc", "--method": "equal_info_ac[b=16,v=65k]",
          "--output": str(tmp_path / "out"), "--vocab": str(vocab_file)}
  flags = dict(base, **dict(zip(argv[::2], argv[1::2])))
  assert cli.main(["compress", *[x for kv in flags.items() for x in kv]]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and expected in err, err
  assert not (tmp_path / "out" / "COMPLETED").exists()


def test_coder_vocabulary_needs_b16(tmp_path, capsys):
  assert cli.main(["compress", "--input", "builtin:pydoc", "--method", "equal_info_ac[b=32,v=65k]",
                   "--m1", M1, "--coder", "vocabulary", "--output", str(tmp_path / "o")]) == 1
  assert "--coder vocabulary needs equal_info_ac with b=16" in capsys.readouterr().err


def test_inspect_vocab_prints_the_vocabulary(vocab_file, tmp_path, capsys):
  out = tmp_path / "shards"
  assert cli.main(["compress", "--input", "builtin:pydoc", "--method",
                   "equal_info_ac[b=16,v=256]", "--m1", M1, "--output", str(out),
                   "--max_docs_per_file", "20"]) == 0
  capsys.readouterr()
  assert cli.main(["inspect", str(out), "--vocab", "5"]) == 0
  text = capsys.readouterr().out
  vocab = window_vocab.WindowVocabulary.load(vocab_file)
  stats = json.loads((out / "stats.json").read_text())
  assert f"{vocab.distinct_strings()} distinct window texts among 65536 codes" in text
  assert f"in {out}: {stats['windows']} windows" in text  # v=256: two tokens a window
  assert text.count("\n  ") >= 5 + 5  # frequent and longest windows
  assert cli.main(["inspect", str(vocab_file), "--vocab"]) == 0  # the file alone
  assert "longest windows:" in capsys.readouterr().out
