"""Checks shared by the window vocabulary's tests: both coders give the same records."""
import numpy as np

from compressor import get_method, packing
from compressor.symbols import symbols_from_text

SPECS = ("equal_info_ac[b=16,v=256]", "equal_info_ac[b=16,v=65k]")


def pydoc_streams() -> list[np.ndarray]:
  from pydoc_data import topics  # pylint: disable=import-outside-toplevel
  return [symbols_from_text(topics.topics[k]) for k in sorted(topics.topics)]


def adversarial_streams() -> list[np.ndarray]:
  rng = np.random.default_rng(0)
  return [np.zeros(0, np.int32), np.full(3000, 97, np.int32), np.full(2000, 0, np.int32),
          np.arange(257, dtype=np.int32), rng.integers(0, 257, 4000).astype(np.int32),
          np.full(600, 256, np.int32), np.tile(np.array([256, 10], np.int32), 300)]


def cut(streams: list[np.ndarray], length: int = 10_240) -> list[np.ndarray]:
  stream = np.concatenate(streams)
  return [stream[i:i + length] for i in range(0, stream.size, length)]


def assert_same_coding(model, vocab, examples, spec):
  """Tokens, counts and packed records of both coders are equal; lookup decodes them."""
  by_arith = get_method(spec, model)
  by_vocab = get_method(spec, None, vocabulary=vocab)
  assert by_vocab.coder == "vocabulary" and by_arith.coder == "arithmetic"
  for max_tokens in (None, 512):
    arith = by_arith.encode_batch(examples, max_tokens)
    mine = by_vocab.encode_batch(examples, max_tokens)
    for i, (a, b) in enumerate(zip(arith, mine, strict=True)):
      assert np.array_equal(a.tokens, b.tokens), (spec, max_tokens, i)
      assert (a.num_symbols, a.num_windows, a.num_literal_windows) == \
          (b.num_symbols, b.num_windows, b.num_literal_windows), (spec, max_tokens, i)
    for got, a, x in zip(by_vocab.decode_batch([a.tokens for a in arith]), arith, examples):
      assert np.array_equal(got, x[:a.num_symbols])
  for policy in packing.PACKING_POLICIES:
    arith = packing.pack(by_arith, examples, 512, policy)
    mine = packing.pack(by_vocab, examples, 512, policy)
    assert [(r.example_index, r.piece, r.offset, r.num_bytes, r.num_windows) for r in arith] == \
        [(r.example_index, r.piece, r.offset, r.num_bytes, r.num_windows) for r in mine]
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(arith, mine))
