"""`eqinfo eval`: bits/byte of a trained M1 or M2, with the paper's Table 3 baselines.

  eqinfo eval --checkpoint runs/m2-eqinfo16-65k --data 'shards/validation-*.array_record'
  eqinfo eval --checkpoint runs/m1 --data 'webtext/validation/*.jsonl.gz'

`--checkpoint` is a training run directory (`train-m2 --out`, or `train-m1
--out` / its `train` subdirectory; the latest checkpoint is used) or an M1
directory (`training.m1.float_m1.save`). The sample is fixed: the first
`--num_batches` batches of `--data`, unshuffled; `--num_batches 0` scores all
of it, so that methods whose records hold different amounts of text are
scored on the same text. Prints one JSON object:
loss, bits/byte = sum of token losses / bytes / ln 2, FLOPs/byte, and the
baselines (paper §3.8, Table 3):

  uniform  = log2(token vocabulary) * tokens/bytes
  unigram  = H(token unigram distribution) * tokens/bytes

where the unigram histogram is stats.json's "token_histogram" next to
`--data` if present, else the histogram of the sample's own targets.
`--out FILE` also writes the object to FILE, which `eqinfo report` reads.
"""
import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Any, Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from compressor import help_format
from training import accelerator
from training import checkpoint as checkpoint_lib
from training import configs
from training import m1_input
from training import m2_records
from training import m2_input
from training import log_setup
from training.m1 import float_m1 as m1_lib
from training import model as model_lib
from training import optim
from training import shards
from training import train
from training import window_accuracy
from training import metrics as metrics_lib


@dataclasses.dataclass
class Loaded:
  """A model ready to evaluate."""
  kind: str                          # "m1" or "m2"
  model_config: configs.ModelConfig  # the transformer
  params: Any                        # replicated params (no "params" wrapper)
  step: int | None                   # training step of the checkpoint (None for an M1 export)
  run_config: dict                   # the run's config.json ({} for an M1 export)


def parse_flags(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="eqinfo eval", description=__doc__,
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="run directory or M1 directory")
  parser.add_argument("--data", required=True,
                      help="M2: ArrayRecord glob; M1: corpus spec (jsonl glob, builtin:pydoc, ...)")
  parser.add_argument("--batch_size", type=int, default=0, help="default: the run's batch size")
  parser.add_argument("--seq_len", type=int, default=0, help="default: the model's max_len")
  parser.add_argument("--num_batches", type=int, default=16,
                      help="batches in the fixed sample; 0: all of --data (the same text for "
                           "every method)")
  parser.add_argument("--m1_flops_per_byte", type=float, default=None,
                      help="M1's FLOPs/byte for M1-based methods (default: stats.json)")
  parser.add_argument("--tfds_data_dir", help="TFDS data_dir for tfds: specs (M1)")
  parser.add_argument("--out", help="also write the result to this JSON file "
                                    "(`eqinfo report FILE` shows it beside the baselines)")
  accelerator.add_flag(parser)
  return parser.parse_args(argv)


def run_directory(path: str) -> str | None:
  """The training run directory at or under `path`, or None."""
  for candidate in (path, os.path.join(path, "train")):
    config = checkpoint_lib.as_path(candidate) / checkpoint_lib.CONFIG_FILE
    if config.exists() and "kind" in checkpoint_lib.load_config(candidate):
      return candidate
  return None


def load(path: str, mesh) -> Loaded:
  """Loads the latest checkpoint of a run directory, or an M1 directory.

  Raises:
    FileNotFoundError: nothing loadable at `path`.
    ValueError: a corrupt checkpoint.
  """
  if not checkpoint_lib.as_path(path).is_dir():
    raise FileNotFoundError(f"no checkpoint directory {path!r}; pass the --out directory of "
                            "`eqinfo train-m1` or `eqinfo train-m2`")
  run_dir = run_directory(path)
  if run_dir is None:
    m1 = m1_lib.load(path, exact=False)  # raises FileNotFoundError / ValueError with what to do
    params = jax.device_put(m1.params["params"], NamedSharding(mesh, PartitionSpec()))
    return Loaded("m1", m1.config, params, None, {})
  run_config = checkpoint_lib.load_config(run_dir)
  model_config = configs.from_dict(run_config["model"])
  optimizer = optim.adafactor(run_config["train"]["warmup"])
  abstract = train.abstract_state(model_config, optimizer, mesh)
  ckpt = checkpoint_lib.Checkpointer(run_dir, async_save=False, read_only=True)
  step, state, _ = ckpt.restore(abstract)
  ckpt.close()
  return Loaded(run_config["kind"], model_config, state["params"], step, run_config)


