"""The window vocabulary of a trained tiny exact M1: the arithmetic coder's tokens, by lookup."""
import numpy as np
import pytest

from compressor import get_method, window_vocab
from compressor.symbols import symbols_from_text
from training import m1 as m1_lib

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exact_m1(trained_m1):
  model = m1_lib.load(str(trained_m1))
  assert model.exact
  return model


@pytest.fixture(scope="module")
def vocab(exact_m1):
  return window_vocab.build(exact_m1)


def test_the_vocabulary_is_the_same_file_whatever_the_lanes(exact_m1, vocab):
  assert vocab.m1_fingerprint == exact_m1.fingerprint
  assert window_vocab.build(exact_m1, batch=200).to_bytes() == vocab.to_bytes()


@pytest.mark.parametrize("spec", ["equal_info_ac[b=16,v=256]", "equal_info_ac[b=16,v=65k]"])
def test_vocabulary_tokens_are_the_arithmetic_coders(exact_m1, vocab, validation_docs, spec):
  stream = np.concatenate([symbols_from_text(d) for d in validation_docs])
  examples = [stream[i:i + 10_240] for i in range(0, 12 * 10_240, 10_240)]
  by_m1, by_vocab = get_method(spec, exact_m1), get_method(spec, None, vocabulary=vocab)
  for max_tokens in (None, 512):
    want = by_m1.encode_batch(examples, max_tokens)
    got = by_vocab.encode_batch(examples, max_tokens)
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
      assert np.array_equal(a.tokens, b.tokens), (max_tokens, i)
      assert (a.num_symbols, a.num_windows, a.num_literal_windows) == \
          (b.num_symbols, b.num_windows, b.num_literal_windows)


def test_lookup_decodes_all_codes_as_m1_does(exact_m1, vocab):
  codes = list(range(1 << 16))
  by_m1 = get_method("equal_info_ac[b=16,v=65k]", exact_m1)
  by_vocab = get_method("equal_info_ac[b=16,v=65k]", None, vocabulary=vocab)
  for code, want, got in zip(codes, by_m1.decode_windows(codes), by_vocab.decode_windows(codes)):
    assert np.array_equal(want, got), code
