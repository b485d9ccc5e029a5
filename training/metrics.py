"""What a training run records: bits/byte, FLOPs/byte (paper §3.8), throughput and MFU,
metrics.jsonl and TensorBoard, example ids, and profiler traces.
"""
import dataclasses
import json
import logging
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from training import checkpoint as checkpoint_lib
from training import configs
from training import model as model_lib

LN2 = math.log(2.0)


def m1_flops_per_byte(stats: dict) -> float:
  """M1's FLOPs/byte for an M2 shard directory's stats.json (0 for methods without M1).

  Uses "m1_flops_per_byte" if stats.json has it, else 2 * the non-embedding
  parameters of the M1 checkpoint named by "m1" (M1 runs once per byte).
  """
  if "m1_flops_per_byte" in stats:
    return float(stats["m1_flops_per_byte"])
  path = stats.get("m1")
  if not path:
    return 0.0
  config_path = checkpoint_lib.as_path(path) / "config.json"
  if not config_path.exists():
    logging.warning("M1 checkpoint %s not found; FLOPs/byte leaves out M1's share", path)
    return 0.0
  m1_config = configs.from_dict(json.loads(config_path.read_text())["model"])
  return model_lib.m1_flops_per_byte(m1_config)


def peak_matmul_size() -> int:
  """Side of the matmul that measures peak FLOP/s: 8192 on accelerators (about a
  millisecond of an H100's bfloat16, so launches do not count), 1024 on CPU."""
  return 1024 if jax.default_backend() == "cpu" else 8192


def measure_peak_flops(dtype: str = "float32", size: int = 0, reps: int = 10,
                       repeats: int = 3) -> float:
  """Measured FLOP/s of a square matmul in `dtype` on one device, times the device count.

  The denominator of MFU when no --peak_flops is given. `size` 0 picks
  `peak_matmul_size()`; the best of `repeats` timings of `reps` products.
  """
  size = size or peak_matmul_size()
  x = jax.device_put(jnp.ones((size, size), dtype), jax.local_devices()[0])
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  best = 0.0
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(reps):
      y = f(x)
    y.block_until_ready()
    best = max(best, 2.0 * size ** 3 * reps / max(time.perf_counter() - start, 1e-9))
  return best * jax.device_count()


class MetricsWriter:
  """Writes metric records to DIR/metrics.jsonl and TensorBoard (process 0 only).

  The JSON-lines file is rewritten whole at every record, so it also works
  on object stores (gs://) that cannot append; a resumed run keeps the lines
  already there (steps replayed after a kill appear twice).
  """

  def __init__(self, directory: str):
    self.enabled = jax.process_index() == 0
    self.path = checkpoint_lib.as_path(directory) / "metrics.jsonl"
    self._lines = self.path.read_text().splitlines() if self.path.exists() else []
    self._tb = {}
    self._tb_dir = os.path.join(directory, "tensorboard")

  def write(self, split: str, step: int, metrics: dict[str, float]) -> None:
    """Appends {"split", "step", **metrics} and the TensorBoard scalars."""
    if not self.enabled:
      return
    self._lines.append(json.dumps({"split": split, "step": step, **metrics}))
    self.path.write_text("\n".join(self._lines) + "\n")
    tf = _tensorflow()
    if split not in self._tb:
      self._tb[split] = tf.summary.create_file_writer(os.path.join(self._tb_dir, split))
    with self._tb[split].as_default():
      for name, value in metrics.items():
        # tf.summary.write with the "scalars" plugin tag: no tensorboard package needed.
        tf.summary.write(name, tf.constant(value, tf.float32), step=step,
                         metadata=_scalar_metadata())
    self._tb[split].flush()


def _tensorflow():
  """Imports TensorFlow (for tf.summary) with accelerators hidden, so it leaves them to JAX."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass
  return tf


def _scalar_metadata() -> bytes:
  """SummaryMetadata that TensorBoard's scalars dashboard recognises."""
  from tensorflow.core.framework import summary_pb2  # pylint: disable=import-outside-toplevel
  plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
  return summary_pb2.SummaryMetadata(plugin_data=plugin).SerializeToString()


class ExampleIdLog:
  """Appends {"step", "ids"} per step to DIR/example_ids.jsonl (testing, audits).

  "ids" are the examples of the whole global batch: with several processes,
  process 0 gathers theirs (a collective each step) and writes them in process order.
  """

  def __init__(self, directory: str, enabled: bool):
    self.enabled = enabled
    self.path = os.path.join(directory, "example_ids.jsonl")  # local run directories only

  def write(self, step: int, batch: dict) -> None:
    if not self.enabled:
      return
    ids = np.asarray(batch["ids"])  # [B/P], or [B/P, T] with -1 between packed records' starts
    if jax.process_count() > 1:
      ids = np.asarray(multihost_utils.process_allgather(ids))  # [P, ...]
    if jax.process_index() == 0:
      ids = ids[ids >= 0] if ids.ndim >= 2 else ids
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, "ids": [int(i) for i in ids.ravel()]}) + "\n")


