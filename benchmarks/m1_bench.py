"""M1 coding throughput against this machine's matmul speed, and coding memory, as JSON.

Usage:
  python benchmarks/m1_bench.py [--data ../shared/data/webtext] [--out m1_bench.json]

All numbers come from one run on one machine (a random-weight "3m" M1 with
context 1024; weights do not change the work per M1 step, but a random M1
predicts text badly, so its Equal-Info windows are short):

  * `matmul_gflops_per_s`: float32 FLOP/s of a jitted `jnp.dot` at M1's
    per-step shape ([BLOCK_LANES, d_model] x [d_model, mlp_dim]: one lane
    block against the MLP's first matrix), at [1024, d_model] x
    [d_model, mlp_dim], and for a large square product (median of repeats).
    M1 runs every step as blocks of BLOCK_LANES rows, so the first shape sets
    the limit; it is sampled again after every timed run (the machine may be
    shared). `limit_gflops_per_s` is the median of those samples, the
    typical speed while the runs were timed; each throughput is the best of
    `--repeats` runs. Fractions are also given against the best sample
    (`*_vs_best_matmul`), the machine's speed when nothing else ran.
  * `flops_per_symbol`: 2 x the matmul parameters one M1 step touches (query,
    key, value, output and MLP matrices of every layer, plus the output
    projection to 258 logits; the embedding is a lookup) + 4 x layers x
    attn_dim x the average number of keys a step attends to (scores QK^T and
    the weighted sum over V, 2 FLOPs per multiply-add each).
  * `limit_symbols_per_s` = limit FLOP/s / flops_per_symbol: the rate M1
    would reach if every step ran at matmul speed, one step per symbol.
  * `coding`: `equal_info_ac[b=16,v=65k]` encoding of real web text (each
    lane codes its own slice of the paper-layout examples) with 256 and 1024
    lanes: symbols/s, M1 steps/s, coder inputs per symbol (a window end adds
    a BOS, which costs no M1 step, and re-codes the symbols the window backs
    off over), and the fraction of the limit achieved per symbol and per M1
    step.
  * `lane_step`: raw `tables()` + `update()` throughput (`training.m1.float_m1.lane_throughput`:
    random symbols, windows of 32), symbols/s and fraction of the limit.
  * `memory`: peak resident set size of the whole process after coding with
    the largest lane count (`resource.getrusage`), in MB.
"""
import argparse
import gzip
import json
import pathlib
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from compressor import get_method
from compressor.examples import make_examples
from compressor.models.base import Lanes, ProbabilityModel
from training.m1 import float_m1 as m1
from webtext import DEFAULT_DATA  # benchmarks/webtext.py

SPEC = "equal_info_ac[b=16,v=65k]"


def read_texts(split_dir: pathlib.Path) -> list[str]:
  """All documents of a split, files in name order."""
  texts = []
  for path in sorted(split_dir.glob("*.jsonl.gz")):
    with gzip.open(path, "rt", encoding="utf-8") as f:
      texts += [json.loads(line)["text"] for line in f]
  if not texts:
    raise FileNotFoundError(f"no *.jsonl.gz documents in {split_dir}; pass --data")
  return texts


def lane_slices(texts: list[str], num_lanes: int, length: int, skip: int = 0) -> list[np.ndarray]:
  """`num_lanes` slices of `length` symbols of the paper-layout examples, after `skip`."""
  stream = np.concatenate(list(make_examples(texts)))
  need = skip + num_lanes * length
  if stream.size < need:
    raise ValueError(f"the data holds {stream.size} symbols, {need} needed; lower --symbols")
  return [stream[skip + i * length:skip + (i + 1) * length] for i in range(num_lanes)]


