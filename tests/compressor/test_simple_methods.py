"""Round-trip and prefix tests of the methods without a probability model: Bytes, GZip, SentencePiece."""
import contextlib
import gzip
import io
import json
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressor import constants
from compressor import symbols as symbols_lib
from compressor.methods import base
from compressor.methods.bytes_method import BytesMethod
from compressor.methods.gzip_method import GZipMethod, gunzip_prefix, gzip_bytes
from compressor.methods.registry import get_method
from compressor.methods.sentencepiece_method import SentencePieceMethod
from compressor import sentencepiece_train

EOS = constants.EOS
METHOD_NAMES = ["bytes", "gzip[v=256]", "gzip[v=65k]", "sentencepiece"]
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="session")
def sentencepiece_path(train_docs, tmp_path_factory):
  prefix = tmp_path_factory.mktemp("sentencepiece") / "sp600"
  return sentencepiece_train.train_sentencepiece(train_docs[:300], str(prefix), 600)


@pytest.fixture(scope="session")
def methods(sentencepiece_path):
  return {
      "bytes": get_method("bytes"),
      "gzip[v=256]": get_method("gzip[v=256]"),
      "gzip[v=65k]": get_method("gzip[v=65k]"),
      "sentencepiece": get_method(f"sentencepiece[path={sentencepiece_path}]"),
  }


@pytest.fixture(scope="session")
def examples(validation_docs):
  """Real examples: validation documents with EOS, cut into 10,240-symbol examples."""
  stream = symbols_lib.concat(symbols_lib.symbols_from_text(d) for d in validation_docs[:128])
  n = constants.EXAMPLE_SYMBOLS
  return [stream[i:i + n] for i in range(0, stream.size, n)][:8]


def as_stream(values):
  return np.asarray(values, symbols_lib.SYMBOL_DTYPE)


_runs = st.lists(st.tuples(st.integers(0, EOS), st.integers(1, 300)), max_size=6).map(
    lambda runs: as_stream([s for s, n in runs for _ in range(n)]))
_bytes_with_eos = st.lists(st.one_of(st.binary(max_size=60), st.just(b"")), max_size=5).map(
    lambda parts: symbols_lib.concat(symbols_lib.symbols_from_text(p) for p in parts))
_text = st.lists(st.text(max_size=80), max_size=4).map(
    lambda docs: symbols_lib.concat(symbols_lib.symbols_from_text(d) for d in docs))
_dense = st.lists(st.sampled_from([EOS, 0, 0xFF, 0xE2, 0x96, 0x81, 0x20, 0x0A, 0xC3]),
                  max_size=200).map(as_stream)
_any = st.lists(st.integers(0, EOS), max_size=300).map(as_stream)
symbol_streams = st.one_of(_runs, _bytes_with_eos, _text, _dense, _any)


def assert_round_trip(method, symbols):
  encoded = method.encode(symbols)
  assert encoded.num_symbols == symbols.size
  assert encoded.tokens.dtype == base.TOKEN_DTYPE
  assert encoded.tokens.size == 0 or (encoded.tokens.min() >= 0
                                      and encoded.tokens.max() < method.vocab_size)
  decoded = method.decode(encoded.tokens)
  assert decoded.dtype == symbols_lib.SYMBOL_DTYPE
  np.testing.assert_array_equal(decoded, symbols)
  return encoded


# Round trips.


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("symbols", [
    [], [EOS], [EOS] * 1000, list(range(EOS + 1)), list(range(EOS, -1, -1)),
    [0] * 100_000, [0xFF] * 5000, [0xE2, 0x96, 0x81] * 10, [0xED, 0xA0, 0x80, 0xC3, EOS, 0xA9],
    list(b"a\x00b\x00\x00 \t\r\n  x  ") + [EOS], list(b"<0x41> <s></s><unk><pad>"),
], ids=["empty", "eos", "eos_run", "all", "all_reversed", "zeros", "ff_run", "space_piece_char",
        "invalid_utf8", "nul_whitespace", "piece_names"])
def test_round_trip_fixed_streams(methods, name, symbols):
  assert_round_trip(methods[name], as_stream(symbols))


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_round_trip_each_symbol_alone_and_repeated(methods, name):
  for s in range(EOS + 1):
    assert_round_trip(methods[name], as_stream([s]))
    assert_round_trip(methods[name], as_stream([s] * 3 + [ord("a"), s]))


