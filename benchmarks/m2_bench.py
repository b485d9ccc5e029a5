"""M2 training throughput (tokens/s) and MFU for small sizes, as JSON.

Usage:
  python benchmarks/m2_bench.py [--sizes tiny,mini] [--steps 30] [--batch_size 16]

Builds real shards once (`eqinfo demo`: Python's docs through
EqualInfoAC[b=16, v=256]), then runs `eqinfo train-m2` per size and reports
the steady-state figures of its last logged step (the first log step, which
includes compilation, is skipped), once with one record per row
(`--no-pack_records`) and once packed (the default): bytes of text trained per
second, and their ratio. MFU is tokens/s x 6 x non-embedding
parameters (+ attention) / the device's measured matmul FLOP/s, as the training
loop logs it; the measured peak is printed beside it.

`input_batches_per_s` is how fast the input pipeline alone (grain over the
same shards, `training.m2_input.m2_batches`) hands out batches of the same shape,
best of `--input_repeats` timed runs of `--input_batches`; `input_headroom` is
that over the training's steps/s in the same run. Below 1 the step waits for
its input (on a fast accelerator with a small M2, look there first). The
demo's shards hold a few hundred records, where grain's global index shuffle
costs some 50 us a record (2 us from 100,000 records on), so on real shards
the input runs faster than this figure says.
"""
import argparse
import contextlib
import json
import pathlib
import sys
import tempfile
import time

from pipelines import cli
from training import m2_records
from training import m2_input
from training import shards
from training import metrics as metrics_lib


def last_train_metrics(run: pathlib.Path) -> dict:
  lines = (run / "metrics.jsonl").read_text().splitlines()
  rows = [json.loads(line) for line in lines]
  return [r for r in rows if r.get("split") == "train"][-1]


def input_batches_per_s(glob: str, batch_size: int, pack: bool, batches: int,
                        repeats: int) -> float:
  """Batches/s of the M2 input pipeline alone (best of `repeats`), after one warm-up batch."""
  config = m2_records.M2DataConfig(glob, token_vocab=shards.stats_of_glob(glob)["vocab_size"],
                             seq_len=512, batch_size=batch_size, pack=pack)
  iterator = m2_input.m2_batches(config)
  next(iterator)
  best = 0.0
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(batches):
      next(iterator)
    best = max(best, batches / (time.perf_counter() - start))
  return best


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="tiny,mini")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--input_batches", type=int, default=50)
  parser.add_argument("--input_repeats", type=int, default=3)
  args = parser.parse_args(argv)
  out = {"peak_flops_measured": metrics_lib.measure_peak_flops(), "sizes": {}}
  with tempfile.TemporaryDirectory() as tmp:
    shards = pathlib.Path(tmp) / "shards"
    with contextlib.redirect_stdout(sys.stderr):
      assert cli.main(["demo", "--output", str(shards)]) == 0
    glob = str(shards / "train-*.array_record")
    for size in args.sizes.split(","):
      row = {}
      for name, pack_flags in (("record_per_row", ["--no-pack_records"]), ("packed", [])):
        run = pathlib.Path(tmp) / f"{size}-{name}"
        flags = ["train-m2", "--train", glob, "--validation", glob, "--size", size,
                 "--steps", str(args.steps), "--batch_size", str(args.batch_size),
                 "--seq_len", "512", "--warmup", "10", "--log_every", str(args.steps // 3),
                 "--checkpoint_every", str(args.steps), "--eval_batches", "1", "--no_progress",
                 "--out", str(run), *pack_flags]
        assert cli.main(flags) == 0
        metrics = last_train_metrics(run)
        batches_per_s = input_batches_per_s(glob, args.batch_size, name == "packed",
                                            args.input_batches, args.input_repeats)
        row[name] = {"tokens_per_s": round(metrics["tokens_per_s"]),
                     "steps_per_s": round(metrics["steps_per_s"], 2),
                     "input_batches_per_s": round(batches_per_s, 1),
                     "input_headroom": round(batches_per_s / metrics["steps_per_s"], 2),
                     "mfu": round(metrics["mfu"], 4),
                     "bytes_per_step": round(metrics["bytes_per_step"]),
                     "text_bytes_per_s": round(metrics["bytes_per_step"] * metrics["steps_per_s"]),
                     "command": "eqinfo " + " ".join(flags)}
      row["packed_over_record_per_row_bytes_per_s"] = round(
          row["packed"]["text_bytes_per_s"] / row["record_per_row"]["text_bytes_per_s"], 3)
      out["sizes"][size] = row
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
