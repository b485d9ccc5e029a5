"""Equal-Info windows under random and extreme model tables: every window must round trip.

Usage:
  python benchmarks/coder_fuzz.py [--windows 1000000] [--seed 0] [--lanes 256]

A model whose table is a pure function of the last two symbols of the window
draws each table from a bank of random and extreme distributions (each symbol
keeps at least one count of 2^14):

  * flat: 63 or 64 counts for every symbol;
  * peaked: one symbol at 2^14 - 256, every other at 1 (the longest windows);
  * two peaks, and Dirichlet draws with concentrations 0.01 to 10.

Examples are sampled from the model itself (so windows grow long), mixed with
uniformly random symbols (so first symbols are rare and need the literal
escape), or drawn from the peaked bank alone (windows as long as the window's
bits allow). Each is coded with EqualInfoAC for every b and v, decoded, and
compared. Prints JSON: the windows coded per setting, the total and the
mismatches (0 is the only passing count); exit status 1 on any mismatch.
"""
import argparse
import json
import sys
import time

import numpy as np

from compressor import constants
from compressor.methods import get_method
from compressor.models.base import Lanes, ProbabilityModel, cdf_from_freqs, check_update

TOTAL = constants.TOTAL_FREQ
ALPHABET = constants.ALPHABET_SIZE
BITS = (16, 24, 32, 48, 64, 128)
VOCABS = ("256", "65k")
MODES = ("model", "mixed", "peaked")