@pytest.mark.parametrize("name", METHOD_NAMES)
@SETTINGS
@given(symbols=symbol_streams)
def test_round_trip_property(methods, name, symbols):
  assert_round_trip(methods[name], symbols)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_round_trip_real_examples(methods, name, examples):
  sizes = [assert_round_trip(methods[name], x).tokens.size for x in examples]
  if name != "bytes":  # real text compresses
    assert sum(sizes) < 0.8 * sum(x.size for x in examples)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_encode_batch_equals_encode(methods, name, examples):
  method = methods[name]
  batch = method.encode_batch(examples[:3], max_tokens=100)
  for x, got in zip(examples[:3], batch):
    want = method.encode(x, max_tokens=100)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    assert got.num_symbols == want.num_symbols
  decoded = method.decode_batch([e.tokens for e in batch])
  for x, e, d in zip(examples[:3], batch, decoded):
    np.testing.assert_array_equal(d, x[:e.num_symbols])


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_methods_survive_pickling(methods, name, examples):
  """Beam ships methods to workers by pickling them."""
  method = methods[name]
  clone = pickle.loads(pickle.dumps(method))
  np.testing.assert_array_equal(clone.encode(examples[0]).tokens, method.encode(examples[0]).tokens)
  assert clone.spec == method.spec and clone.vocab_size == method.vocab_size


# Prefixes under max_tokens.


def assert_prefix(method, symbols, max_tokens):
  encoded = method.encode(symbols, max_tokens=max_tokens)
  assert encoded.tokens.size <= max_tokens
  assert 0 <= encoded.num_symbols <= symbols.size
  np.testing.assert_array_equal(method.decode(encoded.tokens), symbols[:encoded.num_symbols])
  return encoded


@pytest.mark.parametrize("name", METHOD_NAMES)
@SETTINGS
@given(symbols=symbol_streams, max_tokens=st.integers(1, 120))
def test_max_tokens_prefix_property(methods, name, symbols, max_tokens):
  method = methods[name]
  encoded = assert_prefix(method, symbols, max_tokens)
  full = method.encode(symbols)
  if full.tokens.size <= max_tokens:
    assert encoded.num_symbols == symbols.size
  if name == "bytes":
    assert encoded.num_symbols == min(max_tokens, symbols.size)
  elif name == "sentencepiece":
    np.testing.assert_array_equal(encoded.tokens, full.tokens[:max_tokens])
  else:
    assert_gzip_prefix_is_longest(method, symbols, max_tokens, encoded)


def assert_gzip_prefix_is_longest(method, symbols, max_tokens, encoded):
  """No longer prefix fits (checked for every length on short inputs, else the next one)."""
  longer = range(encoded.num_symbols + 1, symbols.size + 1)
  if symbols.size > 400:
    longer = longer[:1]
  for n in longer:
    assert method.num_tokens(symbols[:n]) > max_tokens, (n, encoded)


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("max_tokens", [1, 7, 64, constants.MAX_TOKENS])
def test_max_tokens_on_real_examples(methods, name, examples, max_tokens):
  method = methods[name]
  for x in examples[:3]:
    encoded = assert_prefix(method, x, max_tokens)
    if name.startswith("gzip"):
      assert_gzip_prefix_is_longest(method, x, max_tokens, encoded)
    elif max_tokens >= 7:
      assert encoded.tokens.size == max_tokens and encoded.num_symbols >= max_tokens


def test_gzip_too_small_budget_gives_nothing():
  method = GZipMethod(8)
  empty = method.num_tokens(as_stream([]))
  encoded = method.encode(as_stream([65] * 50), max_tokens=empty - 1)
  assert encoded.tokens.size == 0 and encoded.num_symbols == 0


# Decoding junk.


@pytest.mark.parametrize("name", METHOD_NAMES)
@SETTINGS
@given(data=st.data())
def test_decode_random_tokens_never_raises(methods, name, data):
  method = methods[name]
  tokens = data.draw(st.lists(st.integers(0, method.vocab_size - 1), max_size=200))
  decoded = method.decode(np.asarray(tokens, np.int64))
  assert decoded.dtype == symbols_lib.SYMBOL_DTYPE and decoded.ndim == 1
  assert decoded.size == 0 or (decoded.min() >= 0 and decoded.max() <= EOS)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_out_of_range_ids_raise(methods, name):
  method = methods[name]
  for bad in ([-1], [method.vocab_size], [0, method.vocab_size + 5]):
    with pytest.raises(ValueError, match="token ids"):
      method.decode(np.asarray(bad))


@pytest.mark.parametrize("token_bits", [8, 16])
@SETTINGS
@given(symbols=symbol_streams, cut=st.integers(0, 400))
def test_gzip_truncated_or_corrupt_tokens_decode_a_prefix(token_bits, symbols, cut):
  method = GZipMethod(token_bits)
  tokens = method.encode(symbols).tokens
  decoded = method.decode(tokens[:cut])
  np.testing.assert_array_equal(decoded, symbols[:decoded.size])
  garbled = tokens.copy()
  garbled[cut % max(tokens.size, 1):] ^= 0x5A  # corrupt the tail
  method.decode(garbled)  # must not raise


