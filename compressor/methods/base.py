"""The method interface: symbols -> M2 tokens -> symbols."""
import abc
import dataclasses
from typing import Sequence

import numpy as np

from compressor import symbols as symbols_lib

TOKEN_DTYPE = np.int32


class CodingError(RuntimeError):
  """An example the method cannot code; deterministic, so retrying cannot help."""


@dataclasses.dataclass(frozen=True)
class Encoded:
  """The result of coding one example.

  Attributes:
    tokens: [num_tokens] int32 ids below the method's vocab_size.
    num_symbols: how many leading input symbols the tokens cover.
    num_windows: Equal-Info windows in `tokens` (0 for other methods).
    num_literal_windows: windows that hold one raw symbol (literal escape).
  """
  tokens: np.ndarray
  num_symbols: int
  num_windows: int = 0
  num_literal_windows: int = 0

  def __repr__(self):
    return (f"Encoded(num_tokens={self.tokens.size}, num_symbols={self.num_symbols}, "
            f"num_windows={self.num_windows}, num_literal_windows={self.num_literal_windows})")


class Method(abc.ABC):
  """A compression method of the paper, addressed by its spec string."""

  #: The paper-style name this method was built from, e.g. "equal_info_ac[b=16,v=65k]".
  spec: str
  #: Number of distinct M2 token ids.
  vocab_size: int
  #: Bits a token takes where they are fixed: the chunk width of bitstream methods (8 or
  #: 16), ceil(log2(vocab_size)) for SentencePiece; None for bytes (a token counts as a byte).
  token_bits: int | None = None
  #: Whether coding runs a probability model (M1 FLOPs count towards FLOPs/byte).
  uses_model: bool = False

  def encode(self, symbols, max_tokens: int | None = None) -> Encoded:
    """Codes one example; see `encode_batch`."""
    return self.encode_batch([symbols], max_tokens)[0]

  def encode_batch(self, examples: Sequence[np.ndarray],
                   max_tokens: int | None = None) -> list[Encoded]:
    """Codes examples independently (bitstream methods run them in lanes).

    Args:
      examples: symbol streams (values 0..256).
      max_tokens: stop at the last whole window / longest prefix that fits in
        this many tokens; None codes every symbol.

    Returns:
      One `Encoded` per example.
    """
    check_max_tokens(max_tokens)
    return [self._encode_one(symbols_lib.as_symbols(x), max_tokens) for x in examples]

  def _encode_one(self, symbols: np.ndarray, max_tokens: int | None) -> Encoded:
    raise NotImplementedError

  def decode(self, tokens) -> np.ndarray:
    """Returns exactly the symbols that `tokens` determine (never raises on valid ids)."""
    return self.decode_batch([tokens])[0]

  def decode_batch(self, token_seqs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Decodes token sequences independently."""
    return [self._decode_one(self.check_tokens(t)) for t in token_seqs]

  def _decode_one(self, tokens: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def check_tokens(self, tokens) -> np.ndarray:
    """Validates token ids.

    Raises:
      ValueError: if an id lies outside 0..vocab_size-1.
    """
    arr = np.asarray(tokens)
    if arr.ndim != 1:
      raise ValueError(f"tokens must be a 1-D array, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
      raise ValueError(f"{self.spec}: token ids must lie in 0..{self.vocab_size - 1}, "
                       f"got {int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.int64, copy=False)

  def __repr__(self):
    return f"{type(self).__name__}({self.spec!r}, vocab_size={self.vocab_size})"


def check_max_tokens(max_tokens: int | None) -> None:
  """Raises ValueError unless `max_tokens` is None or >= 1."""
  if max_tokens is not None and max_tokens < 1:
    raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")


def require_model(spec_name: str, model) -> None:
  """Raises ValueError, saying what to pass, if a model-based method got no model."""
  if model is None:
    raise ValueError(f"{spec_name} needs a probability model: pass model= (an M1 from "
                     "training.m1.float_m1.load, or "
                     "compressor.models.ContextModel(order=3).fit(...))")


def bytes_to_tokens(data: bytes, token_bits: int) -> np.ndarray:
  """Chunks a byte string into tokens, most significant bit first (zero-padded)."""
  raw = np.frombuffer(data, np.uint8)
  if token_bits == 8:
    return raw.astype(TOKEN_DTYPE)
  if token_bits == 16:
    if raw.size % 2:
      raw = np.append(raw, np.uint8(0))
    return (raw[0::2].astype(TOKEN_DTYPE) << 8) | raw[1::2]
  raise ValueError(f"token_bits must be 8 or 16, got {token_bits}")


def tokens_to_bytes(tokens: np.ndarray, token_bits: int) -> bytes:
  """Inverse of `bytes_to_tokens` (padding byte included)."""
  tokens = np.asarray(tokens, np.int64)
  if token_bits == 8:
    return tokens.astype(np.uint8).tobytes()
  if token_bits == 16:
    out = np.empty(tokens.size * 2, np.uint8)
    out[0::2] = tokens >> 8
    out[1::2] = tokens & 0xFF
    return out.tobytes()
  raise ValueError(f"token_bits must be 8 or 16, got {token_bits}")