@dataclasses.dataclass
class Meter:
  """Accumulates training sums (on device, without blocking) between two records.

  `steps` counts every step (bytes/step); the rates count only the timed steps
  (`timed_steps`, `positions`) over the time since `start` less `paused` (the
  time of checkpoints and validation, which are not training steps).
  """
  sums: dict | None = None
  positions: int = 0
  steps: int = 0
  timed_steps: int = 0
  paused: float = 0.0
  start: float = dataclasses.field(default_factory=time.perf_counter)

  def add(self, sums: dict, batch: dict, timed: bool = True) -> None:
    """Adds a step's sums; an untimed step (the first, which compiles) is left out of the
    rates, and the clock restarts once it has finished."""
    self.sums = sums if self.sums is None else jax.tree.map(jnp.add, self.sums, sums)
    self.steps += 1
    if timed:
      self.positions += batch["inputs"].size * jax.process_count()
      self.timed_steps += 1
    else:
      jax.block_until_ready(sums)
      self.start, self.paused = time.perf_counter(), 0.0

  def pause(self, seconds: float) -> None:
    """Leaves `seconds` (a checkpoint, a validation) out of the rates."""
    self.paused += seconds

  def elapsed(self) -> float:
    return max(time.perf_counter() - self.start - self.paused, 1e-9)


def flops_per_byte(non_embedding_params: int, tokens: float, num_bytes: float,
                   m1_flops_per_byte: float) -> float:
  """Paper §3.8: 2 * non-embedding params * tokens/bytes, plus M1's FLOPs/byte."""
  return 2.0 * non_embedding_params * tokens / num_bytes + m1_flops_per_byte


class Throughput:
  """Turns meter sums into bits/byte, FLOPs/byte, bytes/step, tokens/s and MFU."""

  def __init__(self, model_config: configs.ModelConfig, m1_flops_per_byte: float, seq_len: int,
               peak_flops: float, non_embedding_params: int):
    n = non_embedding_params
    self.non_embedding_params = n
    self.m1_flops_per_byte = m1_flops_per_byte
    self.train_flops_per_token = 3.0 * model_lib.flops_per_token(model_config, seq_len, n,
                                                                 include_logits=True)
    self.peak_flops = peak_flops

  def metrics(self, m: Meter) -> dict[str, float]:
    """The record of an interval; tokens/s, steps/s and MFU only where it has timed steps."""
    s = {k: float(v) for k, v in jax.device_get(m.sums).items()}
    elapsed = m.elapsed()
    tokens_per_s = m.positions / elapsed
    tokens, num_bytes = max(s["tokens"], 1.0), max(s["bytes"], 1.0)
    out = {
        "loss": s["xent"] / tokens,
        "z_loss": s["z_loss"] / tokens,
        "bits_per_byte": s["xent"] / num_bytes / LN2,
        "flops_per_byte": flops_per_byte(self.non_embedding_params, tokens, num_bytes,
                                         self.m1_flops_per_byte),
        "bytes_per_step": s["bytes"] / max(m.steps, 1),  # text one step trains on
    }
    if m.timed_steps:
      out.update(tokens_per_s=tokens_per_s, steps_per_s=m.timed_steps / elapsed,
                 mfu=self.train_flops_per_token * tokens_per_s / self.peak_flops)
    return out


class StepProfiler:
  """A JAX profiler trace of steps first..last (inclusive) into `directory`.

  Steps before a resume's first step are not traced; a run that ends inside
  the range stops the trace at its last step (`close`).
  """

  def __init__(self, first: int, last: int, directory: str):
    self.first, self.last, self.directory = first, last, directory
    self.active = False

  def before(self, step: int) -> None:
    if self.first and step == self.first:
      jax.profiler.start_trace(self.directory)
      self.active = True

  def after(self, step: int, state) -> None:
    if self.active and step == self.last:
      self.close(state)

  def close(self, state) -> None:
    if self.active:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active = False
      logging.info("profile of steps %d-%d written to %s", self.first, self.last, self.directory)


class StepBar:
  """A tqdm bar of the steps the device has finished, not merely dispatched, whose rate
  (and so its time left) counts from the first finished step: compilation and JAX's
  asynchronous dispatch do not skew the estimate.
  """

  def __init__(self, total: int, start: int, enabled: bool):
    self.bar = tqdm.tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                         disable=not enabled)
    self.settled = False

  def finished(self, step: int, outputs=None) -> None:
    """Marks steps up to `step` done once `outputs` (that step's results) are ready."""
    if outputs is not None:
      jax.block_until_ready(outputs)
    if not self.settled:  # the first finished step held the compilation: time from here
      self.bar.reset(total=self.bar.total)
      self.bar.initial = self.bar.n = self.bar.last_print_n = step
      self.bar.refresh()
      self.settled = True
      return
    self.bar.update(step - self.bar.n)

  def set_postfix(self, **values) -> None:
    self.bar.set_postfix(**values)

  def close(self) -> None:
    self.bar.close()
