"""The GZip baseline (paper §3.3, Table 2): zlib's default level, gzip header and footer kept.

Symbols are serialised with `symbols.symbols_to_bytes` (EOS and 0xFF escaped),
compressed as one gzip member with mtime 0 (so the same symbols always give the
same tokens), and the output bytes are chunked into 8- or 16-bit tokens.
"""
import zlib

import numpy as np

from compressor import constants
from compressor import symbols as symbols_lib
from compressor.methods import base

_GZIP_WBITS = 31  # 16 + 15: gzip header and footer, 32 KB window
#: Prefix lengths past the binary search's boundary that are also tried, since
#: gzip output need not grow with every added symbol.
SLACK_SYMBOLS = 64


def deflate(data: bytes) -> bytes:
  """Returns one gzip member of `data` at zlib's default level (mtime 0, no name)."""
  compressor = zlib.compressobj(level=zlib.Z_DEFAULT_COMPRESSION, wbits=_GZIP_WBITS)
  return compressor.compress(data) + compressor.flush()


def gzip_bytes(symbols: np.ndarray) -> bytes:
  """Returns the gzip member of the serialised symbols."""
  return deflate(symbols_lib.symbols_to_bytes(symbols))


def gunzip_prefix(data: bytes) -> bytes:
  """Decompresses one gzip member, returning whatever decodes before any error.

  Truncated input, garbage and bad checksums never raise: the output is the
  bytes that inflate produced before it stopped. Bytes after the member are
  ignored.
  """
  decompressor = zlib.decompressobj(wbits=_GZIP_WBITS)
  try:
    return decompressor.decompress(data)
  except zlib.error:
    pass
  decompressor, out = zlib.decompressobj(wbits=_GZIP_WBITS), []
  for i in range(len(data)):  # byte by byte, to keep the output made before the error
    try:
      out.append(decompressor.decompress(data[i:i + 1]))
    except zlib.error:
      break
    if decompressor.eof:
      break
  return b"".join(out)


class GZipMethod(base.Method):
  """GZip[v]: gzip output bytes as 8-bit (v=256) or 16-bit (v=65k) tokens."""

  def __init__(self, token_bits: int = 8):
    """Creates GZip[v=256] or GZip[v=65k].

    Args:
      token_bits: 8 (v=256) or 16 (v=65k).

    Raises:
      ValueError: for any other width.
    """
    if token_bits not in constants.V_NAME:
      raise ValueError(f"token_bits must be one of {sorted(constants.V_NAME)}, got {token_bits!r}")
    self.token_bits = token_bits
    self.vocab_size = 1 << token_bits
    self.spec = f"gzip[v={constants.V_NAME[token_bits]}]"

  def num_tokens(self, symbols: np.ndarray) -> int:
    """Tokens that gzip of `symbols` takes (the last one zero-padded)."""
    return self._tokens_for(len(gzip_bytes(symbols)))

  def _tokens_for(self, num_bytes: int) -> int:
    return -(-8 * num_bytes // self.token_bits)

  def longest_prefix(self, symbols: np.ndarray, max_tokens: int) -> int:
    """The longest prefix length whose gzip output fits in `max_tokens` tokens.

    A binary search finds n with prefix n fitting and n + 1 not; prefixes up
    to `SLACK_SYMBOLS` longer are then tried too, and the longest that fits is
    kept. Returns -1 when not even the empty stream fits.
    """
    raw = symbols_lib.symbols_to_bytes(symbols)
    ends = np.concatenate([[0], np.cumsum(1 + (symbols >= 0xFF))])  # [N + 1] bytes per prefix
    assert ends[-1] == len(raw), "symbols_to_bytes must escape exactly 0xFF and EOS"

    def fits(n: int) -> bool:
      return self._tokens_for(len(deflate(raw[:ends[n]]))) <= max_tokens

    if fits(symbols.size):
      return int(symbols.size)
    if not fits(0):
      return -1
    lo, hi = 0, int(symbols.size)  # invariant: lo fits, hi does not
    while hi - lo > 1:
      mid = (lo + hi) // 2
      lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    for n in range(hi + 1, min(hi + SLACK_SYMBOLS, symbols.size)):
      if fits(n):
        lo = n
    return lo

  def _encode_one(self, symbols: np.ndarray, max_tokens: int | None) -> base.Encoded:
    """Codes all symbols, or the longest prefix that fits in `max_tokens` tokens.

    When not even the empty stream fits (gzip needs 20 bytes), the result has
    no tokens and covers no symbols.
    """
    n = symbols.size if max_tokens is None else self.longest_prefix(symbols, max_tokens)
    if n < 0:
      return base.Encoded(np.zeros(0, base.TOKEN_DTYPE), 0)
    tokens = base.bytes_to_tokens(gzip_bytes(symbols[:n]), self.token_bits)
    return base.Encoded(tokens, int(n))

  def _decode_one(self, tokens: np.ndarray) -> np.ndarray:
    data = gunzip_prefix(base.tokens_to_bytes(tokens, self.token_bits))
    return symbols_lib.symbols_from_bytes(data)

  def __repr__(self):
    return f"GZipMethod(token_bits={self.token_bits})"
