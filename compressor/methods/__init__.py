"""Compression methods of the paper, addressed by name (see `registry`).

  base.py                  the method interface: symbols -> M2 tokens -> symbols
  registry.py              methods by the paper's names, e.g. "equal_info_ac[b=16,v=65k]"
  bytes_method.py          Bytes: the raw symbols
  gzip_method.py           GZip: zlib's default level
  sentencepiece_method.py  SentencePiece: a unigram tokenizer, losslessly
  arithmetic.py            AC[v] and StaticAC[v]: one arithmetic-coded stream per example
  equal_info.py            EqualInfoAC[b, v]: arithmetic coding in windows of b bits
"""
from compressor.methods.base import CodingError, Encoded, Method
from compressor.methods.registry import SPEC_FORMS, get_method, parse_spec
