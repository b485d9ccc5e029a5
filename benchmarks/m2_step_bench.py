"""M2's train step alone, on seeded token batches: tokens/s and MFU, as JSON.

Usage:
  python benchmarks/m2_step_bench.py [--size 25m] [--batch_size 256] [--seq_len 512]
      [--token_vocab 65536] [--dtype bfloat16] [--steps 20] [--out FILE]

`m2_bench.py` trains on real shards, which the compression pipeline (Beam)
has to build first; this times `training.train.make_train_step`, the step
`eqinfo train-m2` runs, on seeded batches, so it runs wherever JAX does (an
accelerator VM without Beam or TensorFlow). The step's cost does not depend
on which tokens it sees.

Two modes time the same step shape on the same tokens: `rows`, one record per
row as `--no-pack_records` trains, and `packed`, the row cut into records of
seeded lengths (`segments` set, so attention stays within each record), as
the default training does. `packed_over_rows` is the ratio of their steps/s.
A third mode runs the rows with the other path to the loss than the one
training takes (`logits`): `rows_chunked_logits` where one device's logits
are computed whole (forced into at least 4 chunks), `rows_whole_logits` where
they are chunked (`training.chunked_loss`); `chunked_over_whole` is the ratio
of their steps/s, the price of recomputing the logits in the backward pass.
`step_memory_gib` is what XLA's compiled step says it needs on the device
(arguments, outputs and temporaries); on a CPU, XLA ignores rematerialisation
in that figure. A step that does not fit the device is reported as
`out_of_memory` (with the device's message) beside that figure, and the
modes after it are not run.

MFU is 3 x the forward FLOPs per token (with attention and the output
projection, as the training loop logs it) x tokens/s over
`matmul_flops_per_s`, the measured FLOP/s of a square `--matmul` product in
the same dtype on each device, timed in the
same process (`training.metrics.measure_peak_flops`, the denominator training
logs its MFU against). `peak_flops_per_s` is given with `--peak_flops` (the
card's datasheet figure, e.g. 989e12 for an H100 SXM in bfloat16), and then
`mfu_vs_peak` too.
"""
import argparse
import json
import pathlib
import sys
import time

import jax
import numpy as np

from training import chunked_loss
from training import configs
from training import batch_layout
from training import loss as loss_lib
from training import model as model_lib
from training import optim
from training import train
from training import metrics as metrics_lib


