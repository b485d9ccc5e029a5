"""Accounting of a compress job: totals, the token histogram, dropped input by reason, and
the check that bytes in = bytes in records + bytes dropped (docs/DESIGN.md, "Bad input").
"""
import apache_beam as beam
import numpy as np

from compressor.corpus import Document, Dropped
from pipelines.transforms import Record

# Drop reasons that are counted but not written to errors/ (they are not bad input).
COUNT_ONLY_REASONS = ("truncated",)


class RecordStatsFn(beam.CombineFn):
  """Record -> totals and the token unigram histogram ([vocab_size] counts)."""

  _FLUSH = 1 << 20  # tokens buffered before a bincount

  def __init__(self, vocab_size: int):
    super().__init__()
    self._vocab_size = vocab_size

  def create_accumulator(self):
    return {"records": 0, "m1_examples": 0, "tokens": 0, "bytes": 0, "windows": 0,
            "literal_windows": 0, "verified": 0, "m1_devices": {},
            "histogram": np.zeros(self._vocab_size, np.int64), "pending": [], "pending_size": 0}

  def _flush(self, acc):
    if acc["pending"]:
      acc["histogram"] += np.bincount(np.concatenate(acc["pending"]), minlength=self._vocab_size)
      acc["pending"], acc["pending_size"] = [], 0
    return acc

  def add_input(self, acc, rec: Record):
    acc["records"] += 1
    acc["m1_examples"] += int(rec.key[3] == 0)  # first piece of each M1 example
    acc["tokens"] += int(rec.tokens.size)
    acc["bytes"] += int(rec.num_bytes)
    acc["windows"] += int(rec.num_windows)
    acc["literal_windows"] += int(rec.num_literal_windows)
    acc["verified"] += int(rec.verified)
    if rec.m1_device:
      acc["m1_devices"][rec.m1_device] = acc["m1_devices"].get(rec.m1_device, 0) + 1
    acc["pending"].append(np.asarray(rec.tokens, np.int64))
    acc["pending_size"] += int(rec.tokens.size)
    if acc["pending_size"] > self._FLUSH:
      self._flush(acc)
    return acc

  def merge_accumulators(self, accs):
    out = self.create_accumulator()
    for acc in accs:
      self._flush(acc)
      for name in ("records", "m1_examples", "tokens", "bytes", "windows", "literal_windows",
                   "verified", "histogram"):
        out[name] = out[name] + acc[name]
      for device, count in acc["m1_devices"].items():
        out["m1_devices"][device] = out["m1_devices"].get(device, 0) + count
    return out

  def compact(self, acc):
    return self._flush(acc)

  def extract_output(self, acc):
    self._flush(acc)
    skip = ("histogram", "pending", "pending_size", "m1_devices")
    out = {k: int(v) for k, v in acc.items() if k not in skip}
    out["histogram"] = acc["histogram"].tolist()
    out["m1_devices"] = dict(sorted(acc["m1_devices"].items()))
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


def document_symbols(doc: Document) -> int:
  """Symbols a document brings in: its bytes plus EOS."""
  return len(doc.data) + 1


class Accounting(beam.PTransform):
  """(documents, records, errors) -> one dict: record totals, drops, bytes in."""

  def __init__(self, vocab_size: int):
    super().__init__()
    self._vocab_size = vocab_size

  def expand(self, pcolls):
    documents, records, errors = pcolls
    doc_bytes = (documents
                 | "DocumentSymbols" >> beam.Map(document_symbols)
                 | "SumDocumentSymbols" >> beam.CombineGlobally(sum))
    record_stats = records | "RecordStats" >> beam.CombineGlobally(
        RecordStatsFn(self._vocab_size))
    drop_stats = errors | "DropStats" >> beam.CombineGlobally(DropStatsFn())
    return (
        doc_bytes.pipeline
        | "AccountingImpulse" >> beam.Create([None])
        | "Combine" >> beam.Map(_accounting, beam.pvalue.AsSingleton(doc_bytes),
                                beam.pvalue.AsSingleton(record_stats),
                                beam.pvalue.AsSingleton(drop_stats)))


def _accounting(_, doc_bytes: int, record_stats: dict, drop_stats: dict) -> dict:
  """Merges the three totals and checks bytes in = bytes in records + bytes dropped."""
  dropped = sum(e["bytes"] for e in drop_stats["by_reason"].values())
  bytes_in = int(doc_bytes) + drop_stats["read_bytes"]
  return {**record_stats, "bytes_in": bytes_in, "bytes_dropped": dropped,
          "dropped": drop_stats["by_reason"],
          "balanced": bytes_in == record_stats["bytes"] + dropped}


def error_lines(drops) -> list[str]:
  """Sorted JSON lines for errors/ (count-only reasons such as "truncated" left out)."""
  return sorted(d.to_json() for d in drops if d.reason not in COUNT_ONLY_REASONS)
