"""The Bytes baseline (paper Table 2): M2 reads the raw symbols, EOS included."""
import numpy as np

from compressor import constants
from compressor import symbols as symbols_lib
from compressor.methods import base


class BytesMethod(base.Method):
  """Tokens are the symbols themselves: 256 byte values and EOS (vocab 257)."""

  spec = "bytes"
  vocab_size = constants.ALPHABET_SIZE

  def _encode_one(self, symbols: np.ndarray, max_tokens: int | None) -> base.Encoded:
    """Returns the first `max_tokens` symbols (all of them for None) as tokens."""
    kept = symbols if max_tokens is None else symbols[:max_tokens]  # [N]
    return base.Encoded(kept.astype(base.TOKEN_DTYPE), int(kept.size))

  def _decode_one(self, tokens: np.ndarray) -> np.ndarray:
    return tokens.astype(symbols_lib.SYMBOL_DTYPE)

  def __repr__(self):
    return "BytesMethod()"
