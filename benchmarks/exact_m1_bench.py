"""Coding throughput of the integer-exact M1 against the float M1, as JSON.

Usage:
  python benchmarks/exact_m1_bench.py [--size 3m] [--lanes 512] [--symbols 256]
      [--block_lanes 64,256,1024] [--method 'ac[v=256]']

Encodes the same validation examples with equal_info_ac[b=16,v=65k] in
`--lanes` lanes, once with a float M1 of `--size` (random weights, context
1024) and once with its integer-exact conversion (calibrated on train text),
and prints symbols/s of each and their ratio (`exact_over_float`). The
float M1 steps its lanes in blocks of `float_m1.BLOCK_LANES` (64) rows on every
backend, the exact M1 in blocks of `exact.ACCELERATOR_BLOCK_LANES` on
accelerators, so there the ratio reflects their block sizes as well as
their arithmetic. `*_model_fraction` is the share of the timed encode spent
in the model's lanes (`tables()`, which runs the steps and reads the tables
back, and `update()`); the rest is the host's coder and window logic. A warm-up
encode of short prefixes compiles both models' steps first. Random weights
code about one window per two symbols, which is the most model work per
symbol that Equal-Info coding does. `--method 'ac[v=256]'` codes each example
as one context instead, so the KV cache grows with it (up to 1,024 positions).
"""
import argparse
import gzip
import json
import os
import pathlib
import time

import jax
import numpy as np

from compressor import get_method
from compressor.models.base import Lanes, ProbabilityModel
from compressor.symbols import symbols_from_text
from training.m1 import float_m1 as m1_lib
from training.m1 import exact
from training.m1 import quantize as quantize_m1
from webtext import DEFAULT_DATA  # benchmarks/webtext.py

SPEC = "equal_info_ac[b=16,v=65k]"


def read_texts(split_dir: pathlib.Path, limit: int) -> list[str]:
  """Up to `limit` documents of a split, files in name order."""
  texts = []
  for path in sorted(split_dir.glob("*.jsonl.gz")):
    with gzip.open(path, "rt", encoding="utf-8") as f:
      for line in f:
        texts.append(json.loads(line)["text"])
        if len(texts) >= limit:
          return texts
  return texts


def make_examples(texts: list[str], count: int, length: int) -> list[np.ndarray]:
  """`count` examples of `length` symbols cut from the documents' symbol stream."""
  stream = np.concatenate([symbols_from_text(t) for t in texts])
  if stream.size < count * length:
    raise ValueError(f"need {count * length} symbols of text, have {stream.size}")
  return [stream[i * length:(i + 1) * length] for i in range(count)]


class _TimedLanes(Lanes):
  """A model's lanes, adding the seconds spent in them to `clock[0]`."""

  def __init__(self, inner: Lanes, clock: list):
    super().__init__(inner.num_lanes)
    self.inner, self.clock = inner, clock

  def tables(self):
    start = time.perf_counter()
    out = self.inner.tables()
    self.clock[0] += time.perf_counter() - start
    return out

  def update(self, symbols, push, reset):
    start = time.perf_counter()
    self.inner.update(symbols, push, reset)
    self.clock[0] += time.perf_counter() - start


class TimedModel(ProbabilityModel):
  """A probability model whose lanes count the seconds spent in them (`clock[0]`)."""

  def __init__(self, model: ProbabilityModel):
    self.model, self.clock = model, [0.0]

  def freqs(self, contexts):
    return self.model.freqs(contexts)

  def lanes(self, num_lanes):
    return _TimedLanes(self.model.lanes(num_lanes), self.clock)


def throughput(model, examples: list[np.ndarray], num_lanes: int,
               spec: str = SPEC) -> tuple[float, float]:
  """(symbols/s of `spec` encoding, share of that time in the model's lanes), after a
  warm-up that compiles every step it uses."""
  timed = TimedModel(model)
  method = get_method(spec, timed)
  method.num_lanes = num_lanes
  # Compiles the steps this run will use: Equal-Info windows restart the context
  # within 48 symbols; other methods grow the cache with the whole example.
  warm = 48 if spec.startswith("equal_info") else None
  method.encode_batch([x[:warm] for x in examples])
  timed.clock[0] = 0.0
  start = time.perf_counter()
  method.encode_batch(examples)
  seconds = time.perf_counter() - start
  return sum(x.size for x in examples) / seconds, timed.clock[0] / seconds


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--size", default="3m")
  parser.add_argument("--lanes", type=int, default=512, help="examples coded at once")
  parser.add_argument("--symbols", type=int, default=256, help="symbols per example")
  parser.add_argument("--block_lanes", default="",
                      help="comma-separated block sizes of the exact M1's lanes to time too "
                      f"(default blocks: {exact.CPU_BLOCK_LANES} rows on CPU, "
                      f"{exact.ACCELERATOR_BLOCK_LANES} on accelerators)")
  parser.add_argument("--method", default=SPEC, help="a model-based method spec")
  parser.add_argument("--out", type=pathlib.Path, help="also write the JSON here")
  args = parser.parse_args(argv)
  float_m1 = m1_lib.M1Model.random(m1_lib.m1_config(args.size, max_len=1024))
  start = time.perf_counter()
  exact_m1 = quantize_m1.convert(float_m1, read_texts(args.data / "train", 100),
                                 max_sequences=16)
  convert_s = time.perf_counter() - start
  examples = make_examples(read_texts(args.data / "validation", 2000), args.lanes, args.symbols)
  timed = {name: throughput(model, examples, args.lanes, args.method)
           for name, model in (("float", float_m1), ("exact", exact_m1))}
  rates = {name: rate for name, (rate, _) in timed.items()}
  report = {
      "method": args.method, "size": args.size, "lanes": args.lanes,
      "symbols": args.lanes * args.symbols, "backend": jax.default_backend(),
      "cpu_count": os.cpu_count(), "cache_dtype": exact_m1.cache_dtype,
      "float_symbols_per_s": round(rates["float"], 1),
      "exact_symbols_per_s": round(rates["exact"], 1),
      "exact_over_float": round(rates["exact"] / rates["float"], 3),
      "float_model_fraction": round(timed["float"][1], 3),
      "exact_model_fraction": round(timed["exact"][1], 3),
      "convert_s": round(convert_s, 2),
  }
  blocks = [int(b) for b in args.block_lanes.split(",") if b]
  if blocks:
    report["exact_symbols_per_s_by_block_lanes"] = {
        b: round(throughput(exact.ExactM1Model(exact_m1.config, exact_m1.params, block_lanes=b),
                            examples, args.lanes, args.method)[0], 1) for b in blocks}
  text = json.dumps(report, indent=2)
  print(text)
  if args.out:
    args.out.write_text(text + "\n")
  return report


if __name__ == "__main__":
  main()
