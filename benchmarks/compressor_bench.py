"""Compression ratios of every method and coder throughput, as JSON.

Usage:
  python benchmarks/compressor_bench.py [--data ../shared/data/webtext] [--out bench.json]

On the shared web text, with `ContextModel(order=3)` fitted on `train/` as a
stand-in for M1:
  * `compression_ratios`: bytes per token (the paper's Table 2) of every method on
    `validation/` (examples of 10,240 symbols), and `raw_bits_per_coded_bit`
    (v=65k tokens count 16 bits, v=256 tokens 8, SentencePiece ceil(log2 vocab)).
  * `greedy_rule`: EqualInfoAC[b=16] under the paper's greedy window rule
    (greedy window, shortest code padded with zeros, greedy decoding) on a
    sample: its ratio, and how many of its windows decode wrongly, next to
    eqinfo's lossless rule on the same sample.
  * `throughput`: coder-only symbols/s with the model's tables precomputed
    (the table rows of a coding run are recorded, then replayed), for AC and
    EqualInfoAC[b=16], beside the constriction library's range coder on the
    same tables in the same run (`ratio_vs_constriction` > 1 means faster).
"""
import argparse
import gzip
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

from compressor import constants, get_method, window_arith
from compressor.examples import group_documents, split_group
from compressor.models import ContextModel, UnigramModel
from compressor.models.base import Lanes, ProbabilityModel, cdf_from_freqs
from webtext import DEFAULT_DATA  # benchmarks/webtext.py



def read_texts(split_dir: pathlib.Path) -> list[str]:
  """All documents of a split, files in name order."""
  texts = []
  for path in sorted(split_dir.glob("*.jsonl.gz")):
    with gzip.open(path, "rt", encoding="utf-8") as f:
      texts += [json.loads(line)["text"] for line in f]
  return texts


def make_examples(texts: list[str]) -> list[np.ndarray]:
  """The paper's layout: groups of 128 documents cut into 10,240-symbol examples."""
  return [span.symbols for group in group_documents(texts)
          for span in split_group(group)]


def coded_bits(method, encoded) -> int:
  bits = method.token_bits or 8  # Bytes: a token counts as a byte (Method.token_bits)
  return sum(e.tokens.size for e in encoded) * bits


def measure_ratios(examples, context, unigram, sp_path) -> dict:
  specs = ["bytes", "gzip[v=256]", "gzip[v=65k]", "ac[v=256]", "ac[v=65k]",
           "static_ac[v=256]", "static_ac[v=65k]"]
  specs += [f"equal_info_ac[b={b},v={v}]" for v in ("256", "65k") for b in (16, 32, 64, 128)]
  specs.append(f"sentencepiece[path={sp_path}]")
  num_bytes = sum(x.size for x in examples)
  ratios, bit_ratios = {}, {}
  for spec in specs:
    model = unigram if spec.startswith("static_ac") else context
    method = get_method(spec, model)
    start = time.perf_counter()
    encoded = method.encode_batch(examples)
    name = "sentencepiece" if spec.startswith("sentencepiece") else spec
    ratios[name] = round(num_bytes / sum(e.tokens.size for e in encoded), 4)
    bit_ratios[name] = round(8 * num_bytes / coded_bits(method, encoded), 4)
    literal = sum(e.num_literal_windows for e in encoded)
    print(f"{name}: {ratios[name]} bytes/token, {bit_ratios[name]} raw bits per coded bit, "
          f"literal windows {literal}, {time.perf_counter() - start:.1f}s", file=sys.stderr)
  return {"compression_ratios": ratios, "raw_bits_per_coded_bit": bit_ratios}


# -- the paper's greedy window rule, for comparison --------------------------

