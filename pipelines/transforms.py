"""Coding one shard: its groups -> examples -> coded, verified M2 records.

Determinism: a document's id is (file index, line index); groups and shards
are ranges of line indices (`sources`), so they do not depend on bundling or
worker count. Records are keyed (file, group, example, piece). Batches of
examples go through the method together only for speed: a method codes each
example as if it were alone (the M1 inference contract), so batch composition
never changes a token.
"""
import dataclasses
import logging
import zlib
from typing import NamedTuple

import apache_beam as beam
import numpy as np

from compressor import examples as examples_lib
from compressor import packing as packing_lib
from compressor.corpus import Dropped
from compressor.methods import CodingError
from pipelines import device_check, m1_loader
from pipelines.device_check import DeviceMismatchError
from pipelines.sources import ERRORS, DocGroup, ShardInput
from training import accelerator

_NAMESPACE = "eqinfo"


class Example(NamedTuple):
  """One M1-side example (<= 10,240 symbols) and the documents it overlaps.

  Attributes:
    key: (file index, group index, example index within the group).
    symbols: [S] int32.
    doc_starts: [D] offsets of the overlapping documents, relative to symbols[0].
    sources: [D] their provenance.
  """
  key: tuple[int, int, int]
  symbols: np.ndarray
  doc_starts: np.ndarray
  sources: tuple[str, ...]

  def source_at(self, offset: int) -> str:
    """Provenance of the document holding symbols[offset]."""
    return self.sources[int(np.searchsorted(self.doc_starts, offset, side="right")) - 1]

  def __repr__(self):
    return f"Example({key_name(self.key)}, <{self.symbols.size} symbols>)"


class Record(NamedTuple):
  """One M2 example before serialization.

  Attributes:
    key: (file, group, example, piece): the sort key of the output.
    tokens: [<= max_tokens] int32 M2 tokens.
    num_bytes: symbols covered, EOS counted as one.
    num_windows: Equal-Info windows in `tokens`.
    num_literal_windows: literal-escape windows among them.
    source: provenance of the document holding the first covered symbol.
    offset: first covered symbol within the example.
    symbols: [num_bytes] the covered symbols, kept until verification (else None).
    verified: decoded back to its symbols by `VerifyFn`.
    symbols_crc32: `symbols_crc32` of the covered symbols (None: not computed),
      so any machine can check that it decodes the record to its text.
    m1_device: where M1 computed the tables that coded it, e.g. "gpu:NVIDIA L4"
      (`m1_loader.model_device`; None for methods without a model).
  """
  key: tuple[int, int, int, int]
  tokens: np.ndarray
  num_bytes: int
  num_windows: int
  num_literal_windows: int
  source: str
  offset: int
  symbols: np.ndarray | None = None
  verified: bool = False
  symbols_crc32: int | None = None
  m1_device: str | None = None

  def __repr__(self):
    return (f"Record({key_name(self.key)}, <{self.tokens.size} tokens>, "
            f"num_bytes={self.num_bytes}, source={self.source!r})")


def key_name(key) -> str:
  """A readable, sortable name of a record or example key, e.g. "f00003-g000012-e002-p001"."""
  return "-".join(f"{tag}{v:0{w}d}" for tag, w, v in zip("fgep", (5, 6, 3, 3), key))


def symbols_crc32(symbols: np.ndarray) -> int:
  """CRC-32 of symbols (0..256, EOS = 256) as little-endian uint16: a record's text checksum."""
  return zlib.crc32(np.asarray(symbols, "<u2").tobytes())


def sampled(name: str, fraction: float) -> bool:
  """Whether the record named `name` is among a fixed `fraction` of records (by its crc32)."""
  return fraction >= 1 or zlib.crc32(name.encode()) < fraction * (1 << 32)


def decode_each(method, token_seqs: list[np.ndarray]) -> list[np.ndarray | None]:
  """Decoded symbols of each token sequence, in one batch; None where decoding raises."""
  try:
    return method.decode_batch(token_seqs)
  except Exception:  # pylint: disable=broad-except  (find the sequences that fail)
    out = []
    for tokens in token_seqs:
      try:
        out.append(method.decode(tokens))
      except Exception:  # pylint: disable=broad-except
        out.append(None)
    return out


def _counter(name: str):
  return beam.metrics.Metrics.counter(_NAMESPACE, name)


