"""Decodes many codes at once: each lane decodes one code (window or stream).

A code of n bits is the cell [C, C + 2**-n). A symbol is kept only while its
sub-interval contains the whole cell; the first symbol that does not ends the
code. Windows use `window_arith` directly. Streams run two renormalising
decoders in lockstep, one reading the code padded with zero bits (the cell's
left end), one padded with one bits (its right end): they agree exactly while
the sub-interval holds the whole cell.
"""
import numpy as np

from compressor import arith
from compressor import constants
from compressor import window_arith
from compressor.models.base import ProbabilityModel

_INIT_BYTES = arith.TOP_BITS // 8


class _Decoding:
  """Lanes that take codes from a queue and decode one symbol per step each.

  Subclasses keep the arithmetic state: `start(lanes)` begins the codes just
  assigned to `lanes`, `advance(cdf, live)` returns every lane's symbol and
  which lanes keep it (their sub-interval holds the whole cell), updating the
  state of those lanes only.
  """

  def __init__(self, model, num_codes: int, num_lanes: int):
    n = min(num_lanes, num_codes)
    self.lanes = model.lanes(n)
    self.ids = np.arange(n)
    self.which = np.full(n, -1, np.int64)  # code index per lane (-1: idle)
    self.next_code = 0
    self.buf = np.zeros((n, 64), np.int32)  # [L, capacity] decoded symbols
    self.count = np.zeros(n, np.int64)
    self.results = [None] * num_codes

  def run(self) -> list[np.ndarray]:
    self._load(self.ids)
    while (self.which >= 0).any():
      store, rows = self.lanes.tables()
      cdf = store[np.asarray(rows, np.int64)]  # [L, 258]
      live = self.which >= 0
      sym, keep = self.advance(cdf, live)
      self._append(np.flatnonzero(keep), sym)
      finished = np.flatnonzero(live & ~keep)
      for lane in finished:
        self.results[self.which[lane]] = self.buf[lane, :self.count[lane]].copy()
      self.lanes.update(sym, keep, live & ~keep)
      if finished.size:
        self._load(finished)
    return self.results

  def _load(self, lanes):
    """Assigns the next queued code to each of `lanes` (or idles them)."""
    for lane in lanes:
      if self.next_code < len(self.results):
        self.which[lane] = self.next_code
        self.next_code += 1
      else:
        self.which[lane] = -1
    self.count[lanes] = 0
    self.start(lanes[self.which[lanes] >= 0])

  def _append(self, lanes, sym):
    if lanes.size and self.count[lanes].max() >= self.buf.shape[1]:
      self.buf = np.concatenate([self.buf, np.zeros_like(self.buf)], axis=1)
    self.buf[lanes, self.count[lanes]] = sym[lanes]
    self.count[lanes] += 1

  def start(self, lanes):
    raise NotImplementedError

  def advance(self, cdf, live):
    raise NotImplementedError


class StreamDecoder:
  """Decodes AC stream codes with a probability model, many lanes at once.

  Args:
    model: the probability model the codes were made with.
    num_lanes: codes decoded at once.
  """

  def __init__(self, model: ProbabilityModel, num_lanes: int = 1024):
    if model is None:
      raise ValueError("an arithmetic decoder needs the probability model: pass model=...")
    self.model = model
    self.num_lanes = num_lanes

  def decode(self, codes: list[bytes]) -> list[np.ndarray]:
    """Returns the symbols each code determines ([n_i] int32 arrays, in order)."""
    if not codes:
      return []
    return _StreamDecoding(self.model, codes, self.num_lanes).run()