def matmul_flops(m: int, k: int, n: int, repeats: int = 5, seconds: float = 0.2) -> float:
  """Median float32 FLOP/s of a jitted [m, k] x [k, n] jnp.dot."""
  a = jax.random.normal(jax.random.PRNGKey(0), (m, k), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (k, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  start, calls = time.perf_counter(), 0
  while time.perf_counter() - start < seconds / 4:
    dot(a, b).block_until_ready()
    calls += 1
  per_repeat = max(1, int(calls * 4 * seconds / (time.perf_counter() - start) / repeats))
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(per_repeat):
      dot(a, b).block_until_ready()
    rates.append(2.0 * m * k * n * per_repeat / (time.perf_counter() - start))
  return float(np.median(rates))


def matmul_params_per_step(config) -> int:
  """Weights of every matrix product one step runs: attention, MLP, output projection."""
  attention = 4 * config.d_model * config.attn_dim
  mlp = (3 if config.mlp_gated else 2) * config.d_model * config.mlp_dim
  return config.num_layers * (attention + mlp) + config.d_model * config.vocab_size


def flops_per_symbol(config, mean_keys: float) -> float:
  """2 x matmul params + attention (QK^T and PV) over `mean_keys` keys per step."""
  attention = 4.0 * config.num_layers * config.attn_dim * mean_keys
  return 2.0 * matmul_params_per_step(config) + attention


class CountingModel(ProbabilityModel):
  """Wraps a model; its lanes count inputs, M1 steps and the keys each step attends to.

  Every input (BOS after a restart, or a symbol) is one lane-step of the
  coder; M1 computes a step only for symbols, since the BOS-only table is the
  same for every lane and computed once.
  """

  def __init__(self, inner: ProbabilityModel):
    self.inner = inner
    self.fingerprint = inner.fingerprint
    self.inputs = 0
    self.steps = 0
    self.keys = 0

  def freqs(self, contexts):
    return self.inner.freqs(contexts)

  def lanes(self, num_lanes):
    return CountingLanes(self, self.inner.lanes(num_lanes))


class CountingLanes(Lanes):
  """Delegates to real lanes; a lane is stepped once per queued input (one per update)."""

  def __init__(self, owner: CountingModel, inner: Lanes):
    super().__init__(inner.num_lanes)
    self.owner, self.inner = owner, inner
    self.pending = np.ones(inner.num_lanes, bool)  # BOS
    self.position = np.zeros(inner.num_lanes, np.int64)

  def tables(self):
    fed = self.pending
    computed = fed & (self.position > 0)
    self.owner.inputs += int(fed.sum())
    self.owner.steps += int(computed.sum())
    self.owner.keys += int((self.position[computed] + 1).sum())
    self.position[fed] += 1
    self.pending = np.zeros_like(fed)
    return self.inner.tables()

  def update(self, symbols, push, reset):
    self.inner.update(symbols, push, reset)
    self.pending = self.pending | np.asarray(push, bool) | np.asarray(reset, bool)
    self.position[np.asarray(reset, bool)] = 0


def measure_coding(model: m1.M1Model, texts: list[str], num_lanes: int, length: int) -> dict:
  """Encodes num_lanes slices of `length` symbols in one batch; rates and counts."""
  counting = CountingModel(model)
  method = get_method(SPEC, counting)
  method.num_lanes = num_lanes
  examples = lane_slices(texts, num_lanes, length, skip=64 * 64)
  start = time.perf_counter()
  encoded = method.encode_batch(examples)
  seconds = time.perf_counter() - start
  symbols = sum(x.size for x in examples)
  windows = sum(e.num_windows for e in encoded)
  return {"lanes": num_lanes, "symbols": symbols, "seconds": round(seconds, 3),
          "symbols_per_s": round(symbols / seconds, 1),
          "m1_steps_per_s": round(counting.steps / seconds, 1),
          "m1_steps_per_symbol": round(counting.steps / symbols, 4),
          "inputs_per_symbol": round(counting.inputs / symbols, 4),
          "symbols_per_window": round(symbols / max(windows, 1), 3),
          "mean_keys": counting.keys / max(counting.steps, 1)}


def warm_up(model: m1.M1Model, texts: list[str]) -> None:
  """Compiles the step (one block, first cache size) outside the timed runs."""
  method = get_method(SPEC, model)
  method.num_lanes = m1.BLOCK_LANES
  method.encode_batch(lane_slices(texts, m1.BLOCK_LANES, 64))


def peak_rss_mb() -> float:
  """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class LimitMeter:
  """FLOP/s of M1's per-step matmul shape, sampled again after every timed run.

  The machine may be shared, so the samples are taken around the
  throughput runs: their median is the limit, their best the quiet speed.
  """

  def __init__(self, config):
    self.shape = (m1.BLOCK_LANES, config.d_model, config.mlp_dim)
    self.samples = []

  def sample(self) -> float:
    """Measures the shape's FLOP/s now; returns it."""
    self.samples.append(matmul_flops(*self.shape, repeats=3, seconds=0.1))
    return self.samples[-1]

  def median(self) -> float:
    """The limit: median FLOP/s of the samples."""
    return float(np.median(self.samples))

  def best(self) -> float:
    """The fastest sample, FLOP/s."""
    return max(self.samples)


def coding_runs(model, texts, lane_counts, length, repeats, meter) -> list[dict]:
  """The fastest of `repeats` `measure_coding` runs per lane count; a limit sample after each."""
  runs = []
  for n in lane_counts:
    tries = []
    for _ in range(repeats):
      tries.append(measure_coding(model, texts, n, length))
      meter.sample()
    runs.append(max(tries, key=lambda run: run["symbols_per_s"]))
  return runs


def lane_step_runs(model, lane_counts, steps, repeats, meter) -> list[dict]:
  """The fastest of `repeats` `m1.lane_throughput` runs (windows of 32) per lane count."""
  runs = []
  for n in lane_counts:
    rates = []
    for _ in range(repeats):
      rates.append(m1.lane_throughput(model, n, steps=steps, window=32))
      meter.sample()
    runs.append({"lanes": n, "symbols_per_s": max(rates)})
  return runs


def add_fractions(config, meter, coding, lane_step) -> None:
  """Adds each run's limit and the fraction of it achieved (and of the best matmul)."""
  quiet = meter.best() / meter.median()
  for run in coding:
    run["flops_per_symbol"] = round(flops_per_symbol(config, run.pop("mean_keys")))
    limit = meter.median() / run["flops_per_symbol"]
    run["limit_symbols_per_s"] = round(limit, 1)
    run["fraction_per_symbol"] = round(run["symbols_per_s"] / limit, 3)
    run["fraction_per_m1_step"] = round(run["m1_steps_per_s"] / limit, 3)
    run["fraction_per_symbol_vs_best_matmul"] = round(run["symbols_per_s"] / limit / quiet, 3)
  flops = flops_per_symbol(config, 17.0)  # steps at positions 1..31 of a window
  limit = meter.median() / flops
  for run in lane_step:
    run["symbols_per_s"] = round(run["symbols_per_s"], 1)
    run["flops_per_symbol"] = round(flops)
    run["limit_symbols_per_s"] = round(limit, 1)
    run["fraction"] = round(run["symbols_per_s"] / limit, 3)
    run["fraction_vs_best_matmul"] = round(run["symbols_per_s"] / limit / quiet, 3)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                      help="directory with validation/*.jsonl.gz (key 'text')")
  parser.add_argument("--size", default="3m", help="M1 size name (training.configs.SIZES)")
  parser.add_argument("--max-len", type=int, default=1024, help="M1 context")
  parser.add_argument("--lanes", default="256,1024", help="comma-separated lane counts")
  parser.add_argument("--symbols", type=int, default=96, help="symbols coded per lane")
  parser.add_argument("--steps", type=int, default=16, help="timed steps of the raw lane run")
  parser.add_argument("--repeats", type=int, default=2,
                      help="timed runs per measurement; the fastest counts")
  parser.add_argument("--out", type=pathlib.Path, help="also write the JSON here")
  args = parser.parse_args(argv)
  lane_counts = sorted(int(n) for n in args.lanes.split(","))

  config = m1.m1_config(args.size, max_len=args.max_len)
  model = m1.M1Model.random(config)
  texts = read_texts(args.data / "validation")
  d, f = config.d_model, config.mlp_dim
  meter = LimitMeter(config)
  matmul = {f"{m1.BLOCK_LANES}x{d}x{f}": meter.sample(),
            f"1024x{d}x{f}": matmul_flops(1024, d, f),
            "2048x2048x2048": matmul_flops(2048, 2048, 2048, repeats=3)}

  warm_up(model, texts)
  rss_before = peak_rss_mb()
  coding = coding_runs(model, texts, lane_counts, args.symbols, args.repeats, meter)
  rss_coding = peak_rss_mb()
  lane_step = lane_step_runs(model, lane_counts, args.steps, args.repeats, meter)
  add_fractions(config, meter, coding, lane_step)

  result = {
      "model": {"size": args.size, "max_len": args.max_len, "block_lanes": m1.BLOCK_LANES,
                "matmul_params_per_step": matmul_params_per_step(config),
                "flops_per_symbol_no_attention": flops_per_symbol(config, 0.0)},
      "method": SPEC,
      "matmul_gflops_per_s": {k: round(v / 1e9, 2) for k, v in matmul.items()},
      "limit_matmul": f"{m1.BLOCK_LANES}x{d}x{f}",
      "limit_gflops_per_s": round(meter.median() / 1e9, 2),
      "best_gflops_per_s": round(meter.best() / 1e9, 2),
      "limit_samples_gflops_per_s": [round(s / 1e9, 1) for s in meter.samples],
      "coding": coding,
      "lane_step": lane_step,
      "memory": {"lanes": lane_counts[-1], "peak_rss_mb_before_coding": round(rss_before, 1),
                 "peak_rss_mb": round(rss_coding, 1), "target_mb": 2048},
      "devices": [str(dev) for dev in jax.devices()],
  }
  text = json.dumps(result, indent=2)
  print(text)
  if args.out:
    args.out.write_text(text + "\n")
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
