"""Reading a shard directory of `eqinfo compress`: its shards, their records, its stats.json.

The format is written by `pipelines/sink.py` (docs/DESIGN.md, "Records and
shard directories"); this module reads it back for `inspect`, `generate`,
`report` and the vocabulary view.
"""
import json
import os
import sys

from apache_beam.io.filesystems import FileSystems

from pipelines import sink
from training import records


class CorruptShardError(ValueError):
  """A shard or record that cannot be read; the message names both."""


def shard_paths(directory: str) -> list[str]:
  """The directory's shard files in name order.

  Raises:
    FileNotFoundError: if there are none.
  """
  try:
    found = FileSystems.match([sink.join(directory, "*.array_record")])[0].metadata_list
  except Exception:  # pylint: disable=broad-except
    found = []
  if not found:
    raise FileNotFoundError(f"no *.array_record shards in {directory}; "
                            f"is it an output directory of `eqinfo compress`?")
  return sorted(m.path for m in found)


def read_shard(path: str) -> list[dict]:
  """Parses every record of one shard.

  Raises:
    CorruptShardError: naming the shard (and the record) that failed.
  """
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  if "://" in path:
    raise ValueError(f"inspect reads local shards; copy {path} first (gsutil -m cp)")
  out, index = [], None
  try:
    reader = array_record_module.ArrayRecordReader(path)
    for index in range(reader.num_records()):
      out.append(records.parse(reader.read([index])[0]))
    index = None
    reader.close()
  except Exception as e:  # pylint: disable=broad-except  (riegeli and parse errors)
    where = "" if index is None else f" record {index}"
    raise CorruptShardError(f"shard {path}{where} is corrupt: {e}") from None
  return out


def load_stats(directory: str) -> dict:
  """Reads stats.json (and warns if COMPLETED is missing).

  Raises:
    FileNotFoundError: if there is no stats.json.
  """
  path = sink.join(directory, sink.STATS)
  if "://" not in directory and not os.path.isdir(directory):  # object stores have no dirs
    raise FileNotFoundError(f"no shard directory {directory!r}; pass the --output directory "
                            "of `eqinfo compress`")
  if not FileSystems.exists(path):
    raise FileNotFoundError(f"{path} not found; the compress job did not finish "
                            f"(no {sink.COMPLETED} either?)")
  if not FileSystems.exists(sink.join(directory, sink.COMPLETED)):
    print(f"warning: {directory} has no {sink.COMPLETED} marker", file=sys.stderr)
  with FileSystems.open(path) as f:
    return json.loads(f.read())