def _greedy_window(model, symbols, bits):
  """Greedy encoder: as many symbols as leave a whole cell; shortest code, zero padded."""
  low, r = 0, window_arith.start_range(bits)
  k = 0
  while k < symbols.size:
    cdf = cdf_from_freqs(model.freqs([symbols[:k]]))[0]
    s = int(symbols[k])
    lo, hi = window_arith.split(r, int(cdf[s])), window_arith.split(r, int(cdf[s + 1]))
    if not window_arith.cell_fits(np.array([low + lo], object), np.array([hi - lo], object))[0]:
      break
    low, r, k = low + lo, hi - lo, k + 1
  for length in range(bits + 1):  # shortest prefix whose cell lies inside [low, low + r)
    unit = 1 << (bits + window_arith.G - length)
    start = -(-low // unit) * unit
    if start + unit <= low + r:
      return k, start >> window_arith.G
  raise AssertionError("no cell inside the window")


def _greedy_decode(model, code, bits):
  """Greedy decoder: keep symbols while their sub-interval still holds a whole cell."""
  low, r = 0, window_arith.start_range(bits)
  left = code << window_arith.G
  out = []
  while True:
    cdf = cdf_from_freqs(model.freqs([np.array(out, np.int32)]))[0]
    target = ((left - low + 1) << constants.PRECISION) - 1
    s = int(np.searchsorted(cdf, target // r, side="right")) - 1
    lo, hi = window_arith.split(r, int(cdf[s])), window_arith.split(r, int(cdf[s + 1]))
    if not window_arith.cell_fits(np.array([low + lo], object), np.array([hi - lo], object))[0]:
      return out
    low, r = low + lo, hi - lo
    out.append(s)


def measure_greedy_rule(examples, model, sample_symbols: int, bits: int = 16) -> dict:
  """Ratio and wrongly decoded windows of the paper's rule vs eqinfo's, on a sample."""
  stream = np.concatenate(examples)[:sample_symbols]
  windows = wrong = at = 0
  while at < stream.size:
    k, code = _greedy_window(model, stream[at:], bits)
    windows += 1
    wrong += _greedy_decode(model, code, bits) != stream[at:at + k].tolist()
    at += k
  method = get_method(f"equal_info_ac[b={bits},v=65k]", model)
  ours = method.encode(stream)
  assert np.array_equal(method.decode(ours.tokens), stream)
  return {
      "sample_symbols": int(stream.size),
      "greedy_ratio": round(stream.size * 8 / (windows * bits), 4),
      "greedy_windows": windows,
      "greedy_wrong_windows": int(wrong),
      "greedy_wrong_fraction": round(wrong / windows, 4),
      "lossless_ratio": round(stream.size * 8 / (ours.num_windows * bits), 4),
      "lossless_windows": ours.num_windows,
      "lossless_literal_windows": ours.num_literal_windows,
  }


# -- throughput ---------------------------------------------------------------

class _RecordingLanes(Lanes):
  """Wraps a model's lanes and keeps the table rows of every step."""

  def __init__(self, inner: Lanes, trace: list):
    super().__init__(inner.num_lanes)
    self.inner, self.trace = inner, trace

  def tables(self):
    cdf, rows = self.inner.tables()
    self.trace.append(np.asarray(rows, np.int64))
    return cdf, rows

  def update(self, symbols, push, reset):
    self.inner.update(symbols, push, reset)


class TraceModel(ProbabilityModel):
  """Precomputed tables: replays, step by step, the table rows a coding run used.

  `record(model, method, examples)` codes once with the real model and keeps
  every step's rows; coding the same examples again with this model then costs
  the coder's work and a row lookup, nothing else.
  """

  def __init__(self, cdf: np.ndarray):
    self.cdf, self.trace = cdf, []

  def freqs(self, contexts):
    raise NotImplementedError("TraceModel only serves lanes")

  def record(self, model, spec: str, examples, num_lanes: int):
    """Codes `examples` with `model`, keeping its rows; returns the tokens."""
    recorder = _Recorder(model, self.trace)
    method = get_method(spec, recorder)
    method.num_lanes = num_lanes
    return [e.tokens for e in method.encode_batch(examples)]

  def lanes(self, num_lanes):
    return _TraceLanes(self, num_lanes)


class _Recorder(ProbabilityModel):

  def __init__(self, model, trace):
    self.model, self.trace = model, trace

  def freqs(self, contexts):
    return self.model.freqs(contexts)

  def lanes(self, num_lanes):
    return _RecordingLanes(self.model.lanes(num_lanes), self.trace)


class _TraceLanes(Lanes):

  def __init__(self, model: TraceModel, num_lanes: int):
    super().__init__(num_lanes)
    self.model, self.step = model, 0

  def tables(self):
    return self.model.cdf, self.model.trace[self.step]

  def update(self, symbols, push, reset):
    self.step += 1


def stream_rows(model: ContextModel, examples) -> np.ndarray:
  """[L, T + 1] the ContextModel's table row at every position of each example."""
  lanes = model.lanes(len(examples))
  width = max(x.size for x in examples) + 1
  rows = np.zeros((len(examples), width), np.int64)
  pad = np.zeros((len(examples), width), np.int64)
  for i, x in enumerate(examples):
    pad[i, :x.size] = x
  push = np.ones(len(examples), bool)
  reset = np.zeros(len(examples), bool)
  for p in range(width):
    rows[:, p] = lanes.tables()[1]
    lanes.update(pad[:, p], push, reset)
  return rows


def time_method(method, examples, repeats: int = 2) -> float:
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    method.encode_batch(examples)
    best = min(best, time.perf_counter() - start)
  return sum(x.size for x in examples) / best


def time_constriction(cdf, rows, examples, repeats: int = 2) -> float:
  """constriction's range coder on the same per-position tables (float64 probabilities)."""
  import constriction  # pylint: disable=import-outside-toplevel
  symbols = np.concatenate(examples).astype(np.int32)
  index = np.concatenate([rows[i, :x.size] for i, x in enumerate(examples)])
  freqs = np.diff(cdf, axis=1).astype(np.float64) / constants.TOTAL_FREQ
  probs = freqs[index]
  family = constriction.stream.model.Categorical(perfect=False)
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols, family, probs)
    encoder.get_compressed()
    best = min(best, time.perf_counter() - start)
  return symbols.size / best


def measure_throughput(context: ContextModel, stream: np.ndarray, lanes: int, length: int) -> dict:
  """Coder symbols/s on replayed tables, with the live ContextModel, and constriction's."""
  examples = [stream[i:i + length] for i in range(0, lanes * length, length)]
  examples = [x for x in examples if x.size == length]
  out = {"lanes": len(examples), "example_symbols": length}
  reference = time_constriction(context.cdf, stream_rows(context, examples), examples)
  out["constriction_symbols_per_s"] = round(reference)
  for spec in ("ac[v=65k]", "equal_info_ac[b=16,v=65k]"):
    replay = TraceModel(context.cdf)
    live_tokens = replay.record(context, spec, examples, len(examples))
    method = get_method(spec, replay)
    method.num_lanes = len(examples)
    replayed = [e.tokens for e in method.encode_batch(examples)]
    assert all(np.array_equal(a, b) for a, b in zip(live_tokens, replayed))
    rate = min(time_method_traced(method, replay, examples) for _ in range(2))
    live = get_method(spec, context)
    live.num_lanes = len(examples)
    out[spec] = {"coder_symbols_per_s": round(rate),
                 "with_context_model_symbols_per_s": round(time_method(live, examples, 1)),
                 "ratio_vs_constriction": round(rate / reference, 3)}
  return out


def time_method_traced(method, replay: TraceModel, examples) -> float:
  start = time.perf_counter()
  method.encode_batch(examples)
  return sum(x.size for x in examples) / (time.perf_counter() - start)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--out", type=pathlib.Path, default=None)
  parser.add_argument("--greedy_sample", type=int, default=40_000)
  parser.add_argument("--lanes", type=int, default=1024)
  parser.add_argument("--lane_symbols", type=int, default=2048)
  parser.add_argument("--sp_vocab", type=int, default=8000)
  args = parser.parse_args(argv)

  from compressor.sentencepiece_train import train_sentencepiece  # pylint: disable=import-outside-toplevel
  train = read_texts(args.data / "train")
  validation = make_examples(read_texts(args.data / "validation"))
  train_examples = make_examples(train)
  context = ContextModel(order=3).fit(train_examples)
  unigram = UnigramModel.fit(train_examples)
  with tempfile.TemporaryDirectory() as tmp:
    sp_path = train_sentencepiece(train, f"{tmp}/sp", args.sp_vocab)
    result = {
        "data": str(args.data),
        "model": repr(context),
        "validation_symbols": int(sum(x.size for x in validation)),
        **measure_ratios(validation, context, unigram, sp_path),
    }
  result["greedy_rule"] = measure_greedy_rule(validation, context, args.greedy_sample)
  result["throughput"] = measure_throughput(context, np.concatenate(validation),
                                            args.lanes, args.lane_symbols)
  text = json.dumps(result, indent=2)
  print(text)
  if args.out:
    args.out.write_text(text + "\n")


if __name__ == "__main__":
  main()
