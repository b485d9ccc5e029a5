"""Equal-Info windows of b=16 by longest match over a `WindowVocabulary`; decoding by lookup.

The arithmetic encoder's window at a position is the longest vocabulary entry
that prefixes the rest of the example (`window_vocab`), so encoding is
greedy longest-match tokenization. It runs in tensorflow-text's
FastWordpieceTokenizer (linear-time longest-match-first, compiled): symbol s
is one character (`CHAR_OF_SYMBOL`: printable ASCII as itself, every other
byte and EOS as U+0100 + s, since its trie takes no NUL and it crashes on
some control characters), the entries are its
vocabulary, the whole example is one word, and the suffix indicator is empty
so every piece is looked up as it is. FastWordpiece takes pieces of at most
256 bytes of UTF-8; an example that holds the start of a longer entry, or a
trap (see `window_vocab`), is walked entry by entry in Python instead (rare:
runs of over a hundred symbols that M1 predicts with near certainty). Both
give the arithmetic encoder's codes bit for bit, literal windows, example
ends and `max_codes` included.
"""
import numpy as np

from compressor import window_arith
from compressor.window_vocab import WindowVocabulary

#: [257] the code point that stands for each symbol
CHAR_OF_SYMBOL = np.array([s if 0x20 <= s <= 0x7E else 0x100 + s for s in range(257)], "<u4")
_MAX_PIECE_BYTES = 256  # FastWordpiece's longest piece
_MARKER_SYMBOLS = 64  # an entry too long for it is found by its first symbols
_UNKNOWN = "\u4e00"  # FastWordpiece's unknown token: no symbol's character, so no window text


def symbols_to_chars(symbols: np.ndarray) -> str:
  """[N] symbols -> the string of their characters."""
  return CHAR_OF_SYMBOL[np.asarray(symbols, np.int64)].tobytes().decode("utf-32-le")


class WindowTokenizer:
  """Encodes symbol streams into b=16 window codes, and decodes codes, with a vocabulary.

  Args:
    vocab: the `WindowVocabulary` of the M1 that defines the windows.
    max_symbols: longest example accepted (FastWordpiece's word limit).
  """

  def __init__(self, vocab: WindowVocabulary, max_symbols: int = 1 << 20):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel
    self.vocab = vocab
    self.max_symbols = max_symbols
    pieces, markers = [], set()
    for string in vocab.entries[:, 0]:
      piece = symbols_to_chars(np.array(vocab.strings[string]))
      if len(piece.encode()) <= _MAX_PIECE_BYTES:
        pieces.append(piece)
      else:
        pieces.append(None)
        markers.add(piece[:_MARKER_SYMBOLS])
    kept = np.array([p is not None for p in pieces], bool)
    self._codes = vocab.entries[kept, 1].astype(np.int64)  # [E] by tokenizer id
    self._lengths = np.array([len(vocab.strings[i]) for i in vocab.entries[kept, 0]], np.int64)
    pieces = [p for p in pieces if p is not None]
    self._tf = tf
    self._tokenizer = tf_text.FastWordpieceTokenizer(
        vocab=pieces + [_UNKNOWN], suffix_indicator="", max_bytes_per_word=3 * max_symbols,
        token_out_type=tf.int64, unknown_token=_UNKNOWN, no_pretokenization=True)
    self._unk = len(pieces)
    #: texts that hold one of these are walked (`_walk`)
    self.markers = sorted(markers | {symbols_to_chars(np.array(t)) for t in vocab.traps})
    self._entry_by_string = {vocab.strings[s]: (int(c), len(vocab.strings[s]))
                             for s, c in vocab.entries}
    self._longest_entry = max((len(s) for s in self._entry_by_string), default=1)
    self._deepest_trap_node = max((len(s) for s in vocab.trap_nodes), default=0)
    sizes = np.array([len(s) for s in vocab.strings], np.int64)
    self._string_sizes = sizes  # [S]
    self._string_starts = np.cumsum(sizes) - sizes  # [S]
    self._flat = np.array([x for s in vocab.strings for x in s], np.int32)  # [sum S]

  def encode(self, examples: list[np.ndarray],
             max_codes: int | None = None) -> list[tuple[np.ndarray, int, int]]:
    """Window codes of each example, as the arithmetic encoder writes them.

    Args:
      examples: [S_i] symbol streams.
      max_codes: windows per example at most (None: every symbol is coded).

    Returns:
      Per example (codes [W] int64, symbols covered, literal windows).
    """
    for x in examples:
      if x.size > self.max_symbols:
        raise ValueError(f"an example of {x.size} symbols is longer than the window tokenizer's "
                         f"max_symbols={self.max_symbols}; cut examples shorter")
    if not examples:
      return []
    texts = [symbols_to_chars(x) for x in examples]
    ragged = self._tokenizer.tokenize(self._tf.constant(texts))
    ids = ragged.flat_values.numpy()  # [sum W] tokenizer ids, example by example
    if ids.size and ids.max() == self._unk:
      raise AssertionError("the window tokenizer met a symbol outside its vocabulary")
    splits = ragged.row_splits.numpy()  # [len(examples) + 1]
    codes, lengths = self._codes[ids], self._lengths[ids]  # [sum W]
    out = []
    for i, text in enumerate(texts):
      if self.markers and any(m in text for m in self.markers):
        mine, sizes = self._walk(examples[i])
      else:
        mine, sizes = codes[splits[i]:splits[i + 1]], lengths[splits[i]:splits[i + 1]]
      if max_codes is not None:
        mine, sizes = mine[:max_codes], sizes[:max_codes]
      out.append((mine, int(sizes.sum()), int((mine >= window_arith.LITERAL_BASE).sum())))
    return out

  def _walk(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The windows of one example that holds a trap, node by node (slow, rare)."""
    seq = tuple(int(s) for s in symbols)
    trap_nodes = self.vocab.trap_nodes
    codes, lengths, p = [], [], 0
    while p < len(seq):
      hit = None  # the deepest node under a trap root (the text then starts with that root)
      for n in range(min(self._deepest_trap_node, len(seq) - p), 0, -1):
        if seq[p:p + n] in trap_nodes:
          hit = trap_nodes[seq[p:p + n]]
          break
      if hit is None:
        hit = next(self._entry_by_string[seq[p:p + n]]
                   for n in range(min(self._longest_entry, len(seq) - p), 0, -1)
                   if seq[p:p + n] in self._entry_by_string)
      codes.append(hit[0])
      lengths.append(hit[1])
      p += hit[1]
    return np.array(codes, np.int64), np.array(lengths, np.int64)

  def decode(self, codes: np.ndarray) -> np.ndarray:
    """[W] window codes -> the symbols they decode to, concatenated."""
    strings = self.vocab.decode[np.asarray(codes, np.int64)]  # [W]
    sizes = self._string_sizes[strings]
    starts = np.repeat(self._string_starts[strings] - np.cumsum(sizes) + sizes, sizes)
    return self._flat[starts + np.arange(sizes.sum())]