class _StreamDecoding(_Decoding):
  """Two renormalising decoders per lane: the code padded with 0s and with 1s."""

  def __init__(self, model, codes, num_lanes):
    width = max(len(c) for c in codes) + _INIT_BYTES + 1
    self.code = np.zeros((len(codes), width), np.int64)  # [C, bytes], zero padded
    self.length = np.array([len(c) for c in codes], np.int64)
    for i, c in enumerate(codes):
      self.code[i, :len(c)] = np.frombuffer(c, np.uint8)
    n = min(num_lanes, len(codes))
    self.d0 = np.zeros(n, np.int64)  # code (zero padded) minus low
    self.d1 = np.zeros(n, np.int64)  # code (one padded) minus low
    self.rng = np.zeros(n, np.int64)
    self.read = np.zeros(n, np.int64)  # next code byte per lane
    super().__init__(model, len(codes), num_lanes)

  def _byte(self, lanes, pad):
    """Next code byte of each lane, or `pad` past the code's end."""
    which = self.which[lanes]
    b = self.code[which, np.minimum(self.read[lanes], self.code.shape[1] - 1)]
    return np.where(self.read[lanes] < self.length[which], b, pad)

  def start(self, lanes):
    self.read[lanes] = 0
    self.d0[lanes] = 0
    self.d1[lanes] = 0
    for _ in range(_INIT_BYTES):
      self._shift_in(lanes)
    self.rng[lanes] = arith.STREAM_RANGE

  def _shift_in(self, lanes):
    self.d0[lanes] = (self.d0[lanes] << 8) | self._byte(lanes, 0)
    self.d1[lanes] = (self.d1[lanes] << 8) | self._byte(lanes, 0xFF)
    self.read[lanes] += 1

  def advance(self, cdf, live):
    q = arith.quantum(self.rng)
    t0 = np.minimum(self.d0 // q, constants.TOTAL_FREQ - 1)
    t1 = np.minimum(self.d1 // q, constants.TOTAL_FREQ - 1)
    sym = (cdf <= t0[:, None]).sum(axis=1) - 1
    upper = cdf[self.ids, sym + 1]
    keep = live & (self.d1 < self.rng) & ((sym == arith.LAST) | (t1 < upper))
    lanes = np.flatnonzero(keep)
    s = sym[lanes]
    low, rng = arith.subdivide(np.zeros(lanes.size, np.int64), self.rng[lanes],
                               cdf[lanes, s].astype(np.int64),
                               cdf[lanes, s + 1].astype(np.int64), s)
    self.d0[lanes] -= low
    self.d1[lanes] -= low
    self.rng[lanes] = rng
    for _ in range(2):
      shift = lanes[self.rng[lanes] < arith.RENORM_MIN]
      self.rng[shift] <<= 8
      self._shift_in(shift)
    return sym, keep


class WindowDecoder:
  """Decodes Equal-Info window codes (b bits each, not literal) in lanes.

  Args:
    model: the probability model the windows were made with.
    window_bits: b.
    num_lanes: windows decoded at once.
  """

  def __init__(self, model: ProbabilityModel, window_bits: int, num_lanes: int = 1024):
    if model is None:
      raise ValueError("an arithmetic decoder needs the probability model: pass model=...")
    self.model = model
    self.window_bits = window_bits
    self.num_lanes = num_lanes

  def decode(self, codes: list[int]) -> list[np.ndarray]:
    """Returns the symbols of each window code m (an int below 2**b)."""
    if not codes:
      return []
    return _WindowDecoding(self.model, self.window_bits, codes, self.num_lanes).run()


class _WindowDecoding(_Decoding):
  """Window decoders with docs/DESIGN.md's fixed-resolution arithmetic."""

  def __init__(self, model, window_bits, codes, num_lanes):
    self.dtype = window_arith.dtype_for(window_bits)
    self.start_range = window_arith.start_range(window_bits)
    self.cells = [int(c) << window_arith.G for c in codes]  # cell left ends
    n = min(num_lanes, len(codes))
    self.cell = np.zeros(n, self.dtype)
    self.low = np.zeros(n, self.dtype)
    self.r = np.zeros(n, self.dtype)
    super().__init__(model, len(codes), num_lanes)

  def start(self, lanes):
    for lane in lanes:
      self.cell[lane] = self.cells[self.which[lane]]
    self.low[lanes] = 0
    self.r[lanes] = self.start_range

  def advance(self, cdf, live):
    sym, contained, lo, hi = window_arith.symbol_at(self.low, self.r, self.cell, cdf)
    keep = live & contained
    self.low = np.where(keep, self.low + lo, self.low)
    self.r = np.where(keep, hi - lo, self.r)
    return sym, keep
