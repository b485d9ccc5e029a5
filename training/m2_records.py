"""M2's records (paper §3.5): ArrayRecord shards of tf.train.Example -> grain, one record
per row in the batch layout of `training/batch_layout.py` (`m2_input` also packs rows).
"""
import dataclasses

import grain
import jax
import numpy as np

from compressor import constants
from training import batch_layout
from training import shards


@dataclasses.dataclass(frozen=True)
class M2DataConfig:
  """What M2 reads and how it is batched."""
  pattern: str                   # glob of ArrayRecord shards (local or gs://)
  token_vocab: int               # M2 token vocabulary (256 or 65536); BOS = token_vocab
  seq_len: int = constants.MAX_TOKENS  # T: records hold at most 512 tokens (paper §3.5)
  batch_size: int = 256          # global batch size B (paper: 256)
  seed: int = 0                  # shuffle seed; epoch e is shuffled with (seed, e)
  shuffle: bool = True           # global shuffle; False keeps file/record order
  repeat: bool = True            # loop over the shards forever (training)
  num_threads: int = 2           # grain read threads (the order does not depend on it)
  pack: bool = False             # pack several records into a row (first fit), see m2_input

  def __post_init__(self):
    for name in ("token_vocab", "seq_len", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"M2DataConfig.{name} must be >= 1, got {getattr(self, name)}")


def record_tokens(record: bytes) -> tuple[np.ndarray, int]:
  """([n] int64 `targets`, `num_bytes`) of one serialized record (`training.shards`)."""
  return shards.tokens_and_bytes(record)


def parse_m2_record(record: bytes, record_id: int, seq_len: int,
                    bos: int) -> dict[str, np.ndarray]:
  """One serialized tf.train.Example (`targets`, `num_bytes`) as a padded row with its id
  (`bos` is the token vocabulary's size)."""
  tokens, num_bytes = checked_tokens(record, record_id, bos)
  out = batch_layout.pack_sequence(tokens, seq_len, bos)
  out["num_bytes"] = np.int64(num_bytes)
  out["ids"] = np.int64(record_id)
  return out


class ParseRecord(grain.transforms.Map):
  """grain Map: (record id, serialized Example) -> parse(record, record id, seq_len, bos)."""

  def __init__(self, parse, seq_len: int, bos: int):
    self.parse, self.seq_len, self.bos = parse, seq_len, bos

  def map(self, element):
    record_id, record = element
    return self.parse(record, record_id, self.seq_len, self.bos)


def open_shards(paths: list[str]) -> grain.sources.ArrayRecordDataSource:
  """grain's source over the shards.

  Raises:
    shards.CorruptShardError: one line naming a shard that cannot be read.
  """
  try:
    return grain.sources.ArrayRecordDataSource(paths)
  except Exception:  # pylint: disable=broad-except  (riegeli's errors name no file)
    shards.check_readable(paths)
    raise


def checked_tokens(record: bytes, record_id: int, token_vocab: int) -> tuple[np.ndarray, int]:
  """`record_tokens`, refusing a record that is not eqinfo's or holds ids outside the vocabulary.

  Raises:
    ValueError: naming the record.
  """
  try:
    tokens, num_bytes = record_tokens(record)
  except ValueError as e:
    raise ValueError(f"M2 record {record_id}: {e}; pass shards of eqinfo compress") from None
  outside = tokens[(tokens < 0) | (tokens >= token_vocab)]
  if outside.size:
    raise ValueError(f"M2 record {record_id} holds token id {int(outside[0])}, outside the "
                     f"{token_vocab} ids of the vocabulary; the shards and --vocab_size (or "
                     "their stats.json) disagree")
  return tokens, num_bytes


def m2_records(config: M2DataConfig) -> grain.MapDataset:
  """(record id, serialized Example) of this process, in epoch order.

  Order: all shards in sorted name order form one record list; process p of
  P takes records p, p+P, ...; each epoch is a global shuffle of those with
  the config seed (grain reseeds every epoch).
  """
  count = jax.process_count()
  if config.batch_size % count:
    raise ValueError(f"batch_size={config.batch_size} must divide by the {count} processes")
  source = open_shards(shards.list_shards(config.pattern))
  total = len(source)  # a repeated dataset indexes past the end: epoch e's i is e * total + i
  ds = grain.MapDataset.source(source).map_with_index(lambda i, rec: (i % total, rec))
  ds = ds[jax.process_index()::count]
  if config.shuffle:
    ds = ds.shuffle(seed=config.seed)
  if config.repeat:
    ds = ds.repeat(None)
  return ds


def m2_dataset(config: M2DataConfig) -> grain.MapDataset:
  """The batched grain MapDataset of this process's M2 examples, one record per row.

  Records in `m2_records` order; batches of B/P examples (`batched`: without
  `repeat`, the last one is filled up with empty rows).
  """
  ds = m2_records(config).map(ParseRecord(parse_m2_record, config.seq_len, config.token_vocab))
  return batch_layout.batched(ds, config.batch_size // jax.process_count(), config.repeat)
