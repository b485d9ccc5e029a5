"""The ArrayRecord sink: writes a shard directory (shards, errors/, stats.json,
config.json, COMPLETED) in the format `training/shards.py` owns.

A shard holds the records of `groups_per_shard` groups of one input file
(`sources.ShardInput`), sorted by key. Both depend only on the input's line
indices, so the same input and options give byte-identical shards on any
number of workers; each shard is written by the worker that coded it, as soon
as it is coded. `COMPLETED` is written last, once bytes in = bytes in records
+ bytes dropped.
"""
import json
import os
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from compressor import constants, window_vocab
from pipelines.accounting import error_lines, shard_totals
from pipelines.transforms import CodedShard, Record, key_name
from training import shards as shards_lib
from training.shards import (ARRAY_RECORD_OPTIONS, COMPLETED, CONFIG, ERRORS_DIR, ERRORS_FILE,
                             JOB, STATS, join, shard_name)

_NAMESPACE = "eqinfo"
DENSE_HISTOGRAM_MAX_VOCAB = 4096
# errors/errors.jsonl keeps the first lines in sorted order; stats.json counts all.
MAX_ERROR_LINES = 100_000
TEMP_PREFIX = ".shard-"  # a shard is written in such a directory, then renamed into place


def serialize_record(rec: Record) -> bytes:
  """A Record as a serialized tf.train.Example (`training.shards`)."""
  return shards_lib.serialize(rec.tokens, rec.num_bytes, rec.num_windows,
                              rec.num_literal_windows, rec.source, key_name(rec.key),
                              rec.symbols_crc32)


def write_bytes(path: str, data: bytes) -> None:
  """Writes a whole file, local or gs://."""
  with FileSystems.create(path) as f:
    f.write(data)


def check_owner(output: str, job: str | None) -> None:
  """Stops this job if another has taken `output` over since it started (`--overwrite`).

  Raises:
    RuntimeError: the directory's job token is not `job` (None: nothing to check).
  """
  if job is None:
    return
  try:
    with FileSystems.open(join(output, JOB)) as f:
      owner = f.read().decode().strip()
  except Exception:  # pylint: disable=broad-except  (gone: cleared by another job)
    owner = None
  if owner != job:
    raise RuntimeError(f"another eqinfo compress job took over {output} (--overwrite); this "
                       f"one stops without writing {COMPLETED}")


def write_array_record(path: str, records: list[bytes]) -> None:
  """Writes records as an ArrayRecord file (`group_size:1`), atomically.

  Local paths get a temp file next to them and a rename; other file systems
  (gs://) get a local temp file streamed into place.
  """
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  local_dir = os.path.dirname(path) if "://" not in path else None
  with tempfile.TemporaryDirectory(dir=local_dir, prefix=TEMP_PREFIX) as tmp:
    local = os.path.join(tmp, "shard.array_record")
    writer = array_record_module.ArrayRecordWriter(local, ARRAY_RECORD_OPTIONS)
    for data in records:
      writer.write(data)
    if not writer.ok():
      raise IOError(f"ArrayRecord writer failed on {local} (for {path})")
    writer.close()
    if local_dir is not None:
      os.replace(local, path)
      return
    with open(local, "rb") as src, FileSystems.create(path) as dst:
      while chunk := src.read(1 << 24):
        dst.write(chunk)


class WriteShardFn(beam.DoFn):
  """CodedShard -> its ArrayRecord file (records in key order); yields the shard's summary.

  The summary is `accounting.shard_totals` plus "shard": (file name, records), or
  None for a shard left without records (no file is written for it).
  """

  def __init__(self, output: str, split: str, method_spec: str, vocab_size: int,
               job: str | None = None):
    super().__init__()
    self._output = output
    self._split = split
    self._method_spec = method_spec
    self._vocab_size = vocab_size
    self._job = job
    self._written = beam.metrics.Metrics.counter(_NAMESPACE, "records_written")

  def process(self, shard: CodedShard):
    summary = shard_totals(shard.records, self._vocab_size, shard.document_symbols)
    summary["shard"] = None
    if shard.records:
      name = shard_name(self._split, self._method_spec, shard.file_index, shard.shard_index)
      check_owner(self._output, self._job)
      write_array_record(join(self._output, name), [serialize_record(r) for r in shard.records])
      self._written.inc(len(shard.records))
      summary["shard"] = (name, len(shard.records))
    yield summary


def write_errors(lines: list[str], output: str) -> int:
  """Writes errors/errors.jsonl (sorted JSON lines; empty when nothing was dropped).

  Returns:
    The number of lines written.
  """
  write_bytes(join(output, ERRORS_DIR, ERRORS_FILE),
              "".join(line + "\n" for line in sorted(lines)).encode())
  return len(lines)


def histogram_json(histogram: list[int], vocab_size: int):
  """Dense list for small vocabularies, {token: count} of non-zero counts for 65k."""
  if vocab_size <= DENSE_HISTOGRAM_MAX_VOCAB:
    return list(histogram)
  return {str(i): int(c) for i, c in enumerate(histogram) if c}