def make_examples(group: DocGroup, example_symbols: int) -> list[Example]:
  """DocGroup -> its Examples of `example_symbols` symbols (the last one shorter)."""
  out = []
  for span in examples_lib.split_group(group.docs, example_symbols):
    docs = range(span.first_doc, span.first_doc + span.doc_starts.size)
    out.append(Example((group.file_index, group.group_index, span.index), span.symbols,
                       span.doc_starts, tuple(group.sources[i] for i in docs)))
  return out


class CompressFn(beam.DoFn):
  """[Example] -> Records (and Dropped "truncated" counts) with packing.

  The method (and its M1) is built once per worker process in `setup()`;
  where an exact M1 codes on an accelerator, setup first checks that its
  tables equal the host CPU's (`device_check`). With `by_vocabulary`, the
  window vocabulary's bytes come as a side input of `process` and the worker
  codes by longest match, with no M1 (`m1_loader.vocabulary_method`).
  """

  def __init__(self, method_spec: str, m1_spec: str | None, max_tokens: int, packing: str,
               keep_symbols: bool, by_vocabulary: bool = False, accelerator_kind: str = "auto"):
    super().__init__()
    self._by_vocabulary = by_vocabulary
    self._accelerator = accelerator_kind
    self._method_spec = method_spec
    self._m1_spec = m1_spec
    self._max_tokens = max_tokens
    self._packing = packing
    self._keep_symbols = keep_symbols
    self._method = None
    self._device = None  # m1_loader.model_device of the method
    self._records = _counter("m2_examples")
    self._tokens = _counter("tokens")
    self._bytes = _counter("bytes_in_records")
    self._windows = _counter("windows")
    self._literal = _counter("literal_windows")
    self._truncated = _counter("bytes_truncated")

  def setup(self):
    accelerator.require(self._accelerator)  # a worker without its GPU/TPU stops here
    if self._by_vocabulary:
      return  # the method comes with the vocabulary (`process`)
    self._method = m1_loader.shared_method(self._method_spec, self._m1_spec)
    self._device = m1_loader.model_device(self._method)
    device_check.check_coding_device(self._method_spec, self._m1_spec)

  def _pack(self, batch: list[Example]):
    """Packs a batch; if that raises, packs example by example.

    An example whose coding raises CodingError or ValueError (a property of the
    input) is dropped and counted; any other error propagates, so the runner
    retries the bundle instead of writing different shards.

    Returns:
      (examples coded, their PackedRecords, [(example, error message)] that failed).
    """
    try:
      return batch, packing_lib.pack(self._method, [e.symbols for e in batch], self._max_tokens,
                                     self._packing), []
    except Exception:  # pylint: disable=broad-except  (isolate the example that fails)
      pass
    coded, records, failed = [], [], []
    for ex in batch:
      try:
        mine = packing_lib.pack(self._method, [ex.symbols], self._max_tokens, self._packing)
      except (CodingError, ValueError) as e:  # this input; anything else goes to the runner
        logging.warning("coding %s failed: %s", key_name(ex.key), e)
        failed.append((ex, f"{type(e).__name__}: {str(e)[:200]}"))
        continue
      records += [dataclasses.replace(r, example_index=len(coded)) for r in mine]
      coded.append(ex)
    return coded, records, failed

  def process(self, batch: list[Example], vocab: dict | None = None):
    if self._by_vocabulary and self._method is None:  # one side input for the DoFn's life
      self._method = m1_loader.vocabulary_method(self._method_spec, vocab["bytes"])
      self._device = vocab["built_on"]  # M1 computed the vocabulary's tables there
    batch, packed, failed = self._pack(sorted(batch, key=lambda e: e.key))
    for rec in packed:
      ex = batch[rec.example_index]
      self._records.inc()
      self._tokens.inc(int(rec.tokens.size))
      self._bytes.inc(rec.num_bytes)
      self._windows.inc(rec.num_windows)
      self._literal.inc(rec.num_literal_windows)
      covered = ex.symbols[rec.offset:rec.offset + rec.num_bytes]
      yield Record(ex.key + (rec.piece,), rec.tokens, rec.num_bytes, rec.num_windows,
                   rec.num_literal_windows, ex.source_at(rec.offset), rec.offset,
                   covered if self._keep_symbols else None,
                   symbols_crc32=symbols_crc32(covered), m1_device=self._device)
    for ex, dropped in zip(batch, packing_lib.dropped_symbols([e.symbols for e in batch], packed)):
      if dropped:
        self._truncated.inc(dropped)
        _counter("dropped_truncated").inc()
        yield beam.pvalue.TaggedOutput(
            ERRORS, Dropped(key_name(ex.key), "truncated", dropped, "pack",
                            "--packing truncate keeps the first --max_tokens tokens"))
    for ex, message in failed:
      _counter("dropped_coding_failed").inc()
      yield beam.pvalue.TaggedOutput(
          ERRORS, Dropped(key_name(ex.key), "coding_failed", int(ex.symbols.size), "pack",
                          f"{message} (first document {ex.sources[0]})"))


