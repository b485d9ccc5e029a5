"""The M2 record: one serialized `tf.train.Example` per record (docs/DESIGN.md, "Records and
shard directories"). The one codec of the format: the pipeline's sink writes with it, and
M2's input, inspect and generate read with it.

  targets              int64 list  the M2 tokens
  num_bytes            int64       raw symbols covered (EOS counted as one)
  num_windows          int64       Equal-Info windows (0 for other methods)
  num_literal_windows  int64       literal-escape windows among them
  source               bytes       provenance of the first covered document
  key                  bytes       the record's id, e.g. "f00003-g000012-e002-p001"
  symbols_crc32        int64       CRC-32 of the covered symbols as little-endian uint16
                                   (EOS = 256), so any machine can check its decoding

Serialized with protobuf's deterministic order (features sorted by name), so the same
record is the same bytes everywhere.
"""
import numpy as np


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
  """([n] int64 `targets`, `num_bytes`) of a serialized record (M2's input)."""
  features = _example_class().FromString(data).features.feature
  return (np.asarray(features["targets"].int64_list.value, np.int64),
          int(features["num_bytes"].int64_list.value[0]))
