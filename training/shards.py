"""The shard directory of `eqinfo compress`: the one owner of its format (docs/DESIGN.md,
"Records and shard directories"). The pipeline's sink writes with it; M2's input,
inspect, report, generate and the vocabulary view read with it.

A directory holds:

  {split}-{method}-f{file:05d}-{s:05d}.array_record   ArrayRecord shards (`group_size:1`)
  stats.json       totals, the method, the M1 and its fingerprint, the histogram
  config.json      the job's resolved flags
  errors/errors.jsonl   the first dropped inputs, sorted
  window_vocab.json     where the window vocabulary coded
  .eqinfo-job      the token of the job that writes the directory (a second job that
                   takes the directory over makes the first stop without COMPLETED)
  COMPLETED        written last

Shard s of input file (read task) f holds the records of its groups
[G s, G (s + 1)), G = --groups_per_shard, sorted by key, so the shards in name
order are the input in order. Each record is one serialized `tf.train.Example`:

  targets              int64 list  the M2 tokens
  num_bytes            int64       raw symbols covered (EOS counted as one)
  num_windows          int64       Equal-Info windows (0 for other methods)
  num_literal_windows  int64       literal-escape windows among them
  source               bytes       provenance of the first covered document
  key                  bytes       the record's id, e.g. "f00003-g000012-e002-p001"
  symbols_crc32        int64       CRC-32 of the covered symbols as little-endian uint16
                                   (EOS = 256), so any machine can check its decoding

Serialized with protobuf's deterministic order (features sorted by name), so the same
record is the same bytes everywhere. Files are local or gs:// (Beam's `FileSystems`).
"""
import json
import os
import posixpath
import re
import sys

import numpy as np

STATS = "stats.json"
CONFIG = "config.json"
COMPLETED = "COMPLETED"
JOB = ".eqinfo-job"
ERRORS_DIR = "errors"
ERRORS_FILE = "errors.jsonl"
SHARD_SUFFIX = ".array_record"
ARRAY_RECORD_OPTIONS = "group_size:1"


class CorruptShardError(ValueError):
  """A shard or record that cannot be read; the message names both."""


def _filesystems():
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  return FileSystems


# Records.


def _example_class():
  from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel
  return example_pb2.Example


def serialize(tokens: np.ndarray, num_bytes: int, num_windows: int, num_literal_windows: int,
              source: str, key: str, symbols_crc32: int | None = None) -> bytes:
  """One record as a serialized tf.train.Example (`symbols_crc32` left out where None).

  Raises:
    ValueError: a negative integer (the format holds none).
  """
  ints = {"targets": np.asarray(tokens, np.int64).ravel(), "num_bytes": [num_bytes],
          "num_windows": [num_windows], "num_literal_windows": [num_literal_windows]}
  if symbols_crc32 is not None:
    ints["symbols_crc32"] = [symbols_crc32]
  example = _example_class()()
  for name, values in ints.items():
    values = np.asarray(values, np.int64)
    if values.size and values.min() < 0:
      raise ValueError(f"record feature {name} must be non-negative, got {values.min()}")
    example.features.feature[name].int64_list.value.extend(values.tolist())
  example.features.feature["source"].bytes_list.value.append(
      source.encode("utf-8", errors="surrogateescape"))
  example.features.feature["key"].bytes_list.value.append(key.encode())
  return example.SerializeToString(deterministic=True)


def parse(data: bytes) -> dict:
  """A serialized record -> {name: [n] int64 array for int64 features, bytes for the others}.

  Raises:
    ValueError: the bytes are not a tf.train.Example with `targets`.
  """
  from google.protobuf import message  # pylint: disable=import-outside-toplevel
  try:
    features = _example_class().FromString(data).features.feature
  except message.DecodeError as e:
    raise ValueError(f"not a tf.train.Example ({e})") from None
  if "targets" not in features:
    raise ValueError("not an eqinfo record: no 'targets' feature")
  out = {}
  for name, feature in features.items():
    kind = feature.WhichOneof("kind")
    if kind == "int64_list":
      out[name] = np.asarray(feature.int64_list.value, np.int64)
    elif kind == "bytes_list":
      out[name] = feature.bytes_list.value[0] if feature.bytes_list.value else b""
    else:
      out[name] = np.zeros(0, np.int64)
  return out


