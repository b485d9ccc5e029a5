"""Symbol streams: document bytes followed by EOS, as numpy integer arrays."""
import codecs
from typing import Iterable

import numpy as np

from compressor import constants

SYMBOL_DTYPE = np.int32
SURROGATES = "eqinfo.surrogates"  # the error handler of `text_bytes`


def _surrogates(error: UnicodeEncodeError) -> tuple[bytes, int]:
  r"""U+DC80..U+DCFF back to the invalid byte they stand for (as `surrogateescape`); any other
  lone surrogate (a JSON "\udXXX" escape) as its 3 UTF-8-style bytes (as `surrogatepass`)."""
  out = bytearray()
  for ch in error.object[error.start:error.end]:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
      out.append(code - 0xDC00)
    else:
      out += ch.encode("utf-8", errors="surrogatepass")
  return bytes(out), error.end


codecs.register_error(SURROGATES, _surrogates)


def text_bytes(text: str) -> bytes:
  r"""A document's bytes: UTF-8, each character on its own, so that a string read from
  invalid UTF-8 with `surrogateescape` gives its bytes back whatever else it holds.

  >>> text_bytes("a\udc80b \ud800")
  b'a\x80b \xed\xa0\x80'
  """
  return text.encode("utf-8", errors=SURROGATES)


def symbols_from_text(text: str | bytes, eos: bool = True) -> np.ndarray:
  """Returns one document as symbols: its UTF-8 bytes, then EOS.

  Args:
    text: the document; `str` is encoded as UTF-8, `bytes` are taken as is.
    eos: append `constants.EOS` (the paper appends it to every document).

  Returns:
    [len(bytes) + eos] int32 array of values 0..256.
  """
  if isinstance(text, str):
    text = text_bytes(text)
  elif not isinstance(text, (bytes, bytearray, memoryview)):
    raise TypeError(f"symbols_from_text takes str or bytes, got {type(text).__name__}")
  out = np.frombuffer(bytes(text), dtype=np.uint8).astype(SYMBOL_DTYPE)
  if eos:
    out = np.append(out, SYMBOL_DTYPE(constants.EOS))
  return out


def as_symbols(symbols) -> np.ndarray:
  """Validates a symbol stream and returns it as a 1-D int32 array.

  Raises:
    ValueError: if it is not 1-D or holds values outside 0..256.
  """
  arr = np.asarray(symbols)
  if arr.ndim != 1:
    raise ValueError(f"symbols must be a 1-D array, got shape {arr.shape}")
  if arr.size and (arr.min() < 0 or arr.max() > constants.EOS):
    raise ValueError(
        f"symbols must lie in 0..{constants.EOS}, got {int(arr.min())}..{int(arr.max())}")
  return arr.astype(SYMBOL_DTYPE, copy=False)


def split_documents(symbols) -> list[bytes]:
  """Splits a symbol stream at EOS into documents' bytes.

  The part after the last EOS (a document cut by an example boundary) is
  returned too, so `len(result) == count(EOS) + 1`.
  """
  arr = as_symbols(symbols)
  cuts = np.flatnonzero(arr == constants.EOS)
  docs, start = [], 0
  for cut in cuts:
    docs.append(arr[start:cut].astype(np.uint8).tobytes())
    start = cut + 1
  docs.append(arr[start:].astype(np.uint8).tobytes())
  return docs


def concat(streams: Iterable[np.ndarray]) -> np.ndarray:
  """Concatenates symbol streams (an empty iterable gives an empty stream)."""
  streams = list(streams)
  if not streams:
    return np.zeros(0, SYMBOL_DTYPE)
  return np.concatenate([as_symbols(s) for s in streams])


# Byte serialisation of symbols, for byte-oriented coders (gzip): 0xFF cannot
# occur in UTF-8, so it serves as the escape byte.
_ESCAPE = 0xFF


def symbols_to_bytes(symbols) -> bytes:
  """Serialises symbols to bytes: 0xFF -> FF 00, EOS -> FF 01, other bytes as is."""
  arr = as_symbols(symbols)
  out = bytearray()
  for run in np.split(arr, np.flatnonzero(arr >= _ESCAPE)):
    if run.size and run[0] >= _ESCAPE:
      out += bytes((_ESCAPE, 0 if run[0] == _ESCAPE else 1))
      run = run[1:]
    out += run.astype(np.uint8).tobytes()
  return bytes(out)


def symbols_from_bytes(data: bytes) -> np.ndarray:
  """Inverse of `symbols_to_bytes`; a dangling or unknown escape ends the stream."""
  raw = np.frombuffer(data, dtype=np.uint8)
  out = []
  start = 0
  for pos in np.flatnonzero(raw == _ESCAPE):
    if pos < start:
      continue  # second byte of an escape pair
    out.append(raw[start:pos].astype(SYMBOL_DTYPE))
    if pos + 1 >= raw.size or raw[pos + 1] > 1:
      return np.concatenate(out) if out else np.zeros(0, SYMBOL_DTYPE)
    out.append(np.array([_ESCAPE if raw[pos + 1] == 0 else constants.EOS], SYMBOL_DTYPE))
    start = pos + 2
  out.append(raw[start:].astype(SYMBOL_DTYPE))
  return np.concatenate(out)


def render(symbols: np.ndarray) -> str:
  """Symbols as text: bytes decoded as UTF-8 (escaped where invalid), EOS as ⟨EOS⟩."""
  parts = []
  for chunk in np.split(symbols, np.flatnonzero(symbols == constants.EOS)):
    if chunk.size and chunk[0] == constants.EOS:
      parts.append("⟨EOS⟩")
      chunk = chunk[1:]
    parts.append(chunk.astype(np.uint8).tobytes().decode("utf-8", errors="backslashreplace"))
  return "".join(parts)
