"""The static byte unigram model of StaticAC (paper §3.3, Table 2).

One quantised table for every context: the frequencies of the 257 symbols in
training data, with add-one smoothing so that every symbol stays codable.
"""
import hashlib
from typing import Sequence

import numpy as np

from compressor import constants
from compressor import symbols as symbols_lib
from compressor.models import base


def symbol_streams(data) -> list[np.ndarray]:
  """Normalises training data to a list of validated symbol streams.

  Args:
    data: one stream (1-D int array of values 0..256), or a list of streams,
      `str` documents or `bytes` documents (documents get EOS appended).

  Returns:
    List of 1-D int32 arrays.
  """
  if isinstance(data, np.ndarray) or (isinstance(data, (list, tuple)) and data
                                      and isinstance(data[0], (int, np.integer))):
    return [symbols_lib.as_symbols(data)]
  if isinstance(data, (str, bytes)):
    return [symbols_lib.symbols_from_text(data)]
  streams = []
  for item in data:
    if isinstance(item, (str, bytes)):
      streams.append(symbols_lib.symbols_from_text(item))
    else:
      streams.append(symbols_lib.as_symbols(item))
  return streams


def table_fingerprint(*arrays: np.ndarray, extra: str = "") -> str:
  """Returns a short sha256 of little-endian int32 table bytes (and `extra`)."""
  digest = hashlib.sha256(extra.encode("utf-8"))
  for arr in arrays:
    digest.update(np.ascontiguousarray(arr, "<i4").tobytes())
  return digest.hexdigest()[:16]


class UnigramModel(base.ProbabilityModel):
  """A context-free model: the same quantised table after every context.

  Attributes:
    table: [257] int32 frequencies, each >= 1, summing to 2**PRECISION.
    cdf: [1, 258] int32 cumulative table.
    fingerprint: the first 16 hex digits of sha256 of `table` as little-endian int32.
  """

  def __init__(self, table):
    """Wraps a quantised table.

    Args:
      table: [257] integer frequencies, each >= 1, summing to 2**PRECISION.

    Raises:
      ValueError: if `table` breaks that contract.
    """
    table = np.asarray(table)
    if table.shape != (constants.ALPHABET_SIZE,):
      raise ValueError(f"table must have shape ({constants.ALPHABET_SIZE},), got {table.shape}")
    self.table = base.check_freqs(table[None])[0].copy()  # [257]
    self.table.flags.writeable = False
    self.cdf = base.cdf_from_freqs(self.table[None])  # [1, 258]
    self.cdf.flags.writeable = False
    self.fingerprint = table_fingerprint(self.table)

  @classmethod
  def fit(cls, data) -> "UnigramModel":
    """Counts symbols with add-one smoothing and quantises the result.

    Args:
      data: a symbol stream or a list of streams / documents (see `symbol_streams`).
    """
    counts = np.ones(constants.ALPHABET_SIZE, np.int64)
    for stream in symbol_streams(data):
      counts += np.bincount(stream, minlength=constants.ALPHABET_SIZE)
    return cls(base.quantize(counts[None])[0])

  @classmethod
  def uniform(cls) -> "UnigramModel":
    """The uniform model (the paper's uniform baseline of Table 3)."""
    return cls(base.quantize(np.ones((1, constants.ALPHABET_SIZE)))[0])

  def freqs(self, contexts: Sequence[np.ndarray]) -> np.ndarray:
    """Returns [len(contexts), 257] int32 copies of the table."""
    return np.tile(self.table, (len(contexts), 1))

  def lanes(self, num_lanes: int) -> "UnigramLanes":
    return UnigramLanes(self, num_lanes)

  def __eq__(self, other):
    return isinstance(other, UnigramModel) and np.array_equal(self.table, other.table)

  def __hash__(self):
    return hash(self.fingerprint)

  def __repr__(self):
    return f"UnigramModel(fingerprint={self.fingerprint!r})"


class UnigramLanes(base.Lanes):
  """Lanes of a `UnigramModel`: every lane reads row 0, updates are no-ops."""

  def __init__(self, model: UnigramModel, num_lanes: int):
    super().__init__(num_lanes)
    self._cdf = model.cdf  # [1, 258]
    self._rows = np.zeros(num_lanes, np.intp)  # [L]
    self._rows.flags.writeable = False

  def tables(self) -> tuple[np.ndarray, np.ndarray]:
    return self._cdf, self._rows

  def update(self, symbols, push, reset) -> None:
    pass