def batches(loaded: Loaded, args, batch_size: int, seq_len: int) -> tuple[Iterator[dict], int]:
  """(unshuffled batches of --data, token vocabulary) for the model's kind."""
  if loaded.kind == "m1":
    cfg = m1_input.M1DataConfig(args.data, seq_len=seq_len, batch_size=batch_size, shuffle=False,
                            repeat=False, tfds_data_dir=args.tfds_data_dir)
    return m1_input.M1Batches(cfg), m1_lib.VOCAB_SIZE - 1
  vocab = int(loaded.run_config.get("data", {}).get("token_vocab",
                                                    loaded.model_config.vocab_size - 1))
  cfg = m2_records.M2DataConfig(args.data, vocab, seq_len=seq_len, batch_size=batch_size,
                          shuffle=False, repeat=False)
  return m2_input.m2_batches(cfg), vocab


def unigram_bits(histogram: np.ndarray) -> float:
  """Entropy in bits of a token histogram."""
  counts = np.asarray(histogram, np.float64)
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log2(p)).sum())


def stats_histogram(stats: dict, vocab: int) -> np.ndarray | None:
  """stats.json "token_histogram" (a list, or a {token: count} dict) as [vocab] counts."""
  hist = stats.get("token_histogram")
  if hist is None:
    return None
  if isinstance(hist, dict):
    out = np.zeros(vocab, np.float64)
    for token, count in hist.items():
      out[int(token)] = count
    return out
  return np.asarray(hist, np.float64)


class SampleCounter:
  """Counts the tokens, bytes and target histogram of the evaluated batches."""

  def __init__(self, vocab: int):
    self.histogram = np.zeros(vocab, np.float64)
    self.examples = 0

  def wrap(self, batches: Iterator[dict]) -> Iterator[dict]:
    for batch in batches:
      real = batch["weights"] > 0
      self.histogram += np.bincount(batch["targets"][real], minlength=len(self.histogram))
      self.examples += int(np.sum(batch["ids"] >= 0))  # records (or sequences), not rows
      yield batch


def baselines(vocab: int, tokens: float, num_bytes: float, histogram: np.ndarray) -> dict:
  """Table 3's uniform and unigram bits/byte for a tokens/bytes ratio."""
  ratio = tokens / num_bytes
  return {"uniform": math.log2(vocab) * ratio, "unigram": unigram_bits(histogram) * ratio}


def evaluate(args) -> dict:
  """Runs the evaluation of parsed flags and returns the JSON-able result."""
  mesh = train.make_mesh()
  loaded = load(args.checkpoint, mesh)
  run_data = loaded.run_config.get("data", {})
  batch_size = args.batch_size or int(run_data.get("batch_size", 0) or
                                      run_data.get("train", {}).get("batch_size", 8))
  seq_len = args.seq_len or loaded.model_config.max_len
  stream, vocab = batches(loaded, args, batch_size, seq_len)
  counter = SampleCounter(vocab)
  stats = shards.stats_of_glob(args.data) if loaded.kind == "m2" else {}
  eval_step = train.make_eval_step(loaded.model_config, mesh,
                                   window_accuracy.tokens_per_window(stats))
  with train.out_of_memory_as_error(f"pass a smaller --batch_size ({batch_size} now)"):
    result = train.evaluate(eval_step, loaded.params, counter.wrap(stream), mesh,
                            args.num_batches)
  hist = stats_histogram(stats, vocab)
  source = "stats.json" if hist is not None else "sample"
  hist = counter.histogram if hist is None else hist
  n = model_lib.count_params(model_lib.param_shapes(loaded.model_config))
  extra = (args.m1_flops_per_byte if args.m1_flops_per_byte is not None
           else metrics_lib.m1_flops_per_byte(stats))
  return {
      "checkpoint": args.checkpoint, "kind": loaded.kind, "step": loaded.step,
      "data": args.data, "examples": counter.examples, "tokens": result["tokens"],
      "bytes": result["bytes"], "tokens_per_byte": result["tokens"] / result["bytes"],
      "loss": result["loss"], "bits_per_byte": result["bits_per_byte"],
      "flops_per_byte": metrics_lib.flops_per_byte(n, result["tokens"], result["bytes"], extra),
      "baselines": baselines(vocab, result["tokens"], result["bytes"], hist),
      "unigram_histogram": source, "token_vocab": vocab,
      "batch_size": batch_size, "seq_len": seq_len, "num_batches": args.num_batches,
      "batches": result["batches"],
      **{k: result[k] for k in ("accuracy", "accuracy_by_window_position") if k in result},
  }


def run(argv=None) -> int:
  """Entry point of `eqinfo eval`: prints the result as JSON."""
  log_setup.configure()
  args = parse_flags(argv)
  accelerator.require(args.accelerator)
  result = evaluate(args)
  text = json.dumps(result, indent=2) + "\n"
  sys.stdout.write(text)
  if args.out:
    out = checkpoint_lib.as_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
  return 0
