"""Accounting of a compress job: totals, the token histogram, the shards, dropped input by
reason, and the check that bytes in = bytes in records + bytes dropped (docs/DESIGN.md,
"Bad input").
"""
import apache_beam as beam
import numpy as np

from compressor.corpus import Dropped

# Drop reasons that are counted but not written to errors/ (they are not bad input).
COUNT_ONLY_REASONS = ("truncated",)


_SUMS = ("records", "m1_examples", "tokens", "bytes", "windows", "literal_windows", "verified",
         "document_symbols")


def shard_totals(records, vocab_size: int, document_symbols: int = 0) -> dict:
  """One shard's totals: record counts, the token histogram, M1's devices, bytes in.

  Args:
    records: the shard's Records.
    vocab_size: V, the histogram's length.
    document_symbols: what the shard's documents brought to bytes in.

  Returns:
    {name: int for _SUMS, "histogram": [V] int64, "m1_devices": {device: records}}.
  """
  out = {name: 0 for name in _SUMS}
  out["document_symbols"] = int(document_symbols)
  out["m1_devices"] = {}
  for rec in records:
    out["records"] += 1
    out["m1_examples"] += int(rec.key[3] == 0)  # first piece of each M1 example
    out["tokens"] += int(rec.tokens.size)
    out["bytes"] += int(rec.num_bytes)
    out["windows"] += int(rec.num_windows)
    out["literal_windows"] += int(rec.num_literal_windows)
    out["verified"] += int(rec.verified)
    if rec.m1_device:
      out["m1_devices"][rec.m1_device] = out["m1_devices"].get(rec.m1_device, 0) + 1
  tokens = [np.asarray(r.tokens, np.int64) for r in records]
  out["histogram"] = (np.bincount(np.concatenate(tokens), minlength=vocab_size) if tokens
                      else np.zeros(vocab_size, np.int64))
  return out


class ShardTotalsFn(beam.CombineFn):
  """WriteShardFn's summaries -> the job's totals, histogram and list of shards.

  A summary is `shard_totals(...)` plus "shard": (file name, records), or None
  where the shard had no record and no file was written.
  """

  def __init__(self, vocab_size: int):
    super().__init__()
    self._vocab_size = vocab_size

  def create_accumulator(self):
    return {**{name: 0 for name in _SUMS}, "m1_devices": {}, "shards": [],
            "histogram": np.zeros(self._vocab_size, np.int64)}

  def add_input(self, acc, summary: dict):
    return self.merge_accumulators([acc, {**summary, "shards": [summary["shard"]]
                                          if summary["shard"] else []}])

  def merge_accumulators(self, accs):
    accs = list(accs)
    out = accs[0]
    for acc in accs[1:]:
      for name in _SUMS:
        out[name] += acc[name]
      out["histogram"] = out["histogram"] + acc["histogram"]
      out["shards"] = out["shards"] + list(acc["shards"])
      for device, count in acc["m1_devices"].items():
        out["m1_devices"][device] = out["m1_devices"].get(device, 0) + count
    return out

  def extract_output(self, acc):
    out = {name: int(acc[name]) for name in _SUMS}
    out["histogram"] = acc["histogram"].tolist()
    out["m1_devices"] = dict(sorted(acc["m1_devices"].items()))
    out["shards"] = sorted(tuple(s) for s in acc["shards"])
    return out


class DropStatsFn(beam.CombineFn):
  """Dropped -> {"by_reason": {reason: {"inputs", "bytes"}}, "read_bytes": int}.

  `read_bytes` sums the drops of stage "read" (input that never became a document).
  """

  def create_accumulator(self):
    return {"by_reason": {}, "read_bytes": 0}

  def add_input(self, acc, drop: Dropped):
    entry = acc["by_reason"].setdefault(drop.reason, {"inputs": 0, "bytes": 0})
    entry["inputs"] += 1
    entry["bytes"] += int(drop.num_bytes)
    if drop.stage == "read":
      acc["read_bytes"] += int(drop.num_bytes)
    return acc

  def merge_accumulators(self, accs):
    out = self.create_accumulator()
    for acc in accs:
      for reason, entry in acc["by_reason"].items():
        mine = out["by_reason"].setdefault(reason, {"inputs": 0, "bytes": 0})
        mine["inputs"] += entry["inputs"]
        mine["bytes"] += entry["bytes"]
      out["read_bytes"] += acc["read_bytes"]
    return out

  def extract_output(self, acc):
    return {"by_reason": dict(sorted(acc["by_reason"].items())), "read_bytes": acc["read_bytes"]}


class Accounting(beam.PTransform):
  """(shard summaries, errors) -> one dict: record totals, shards, drops, bytes in."""

  def __init__(self, vocab_size: int):
    super().__init__()
    self._vocab_size = vocab_size

  def expand(self, pcolls):
    summaries, errors = pcolls
    shard_stats = summaries | "ShardTotals" >> beam.CombineGlobally(
        ShardTotalsFn(self._vocab_size))
    drop_stats = errors | "DropStats" >> beam.CombineGlobally(DropStatsFn())
    return (
        summaries.pipeline
        | "AccountingImpulse" >> beam.Create([None])
        | "Combine" >> beam.Map(_accounting, beam.pvalue.AsSingleton(shard_stats),
                                beam.pvalue.AsSingleton(drop_stats)))


def _accounting(_, shard_stats: dict, drop_stats: dict) -> dict:
  """Merges the totals and checks bytes in = bytes in records + bytes dropped."""
  dropped = sum(e["bytes"] for e in drop_stats["by_reason"].values())
  bytes_in = shard_stats["document_symbols"] + drop_stats["read_bytes"]
  return {**shard_stats, "bytes_in": bytes_in, "bytes_dropped": dropped,
          "dropped": drop_stats["by_reason"],
          "balanced": bytes_in == shard_stats["bytes"] + dropped}


def error_lines(drops) -> list[str]:
  """Sorted JSON lines for errors/ (count-only reasons such as "truncated" left out)."""
  return sorted(d.to_json() for d in drops if d.reason not in COUNT_ONLY_REASONS)