def tokens_and_bytes(data: bytes) -> tuple[np.ndarray, int]:
  """([n] int64 `targets`, `num_bytes`) of a serialized record (M2's input).

  Raises:
    ValueError: the bytes are not an eqinfo record.
  """
  from google.protobuf import message  # pylint: disable=import-outside-toplevel
  try:
    features = _example_class().FromString(data).features.feature
    return (np.asarray(features["targets"].int64_list.value, np.int64),
            int(features["num_bytes"].int64_list.value[0]))
  except (message.DecodeError, KeyError, IndexError) as e:
    raise ValueError(f"not an eqinfo record ({type(e).__name__}: {e})") from None


# Names.


def sanitize_spec(spec: str) -> str:
  """A method spec as a file-name part.

  "equal_info_ac[b=16,v=65k]" -> "equal_info_ac_b_16_v_65k".
  """
  return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.]", "_", spec)).strip("_")


def shard_name(split: str, method_spec: str, file_index: int, shard_index: int) -> str:
  """Shard `shard_index` of input file (read task) `file_index`.

  "train-gzip_v_256-f00003-00012.array_record".
  """
  return (f"{split}-{sanitize_spec(method_spec)}-f{file_index:05d}-{shard_index:05d}"
          f"{SHARD_SUFFIX}")


def join(directory: str, *names: str) -> str:
  """A path inside a directory, local or gs://."""
  return _filesystems().join(directory, *names)


# Reading a directory.


def list_shards(pattern: str) -> list[str]:
  """The shards matching a glob (local or gs://), sorted by name.

  Raises:
    FileNotFoundError: if nothing matches.
  """
  try:
    found = _filesystems().match([pattern])[0].metadata_list
  except Exception:  # pylint: disable=broad-except  (Beam raises on a missing directory)
    found = []
  if not found:
    raise FileNotFoundError(f"no files match {pattern!r}; pass a glob of the shards that "
                            "`eqinfo compress` wrote, e.g. 'shards/train-*.array_record'")
  return sorted(m.path for m in found)


def shard_paths(directory: str) -> list[str]:
  """The directory's shard files in name order.

  Raises:
    FileNotFoundError: if there are none.
  """
  try:
    return list_shards(join(directory, "*" + SHARD_SUFFIX))
  except FileNotFoundError:
    raise FileNotFoundError(f"no *{SHARD_SUFFIX} shards in {directory}; is it an output "
                            "directory of `eqinfo compress`?") from None


def read_shard(path: str) -> list[dict]:
  """Parses every record of one local shard (`parse`).

  Raises:
    CorruptShardError: naming the shard (and the record) that failed.
  """
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  if "://" in path:
    raise ValueError(f"records are read from local shards; copy {path} first (gsutil -m cp)")
  out, index = [], None
  try:
    reader = array_record_module.ArrayRecordReader(path)
    for index in range(reader.num_records()):
      out.append(parse(reader.read([index])[0]))
    index = None
    reader.close()
  except Exception as e:  # pylint: disable=broad-except  (riegeli and parse errors)
    where = "" if index is None else f" record {index}"
    raise CorruptShardError(f"shard {path}{where} is corrupt ({_reason(e)}); write it again "
                            "(eqinfo compress --overwrite)") from None
  return out


def _reason(e: Exception) -> str:
  """The first line of an error's message, or its type where the message is empty."""
  return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def check_readable(paths: list[str]) -> None:
  """Opens each shard and parses its first record.

  Raises:
    CorruptShardError: one line naming the first shard that is truncated, empty, not an
      ArrayRecord file, or holds records that are not eqinfo's.
  """
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  for path in paths:
    try:
      reader = array_record_module.ArrayRecordReader(path)
      if reader.num_records():
        parse(reader.read([0])[0])
      reader.close()
    except Exception as e:  # pylint: disable=broad-except  (riegeli and parse errors)
      raise CorruptShardError(
          f"shard {path} cannot be read ({_reason(e)}): it is truncated, empty or not a shard of "
          "eqinfo compress; write it again (eqinfo compress --overwrite) or leave it out of "
          "the glob") from None


def read_json(path: str) -> dict:
  """A JSON file, local or gs://.

  Raises:
    ValueError: it is not JSON (cut short or overwritten), naming the file.
  """
  with _filesystems().open(path) as f:
    data = f.read()
  try:
    return json.loads(data)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not valid JSON ({e}); it was cut short or overwritten: "
                     "run the command that wrote it again") from None


