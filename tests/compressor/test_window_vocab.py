"""The b=16 window vocabulary: longest match and lookup give the arithmetic coder's tokens."""
import json

import numpy as np
import pytest

from compressor import get_method, lane_encoder, window_arith, window_vocab
from compressor.models import ContextModel
from compressor.models.base import ProbabilityModel
from compressor.symbols import symbols_from_text
from tests.conftest import read_docs
from tests.window_vocab_checks import (SPECS, adversarial_streams, assert_same_coding, cut,
                                       pydoc_streams)

@pytest.fixture(scope="module")
def web_model(train_docs):
  return ContextModel(order=3).fit(train_docs)


@pytest.fixture(scope="module")
def web_vocab(web_model):
  return window_vocab.build(web_model)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_vocabulary_codes_every_validation_example_as_the_arithmetic_coder(
    web_model, web_vocab, webtext_dir, spec):
  """Every example of 10,240 symbols cut from the whole validation split."""
  examples = cut([symbols_from_text(d) for d in read_docs(webtext_dir, "validation")])
  assert len(examples) > 40
  assert_same_coding(web_model, web_vocab, examples, spec)


@pytest.mark.parametrize("spec", SPECS)
def test_vocabulary_codes_adversarial_streams_as_the_arithmetic_coder(web_model, web_vocab,
                                                                      spec):
  assert_same_coding(web_model, web_vocab, adversarial_streams(), spec)


@pytest.fixture(scope="module")
def sure_vocab():
  return window_vocab.build(_Sure())


@pytest.mark.parametrize("spec", SPECS)
def test_literal_windows_are_the_arithmetic_coders(sure_vocab, spec):
  """A model sure of NUL leaves no window for most other first bytes: literal windows."""
  vocab = sure_vocab
  examples = [np.random.default_rng(1).integers(0, 257, 3000).astype(np.int32),
              np.zeros(1000, np.int32)]
  assert_same_coding(_Sure(), vocab, examples, spec)
  literal = get_method(spec, None, vocabulary=vocab).encode(examples[0]).num_literal_windows
  assert literal > 1000  # most random first bytes need the literal escape


def test_lookup_decodes_every_code_as_the_model_does(web_model, web_vocab):
  by_model = get_method("equal_info_ac[b=16,v=65k]", web_model)
  by_vocab = get_method("equal_info_ac[b=16,v=65k]", None, vocabulary=web_vocab)
  codes = list(range(1 << 16))
  for code, want, got in zip(codes, by_model.decode_windows(codes),
                             by_vocab.decode_windows(codes), strict=True):
    assert np.array_equal(want, got), code
  assert web_vocab.distinct_strings() < (1 << 16) // 2  # most codes repeat a string


def test_the_file_is_the_same_bytes_whatever_the_batch(tmp_path):
  model = ContextModel(order=2).fit(pydoc_streams()[:30])
  one = window_vocab.build(model, batch=1024)
  other = window_vocab.build(model, batch=37)
  assert one.to_bytes() == other.to_bytes()
  path = tmp_path / window_vocab.FILENAME
  digest = one.save(path)
  loaded = window_vocab.WindowVocabulary.load(path)
  assert loaded.digest == digest == one.digest and loaded.to_bytes() == one.to_bytes()
  assert loaded.m1_fingerprint == model.fingerprint and loaded.window_bits == 16
  path.write_bytes(path.read_bytes().replace(b'"decode":[', b'"decode":[1,', 1))
  with pytest.raises(ValueError, match="corrupt.*eqinfo build-vocab"):
    window_vocab.WindowVocabulary.load(path)
  path.write_bytes(b"not json")
  with pytest.raises(ValueError, match="not a window vocabulary"):
    window_vocab.WindowVocabulary.load(path)
  fields = json.loads(one.to_bytes())
  for broken in ({k: v for k, v in fields.items() if k != "strings"},  # a field missing
                 {**fields, "decode": ["x"] * len(fields["decode"])}):  # of the wrong kind
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"is corrupt \((KeyError|ValueError).*build-vocab"):
      window_vocab.WindowVocabulary.load(path)