def verify_sampled(key, fraction: float) -> bool:
  """Whether the record with this key is among the `fraction` that are verified.

  A hash of the key name decides, so the same records are picked on every run.
  """
  return sampled(key_name(key), fraction)


class VerifyFn(beam.DoFn):
  """[Record] -> Records, the sampled ones decoded and compared; failures go to errors.

  A record that fails with M1 on the host CPU but decodes with the coder's
  M1 on the accelerator shows that the two devices compute different tables:
  then every shard of this worker would fail to decode elsewhere, so instead of
  dropping it, `process` raises DeviceMismatchError and the job stops.

  Args:
    method_spec, m1_spec: the method and M1 that coded the records.
    fraction: share of records decoded (`verify_sampled`); the others pass unverified.
    device: "cpu": decode with M1 on the host CPU, even where it coded on an
      accelerator; "worker": on the device that coded (`m1_loader.verifying_method`).
    by_vocabulary: decode by lookup in the window vocabulary, a side input of
      `process` (no M1 on any device).
  """

  def __init__(self, method_spec: str, m1_spec: str | None, fraction: float = 1.0,
               device: str = "cpu", by_vocabulary: bool = False):
    super().__init__()
    self._by_vocabulary = by_vocabulary
    self._method_spec = method_spec
    self._m1_spec = m1_spec
    self._fraction = fraction
    self._device = device
    self._method = None
    self._coder = None  # the coding method, where it is not `_method`
    self._verified = _counter("records_verified")
    self._failed = _counter("verification_failures")

  def setup(self):
    if self._by_vocabulary:
      return  # decodes with the vocabulary's method (`process`)
    self._method = m1_loader.verifying_method(self._method_spec, self._m1_spec, self._device)
    coder = m1_loader.shared_method(self._method_spec, self._m1_spec)
    self._coder = None if self._method is coder else coder
    if self._coder is not None and self._fraction > 0.1:
      logging.warning("verification decodes %.0f%% of records with M1 on the CPU while M1 codes "
                      "on an accelerator; pass --verify_fraction 0.01 to keep up with it",
                      100 * self._fraction)

  def process(self, batch: list[Record], vocab: dict | None = None):
    if self._by_vocabulary and self._method is None:  # one side input for the DoFn's life
      self._method = m1_loader.vocabulary_method(self._method_spec, vocab["bytes"])
    batch = sorted(batch, key=lambda r: r.key)
    picked = []
    for rec in batch:
      if verify_sampled(rec.key, self._fraction):
        picked.append(rec)
      else:
        yield rec._replace(symbols=None)
    if not picked:
      return
    for rec, got in zip(picked, decode_each(self._method, [r.tokens for r in picked])):
      if got is not None and np.array_equal(got, rec.symbols):
        self._verified.inc()
        yield rec._replace(symbols=None, verified=True)
      else:
        self._check_devices_agree(rec)
        self._failed.inc()
        _counter("dropped_verification_failed").inc()
        detail = ("decode raised" if got is None else
                  f"decoded {got.size} symbols, expected {rec.num_bytes}")
        hint = "" if self._coder is None else "; fails on the host CPU and the coding device alike"
        yield beam.pvalue.TaggedOutput(
            ERRORS, Dropped(key_name(rec.key), "verification_failed", rec.num_bytes, "verify",
                            f"{detail} (first document {rec.source}){hint}"))

  def _check_devices_agree(self, rec: Record) -> None:
    """Raises DeviceMismatchError if the coder's M1 decodes a record that the CPU's does not."""
    if self._coder is None:
      return
    got = decode_each(self._coder, [rec.tokens])[0]
    if got is not None and np.array_equal(got, rec.symbols):
      raise DeviceMismatchError(
          f"record {key_name(rec.key)} decodes with M1 on the accelerator that coded it but not "
          f"with M1 on the host CPU: their tables differ, so no shard of it would decode on "
          f"another machine; run eqinfo check-devices --m1 DIR there, or code on the CPU")


