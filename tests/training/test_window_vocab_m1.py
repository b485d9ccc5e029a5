"""The window vocabulary of a trained tiny exact M1: the arithmetic coder's tokens, by lookup."""
import numpy as np
import pytest

from compressor import get_method, window_vocab
from compressor.symbols import symbols_from_text
from tests.window_vocab_checks import SPECS, adversarial_streams, assert_same_coding
from training.m1 import float_m1 as m1_lib

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exact_m1(trained_m1):
  model = m1_lib.load(str(trained_m1))
  assert model.exact
  return model


@pytest.fixture(scope="module")
def vocab(exact_m1):
  return window_vocab.build(exact_m1)


@pytest.fixture(scope="module")
def examples(webtext_dir, validation_docs):
  """Every example of 10,240 symbols cut from the validation split."""
  from tests.conftest import read_docs  # pylint: disable=import-outside-toplevel
  stream = np.concatenate([symbols_from_text(d) for d in read_docs(webtext_dir, "validation")])
  return [stream[i:i + 10_240] for i in range(0, stream.size, 10_240)]


def test_the_vocabulary_is_the_same_file_whatever_the_lanes(exact_m1, vocab):
  assert vocab.m1_fingerprint == exact_m1.fingerprint
  assert window_vocab.build(exact_m1, batch=200).to_bytes() == vocab.to_bytes()


def test_every_validation_example_gets_the_arithmetic_coders_windows(exact_m1, vocab, examples):
  """All of the validation split, every symbol coded (v=65k: a token is a window)."""
  spec = "equal_info_ac[b=16,v=65k]"
  want = get_method(spec, exact_m1).encode_batch(examples)
  got = get_method(spec, None, vocabulary=vocab).encode_batch(examples)
  for i, (a, b) in enumerate(zip(want, got, strict=True)):
    assert np.array_equal(a.tokens, b.tokens), i
    assert (a.num_symbols, a.num_windows, a.num_literal_windows) == \
        (b.num_symbols, b.num_windows, b.num_literal_windows), i


@pytest.mark.parametrize("spec", SPECS)
def test_token_widths_limits_packings_and_adversarial_streams(exact_m1, vocab, examples, spec):
  """max_tokens None and 512, both packings (`assert_same_coding`), on 8 validation
  examples and the adversarial streams."""
  assert_same_coding(exact_m1, vocab, examples[:8] + adversarial_streams(), spec)


def test_lookup_decodes_all_codes_as_m1_does(exact_m1, vocab):
  codes = list(range(1 << 16))
  by_m1 = get_method("equal_info_ac[b=16,v=65k]", exact_m1)
  by_vocab = get_method("equal_info_ac[b=16,v=65k]", None, vocabulary=vocab)
  for code, want, got in zip(codes, by_m1.decode_windows(codes), by_vocab.decode_windows(codes)):
    assert np.array_equal(want, got), code
