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


class _StreamDecoding:
  """Lane state while decoding a list of stream codes."""

  def __init__(self, model, codes, num_lanes):
    self.start_range = arith.STREAM_RANGE
    width = max(len(c) for c in codes) + _INIT_BYTES + 1
    self.code = np.zeros((len(codes), width), np.int64)  # [C, bytes], zero padded
    self.length = np.array([len(c) for c in codes], np.int64)
    for i, c in enumerate(codes):
      self.code[i, :len(c)] = np.frombuffer(c, np.uint8)
    n = min(num_lanes, len(codes))
    self.lanes = model.lanes(n)
    self.lane_ids = np.arange(n)
    self.which = np.full(n, -1, np.int64)  # code index per lane (-1: idle)
    self.next_code = 0
    self.d0 = np.zeros(n, np.int64)  # code (zero padded) minus low
    self.d1 = np.zeros(n, np.int64)  # code (one padded) minus low
    self.rng = np.zeros(n, np.int64)
    self.read = np.zeros(n, np.int64)  # next code byte per lane
    self.buf = np.zeros((n, 256), np.int32)  # [L, capacity] decoded symbols
    self.count = np.zeros(n, np.int64)
    self.results = [None] * len(codes)

  def run(self) -> list[np.ndarray]:
    self._load(self.lane_ids)
    while (self.which >= 0).any():
      self._step()
    return self.results

  def _byte(self, lanes, pad):
    """Next code byte of each lane, or `pad` past the code's end."""
    which = self.which[lanes]
    b = self.code[which, np.minimum(self.read[lanes], self.code.shape[1] - 1)]
    return np.where(self.read[lanes] < self.length[which], b, pad)

  def _load(self, lanes):
    """Starts the next queued code in each of `lanes` (or idles them)."""
    for lane in lanes:
      if self.next_code < len(self.results):
        self.which[lane] = self.next_code
        self.next_code += 1
      else:
        self.which[lane] = -1
    live = lanes[self.which[lanes] >= 0]
    self.read[live] = 0
    self.d0[live] = 0
    self.d1[live] = 0
    for _ in range(_INIT_BYTES):
      self.d0[live] = (self.d0[live] << 8) | self._byte(live, 0)
      self.d1[live] = (self.d1[live] << 8) | self._byte(live, 0xFF)
      self.read[live] += 1
    self.rng[live] = self.start_range
    self.count[live] = 0

  def _step(self):
    store, rows = self.lanes.tables()
    cdf = store[np.asarray(rows, np.int64)]  # [L, 258]
    q = arith.quantum(self.rng)
    t0 = np.minimum(self.d0 // q, constants.TOTAL_FREQ - 1)
    t1 = np.minimum(self.d1 // q, constants.TOTAL_FREQ - 1)
    sym = (cdf <= t0[:, None]).sum(axis=1) - 1
    upper = cdf[self.lane_ids, sym + 1]
    live = self.which >= 0
    agree = live & (self.d1 < self.rng) & ((sym == arith.LAST) | (t1 < upper))
    self._advance(np.flatnonzero(agree), sym, cdf)
    finished = np.flatnonzero(live & ~agree)
    for lane in finished:
      self.results[self.which[lane]] = self.buf[lane, :self.count[lane]].copy()
    self.lanes.update(sym, agree, live & ~agree)
    if finished.size:
      self._load(finished)

  def _advance(self, lanes, sym, cdf):
    """Consumes the agreed symbol in `lanes` and renormalises."""
    if not lanes.size:
      return
    s = sym[lanes]
    low, rng = arith.subdivide(np.zeros(lanes.size, np.int64), self.rng[lanes],
                               cdf[lanes, s].astype(np.int64),
                               cdf[lanes, s + 1].astype(np.int64), s)
    self.d0[lanes] -= low
    self.d1[lanes] -= low
    self.rng[lanes] = rng
    for _ in range(2):
      shift = lanes[self.rng[lanes] < arith.RENORM_MIN]
      if not shift.size:
        break
      self.rng[shift] <<= 8
      self.d0[shift] = (self.d0[shift] << 8) | self._byte(shift, 0)
      self.d1[shift] = (self.d1[shift] << 8) | self._byte(shift, 0xFF)
      self.read[shift] += 1
    full = lanes[self.count[lanes] >= self.buf.shape[1]]
    if full.size:
      self.buf = np.concatenate([self.buf, np.zeros_like(self.buf)], axis=1)
    self.buf[lanes, self.count[lanes]] = s
    self.count[lanes] += 1


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


class _WindowDecoding:
  """Lane state while decoding window codes with DESIGN.md's arithmetic."""

  def __init__(self, model, window_bits, codes, num_lanes):
    self.dtype = window_arith.dtype_for(window_bits)
    self.start_range = window_arith.start_range(window_bits)
    self.cells = [int(c) << window_arith.G for c in codes]  # cell left ends
    n = min(num_lanes, len(codes))
    self.lanes = model.lanes(n)
    self.ids = np.arange(n)
    self.which = np.full(n, -1, np.int64)
    self.next_code = 0
    self.cell = np.zeros(n, self.dtype)
    self.low = np.zeros(n, self.dtype)
    self.r = np.zeros(n, self.dtype)
    self.buf = np.zeros((n, 64), np.int32)  # [L, capacity] decoded symbols
    self.count = np.zeros(n, np.int64)
    self.results = [None] * len(codes)

  def run(self) -> list[np.ndarray]:
    self._load(self.ids)
    while (self.which >= 0).any():
      self._step()
    return self.results

  def _load(self, lanes):
    for lane in lanes:
      if self.next_code < len(self.cells):
        self.which[lane] = self.next_code
        self.cell[lane] = self.cells[self.next_code]
        self.next_code += 1
      else:
        self.which[lane] = -1
    self.low[lanes] = 0
    self.r[lanes] = self.start_range
    self.count[lanes] = 0

  def _step(self):
    store, rows = self.lanes.tables()
    cdf = store[np.asarray(rows, np.int64)]  # [L, 258]
    sym, contained, lo, hi = window_arith.symbol_at(self.low, self.r, self.cell, cdf)
    live = self.which >= 0
    keep = live & contained
    self.low = np.where(keep, self.low + lo, self.low)
    self.r = np.where(keep, hi - lo, self.r)
    kept = np.flatnonzero(keep)
    if kept.size and self.count[kept].max() >= self.buf.shape[1]:
      self.buf = np.concatenate([self.buf, np.zeros_like(self.buf)], axis=1)
    self.buf[kept, self.count[kept]] = sym[kept]
    self.count[kept] += 1
    finished = np.flatnonzero(live & ~contained)
    for lane in finished:
      self.results[self.which[lane]] = self.buf[lane, :self.count[lane]].copy()
    self.lanes.update(sym, keep, live & ~contained)
    if finished.size:
      self._load(finished)
