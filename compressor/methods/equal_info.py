"""EqualInfoAC[b, v]: arithmetic coding in windows of exactly b bits (paper §3.3).

M1's context and the coder restart at every window, so each window decodes on
its own. eqinfo's window rule is lossless by construction (docs/DESIGN.md): a window
ends only where its b-bit cell straddles the next symbol's subdivision, and a
window with no such prefix holds one symbol in the literal region.

For b=16 the windows of an M1 are a static vocabulary (`window_vocab`): given
one, the method encodes by longest match and decodes by lookup
(`window_tokenizer`), with the arithmetic coder's tokens bit for bit and no M1.
"""
import numpy as np

from compressor import constants
from compressor import window_arith
from compressor.lane_decoder import WindowDecoder
from compressor.lane_encoder import CodeSpec, LaneEncoder
from compressor.methods.base import (Encoded, Method, bytes_to_tokens, check_max_tokens,
                                     require_model, tokens_to_bytes)
from compressor.symbols import SYMBOL_DTYPE, as_symbols



class EqualInfoACMethod(Method):
  """Equal-Info windows of `window_bits` bits, cut into `token_bits`-bit tokens.

  Args:
    model: the probability model (M1, or a ContextModel stand-in).
    window_bits: b, the exact size of every window in bits.
    token_bits: 8 (v=256) or 16 (v=65k); windows and tokens need not align.
    num_lanes: examples (encoding) or windows (decoding) coded at once.
    vocabulary: the `WindowVocabulary` of `model` (b=16 only): code by lookup;
      `model` may then be None.
  """
  uses_model = True

  def __init__(self, model, window_bits: int, token_bits: int, num_lanes: int = 1024,
               vocabulary=None):
    if window_bits not in constants.WINDOW_BITS:
      raise ValueError(f"window_bits must be one of {constants.WINDOW_BITS}, got {window_bits}")
    if token_bits not in constants.V_NAME:
      raise ValueError(f"token_bits must be 8 or 16, got {token_bits}")
    self.tokenizer = None
    if vocabulary is None:
      require_model("equal_info_ac", model)
    else:
      check_vocabulary(vocabulary, window_bits, model)
      from compressor import window_tokenizer  # pylint: disable=import-outside-toplevel
      self.tokenizer = window_tokenizer.WindowTokenizer(vocabulary)
    self.model = model
    self.window_bits = window_bits
    self.token_bits = token_bits
    self.vocab_size = 1 << token_bits
    self.num_lanes = num_lanes
    self.spec = f"equal_info_ac[b={window_bits},v={constants.V_NAME[token_bits]}]"

  @property
  def vocabulary(self):
    """The `WindowVocabulary` this method codes with, or None (arithmetic coding)."""
    return None if self.tokenizer is None else self.tokenizer.vocab

  @property
  def coder(self) -> str:
    """"vocabulary" (longest match and lookup) or "arithmetic" (M1 per symbol)."""
    return "arithmetic" if self.tokenizer is None else "vocabulary"

  def max_windows(self, max_tokens: int | None) -> int | None:
    """Whole windows that fit in `max_tokens` tokens."""
    if max_tokens is None:
      return None
    return max_tokens * self.token_bits // self.window_bits

  def encode_batch(self, examples, max_tokens=None) -> list[Encoded]:
    check_max_tokens(max_tokens)
    spec = CodeSpec(window_bits=self.window_bits, token_bits=self.token_bits,
                    max_codes=self.max_windows(max_tokens))
    examples = [as_symbols(x) for x in examples]
    if self.tokenizer is not None:
      return [Encoded(bytes_to_tokens(_window_bytes(codes), self.token_bits), n, codes.size, lit)
              for codes, n, lit in self.tokenizer.encode(examples, spec.max_codes)]
    lanes = LaneEncoder(self.model, spec, self.num_lanes).encode(examples)
    return [Encoded(bytes_to_tokens(r.data, self.token_bits), r.num_symbols, r.num_codes,
                    r.num_literals) for r in lanes]

  def windows(self, tokens) -> list[int]:
    """Splits tokens into the b-bit window codes they hold (a partial tail is ignored)."""
    data = tokens_to_bytes(self.check_tokens(tokens), self.token_bits)
    size = self.window_bits // 8
    return [int.from_bytes(data[i:i + size], "big")
            for i in range(0, len(data) - size + 1, size)]

  def decode_windows(self, codes: list[int]) -> list[np.ndarray]:
    """Decodes each b-bit window code on its own; returns its symbols."""
    if self.tokenizer is not None:
      return [self.tokenizer.decode(np.array([c])) for c in codes]
    out = [None] * len(codes)
    normal = []
    for i, code in enumerate(codes):
      literal = window_arith.literal_symbol(self.window_bits, code)
      if literal is None:
        normal.append(i)
      else:
        out[i] = np.array([literal], SYMBOL_DTYPE)
    decoder = WindowDecoder(self.model, self.window_bits, self.num_lanes)
    for i, symbols in zip(normal, decoder.decode([codes[i] for i in normal])):
      out[i] = symbols.astype(SYMBOL_DTYPE)
    return out

  def decode_batch(self, token_seqs):
    if self.tokenizer is not None:
      return [self.tokenizer.decode(np.array(self.windows(t), np.int64)) for t in token_seqs]
    per_seq = [self.windows(t) for t in token_seqs]
    flat = self.decode_windows([c for codes in per_seq for c in codes])
    out, at = [], 0
    for codes in per_seq:
      parts = flat[at:at + len(codes)]
      at += len(codes)
      out.append(np.concatenate(parts) if parts else np.zeros(0, SYMBOL_DTYPE))
    return out


def _window_bytes(codes: np.ndarray) -> bytes:
  """[W] 16-bit window codes -> their big-endian bytes."""
  return np.asarray(codes, ">u2").tobytes()


def check_vocabulary(vocabulary, window_bits: int, model=None) -> None:
  """Checks that a window vocabulary fits the method and the model.

  Raises:
    ValueError: another window size, coder version or M1 than the one given.
  """
  if vocabulary.window_bits != window_bits:
    raise ValueError(f"the window vocabulary is for b={vocabulary.window_bits}, not "
                     f"b={window_bits}; build one for this method (eqinfo build-vocab)")
  if vocabulary.meta["coder_version"] != constants.CODER_VERSION:
    raise ValueError(f"the window vocabulary was built by coder "
                     f"{vocabulary.meta['coder_version']}, this is {constants.CODER_VERSION}; "
                     f"rebuild it (eqinfo build-vocab)")
  mine = str(getattr(model, "fingerprint", "") or "") if model is not None else ""
  if mine and mine != vocabulary.m1_fingerprint:
    raise ValueError(f"the window vocabulary was built from M1 {vocabulary.m1_fingerprint}, "
                     f"not from this M1 ({mine}); rebuild it with this M1 (eqinfo build-vocab)")
