"""The SentencePiece baseline (paper §3.3, Table 2): a unigram tokenizer, losslessly.

Any symbol stream round-trips: it is split into EOS symbols, maximal runs of
valid UTF-8, and bytes outside them. Valid runs go through the SentencePiece
model (its byte fallback covers unseen characters); invalid bytes and the
character "▁" (which SentencePiece reserves for spaces) become <0xNN> byte
pieces directly; EOS becomes the model's </s> id. Decoding maps each id to its
own bytes, so output that is not UTF-8 survives.
"""
import hashlib
import pathlib
import re

import numpy as np
import sentencepiece as spm

from compressor import constants
from compressor import symbols as symbols_lib
from compressor.methods import base

_SPACE_PIECE = "\u2581"
#: Characters that bypass the model: surrogate escapes of invalid bytes, and "▁".
_BYPASS = re.compile(f"([\udc80-\udcff{_SPACE_PIECE}])")


def _piece_symbols(sp: spm.SentencePieceProcessor, i: int) -> list[int]:
  """The symbols that id `i` stands for."""
  if i == sp.eos_id():
    return [constants.EOS]
  if sp.is_byte(i):
    return [int(sp.id_to_piece(i)[3:5], 16)]
  if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
    return []
  return list(sp.id_to_piece(i).replace(_SPACE_PIECE, " ").encode("utf-8"))


class SentencePieceMethod(base.Method):
  """Tokens are the ids of a SentencePiece model trained by `sentencepiece_train`."""

  def __init__(self, path):
    """Loads the model at `path`.

    Args:
      path: a .model file written by `compressor.sentencepiece_train`.

    Raises:
      ValueError: if the file is missing, or the model lacks </s> or byte pieces.
    """
    path = pathlib.Path(path)
    if not path.is_file():
      raise ValueError(f"no SentencePiece model at {str(path)!r}: train one with "
                       "python -m compressor.sentencepiece_train")
    self.path = str(path)
    self.spec = f"sentencepiece[path={self.path}]"
    self.fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    self._sp = spm.SentencePieceProcessor(model_file=self.path)
    self.vocab_size = self._sp.get_piece_size()
    self.token_bits = max(1, (self.vocab_size - 1).bit_length())  # ceil(log2(vocab_size))
    self.eos_id = self._sp.eos_id()
    if self.eos_id < 0:
      raise ValueError(f"{self.path}: the model has no </s> id; train it with eos_id >= 0")
    self._byte_ids = self._byte_piece_ids()  # [256]
    self._build_decode_table()

  def _byte_piece_ids(self) -> np.ndarray:
    ids = np.array([self._sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)], np.int64)
    if any(not self._sp.is_byte(int(i)) for i in ids):
      raise ValueError(f"{self.path}: the model has no byte pieces; train it with "
                       "byte_fallback=True (compressor.sentencepiece_train does)")
    return ids

  def _build_decode_table(self) -> None:
    pieces = [_piece_symbols(self._sp, i) for i in range(self.vocab_size)]
    self._lengths = np.array([len(p) for p in pieces], np.int64)  # [V]
    self._starts = np.concatenate([[0], np.cumsum(self._lengths)[:-1]])  # [V]
    self._flat = np.array([s for p in pieces for s in p], symbols_lib.SYMBOL_DTYPE)

  def _segment_tokens(self, data: bytes) -> list[np.ndarray]:
    """Tokens of one EOS-free byte segment."""
    parts = _BYPASS.split(data.decode("utf-8", errors="surrogateescape"))
    texts = parts[0::2]  # runs of valid UTF-8 without "▁"
    encoded = self._sp.encode([t for t in texts if t], out_type=int) if any(texts) else []
    out, runs = [], iter(encoded)
    for k, part in enumerate(parts):
      if k % 2 == 0:
        if part:
          out.append(np.asarray(next(runs), np.int64))
      else:
        raw = part.encode("utf-8", errors="surrogateescape")
        out.append(self._byte_ids[np.frombuffer(raw, np.uint8)])
    return out

  def tokenize(self, symbols: np.ndarray) -> np.ndarray:
    """Returns the ids of every symbol."""
    eos_at = np.flatnonzero(symbols == constants.EOS)  # [E]
    eos = np.array([self.eos_id], np.int64)
    out, start = [np.zeros(0, np.int64)], 0
    for cut in list(eos_at) + [symbols.size]:
      segment = symbols[start:cut].astype(np.uint8).tobytes()
      if segment:
        out.extend(self._segment_tokens(segment))
      if cut < symbols.size:
        out.append(eos)
      start = cut + 1
    return np.concatenate(out).astype(base.TOKEN_DTYPE)

  def _encode_one(self, symbols: np.ndarray, max_tokens: int | None) -> base.Encoded:
    """Codes all symbols; with `max_tokens`, keeps the first tokens and the symbols they cover."""
    tokens = self.tokenize(symbols)  # [N]
    if max_tokens is not None:
      tokens = tokens[:max_tokens]
    return base.Encoded(tokens, int(self._lengths[tokens].sum()))

  def _decode_one(self, tokens: np.ndarray) -> np.ndarray:
    lengths = self._lengths[tokens]  # [N]
    total = int(lengths.sum())
    ends = np.cumsum(lengths)  # [N]
    offsets = np.arange(total) - np.repeat(ends - lengths, lengths)  # [S]
    return self._flat[np.repeat(self._starts[tokens], lengths) + offsets]

  def __repr__(self):
    return f"SentencePieceMethod(path={self.path!r}, vocab_size={self.vocab_size})"