def flat_table() -> np.ndarray:
  """[257] counts as even as 2^14 allows."""
  table = np.full(ALPHABET, TOTAL // ALPHABET, np.int64)
  table[:TOTAL - table.sum()] += 1
  return table


def peaked_table(top: int) -> np.ndarray:
  """[257] counts: `top` at 2^14 - 256, every other symbol at 1."""
  table = np.ones(ALPHABET, np.int64)
  table[top] = TOTAL - (ALPHABET - 1)
  return table


def spread(probs: np.ndarray) -> np.ndarray:
  """[257] counts of a distribution: 1 each, the rest by probability, remainder to the top."""
  table = 1 + np.floor(probs * (TOTAL - ALPHABET)).astype(np.int64)
  table[np.argmax(probs)] += TOTAL - table.sum()
  return table


def table_bank(rng: np.random.Generator, size: int, top: int | None = None) -> np.ndarray:
  """[size, 257] int32 tables, each summing to 2^14 with every count >= 1; with `top`,
  all of them peaked at that symbol."""
  tables = []
  for i in range(size):
    kind = "peaked" if top is not None else ("flat", "peaked", "two", "dirichlet")[i % 4]
    if kind == "flat":
      table = flat_table()
    elif kind == "peaked":
      table = peaked_table(int(rng.integers(ALPHABET)) if top is None else top)
    elif kind == "two":
      probs = np.zeros(ALPHABET)
      probs[rng.choice(ALPHABET, 2, replace=False)] = (0.7, 0.3)
      table = spread(probs)
    else:
      table = spread(rng.dirichlet(np.full(ALPHABET, (0.01, 0.1, 1.0, 10.0)[(i // 4) % 4])))
    assert table.min() >= 1 and table.sum() == TOTAL
    tables.append(table)
  return np.asarray(tables, np.int32)


class BankModel(ProbabilityModel):
  """Table = bank[row(last two symbols of the window)]: a pure function of the context."""

  def __init__(self, bank: np.ndarray, salt: int):
    self.bank = bank
    self.cdf = cdf_from_freqs(bank)
    self.salt = salt
    self.fingerprint = f"bank-{salt}"

  def row(self, prev1: np.ndarray, prev2: np.ndarray) -> np.ndarray:
    """Rows for contexts ending in (prev2, prev1); ALPHABET + 1 marks "no symbol"."""
    mixed = (prev1.astype(np.int64) * 7919 + prev2 * 104729 + self.salt) * 2654435761
    return (mixed >> 7) % self.bank.shape[0]

  def freqs(self, contexts):
    last = [np.asarray(c, np.int64)[-2:] for c in contexts]
    prev1 = np.array([c[-1] if c.size else ALPHABET + 1 for c in last], np.int64)
    prev2 = np.array([c[-2] if c.size > 1 else ALPHABET + 1 for c in last], np.int64)
    return self.bank[self.row(prev1, prev2)]

  def lanes(self, num_lanes: int) -> "BankLanes":
    return BankLanes(self, num_lanes)


class BankLanes(Lanes):
  """Vectorised lanes of a BankModel: the last two symbols per lane."""

  def __init__(self, model: BankModel, num_lanes: int):
    super().__init__(num_lanes)
    self.model = model
    self.prev1 = np.full(num_lanes, ALPHABET + 1, np.int64)
    self.prev2 = np.full(num_lanes, ALPHABET + 1, np.int64)

  def tables(self):
    return self.model.cdf, self.model.row(self.prev1, self.prev2)

  def update(self, symbols, push, reset):
    symbols, push, reset = check_update(self.num_lanes, symbols, push, reset)
    self.prev2 = np.where(push, self.prev1, self.prev2)
    self.prev1 = np.where(push, symbols, self.prev1)
    self.prev1[reset] = ALPHABET + 1
    self.prev2[reset] = ALPHABET + 1


def sample_examples(model: BankModel, rng: np.random.Generator, count: int, length: int,
                    mode: str) -> list[np.ndarray]:
  """`count` examples of `length` symbols from the model (its contexts restarted every 64
  symbols, as windows restart), with 30% uniform symbols in "mixed" mode; in "peaked" mode
  (a bank peaked at one symbol) that symbol, 999 times in 1,000."""
  out = np.zeros((count, length), np.int64)
  prev1 = np.full(count, ALPHABET + 1, np.int64)
  prev2 = np.full(count, ALPHABET + 1, np.int64)
  uniform_share = 0.3 if mode == "mixed" else 0.0
  for t in range(length):
    if t % 64 == 0:
      prev1[:], prev2[:] = ALPHABET + 1, ALPHABET + 1
    cdf = model.cdf[model.row(prev1, prev2)]
    if mode == "peaked":
      top = np.argmax(np.diff(cdf, axis=1), axis=1)
      symbols = np.where(rng.random(count) < 0.999, top, rng.integers(0, ALPHABET, count))
    else:
      draw = rng.integers(0, TOTAL, count)[:, None]
      symbols = (cdf[:, 1:] <= draw).sum(axis=1)
      uniform = rng.random(count) < uniform_share
      symbols = np.where(uniform, rng.integers(0, ALPHABET, count), symbols)
    out[:, t] = symbols
    prev2, prev1 = prev1, symbols
  return list(out.astype(np.int32))


def run_setting(spec: str, model: BankModel, examples: list[np.ndarray], lanes: int) -> dict:
  """Codes and decodes the examples with one method; windows and mismatched examples."""
  method = get_method(spec, model)
  method.num_lanes = lanes
  encoded = method.encode_batch(examples)
  decoded = method.decode_batch([e.tokens for e in encoded])
  mismatches = sum(not np.array_equal(d, x) for d, x in zip(decoded, examples))
  return {"windows": int(sum(e.num_windows for e in encoded)),
          "literal_windows": int(sum(e.num_literal_windows for e in encoded)),
          "symbols": int(sum(x.size for x in examples)), "mismatches": int(mismatches)}


def fuzz(target_windows: int, seed: int, lanes: int, bank_size: int, examples: int,
         length: int) -> dict:
  """Rounds of every mode, b and v with fresh banks and examples until `target_windows`."""
  rng = np.random.default_rng(seed)
  totals = {"windows": 0, "literal_windows": 0, "symbols": 0, "mismatches": 0}
  settings = {}
  start, rounds = time.perf_counter(), 0
  while totals["windows"] < target_windows:
    for mode in MODES:
      top = int(rng.integers(ALPHABET)) if mode == "peaked" else None
      bank = table_bank(rng, bank_size, top)
      model = BankModel(bank, salt=int(rng.integers(1 << 30)))
      batch = sample_examples(model, rng, examples, length, mode)
      for b in BITS:
        for v in VOCABS:
          spec = f"equal_info_ac[b={b},v={v}]"
          got = run_setting(spec, model, batch, lanes)
          key = f"{mode} {spec}"
          settings[key] = {k: settings.get(key, {}).get(k, 0) + got[k] for k in got}
          totals = {k: totals[k] + got[k] for k in totals}
      print(f"round {rounds} {mode}: {totals['windows']} windows, "
            f"{totals['mismatches']} mismatches", file=sys.stderr)
    rounds += 1
  return {"windows": totals["windows"], "literal_windows": totals["literal_windows"],
          "symbols": totals["symbols"], "mismatches": totals["mismatches"], "rounds": rounds,
          "seconds": round(time.perf_counter() - start, 1), "settings": settings}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--windows", type=int, default=1_000_000, help="windows to code at least")
  parser.add_argument("--seed", type=int, default=0, help="seed of banks and examples")
  parser.add_argument("--lanes", type=int, default=256, help="examples coded at once")
  parser.add_argument("--bank", type=int, default=512, help="tables per bank")
  parser.add_argument("--examples", type=int, default=64, help="examples per round and mode")
  parser.add_argument("--length", type=int, default=2048, help="symbols per example")
  args = parser.parse_args(argv)
  result = fuzz(args.windows, args.seed, args.lanes, args.bank, args.examples, args.length)
  print(json.dumps(result, indent=1))
  return 1 if result["mismatches"] else 0


if __name__ == "__main__":
  sys.exit(main())
