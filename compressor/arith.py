"""Renormalising integer arithmetic of AC streams, vectorised over lanes.

(Equal-Info windows use the fixed-resolution arithmetic of `window_arith`.)
The coder keeps, per lane, an interval [low, low + rng) of the code space in
units of 2**-(8 * nbytes + TOP_BITS), where `nbytes` whole bytes of the code
have already been shifted out (as base-256 digits that may still receive a
carry). `rng` stays in [2**RENORM_BITS, 2**TOP_BITS]; `low` stays below
2**(TOP_BITS + 1), so all arithmetic fits in int64.

Subdivision (tiling exactly, so encoder and decoder compute the same integers):
with the odd quantum q = (rng >> PRECISION) | 1, symbol s owns
[low + q * cdf[s], low + q * cdf[s+1]), except the last symbol (EOS), which
owns everything up to low + rng. An odd q keeps neighbouring boundaries off any
common power-of-two grid, so a stream can always end on a straddling cell.

A code of n bits is a *cell* [m, m + 1) * 2**-n. The decoder keeps a symbol
only if its sub-interval contains the whole cell, so the encoder ends a code
after k symbols only where the interval holds a cell that *straddles* a
boundary of the next symbol's subdivision ("Equal-Info windows: the lossless
rule", docs/DESIGN.md, applied to a stream). In lane units a cell is g = 2**t
units wide, t = 8 * nbytes + TOP_BITS - n; t is a multiple of 8 because n is.
"""
import numpy as np

from compressor import constants

TOP_BITS = 56
RENORM_BITS = 48
RENORM_MIN = 1 << RENORM_BITS
LOW_MASK = RENORM_MIN - 1
TOTAL = constants.TOTAL_FREQ
LAST = constants.ALPHABET_SIZE - 1  # EOS owns the remainder of every interval

# Start of a stream: the whole code space [0, 1).
STREAM_RANGE = 1 << TOP_BITS


def quantum(rng):
  """[E] the odd subdivision unit q of each interval (q * (2**14 - 1) < rng)."""
  return (rng >> constants.PRECISION) | 1


def subdivide(low, rng, lo_cum, hi_cum, symbol):
  """Returns the sub-interval (low', rng') of `symbol` given its CDF entries.

  Args:
    low, rng: [E] int64 intervals.
    lo_cum, hi_cum: [E] int64 cdf[symbol] and cdf[symbol + 1].
    symbol: [E] int symbols (EOS takes the remainder of the interval).
  """
  q = quantum(rng)
  lo = q * lo_cum
  hi = np.where(symbol == LAST, rng, q * hi_cum)
  return low + lo, hi - lo


def renorm_steps(rng) -> np.ndarray:
  """[E] number of bytes (0, 1 or 2) to shift out so that rng >= 2**48."""
  return (rng < RENORM_MIN).astype(np.int64) + (rng < (RENORM_MIN >> 8)).astype(np.int64)


def cell_fits(low, rng, t) -> np.ndarray:
  """[E] bool: does [low, low + rng) contain a whole cell of 2**t units?

  t <= 0 means cells no wider than a unit (always fits); t > TOP_BITS never fits.
  """
  tc = np.clip(t, 0, TOP_BITS)
  g = np.left_shift(np.int64(1), tc)
  a = (g - (low & (g - 1))) & (g - 1)
  z = rng - ((low + rng) & (g - 1))
  return (t <= 0) | ((t <= TOP_BITS) & (a + g <= z))


def straddle(low, rng, cdf_rows, t, tries: int = 8):
  """Finds a cell inside [low, low + rng) that straddles the next subdivision.

  Checks the first `tries` boundaries above the first whole cell; a boundary
  on the cell grid does not count. A False answer may be conservative, never
  a True one.

  Args:
    low, rng: [E] int64 intervals.
    cdf_rows: [E, 258] cumulative tables of the symbol after the interval.
    t: [E] int64 cell width exponents (multiples of 8).

  Returns:
    (ok [E] bool, point [E] int64): where ok, `low + point` lies strictly
    inside a straddling cell (the cell that becomes the code).
  """
  valid = (t >= 8) & (t <= TOP_BITS)
  tc = np.clip(t, 8, TOP_BITS)
  g = np.left_shift(np.int64(1), tc)
  a = (g - (low & (g - 1))) & (g - 1)
  z = rng - ((low + rng) & (g - 1))
  valid &= a + g <= z
  q = quantum(rng)
  target = np.minimum(a // q, TOTAL)
  first = (cdf_rows <= target[:, None]).sum(axis=1)  # first s with q * cdf[s] > a
  ok = np.zeros(low.shape, bool)
  point = np.zeros(low.shape, np.int64)
  rows = np.arange(low.shape[0])
  for k in range(tries):
    s = first + k
    inside = s <= LAST
    b = q * cdf_rows[rows, np.minimum(s, LAST)].astype(np.int64)
    hit = valid & ~ok & inside & (b < z) & (((low + b) & (g - 1)) != 0)
    point = np.where(hit, b, point)
    ok |= hit
  return ok, point


def code_bytes(digits: np.ndarray, value: int, t: int, n_bytes: int) -> bytes:
  """Assembles one stream's n-byte code from its digits and the chosen cell.

  Args:
    digits: [nbytes] int64 shifted-out base-256 digits that may hold a carry
      into the previous digit (values below 512).
    value: low + point, a point of the chosen cell in lane units.
    t: the cell exponent; 8 * nbytes + TOP_BITS - t == 8 * n_bytes.
    n_bytes: code length in bytes.

  Returns:
    The code, most significant byte first.
  """
  low_bytes = (digits & 0xFF).astype(np.uint8).tobytes()
  carries = (digits >> 8).astype(np.uint8).tobytes()
  prefix = int.from_bytes(low_bytes, "big") + (int.from_bytes(carries, "big") << 8)
  tail_bytes = n_bytes - digits.size
  code = (prefix << (8 * tail_bytes)) + (int(value) >> int(t))
  if code >> (8 * n_bytes):
    raise AssertionError("code overflow: cell outside [0, 1)")
  return code.to_bytes(n_bytes, "big")
