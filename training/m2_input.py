"""M2's input: checkpointable iterators of batches from ArrayRecord shards.

One record per row, padded (`m2_records.m2_dataset`), or several records per row
(`row_packing.packed_rows`), as `M2DataConfig.pack` says.
"""
import grain

from training import m2_records
from training import row_packing


def m2_batches(config: m2_records.M2DataConfig) -> grain.DatasetIterator:
  """Returns a checkpointable iterator (get_state/set_state) over M2 batches.

  With `config.pack`, rows hold several records (`row_packing.packed_rows`) and
  batches also carry `segments` [B, T] (see there); otherwise one record per
  row, padded (`m2_records.m2_dataset`).
  """
  read = grain.ReadOptions(num_threads=config.num_threads, prefetch_buffer_size=4)
  if config.pack:
    return iter(row_packing.packed_rows(config, read))
  return iter(m2_records.m2_dataset(config).to_iter_dataset(read))
