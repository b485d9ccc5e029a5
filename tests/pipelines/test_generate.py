"""`eqinfo generate`: M2 samples decode back to text through the M1 that coded the shards."""
import json

import numpy as np

from compressor import symbols_from_text
from pipelines import cli
from pipelines import generate, models


def test_generate_decodes_m2_samples(m2_run, capsys):
  shards, run = m2_run
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
