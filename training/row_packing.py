"""Several M2 records in one row of T positions, so M2's compute goes to text, not padding.

With one record per row, every record shorter than T is padded: the last record
of each compressed example is, which is about 5 to 8% of M2's positions for
EqualInfoAC[b=16] shards. `eqinfo train-m2` (`--pack_records`, the default)
packs records first fit into rows of T positions (grain's
FirstFitPackIterDataset with BINS open rows per row of the local batch: a
record that fits none of them sends them all on, in order) and keeps each
record to itself: a position attends only to earlier positions of its own
record (`segments`), and relative position biases depend on the distance
alone, so a record's logits are those it gets alone in a row. Every record is
read once per epoch; open rows may mix the end of one epoch with the next.

Batch layout (the per-record one is in training.data):
  inputs, targets, weights  [B, T]        records side by side, then padding
  segments                  [B, T] int32  1, 2, ... per record of the row; 0 on padding
  num_bytes                 [B]    int64  bytes of all the row's records
  ids                       [B, T] int64  record id at each record's first position, -1 elsewhere
"""
import grain
import jax
import numpy as np
from grain.experimental import FirstFitPackIterDataset

from training import data

BINS = 16  # open rows per row of the local batch: more, fuller rows (97.8% text vs 94.6% at 1)
SEQUENCE_KEYS = ("inputs", "targets", "weights", "bytes", "ids")  # packed side by side


def record_sequence(record: bytes, record_id: int, seq_len: int, bos: int) -> dict:
  """One record as unpadded [n] arrays: the `pack_sequence` layout without padding.

  `bytes` holds the record's num_bytes at position 0 and `ids` its id + 1 there
  (0 elsewhere), so sums and first positions survive packing.

  Raises:
    ValueError: if the record holds more than `seq_len` tokens.
  """
  tokens, num_bytes = data.record_tokens(record)
  n = len(tokens)
  row = data.pack_sequence(tokens, seq_len, bos)
  out = {k: v[:n] for k, v in row.items()}
  out["bytes"] = np.zeros(n, np.int64)
  out["bytes"][0] = num_bytes
  out["ids"] = np.zeros(n, np.int64)
  out["ids"][0] = record_id + 1
  return out


class _FinishRow(grain.transforms.Map):
  """grain Map: a packed bin -> one row of the batch layout above."""

  def map(self, element):
    return {
        "inputs": element["inputs"].astype(np.int32),
        "targets": element["targets"].astype(np.int32),
        "weights": element["weights"].astype(np.float32),
        "segments": element["inputs_segment_ids"].astype(np.int32),
        "num_bytes": np.int64(element["bytes"].sum()),
        "ids": element["ids"].astype(np.int64) - 1,
    }


def packed_rows(config: data.M2DataConfig, read: grain.ReadOptions) -> grain.IterDataset:
  """Batches of packed rows of this process's records (`data.m2_records` order)."""
  local_batch = config.batch_size // jax.process_count()
  records = data.m2_records(config).map(
      data.ParseRecord(record_sequence, config.seq_len, config.token_vocab))
  packed = FirstFitPackIterDataset(
      records.to_iter_dataset(read),
      length_struct={k: config.seq_len for k in SEQUENCE_KEYS},
      num_packing_bins=BINS * local_batch, seed=config.seed, shuffle_bins=False)
  return data.batched(packed.map(_FinishRow()), local_batch, config.repeat)