def is_completed(directory: str) -> bool:
  """True once the job that writes the directory has finished (COMPLETED exists)."""
  return _filesystems().exists(join(directory, COMPLETED))


def has_stats(directory: str) -> bool:
  """True for a shard directory (it holds stats.json)."""
  return _filesystems().exists(join(directory, STATS))


def load_stats(directory: str) -> dict:
  """Reads stats.json (and warns if COMPLETED is missing).

  Raises:
    FileNotFoundError: if there is no such directory or no stats.json in it.
  """
  path = join(directory, STATS)
  if "://" not in directory and not os.path.isdir(directory):  # object stores have no dirs
    raise FileNotFoundError(f"no shard directory {directory!r}; pass the --output directory "
                            "of `eqinfo compress`")
  if not _filesystems().exists(path):
    raise FileNotFoundError(f"{path} not found; the compress job did not finish "
                            f"(no {COMPLETED} either?)")
  if not is_completed(directory):
    print(f"warning: {directory} has no {COMPLETED} marker", file=sys.stderr)
  return read_json(path)


def stats_of_glob(pattern: str) -> dict:
  """stats.json of the shard directory that a glob's shards lie in, or {} if it has none.

  Raises:
    ValueError: the glob's shards lie in directories of different methods or vocabularies
      (M2 would learn two token languages as one).
  """
  directories = sorted({posixpath.dirname(p) for p in list_shards(pattern)})
  found = {}
  for directory in directories:
    path = join(directory, STATS)
    if _filesystems().exists(path):
      found[directory] = read_json(path)
  kinds = {(s.get("method"), s.get("vocab_size")) for s in found.values()}
  if len(kinds) > 1:
    names = ", ".join(f"{d}: {s.get('method')}" for d, s in found.items())
    raise ValueError(f"{pattern!r} mixes shards of different methods or vocabularies ({names}); "
                     "train one M2 per method")
  return next(iter(found.values()), {})


def text_bytes_of_glob(pattern: str) -> int | None:
  """Bytes of text in the shards a glob matches: the sum of each directory's stats.json "bytes",
  for directories whose every shard the glob matches; None if a directory has no stats.json
  or the glob takes only some of its shards (stats.json counts text per directory, not per
  shard).

  Raises:
    FileNotFoundError: if nothing matches.
  """
  matched = {}
  for path in list_shards(pattern):
    matched.setdefault(posixpath.dirname(path), set()).add(posixpath.basename(path))
  total = 0
  for directory, names in matched.items():
    path = join(directory, STATS)
    if not _filesystems().exists(path):
      return None
    stats = read_json(path)
    if {shard["name"] for shard in stats.get("shards", [])} != names:
      return None
    total += stats["bytes"]
  return total


def compression_ratio(stats: dict) -> float | None:
  """The compression ratio as the paper's Table 2 gives it: bytes of text per M2 token, of a
  stats.json-like dict with "bytes" and "tokens" (None without tokens)."""
  if not stats["tokens"]:
    return None
  return stats["bytes"] / stats["tokens"]


def raw_bits_per_coded_bit(stats: dict) -> float | None:
  """8 * bytes / (token bits * tokens): how many bits of text each bit of tokens holds, of a
  stats.json-like dict with "bytes", "tokens" and "token_bits" (8 where the method has none;
  SentencePiece's is ceil(log2 vocab)). Equal to `compression_ratio` for 8-bit tokens."""
  if not stats["tokens"]:
    return None
  return 8 * stats["bytes"] / ((stats.get("token_bits") or 8) * stats["tokens"])


def ratio_line(stats: dict) -> str:
  """The one way eqinfo prints a shard directory's ratio (compress, inspect, demo)."""
  bits = stats.get("token_bits") or 8
  return (f"compression ratio {compression_ratio(stats) or 0:.3f} bytes/token (paper Table 2); "
          f"{raw_bits_per_coded_bit(stats) or 0:.3f} raw bits per coded bit ({bits}-bit tokens)")


def verified_where(stats: dict) -> str:
  """" on cpu", " by the window vocabulary" or "": where stats.json's records were decoded."""
  where = stats.get("verify_device")
  if not where:
    return ""
  return " by the window vocabulary" if where == "vocabulary" else f" on {where}"
