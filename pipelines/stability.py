"""How a method cuts text into tokens: the paper's stability study (Fig. 8) and its
segmentation table (Table 7).

Stability: one fixed sentence is coded after each of many one-word prefixes
("word " + sentence), and the Levenshtein distance (rapidfuzz) between that
token sequence and the sentence's own is taken per prefix. A tokenizer that
cuts locally (SentencePiece) changes a few tokens; an arithmetic coder,
whose every bit depends on all that came before, changes all of them;
Equal-Info windows fall between. The prefix words are the most frequent words
of Python's own documentation (`builtin:pydoc`), so nothing is downloaded.

Segmentation: a sentence as the pieces its tokens stand for (SentencePiece), or
as the text of each Equal-Info window (`inspect_shards.window_texts`).
"""
import collections
import re

import numpy as np

from compressor import corpus
from compressor.symbols import render, symbols_from_text
from pipelines import inspect_shards

SENTENCE = ("Language models can learn to read text that another, smaller model has "
            "compressed, if the compression leaves them a stable mapping to learn.")
NUM_PREFIXES = 100


def prefix_words(count: int = NUM_PREFIXES) -> list[str]:
  """The `count` most frequent lowercase words of 3 to 12 letters in builtin:pydoc
  (ties alphabetical)."""
  counts = collections.Counter()
  for doc in corpus.read_documents(corpus.BUILTIN_PYDOC):
    counts.update(re.findall(rb"\b[a-z]{3,12}\b", doc.data))
  ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
  return [word.decode() for word, _ in ranked[:count]]


def tokens_of(method, texts: list[str]) -> list[list[int]]:
  """The method's tokens of each text (no end-of-document symbol), coded in one batch."""
  coded = method.encode_batch([symbols_from_text(t, eos=False) for t in texts])
  return [[int(t) for t in c.tokens] for c in coded]


def edit_distances(method, sentence: str = SENTENCE, words: list[str] | None = None) -> list[int]:
  """[len(words)] Levenshtein distances between the tokens of `word + " " + sentence` and
  those of `sentence`, one per prefix word."""
  from rapidfuzz.distance import Levenshtein  # pylint: disable=import-outside-toplevel
  words = words if words is not None else prefix_words()
  base, *prefixed = tokens_of(method, [sentence] + [f"{w} {sentence}" for w in words])
  return [Levenshtein.distance(tokens, base) for tokens in prefixed]


def segments(method, text: str = SENTENCE) -> list[str]:
  """`text` cut where the method cuts it, each piece rendered: Equal-Info windows for
  windowed methods, else one piece per token (a tokenizer's pieces; meaningless for a
  method whose tokens do not stand for text on their own, such as AC)."""
  tokens = np.asarray(tokens_of(method, [text])[0], np.int64)
  windows = inspect_shards.window_texts(method, tokens)
  if windows is None:
    windows = [method.decode(tokens[i:i + 1]) for i in range(tokens.size)]
  return [render(w) for w in windows]
