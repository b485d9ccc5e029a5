"""The probability-model protocol that drives every arithmetic coder.

A probability model maps a context (the symbols since its window's start, or
since the example's start for AC) to a quantised frequency table: 257 integers,
each at least 1, summing to 2**PRECISION. Its reference call is `freqs`; coders
use the lane interface (`lanes`), which must give the same integers.
"""
import abc
from typing import Sequence

import numpy as np

from compressor import constants

CDF_WIDTH = constants.ALPHABET_SIZE + 1  # cdf[0] = 0, cdf[257] = TOTAL_FREQ


def cdf_from_freqs(freqs: np.ndarray) -> np.ndarray:
  """[N, 257] frequencies -> [N, 258] int32 cumulative tables starting at 0."""
  freqs = np.asarray(freqs)
  out = np.zeros(freqs.shape[:-1] + (CDF_WIDTH,), np.int32)
  np.cumsum(freqs, axis=-1, out=out[..., 1:])
  return out


def check_freqs(freqs: np.ndarray) -> np.ndarray:
  """Asserts the table contract and returns `freqs` as int32.

  Raises:
    ValueError: if a row has an entry below 1 or does not sum to 2**PRECISION.
  """
  freqs = np.asarray(freqs)
  if freqs.ndim != 2 or freqs.shape[1] != constants.ALPHABET_SIZE:
    raise ValueError(f"freqs must be [N, {constants.ALPHABET_SIZE}], got {freqs.shape}")
  if freqs.size and freqs.min() < 1:
    raise ValueError("every frequency must be at least 1")
  sums = freqs.sum(axis=1)
  if np.any(sums != constants.TOTAL_FREQ):
    raise ValueError(f"rows must sum to {constants.TOTAL_FREQ}, got {np.unique(sums)[:5]}")
  return freqs.astype(np.int32, copy=False)


def quantize(probs: np.ndarray) -> np.ndarray:
  """Quantises probabilities to frequency tables, deterministically.

  Each symbol gets 1 + floor(p * (2**PRECISION - 257)); the remainder goes to
  the most probable symbol (lowest index on ties).

  Args:
    probs: [N, 257] non-negative floats (rows need not be normalised).

  Returns:
    [N, 257] int32 frequencies, each >= 1, rows summing to 2**PRECISION.
  """
  probs = np.asarray(probs, np.float64)
  probs = probs / probs.sum(axis=-1, keepdims=True)
  spare = constants.TOTAL_FREQ - constants.ALPHABET_SIZE
  freqs = 1 + np.floor(probs * spare).astype(np.int64)
  rest = constants.TOTAL_FREQ - freqs.sum(axis=-1)
  top = np.argmax(probs, axis=-1)
  freqs[np.arange(freqs.shape[0]), top] += rest
  return freqs.astype(np.int32)


class Lanes(abc.ABC):
  """Per-lane contexts of a model: lane i holds the context of one window.

  Coders call `tables()` for every lane's next-symbol table, then `update()` to
  push accepted symbols and to reset lanes whose window (or example) ended.
  """

  def __init__(self, num_lanes: int):
    if num_lanes < 1:
      raise ValueError(f"num_lanes must be >= 1, got {num_lanes}")
    self.num_lanes = num_lanes

  @abc.abstractmethod
  def tables(self) -> tuple[np.ndarray, np.ndarray]:
    """Returns (cdf, rows): lane i's table is cdf[rows[i]].

    cdf: [T, 258] int32 cumulative tables (cdf[:, 0] = 0, cdf[:, -1] = 2**14).
    rows: [num_lanes] integer row index per lane.

    Coders keep references to earlier results (to back off within a window),
    so a returned array must never be modified afterwards.
    """

  @abc.abstractmethod
  def update(self, symbols: np.ndarray, push: np.ndarray, reset: np.ndarray) -> None:
    """Appends symbols[i] to lane i's context where push[i]; clears it where reset[i].

    Args:
      symbols: [num_lanes] int symbols (ignored where not push).
      push: [num_lanes] bool.
      reset: [num_lanes] bool; applied after the pushes.
    """


def check_update(num_lanes: int, symbols, push, reset):
  """Validates `Lanes.update` arguments; returns them as numpy arrays.

  Raises:
    ValueError: if one is not of shape [num_lanes].
  """
  symbols, push, reset = (np.asarray(a) for a in (symbols, push, reset))
  for name, a in (("symbols", symbols), ("push", push), ("reset", reset)):
    if a.shape != (num_lanes,):
      raise ValueError(f"{name} must have shape ({num_lanes},), got {a.shape}")
  return symbols, push, reset


class ProbabilityModel(abc.ABC):
  """A model whose tables are a pure function of its parameters and the context."""

  #: Short provenance string stamped into stats.json (e.g. a checkpoint hash).
  fingerprint: str = ""

  @abc.abstractmethod
  def freqs(self, contexts: Sequence[np.ndarray]) -> np.ndarray:
    """Returns [len(contexts), 257] int32 tables for the symbol after each context."""

  def lanes(self, num_lanes: int) -> Lanes:
    """Returns lane state for batched coding; the default recomputes from `freqs`."""
    return ContextListLanes(self, num_lanes)


class ContextListLanes(Lanes):
  """Generic lanes that keep each context as a list and call `model.freqs`."""

  def __init__(self, model: ProbabilityModel, num_lanes: int):
    super().__init__(num_lanes)
    self._model = model
    self._contexts = [[] for _ in range(num_lanes)]
    self._rows = np.arange(num_lanes)
    self._cdf = None

  def tables(self):
    if self._cdf is None:
      contexts = [np.asarray(c, np.int32) for c in self._contexts]
      self._cdf = cdf_from_freqs(self._model.freqs(contexts))
    return self._cdf, self._rows

  def update(self, symbols, push, reset):
    for i in np.flatnonzero(push):
      self._contexts[i].append(int(symbols[i]))
    for i in np.flatnonzero(reset):
      self._contexts[i] = []
    self._cdf = None
