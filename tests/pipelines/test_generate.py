"""`eqinfo generate`: M2 samples decode back to text through the M1 that coded the shards."""
import json

import numpy as np

from compressor import symbols_from_text
from pipelines import cli
from pipelines import generate, models


def test_generate_decodes_m2_samples(tmp_path, capsys):
  shards, run = tmp_path / "shards", tmp_path / "m2"
  assert cli.main(["demo", "--max_docs", "12", "--output", str(shards)]) == 0
  glob = str(shards / "train-*.array_record")
  assert cli.main(["train-m2", "--train", glob, "--validation", glob, "--size", "tiny",
                   "--steps", "4", "--batch_size", "4", "--seq_len", "512", "--warmup", "2",
                   "--log_every", "2", "--checkpoint_every", "4", "--eval_batches", "1",
                   "--no_progress", "--out", str(run)]) == 0
  capsys.readouterr()
  assert cli.main(["generate", "--checkpoint", str(run), "--shards", str(shards),
                   "--num_samples", "2", "--max_tokens", "24", "--seed", "1"]) == 0
  samples = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert len(samples) == 2
  stats = json.loads((shards / "stats.json").read_text())
  method = models.build_method(stats["method"], stats["m1"])
  for sample in samples:
    assert len(sample["tokens"]) == 24
    symbols = method.decode(np.array(sample["tokens"]))
    assert symbols.size == sample["num_symbols"]
    assert "".join(sample["windows"]) == sample["text"]
    assert len(sample["windows"]) == 24 * 8 // 16  # b=16 windows of v=256 tokens


def test_text_marks_document_ends():
  x = np.concatenate([symbols_from_text("ab"), symbols_from_text("c", eos=False)])
  assert generate._text(x) == "ab<EOS>c"
