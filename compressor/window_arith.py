"""Equal-Info window arithmetic, exactly as docs/DESIGN.md states it, vectorised over lanes.

A window of b bits works in integer units of 2**-(b + G) of [0, 1),
G = GUARD_BITS. Its interval [L, L + R) starts as the normal region (all of
[0, 1) but the literal region) and symbol s owns
[L + floor(R * cdf[s] / 2**PRECISION), L + floor(R * cdf[s + 1] / 2**PRECISION)),
so the parts tile the interval exactly. The code is one b-bit value m, the
cell [m * 2**G, (m + 1) * 2**G).

Integers have b + G + PRECISION bits at most: int64 for b <= 32, Python
integers in numpy object arrays above (same code, exact either way).
"""
import numpy as np

from compressor import constants

G = constants.GUARD_BITS
CELL = 1 << G
PRECISION = constants.PRECISION
LITERAL_BASE = (1 << 16) - constants.LITERAL_CELLS


def dtype_for(window_bits: int):
  """int64 while R * cdf fits in 63 bits, else object (Python integers)."""
  return np.int64 if window_bits + G + PRECISION <= 62 else object


def start_range(window_bits: int) -> int:
  """R of an empty window: the normal region [0, LITERAL_BASE / 2**16)."""
  return LITERAL_BASE << (window_bits + G - 16)


def literal_code(window_bits: int, symbol: int) -> int:
  """The b-bit code of a literal window holding `symbol`."""
  return (LITERAL_BASE + symbol) << (window_bits - 16)


def literal_symbol(window_bits: int, code: int) -> int | None:
  """The symbol of a literal window code, or None for a normal window."""
  top = code >> (window_bits - 16)
  return top - LITERAL_BASE if top >= LITERAL_BASE else None


def split(r, cum):
  """Offset floor(R * cum / 2**PRECISION) of a boundary from L."""
  return (r * cum) >> PRECISION


def cell_fits(low, r) -> np.ndarray:
  """[E] bool: does [L, L + R) contain a whole cell?"""
  a = (-low) % CELL
  z = r - ((low + r) % CELL)
  return np.asarray(a + CELL <= z, bool)


def straddle(low, r, cdf_rows, tries: int = 2):
  """Finds a cell in [L, L + R) that straddles the next symbol's subdivision.

  Args:
    low, r: [E] window intervals.
    cdf_rows: [E, 258] int cumulative tables of the next symbol.
    tries: boundaries checked above the first whole cell (False is conservative).

  Returns:
    (ok [E] bool, point [E]): where ok, L + point lies strictly inside a
    straddling cell, so the window's code is (L + point) >> G.
  """
  a = (-low) % CELL
  z = r - ((low + r) % CELL)
  valid = np.asarray(a + CELL <= z, bool)
  # First s whose boundary offset exceeds a: R * cdf[s] >= (a + 1) * 2**PRECISION.
  target = np.minimum(((a + 1) * (1 << PRECISION) + r - 1) // r, constants.TOTAL_FREQ + 1)
  target = np.asarray(target, np.int64)
  first = (cdf_rows < target[:, None]).sum(axis=1)
  last = constants.ALPHABET_SIZE - 1
  ok = np.zeros(len(low), bool)
  point = np.zeros(len(low), low.dtype)
  rows = np.arange(len(low))
  for k in range(tries):
    s = first + k
    b = split(r, cdf_rows[rows, np.minimum(s, last)].astype(np.int64))
    hit = valid & ~ok & (s <= last) & np.asarray(b < z, bool) & np.asarray((low + b) % CELL != 0, bool)
    point = np.where(hit, b, point)
    ok |= hit
  return ok, point


def symbol_at(low, r, cell_left, cdf_rows):
  """Decoder: the symbol whose sub-interval holds the cell's left end, and whether
  that sub-interval holds the whole cell.

  Returns:
    (symbol [E] int64, contained [E] bool, lo [E], hi [E]) with lo/hi the
    symbol's boundary offsets from L.
  """
  offset = cell_left - low
  target = np.asarray(((offset + 1) * (1 << PRECISION) - 1) // r, np.int64)
  sym = (cdf_rows <= target[:, None]).sum(axis=1) - 1
  rows = np.arange(len(low))
  lo = split(r, cdf_rows[rows, sym].astype(np.int64))
  hi = split(r, cdf_rows[rows, sym + 1].astype(np.int64))
  contained = np.asarray(offset + CELL <= hi, bool)
  return sym, contained, lo, hi
