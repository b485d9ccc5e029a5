"""AC[v] and StaticAC[v]: one arithmetic-coded stream per example (paper §3.3).

The stream is self-delimiting: it ends with a cell that straddles the next
symbol's subdivision, so the decoder stops after exactly the coded symbols,
and its length is a whole number of tokens.
"""
from compressor import constants
from compressor.lane_decoder import StreamDecoder
from compressor.lane_encoder import CodeSpec, LaneEncoder
from compressor.methods.base import (CodingError, Encoded, Method, bytes_to_tokens,
                                     check_max_tokens, require_model, tokens_to_bytes)
from compressor.symbols import SYMBOL_DTYPE, as_symbols



class ACMethod(Method):
  """Arithmetic coding of a whole example with one model context.

  Args:
    model: the probability model (M1 with its context over the whole example).
    token_bits: 8 (v=256) or 16 (v=65k).
    num_lanes: examples coded at once.
  """
  uses_model = True
  name = "ac"

  def __init__(self, model, token_bits: int, num_lanes: int = 1024):
    if token_bits not in constants.V_NAME:
      raise ValueError(f"token_bits must be 8 or 16, got {token_bits}")
    self._check_model(model)
    self.model = model
    self.token_bits = token_bits
    self.vocab_size = 1 << token_bits
    self.num_lanes = num_lanes
    self.spec = f"{self.name}[v={constants.V_NAME[token_bits]}]"

  def _check_model(self, model):
    require_model(self.name, model)

  def encode_batch(self, examples, max_tokens=None) -> list[Encoded]:
    check_max_tokens(max_tokens)
    spec = CodeSpec(window_bits=None, token_bits=self.token_bits,
                    max_bits=None if max_tokens is None else max_tokens * self.token_bits)
    examples = [as_symbols(x) for x in examples]
    lanes = LaneEncoder(self.model, spec, self.num_lanes).encode(examples)
    out = []
    for x, r in zip(examples, lanes):
      if max_tokens is None and r.num_symbols != x.size:
        raise CodingError(f"{self.spec} covered {r.num_symbols} of {x.size} symbols; "
                           "encode with max_tokens to code the rest separately")
      out.append(Encoded(bytes_to_tokens(r.data, self.token_bits), r.num_symbols))
    return out

  def decode_batch(self, token_seqs):
    codes = [tokens_to_bytes(self.check_tokens(t), self.token_bits) for t in token_seqs]
    decoded = StreamDecoder(self.model, self.num_lanes).decode(codes)
    return [d.astype(SYMBOL_DTYPE) for d in decoded]


class StaticACMethod(ACMethod):
  """AC with a static byte unigram model fitted on training data (`UnigramModel`)."""
  name = "static_ac"

  def _check_model(self, model):
    from compressor.models.unigram import UnigramModel  # pylint: disable=import-outside-toplevel
    if not isinstance(model, UnigramModel):
      raise ValueError("static_ac needs a UnigramModel: pass "
                       "model=compressor.models.UnigramModel.fit(training_symbols)")