def build_stats(accounting: dict, info: dict) -> dict:
  """The stats.json dict from the accounting totals (with the written shards) and run info."""
  shards = sorted(accounting["shards"])
  return {
      **info,
      "wire_format": constants.wire_format(),
      "coder_version": constants.CODER_VERSION,
      "precision": constants.PRECISION,
      "examples": accounting["records"],
      "m1_examples": accounting["m1_examples"],
      "tokens": accounting["tokens"],
      "bytes": accounting["bytes"],
      "windows": accounting["windows"],
      "literal_windows": accounting["literal_windows"],
      "records_verified": accounting["verified"],
      "m1_devices": accounting["m1_devices"],
      "verification_failures": accounting["dropped"].get("verification_failed", {}).get("inputs",
                                                                                        0),
      "bytes_in": accounting["bytes_in"],
      "bytes_dropped": accounting["bytes_dropped"],
      "dropped": accounting["dropped"],
      "shards": [{"name": name, "records": count} for name, count in shards],
      "token_histogram": histogram_json(accounting["histogram"], info["vocab_size"]),
  }


class FinalizeFn(beam.DoFn):
  """Writes config.json and stats.json, checks the byte balance, then writes COMPLETED.

  Raises (failing the pipeline, so no COMPLETED) if bytes in != bytes in
  records + bytes dropped, or if a shard count does not match the totals.
  """

  def __init__(self, output: str, info: dict, config_json: str, job: str | None = None):
    super().__init__()
    self._output = output
    self._info = info
    self._config_json = config_json
    self._job = job

  def process(self, accounting: dict, num_errors: int, vocab: dict | None = None):
    check_owner(self._output, self._job)
    shards = accounting["shards"]
    stats = build_stats(accounting, self._info)
    stats["error_lines_written"] = num_errors
    if vocab is not None:
      stats["window_vocab"] = vocab_stats(vocab, accounting["histogram"], stats["token_bits"])
      write_bytes(join(self._output, window_vocab.FILENAME), vocab["bytes"])
    if not accounting["balanced"]:
      raise AssertionError(
          f"bytes in ({accounting['bytes_in']}) != bytes in records ({accounting['bytes']}) + "
          f"bytes dropped ({accounting['bytes_dropped']})")
    if sum(count for _, count in shards) != accounting["records"]:
      raise AssertionError(f"shards hold {sum(c for _, c in shards)} records, "
                           f"expected {accounting['records']}")
    write_bytes(join(self._output, CONFIG), (self._config_json + "\n").encode())
    write_bytes(join(self._output, STATS), (json.dumps(stats, indent=1) + "\n").encode())
    write_bytes(join(self._output, COMPLETED), b"")
    yield stats


def vocab_stats(vocab: dict, histogram: np.ndarray, token_bits: int) -> dict:
  """stats.json's "window_vocab": the file, its M1, its effective size, the ids used.

  Args:
    vocab: `BuildVocabularyFn`'s output.
    histogram: [vocab_size] token counts of the shards.
    token_bits: 16 (a token is a window) or 8 (half of one).
  """
  parsed = window_vocab.WindowVocabulary.from_bytes(vocab["bytes"])
  emitted = parsed.entries.shape[0]
  return {
      "file": window_vocab.FILENAME, "digest": parsed.digest,
      "m1_fingerprint": parsed.m1_fingerprint, "built_on": vocab.get("built_on"),
      "from_file": vocab.get("file"),
      "tree_nodes": parsed.meta["tree_nodes"],
      "distinct_strings": parsed.distinct_strings(),
      "codes_emitted": int(emitted),
      "token_ids_seen": int(np.count_nonzero(histogram)),
      "token_ids_never_seen": int(np.size(histogram) - np.count_nonzero(histogram)),
      "token_bits": token_bits,
  }


class Finalize(beam.PTransform):
  """(accounting, errors[, vocabulary]) -> errors/errors.jsonl, stats.json, config.json,
  window_vocab.json, COMPLETED."""

  def __init__(self, output: str, info: dict, config_json: str, job: str | None = None):
    super().__init__()
    self._output = output
    self._info = info
    self._config_json = config_json
    self._job = job

  def expand(self, pcolls):
    accounting, errors, *vocab = pcolls
    output = self._output
    num_errors = (errors
                  | "ErrorLines" >> beam.FlatMap(lambda d: error_lines([d]))
                  | "FirstErrorLines" >> beam.combiners.Top.Smallest(MAX_ERROR_LINES)
                  | "WriteErrors" >> beam.Map(write_errors, output))
    return (accounting
            | "WriteStats" >> beam.ParDo(FinalizeFn(output, self._info, self._config_json,
                                                    self._job),
                                         beam.pvalue.AsSingleton(num_errors),
                                         *[beam.pvalue.AsSingleton(v) for v in vocab]))