def seeded_batch(batch_size: int, seq_len: int, token_vocab: int, packed: bool,
                 seed: int = 0) -> dict[str, np.ndarray]:
  """One M2 batch of seeded tokens, laid out as training.batch_layout lays out records.

  Returns inputs/targets/weights [B, T], num_bytes [B], and, when `packed`,
  segments [B, T]: each row cut into records of 1/8 to 1/2 of T tokens (the
  last one shorter), numbered 1, 2, ... as row_packing numbers them.
  """
  rng = np.random.default_rng(seed)
  rows = []
  for _ in range(batch_size):
    lengths = [seq_len]
    if packed:
      lengths = []
      while sum(lengths) < seq_len:
        lengths.append(int(rng.integers(seq_len // 8, seq_len // 2 + 1)))
      lengths[-1] -= sum(lengths) - seq_len
    parts = [batch_layout.pack_sequence(rng.integers(0, token_vocab, n, dtype=np.int32), n,
                                token_vocab) for n in lengths]
    row = {k: np.concatenate([p[k] for p in parts]) for k in ("inputs", "targets", "weights")}
    row["segments"] = np.repeat(np.arange(1, len(lengths) + 1, dtype=np.int32), lengths)
    rows.append(row)
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  batch["num_bytes"] = np.full(batch_size, 2 * seq_len, np.int64)  # ~2 bytes a token
  if not packed:
    del batch["segments"]
  return batch


def step_memory_gib(compiled) -> float:
  """Device memory one compiled step needs: arguments + outputs + temporaries, GiB."""
  m = compiled.memory_analysis()
  total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
  return round((total - m.alias_size_in_bytes) / 2 ** 30, 3)


def steps_per_s(step, state, batch: dict, steps: int) -> tuple[float, object]:
  """Steps/s of `steps` train steps after one warm-up step."""
  state, sums = step(state, batch)
  jax.block_until_ready(sums)
  start = time.perf_counter()
  for _ in range(steps):
    state, sums = step(state, batch)
  jax.block_until_ready(sums)
  return steps / (time.perf_counter() - start), state


def logits_paths(config, batch_size: int, seq_len: int) -> tuple[str, dict]:
  """The default logits path of one device's rows ("whole" or "chunked"), and the
  `make_train_step` arguments of the other one (chunked: at least 4 chunks)."""
  rows = -(-batch_size // jax.device_count())
  whole = chunked_loss.chunk_positions(rows, seq_len, config.vocab_size) >= seq_len
  if not whole:
    return "chunked", {"whole_bytes": 1 << 62}
  per_device = 4 * config.vocab_size * rows * seq_len
  return "whole", {"whole_bytes": 0,
                   "chunk_bytes": min(chunked_loss.CHUNK_LOGITS_BYTES, per_device // 4)}


def time_mode(step, state, batch: dict, steps: int) -> tuple[dict, object, bool]:
  """(figures, state, ran) of one mode: steps/s and the compiled step's memory, or
  its out-of-memory message (then `ran` is False: the donated state is gone)."""
  compiled = step.lower(state, batch).compile()
  memory = step_memory_gib(compiled)
  try:
    rate, state = steps_per_s(compiled, state, batch, steps)
  except jax.errors.JaxRuntimeError as e:
    if train.out_of_memory_error(e) is None:
      raise
    return {"step_memory_gib": memory, "out_of_memory": str(e).splitlines()[0]}, None, False
  return {"steps_per_s": round(rate, 3), "step_memory_gib": memory}, state, True


def run(size: str, batch_size: int, seq_len: int, token_vocab: int, dtype: str, steps: int,
        matmul: int, peak_flops: float) -> dict:
  """Times each mode's steps and the matmul baseline; returns the JSON report."""
  config = configs.model_config(size, vocab_size=batch_layout.model_vocab_size(token_vocab),
                                max_len=seq_len, dtype=dtype)
  mesh = train.make_mesh()
  optimizer = optim.adafactor()
  default, other = logits_paths(config, batch_size, seq_len)
  other_mode = "rows_chunked_logits" if default == "whole" else "rows_whole_logits"
  steps_of = {"rows": train.make_train_step(config, optimizer, loss_lib.Z_LOSS, mesh)}
  steps_of["packed"] = steps_of["rows"]
  steps_of[other_mode] = train.make_train_step(config, optimizer, loss_lib.Z_LOSS, mesh, **other)
  state = train.init_state(config, optimizer, 0, mesh)
  params = model_lib.count_params(model_lib.param_shapes(config))
  flops_per_token = 3.0 * model_lib.flops_per_token(config, seq_len, params, include_logits=True)
  matmul = matmul or metrics_lib.peak_matmul_size()
  matmul_rate = metrics_lib.measure_peak_flops(dtype, matmul)
  report = {"size": size, "non_embedding_params": params, "batch_size": batch_size,
            "seq_len": seq_len, "token_vocab": token_vocab, "dtype": dtype,
            "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
            "device_count": jax.device_count(), "steps": steps, "logits": default,
            "train_flops_per_token": flops_per_token, "matmul_size": matmul,
            "matmul_flops_per_s": matmul_rate}
  if peak_flops:
    report["peak_flops_per_s"] = peak_flops
  for mode, step in steps_of.items():
    batch = train.shard_batch(seeded_batch(batch_size, seq_len, token_vocab, mode == "packed"),
                              mesh)
    report[mode], state, ran = time_mode(step, state, batch, steps)
    if not ran:
      return report
    tokens_per_s = report[mode]["steps_per_s"] * batch_size * seq_len
    report[mode]["tokens_per_s"] = round(tokens_per_s, 1)
    report[mode]["mfu"] = round(flops_per_token * tokens_per_s / matmul_rate, 4)
    if peak_flops:
      report[mode]["mfu_vs_peak"] = round(flops_per_token * tokens_per_s / peak_flops, 4)
  rate = lambda mode: report[mode]["steps_per_s"]
  report["packed_over_rows"] = round(rate("packed") / rate("rows"), 3)
  chunked, whole = (other_mode, "rows") if default == "whole" else ("rows", other_mode)
  report["chunked_over_whole"] = round(rate(chunked) / rate(whole), 3)
  return report


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", default="25m", help="a key of training.configs.SIZES")
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--seq_len", type=int, default=512)
  parser.add_argument("--token_vocab", type=int, default=65536,
                      help="M2's token vocabulary (65536 for v=65k, 256 for v=256)")
  parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
  parser.add_argument("--steps", type=int, default=20, help="timed steps per mode")
  parser.add_argument("--matmul", type=int, default=0,
                      help="side of the baseline matmul (default: metrics_lib.peak_matmul_size())")
  parser.add_argument("--peak_flops", type=float, default=0.0,
                      help="the device's datasheet FLOP/s in --dtype, for mfu_vs_peak")
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  report = run(args.size, args.batch_size, args.seq_len, args.token_vocab, args.dtype,
               args.steps, args.matmul, args.peak_flops)
  text = json.dumps(report, indent=2)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
  sys.exit(main())
