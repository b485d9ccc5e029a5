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
Only the tokens are packed; each row's inputs, weights, ids and bytes are
rebuilt from them and from its records' [id, num_bytes], which ride beside the
row (`finish_row`): the packer copies one array per record, not five.

Batch layout (the per-record one is in training.batch_layout):
  inputs, targets, weights  [B, T]        records side by side, then padding
  segments                  [B, T] int32  1, 2, ... per record of the row; 0 on padding
  num_bytes                 [B]    int64  bytes of all the row's records
  ids                       [B, T] int64  record id at each record's first position, -1 elsewhere
"""
import grain
import jax
import numpy as np
from grain.experimental import FirstFitPackIterDataset

from training import batch_layout
from training import m2_records

BINS = 16  # open rows per row of the local batch: more, fuller rows (97.8% text vs 94.6% at 1)
RECORD = "record"  # per record, carried beside its row: [record id, num_bytes]


def record_sequence(record: bytes, record_id: int, seq_len: int, bos: int) -> dict:
  """One record as the packer takes it: `targets` [n] int32 and `record` [2] int64.

  Only `targets` is packed (first fit); `record` = [record id, num_bytes]
  rides beside the row as a meta feature, and `finish_row` rebuilds inputs,
  weights, ids and num_bytes from it, so the packer copies one array per
  record instead of five. `bos` (the token vocabulary's size) bounds the ids here;
  `finish_row` puts it back.

  Raises:
    ValueError: if the record holds more than `seq_len` tokens.
  """
  tokens, num_bytes = m2_records.checked_tokens(record, record_id, bos)
  batch_layout.check_fits(len(tokens), seq_len)
  return {"targets": tokens.astype(np.int32),
          RECORD: np.array([record_id, num_bytes], np.int64)}


def finish_row(targets: np.ndarray, segments: np.ndarray, positions: np.ndarray,
               records: list[np.ndarray], bos: int) -> dict[str, np.ndarray]:
  """A packed row in the batch layout above.

  Args:
    targets: [T] tokens of the row's records side by side, then padding.
    segments: [T] 1, 2, ... per record; 0 on padding.
    positions: [T] position of each token within its record.
    records: the row's records' [record id, num_bytes], in segment order.
    bos: the BOS id, the first input of every record.
  """
  real = segments > 0
  starts = real & (positions == 0)
  inputs = np.zeros_like(targets)
  inputs[1:] = targets[:-1]
  inputs[starts] = bos
  inputs[~real] = batch_layout.PAD
  ids = np.full(targets.shape, -1, np.int64)
  ids[starts] = [int(r[0]) for r in records]
  return {
      "inputs": inputs.astype(np.int32),
      "targets": np.where(real, targets, batch_layout.PAD).astype(np.int32),
      "weights": real.astype(np.float32),
      "segments": segments.astype(np.int32),
      "num_bytes": np.int64(sum(int(r[1]) for r in records)),
      "ids": ids,
  }


class _FinishRow(grain.transforms.Map):
  """grain Map: a packed bin -> one row of the batch layout above (`finish_row`)."""

  def __init__(self, bos: int):
    self.bos = bos

  def map(self, element):
    return finish_row(element["targets"], element["targets_segment_ids"],
                      element["targets_positions"], list(element[RECORD]), self.bos)


def packed_rows(config: m2_records.M2DataConfig, read: grain.ReadOptions) -> grain.IterDataset:
  """Batches of packed rows of this process's records (`m2_records.m2_records` order)."""
  local_batch = config.batch_size // jax.process_count()
  records = m2_records.m2_records(config).map(
      m2_records.ParseRecord(record_sequence, config.seq_len, config.token_vocab))
  packed = FirstFitPackIterDataset(
      records.to_iter_dataset(read), length_struct={"targets": config.seq_len},
      meta_features=(RECORD,), num_packing_bins=BINS * local_batch, seed=config.seed,
      shuffle_bins=False)
  rows = packed.map(_FinishRow(config.token_vocab))
  return batch_layout.batched(rows, local_batch, config.repeat)
