"""An order-k Markov model over the 257 symbols: a stand-in for M1 that needs no training run.

The model predicts the next symbol from the last k symbols of its context (the
symbols since its window's start; a context shorter than k uses the estimate
of that shorter order). Estimates of orders 0..k are interpolated with
Witten-Bell weights (the escape estimate of PPM method C):

  p_j(s | c) = (n_j(c, s) + w(c) * p_{j-1}(s | c')) / (n_j(c) + w(c)),
  w(c) = alpha * max(u_j(c), 1),

where n_j(c, s) counts s after context c in training data, n_j(c) is their
sum, u_j(c) the number of distinct symbols seen after c, c' drops the oldest
symbol of c, and p_{-1} is uniform. Only contexts seen at least `min_count`
times get a table; any other context backs off to its longest suffix that has
one (order 0 always has one). Every table is quantised at fit time, so coding
only looks rows up.

Lanes follow an automaton: a lane's state is its table row, and
`next[row, s]` is the row after pushing s (the longest suffix with a table of
the context extended by s, at most k symbols long). It is built on the first
call to `lanes`, costs as much memory as `cdf` ([T, 257] int32), and turns a
coding step into one gather per lane.

Context keys: the last j symbols, most recent first, are the base-257 digits
of the key from the lowest up, so the key of the last j-1 symbols is
key mod 257**(j-1).
"""
from typing import Sequence

import numpy as np

from compressor import constants
from compressor.models import base
from compressor.models.unigram import symbol_streams, table_fingerprint

_FORMAT = "eqinfo-context-v1"
_V = constants.ALPHABET_SIZE
#: A context key and the next symbol must fit in int64: 257**7 < 2**63 <= 257**8.
MAX_ORDER = 6


def context_keys(stream: np.ndarray, order: int) -> np.ndarray:
  """Keys of the `order` symbols before each position that has that many.

  Args:
    stream: [N] symbols.
    order: j >= 0.

  Returns:
    [max(N - j, 0)] int64: entry t is the key of stream[t : t + j], the
    context of stream[t + j].
  """
  n = max(stream.size - order, 0)
  keys = np.zeros(n, np.int64)
  for i in range(order):  # digit i: the symbol i + 1 places before the target
    start = order - 1 - i
    keys += stream[start:start + n].astype(np.int64) * _V**i
  return keys