# GZip format.


def test_gzip_is_deterministic_standard_gzip(examples):
  method = GZipMethod(8)
  x = examples[0]
  data = base.tokens_to_bytes(method.encode(x).tokens, 8)
  assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == b"\0\0\0\0"  # no name, mtime 0
  assert gzip.decompress(data) == symbols_lib.symbols_to_bytes(x)
  assert data == gzip_bytes(x)
  wide = GZipMethod(16).encode(x).tokens  # the same bytes, two per token
  assert wide.size == -(-len(data) // 2) and wide.max() < 65536
  assert base.tokens_to_bytes(wide, 16)[:len(data)] == data


def test_gunzip_prefix_keeps_output_before_an_error(examples):
  raw = symbols_lib.symbols_to_bytes(examples[0])
  data = bytearray(gzip_bytes(examples[0]))
  data[-8] ^= 0xFF  # break the CRC: every byte of the body still decodes
  assert gunzip_prefix(bytes(data)) == raw
  assert gunzip_prefix(b"") == b"" and gunzip_prefix(b"not gzip at all") == b""


@pytest.mark.parametrize("spec,cls,vocab", [
    ("bytes", BytesMethod, 257), ("gzip[v=256]", GZipMethod, 256),
    ("gzip[v=65k]", GZipMethod, 65536),
])
def test_registry_specs(spec, cls, vocab):
  method = get_method(spec)
  assert isinstance(method, cls) and method.vocab_size == vocab and method.spec == spec
  assert get_method(method.spec).spec == spec
  assert spec.split("[")[0] in repr(method).lower()


def test_gzip_rejects_bad_width():
  with pytest.raises(ValueError, match="got 12"):
    GZipMethod(12)


# SentencePiece.


def test_sentencepiece_model_and_spec(methods, sentencepiece_path):
  method = methods["sentencepiece"]
  assert isinstance(method, SentencePieceMethod)
  assert method.vocab_size == 600 and method.spec == f"sentencepiece[path={sentencepiece_path}]"
  assert get_method(method.spec).fingerprint == method.fingerprint


def test_sentencepiece_uses_the_model_on_text(methods):
  method = methods["sentencepiece"]
  x = symbols_lib.symbols_from_text("The people of the city said that it was a good time.")
  tokens = assert_round_trip(method, x).tokens
  assert tokens.size < 0.75 * x.size  # pieces of several bytes (byte fallback gives >= 1 per byte)
  assert tokens[-1] == method.eos_id


def test_sentencepiece_training_is_deterministic(train_docs, sentencepiece_path, tmp_path):
  """Same documents, same pieces and scores (the .model file also records its own path)."""
  again = sentencepiece_train.train_sentencepiece(train_docs[:300], str(tmp_path / "again"), 600)
  vocab = lambda path: open(path.replace(".model", ".vocab"), encoding="utf-8").read()
  assert vocab(again) == vocab(sentencepiece_path)


def test_sentencepiece_cli(train_docs, tmp_path):
  corpus = tmp_path / "train.jsonl.gz"
  with gzip.open(corpus, "wt", encoding="utf-8") as f:
    f.writelines(json.dumps({"text": t}) + "\n" for t in train_docs[:40])
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    rc = sentencepiece_train.run(["--train", str(corpus),
                                  "--vocab_size", "400", "--out", str(tmp_path / "cli")])
  assert rc == 0 and out.getvalue().strip() == str(tmp_path / "cli.model")
  method = SentencePieceMethod(out.getvalue().strip())
  assert method.vocab_size <= 400
  assert_round_trip(method, symbols_lib.symbols_from_text("héllo ▁ wörld\x00"))


def test_sentencepiece_errors(tmp_path):
  with pytest.raises(ValueError, match="no SentencePiece model"):
    SentencePieceMethod(tmp_path / "missing.model")
  with pytest.raises(FileNotFoundError, match="matches no files"):
    sentencepiece_train.train_sentencepiece(str(tmp_path / "*.jsonl.gz"), str(tmp_path / "m"), 500)
  assert sentencepiece_train.train_sentencepiece(  # every corpus spec: Python's own docs here
      "builtin:pydoc", str(tmp_path / "pydoc"), 400).endswith("pydoc.model")
  with pytest.raises(ValueError, match="vocab_size"):
    sentencepiece_train.train_sentencepiece(["text"], str(tmp_path / "m"), 100)
