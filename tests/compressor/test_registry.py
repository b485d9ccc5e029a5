"""Method names as in the paper: parsing, vocabularies, and errors that say what to do."""
import numpy as np
import pytest

from compressor import EOS, get_method, symbols_from_text
from compressor.methods import SPEC_FORMS, parse_spec
from compressor.models import ContextModel, UnigramModel
from compressor.symbols import split_documents, symbols_from_bytes, symbols_to_bytes

MODEL = ContextModel(order=1).fit([symbols_from_text("the quick brown fox")])
UNIGRAM = UnigramModel.fit([symbols_from_text("the quick brown fox")])


@pytest.mark.parametrize("spec, vocab, token_bits", [
    ("bytes", 257, None),
    ("gzip[v=256]", 256, 8), ("gzip[v=65k]", 65536, 16),
    ("ac[v=256]", 256, 8), ("ac[v=65k]", 65536, 16),
    ("equal_info_ac[b=16,v=65k]", 65536, 16), ("equal_info_ac[b=24,v=65k]", 65536, 16),
    ("equal_info_ac[b=128,v=256]", 256, 8),
])
def test_specs_build_the_named_method(spec, vocab, token_bits):
  method = get_method(spec, MODEL)
  assert method.spec == spec
  assert method.vocab_size == vocab
  assert method.token_bits == token_bits


def test_static_ac_takes_the_unigram_model():
  method = get_method("static_ac[v=65k]", UNIGRAM)
  assert method.spec == "static_ac[v=65k]" and method.vocab_size == 65536


@pytest.mark.parametrize("spec", [
    "equal_info_ac[b=17,v=65k]", "equal_info_ac[b=16]", "equal_info_ac[b=16,v=512]",
    "ac", "ac[v=256,v=256]", "gzip[level=9]", "lzma[v=256]", "bytes[v=256]", "", "ac[v=256",
])
def test_bad_specs_list_the_valid_forms(spec):
  with pytest.raises(ValueError) as err:
    get_method(spec, MODEL)
  message = str(err.value)
  assert "\n" not in message
  for form in SPEC_FORMS:
    assert form in message


def test_parse_spec_ignores_spaces():
  assert parse_spec("equal_info_ac[b=16, v=65k]") == ("equal_info_ac", {"b": "16", "v": "65k"})
  assert parse_spec(" ac [ v = 256 ] ") == ("ac", {"v": "256"})


def test_a_model_path_is_taken_whole():
  """Spaces, commas and brackets in a file name are the file's."""
  assert parse_spec("sentencepiece[path=/data/sp dir/v1,2 [x].model]") == (
      "sentencepiece", {"path": "/data/sp dir/v1,2 [x].model"})
  assert parse_spec("sentencepiece[ path = /a b/m.model ]") == (
      "sentencepiece", {"path": "/a b/m.model"})
  with pytest.raises(ValueError, match="argument 'path='"):
    parse_spec("sentencepiece[path=]")


def test_symbols_from_text_appends_eos():
  x = symbols_from_text("h\u00e9")
  assert x.tolist() == [104, 195, 169, EOS]
  assert symbols_from_text(b"\xff\x00", eos=False).tolist() == [255, 0]


def test_symbol_byte_serialisation_round_trips_every_value():
  x = np.array(list(range(257)) * 2 + [EOS, EOS, 255, 255], np.int32)
  np.testing.assert_array_equal(symbols_from_bytes(symbols_to_bytes(x)), x)


def test_split_documents_keeps_the_cut_tail():
  x = np.concatenate([symbols_from_text("ab"), symbols_from_text("c", eos=False)])
  assert split_documents(x) == [b"ab", b"c"]