class _Order:
  """The tables of one order: sorted context keys and the cdf row of the first."""

  def __init__(self, keys: np.ndarray, offset: int):
    self.keys = keys  # [T_j] int64, sorted
    self.offset = offset

  def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (found [N] bool, rows [N] int64) for context keys [N]."""
    if not self.keys.size:
      return np.zeros(keys.shape, bool), np.zeros(keys.shape, np.int64)
    idx = np.searchsorted(self.keys, keys)  # [N]
    np.minimum(idx, self.keys.size - 1, out=idx)
    return self.keys[idx] == keys, idx + self.offset


class ContextModel(base.ProbabilityModel):
  """An interpolated order-k Markov model with quantised tables.

  Attributes:
    order: k, the number of past symbols the model looks at.
    min_count: how often a context must occur in training to get a table.
    alpha: weight of the lower-order estimate per distinct symbol seen.
    cdf: [T, 258] int32 cumulative tables once fitted; row 0 is order 0.
    fingerprint: short sha256 of the parameters and tables ("" until fitted).
  """

  def __init__(self, order: int = 3, min_count: int = 2, alpha: float = 1.0):
    """Creates an unfitted model.

    Args:
      order: k in 0..MAX_ORDER.
      min_count: >= 1; contexts seen fewer times back off to shorter ones.
      alpha: > 0; larger values lean more on shorter contexts.

    Raises:
      ValueError: on arguments outside those ranges.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) \
        or not 0 <= order <= MAX_ORDER:
      raise ValueError(f"order must be an int in 0..{MAX_ORDER}, got {order!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) \
        or min_count < 1:
      raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
    if not isinstance(alpha, (int, float, np.number)) or not np.isfinite(alpha) or alpha <= 0:
      raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    self.order = int(order)
    self.min_count = int(min_count)
    self.alpha = float(alpha)
    self.cdf = None
    self._orders = None
    self._next = None
    self.fingerprint = ""

  @property
  def num_tables(self) -> int:
    """T, the number of quantised tables (0 until fitted)."""
    return 0 if self.cdf is None else self.cdf.shape[0]

  def fit(self, data) -> "ContextModel":
    """Counts contexts of orders 0..k in `data` and builds every table.

    Args:
      data: a symbol stream, or a list of streams / `str` / `bytes` documents
        (documents get EOS appended); contexts never cross list items.

    Returns:
      self.
    """
    streams = symbol_streams(data)
    probs = np.full((1, _V), 1.0 / _V)  # p_{-1}: [1, 257]
    prev_keys = np.zeros(1, np.int64)
    key_sets, cdfs = [], []
    for j in range(self.order + 1):
      keys, counts = self._count(streams, j)  # [T_j], [T_j, 257]
      parents = np.searchsorted(prev_keys, keys % _V**max(j - 1, 0))  # [T_j]
      assert np.array_equal(prev_keys[parents], keys % _V**max(j - 1, 0))
      probs = self._interpolate(counts, probs[parents])  # [T_j, 257]
      cdfs.append(base.cdf_from_freqs(base.quantize(probs)))
      key_sets.append(keys)
      prev_keys = keys
    self._set_tables(key_sets, np.concatenate(cdfs))
    return self

  def _count(self, streams: list[np.ndarray], j: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the kept order-j context keys [T_j] (sorted) and counts [T_j, 257]."""
    if j == 0:
      counts = sum((np.bincount(s, minlength=_V) for s in streams), np.zeros(_V, np.int64))
      return np.zeros(1, np.int64), counts[None]
    pairs = self._pairs(streams, j)  # [N] context key * 257 + next symbol
    pairs, pair_counts = np.unique(pairs, return_counts=True)  # [P], [P]
    keys, first = np.unique(pairs // _V, return_index=True)  # [U] sorted context keys
    totals = np.add.reduceat(pair_counts, first) if pairs.size else pair_counts  # [U]
    kept = totals >= self.min_count  # [U]
    index = np.cumsum(kept) - 1  # [U] row among the kept contexts
    context = np.repeat(np.arange(keys.size), np.diff(np.append(first, pairs.size)))  # [P]
    use = kept[context]  # [P]
    cells = index[context[use]] * _V + pairs[use] % _V
    counts = np.bincount(cells, weights=pair_counts[use], minlength=int(kept.sum()) * _V)
    return keys[kept], counts.astype(np.int64).reshape(-1, _V)

  @staticmethod
  def _pairs(streams: list[np.ndarray], j: int) -> np.ndarray:
    """Returns key * 257 + symbol for every symbol with j symbols before it in its stream."""
    if not streams:
      return np.zeros(0, np.int64)
    flat = np.concatenate(streams).astype(np.int64)  # [N]
    starts = np.cumsum([0] + [s.size for s in streams[:-1]])  # [S]
    depth = np.arange(flat.size) - np.repeat(starts, [s.size for s in streams])  # [N]
    pairs = context_keys(flat, j) * _V + flat[j:]  # [N - j]
    return pairs[depth[j:] >= j]

  def _interpolate(self, counts: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """[T, 257] counts and lower-order probabilities -> [T, 257] probabilities."""
    totals = counts.sum(axis=1, keepdims=True)  # [T, 1]
    weights = self.alpha * np.maximum((counts > 0).sum(axis=1, keepdims=True), 1)  # [T, 1]
    probs = lower * weights  # [T, 257]
    probs += counts
    probs /= totals + weights
    return probs

  def _set_tables(self, key_sets: list[np.ndarray], cdf: np.ndarray) -> None:
    if len(key_sets) != self.order + 1 or key_sets[0].tolist() != [0]:
      raise ValueError(f"expected {self.order + 1} key sets starting with [0], "
                       f"got {len(key_sets)}")
    offsets = np.cumsum([0] + [k.size for k in key_sets])
    if cdf.shape != (offsets[-1], base.CDF_WIDTH):
      raise ValueError(f"cdf must be [{offsets[-1]}, {base.CDF_WIDTH}], got {cdf.shape}")
    base.check_freqs(np.diff(cdf, axis=1))
    self._orders = [_Order(k, int(o)) for k, o in zip(key_sets, offsets)]
    self._next = None
    self.cdf = np.ascontiguousarray(cdf, np.int32)
    self.cdf.flags.writeable = False
    params = f"{_FORMAT}:order={self.order}:min_count={self.min_count}:alpha={self.alpha!r}"
    self.fingerprint = table_fingerprint(
        *[k.view(np.int32) for k in key_sets], self.cdf, extra=params)

  def _check_fitted(self):
    if self.cdf is None:
      raise ValueError(f"{self!r} has no tables: call fit() first")

  def rows(self, last: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Table rows for contexts given by their last k symbols.

    Args:
      last: [N] int64 keys of the last min(k, length) symbols.
      lengths: [N] context lengths, capped at k.

    Returns:
      [N] int64 rows of `cdf`: the longest suffix that has a table.
    """
    rows = np.zeros(last.shape, np.int64)  # order 0
    for j in range(1, self.order + 1):
      found, at = self._orders[j].find(last % _V**j)
      found &= lengths >= j
      if not found.any():
        break  # tables are closed under suffixes: no longer context has one either
      np.copyto(rows, at, where=found)
    return rows

  def freqs(self, contexts: Sequence[np.ndarray]) -> np.ndarray:
    """Returns [len(contexts), 257] int32 tables for the symbol after each context."""
    self._check_fitted()
    last = np.zeros(len(contexts), np.int64)
    lengths = np.zeros(len(contexts), np.int64)
    for i, context in enumerate(contexts):
      tail = np.asarray(context, np.int64)[max(len(context) - self.order, 0):]
      lengths[i] = tail.size
      last[i] = int(tail[::-1] @ _V**np.arange(tail.size, dtype=np.int64))
    return np.diff(self.cdf[self.rows(last, lengths)], axis=1).astype(np.int32)

  def lanes(self, num_lanes: int) -> "ContextLanes":
    self._check_fitted()
    return ContextLanes(self, num_lanes)

  def transitions(self) -> np.ndarray:
    """Returns the automaton `next` [T, 257] int32 (built once, then cached)."""
    self._check_fitted()
    if self._next is None:
      self._next = self._build_transitions()
      self._next.flags.writeable = False
    return self._next

  def _build_transitions(self) -> np.ndarray:
    """Builds `next` order by order: a row copies its suffix's row, then links children."""
    nxt = np.zeros((self.num_tables, _V), np.int32)  # [T, 257]
    for j, tables in enumerate(self._orders):
      rows = tables.offset + np.arange(tables.keys.size)  # [T_j]
      if j:
        found, suffixes = self._orders[j - 1].find(tables.keys % _V**(j - 1))
        assert found.all()
        nxt[rows] = nxt[suffixes]
      if j < self.order:
        children = self._orders[j + 1]
        found, prefixes = tables.find(children.keys // _V)
        assert found.all()
        child_rows = children.offset + np.arange(children.keys.size)
        nxt[prefixes, children.keys % _V] = child_rows
    return nxt

  def __repr__(self):
    return (f"ContextModel(order={self.order}, min_count={self.min_count}, "
            f"alpha={self.alpha}, num_tables={self.num_tables}, "
            f"fingerprint={self.fingerprint!r})")


class ContextLanes(base.Lanes):
  """Per-lane automaton states (table rows); `update` is one gather for all lanes."""

  def __init__(self, model: ContextModel, num_lanes: int):
    super().__init__(num_lanes)
    self._model = model
    self._cdf = model.cdf  # [T, 258]
    self._next = model.transitions().reshape(-1)  # [T * 257]
    self._rows = np.zeros(num_lanes, np.int64)  # [L]

  def tables(self) -> tuple[np.ndarray, np.ndarray]:
    return self._cdf, self._rows

  def update(self, symbols, push, reset) -> None:
    push = np.asarray(push, bool)  # [L]
    symbols = np.where(push, symbols, 0)  # [L]
    if symbols.min() < 0 or symbols.max() > constants.EOS:
      raise ValueError(f"pushed symbols must lie in 0..{constants.EOS}, "
                       f"got {symbols.min()}..{symbols.max()}")
    rows = np.where(push, self._next[self._rows * _V + symbols], self._rows)  # [L]
    rows[np.asarray(reset, bool)] = 0
    self._rows = rows

  def __repr__(self):
    return f"ContextLanes(num_lanes={self.num_lanes}, model={self._model!r})"