class CodedShard(NamedTuple):
  """One shard's records, in key order, before writing.

  Attributes:
    file_index, shard_index: the shard's place (`sources.ShardInput`).
    records: its Records, sorted by key.
    document_symbols: what its documents brought to bytes in.
  """
  file_index: int
  shard_index: int
  records: tuple[Record, ...]
  document_symbols: int

  def __repr__(self):
    return (f"CodedShard(f{self.file_index:05d}-s{self.shard_index:05d}, "
            f"<{len(self.records)} records>)")


def _split(outputs, main: list, errors: list) -> None:
  """Sorts a DoFn's outputs into main outputs and tagged `errors`."""
  for out in outputs:
    (errors if isinstance(out, beam.pvalue.TaggedOutput) else main).append(out)


class CodeShardFn(beam.DoFn):
  """ShardInput -> one CodedShard; Dropped (and truncated counts) to the `errors` output.

  The shard's examples are coded `batch_size` at a time (`CompressFn`), and each
  batch's records are verified (`VerifyFn`) before the next batch is coded, so a
  worker holds one shard's records and one batch's symbols. With `by_vocabulary`
  the window vocabulary comes as a side input and no M1 runs.
  """

  def __init__(self, method_spec: str, m1_spec: str | None, max_tokens: int, packing: str,
               example_symbols: int, batch_size: int, verify: bool,
               verify_fraction: float = 1.0, verify_device: str = "cpu",
               by_vocabulary: bool = False, accelerator_kind: str = "auto"):
    super().__init__()
    self._example_symbols = example_symbols
    self._batch_size = batch_size
    self._compress = CompressFn(method_spec, m1_spec, max_tokens, packing, verify, by_vocabulary,
                            accelerator_kind)
    self._verify = (VerifyFn(method_spec, m1_spec, verify_fraction, verify_device,
                             by_vocabulary) if verify else None)
    self._examples = _counter("m1_examples")

  def setup(self):
    self._compress.setup()
    if self._verify is not None:
      self._verify.setup()

  def process(self, shard: ShardInput, vocab: dict | None = None):
    examples = [ex for g in shard.groups for ex in make_examples(g, self._example_symbols)]
    self._examples.inc(len(examples))
    records, errors = [], []
    for start in range(0, len(examples), self._batch_size):
      coded = []
      _split(self._compress.process(examples[start:start + self._batch_size], vocab), coded, errors)
      if self._verify is not None:
        checked = []
        _split(self._verify.process(coded, vocab), checked, errors)
        coded = checked
      records += coded
    yield CodedShard(shard.file_index, shard.shard_index,
                     tuple(sorted(records, key=lambda r: r.key)), shard.document_symbols)
    yield from errors


class CodeShards(beam.PTransform):
  """ShardInput -> {"shards": CodedShard, "errors": Dropped}: examples, packing, verification.

  With `vocab` (the PCollection of `vocabulary_stage.BuildVocabulary`), coding and
  verification take it as a side input and run no M1.
  """

  def __init__(self, method_spec: str, m1_spec: str | None, max_tokens: int, packing: str,
               example_symbols: int, batch_size: int, verify: bool,
               verify_fraction: float = 1.0, verify_device: str = "cpu", vocab=None,
               accelerator_kind: str = "auto"):
    """Raises ValueError on a bad packing policy, max_tokens, batch_size or verify settings."""
    super().__init__()
    if packing not in packing_lib.PACKING_POLICIES:
      raise ValueError(f"packing must be one of {packing_lib.PACKING_POLICIES}, got {packing!r}")
    if max_tokens < 1 or batch_size < 1:
      raise ValueError(f"max_tokens and batch_size must be >= 1, got {max_tokens}, {batch_size}")
    if not 0 < verify_fraction <= 1:
      raise ValueError(f"verify_fraction must lie in (0, 1], got {verify_fraction}")
    if verify_device not in m1_loader.VERIFY_DEVICES:
      raise ValueError(f"verify_device must be one of {m1_loader.VERIFY_DEVICES}, "
                       f"got {verify_device!r}")
    self._vocab = vocab
    self._fn = CodeShardFn(method_spec, m1_spec, max_tokens, packing, example_symbols,
                           batch_size, verify, verify_fraction, verify_device,
                           vocab is not None, accelerator_kind)

  def expand(self, shard_inputs):
    side = (beam.pvalue.AsSingleton(self._vocab),) if self._vocab is not None else ()
    coded = shard_inputs | "CodeShard" >> beam.ParDo(self._fn, *side).with_outputs(
        ERRORS, main="shards")
    return {"shards": coded.shards, "errors": coded[ERRORS]}
