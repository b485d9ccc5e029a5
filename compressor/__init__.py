"""eqinfo's compressor: the corpus reader, coders, Equal-Info windows, methods and
probability models. A library of numpy; it reads corpora with Beam's FileSystems and
TFDS, trains the SentencePiece baseline with sentencepiece, and tokenizes b=16 windows
with tensorflow-text (each imported where it is used). The names imported below are the
interface that `training/` and `pipelines/` use.

  corpus.py            the one reader of a corpus spec (compress, train-m1, codec)
  symbols.py           documents as symbol streams: bytes + EOS
  constants.py         wire-format constants
  examples.py          documents -> groups of 128 -> 10,240-symbol examples
  packing.py           examples -> M2 records of at most 512 tokens
  window_arith.py      the Equal-Info window rule in integers
  lane_encoder.py      arithmetic encoding of many examples at once
  lane_decoder.py      decoding of many codes at once
  arith.py             the renormalising range coder of AC and StaticAC
  window_vocab.py      the b=16 window vocabulary of an M1: build, file
  window_tokenizer.py  b=16 windows by longest match; decoding by lookup
  methods/             the paper's methods and their registry (`get_method`)
  models/              the probability-model protocol, context and unigram models
  sentencepiece_train.py  the SentencePiece baseline's tokenizer
  codec.py             `eqinfo codec`: one method over a corpus, outside Beam
  help_format.py       the --help layout of every eqinfo command
"""
from compressor.constants import ALPHABET_SIZE, EOS, PRECISION, TOTAL_FREQ
from compressor.methods import SPEC_FORMS, Encoded, Method, get_method
from compressor.symbols import as_symbols, symbols_from_text