def test_a_vocabulary_of_another_model_or_window_is_refused():
  streams = pydoc_streams()
  model = ContextModel(order=2).fit(streams[:30])
  vocab = window_vocab.build(model)
  other = ContextModel(order=1).fit(streams[:30])
  with pytest.raises(ValueError, match=f"built from M1 {vocab.m1_fingerprint}, not from this M1"):
    get_method("equal_info_ac[b=16,v=65k]", other, vocabulary=vocab)
  with pytest.raises(ValueError, match="for b=16, not b=32"):
    get_method("equal_info_ac[b=32,v=65k]", model, vocabulary=vocab)
  with pytest.raises(ValueError, match="equal_info_ac.*only"):
    get_method("ac[v=256]", model, vocabulary=vocab)


def test_windows_longer_than_a_tokenizer_piece_are_walked():
  """A model sure of NUL runs makes entries of hundreds of symbols (past FastWordpiece's
  256-byte pieces): the examples that hold one are walked entry by entry."""
  model = ContextModel(order=3).fit([bytes(5000), b"ab" * 50])
  vocab = window_vocab.build(model)
  by_vocab = get_method("equal_info_ac[b=16,v=65k]", None, vocabulary=vocab)
  assert by_vocab.tokenizer.markers
  examples = [np.zeros(3000, np.int32), np.zeros(300, np.int32),
              np.concatenate([np.zeros(500, np.int32), np.full(5, 97, np.int32),
                              np.zeros(450, np.int32)]), np.tile(np.array([97, 98], np.int32), 500)]
  assert_same_coding(model, vocab, examples, "equal_info_ac[b=16,v=65k]")
  assert by_vocab.encode(examples[0]).num_windows < 10  # hundreds of NULs per window


@pytest.mark.parametrize("history", [2, 5])
def test_traps_give_the_encoders_literal_windows(monkeypatch, history):
  """Where the encoder backs off over fewer positions than the way down to the last
  endable node, it writes a literal window, not the longest entry: those texts are
  walked node by node. A short back-off makes such traps common."""
  monkeypatch.setattr(lane_encoder, "HISTORY", history)
  streams = pydoc_streams()
  model = ContextModel(order=3).fit(streams[:40])
  vocab = window_vocab.build(model)
  assert vocab.traps and vocab.trap_nodes
  examples = cut(streams[40:50], 4096)
  assert_same_coding(model, vocab, examples, "equal_info_ac[b=16,v=65k]")
  assert sum(e.num_literal_windows for e in get_method(
      "equal_info_ac[b=16,v=65k]", None, vocabulary=vocab).encode_batch(examples)) > 0


class _Sure(ProbabilityModel):
  """Gives NUL the largest frequency after every context."""
  fingerprint = "sure"

  def freqs(self, contexts):
    out = np.ones((len(contexts), 257), np.int32)
    out[:, 0] = (1 << 14) - 256
    return out


def test_the_tree_is_what_the_window_rule_says():
  tree = window_vocab.build_tree(_Sure())  # 552,334 nodes: NUL runs of hundreds
  assert tree.depth[0] == 0 and tree.parent[0] == -1
  assert np.all(tree.depth[1:] == tree.depth[tree.parent[1:]] + 1)
  assert np.all(np.diff(tree.depth) >= 0)  # breadth-first
  assert (tree.depth == 1).sum() == 257  # every first symbol holds a cell
  normal = window_arith.LITERAL_BASE
  assert np.all(tree.decode[:normal] >= 0) and np.all(tree.decode[normal:] == -1)
  chosen, length, _ = window_vocab.emit(tree)
  endable = np.flatnonzero(tree.endable[1:]) + 1
  assert np.array_equal(chosen[endable], endable)
  assert np.array_equal(length[endable], tree.depth[endable])
  assert np.all(tree.code[endable] < normal)
