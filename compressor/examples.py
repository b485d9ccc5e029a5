"""M1-side examples (paper §3.1): documents -> groups of 128 -> 10,240-symbol examples.

Every document becomes its bytes followed by EOS. Consecutive documents are
taken in groups of `docs_per_group` (128 in the paper); each group's symbols
are concatenated and cut into examples of `example_symbols` (10,240) symbols.
Each group is cut on its own: an example never spans two groups, so the last
example of every group is usually shorter. This is what the paper does
("128 documents are concatenated, then split"), and it lets a pipeline build a
group's examples from that group alone, whatever the order groups arrive in.
"""
import dataclasses
from typing import Iterable, Iterator, Sequence

import numpy as np

from compressor import constants
from compressor import symbols as symbols_lib


@dataclasses.dataclass(frozen=True)
class ExampleSpan:
  """One example of a group and where its documents start.

  Attributes:
    index: position of the example within its group (0, 1, ...).
    start: offset of the example's first symbol in the group's stream.
    symbols: [<= example_symbols] int32 symbols.
    first_doc: index (within the group) of the document holding symbols[0].
    doc_starts: [D] offsets, relative to `start`, of the documents from
      `first_doc` on that overlap the example; doc_starts[0] <= 0.
  """
  index: int
  start: int
  symbols: np.ndarray
  first_doc: int
  doc_starts: np.ndarray

  def doc_at(self, offset: int) -> int:
    """Returns the group-relative index of the document holding symbols[offset]."""
    return self.first_doc + int(np.searchsorted(self.doc_starts, offset, side="right")) - 1

  def __repr__(self):
    return (f"ExampleSpan(index={self.index}, start={self.start}, "
            f"num_symbols={self.symbols.size}, first_doc={self.first_doc})")


def _check_sizes(docs_per_group: int, example_symbols: int) -> None:
  if docs_per_group < 1:
    raise ValueError(f"docs_per_group must be >= 1, got {docs_per_group}")
  if example_symbols < 1:
    raise ValueError(f"example_symbols must be >= 1, got {example_symbols}")


def group_documents(docs: Iterable[bytes],
                    docs_per_group: int = constants.DOCS_PER_GROUP) -> Iterator[list[bytes]]:
  """Yields lists of `docs_per_group` consecutive documents (the last may be shorter)."""
  _check_sizes(docs_per_group, 1)
  group = []
  for doc in docs:
    group.append(doc)
    if len(group) == docs_per_group:
      yield group
      group = []
  if group:
    yield group


def split_group(docs: Sequence[bytes],
                example_symbols: int = constants.EXAMPLE_SYMBOLS) -> list[ExampleSpan]:
  """Cuts one group of documents into examples.

  Args:
    docs: the group's documents as raw bytes or `str` (EOS is appended to each).
    example_symbols: symbols per example; the last example may be shorter.

  Returns:
    The examples in order; they cover the group's stream exactly once.
  """
  _check_sizes(1, example_symbols)
  streams = [symbols_lib.symbols_from_text(d) for d in docs]
  stream = symbols_lib.concat(streams)  # [S]
  doc_starts = np.cumsum([0] + [s.size for s in streams[:-1]]).astype(np.int64)  # [D]
  out = []
  for index, start in enumerate(range(0, stream.size, example_symbols)):
    end = min(start + example_symbols, stream.size)
    first = int(np.searchsorted(doc_starts, start, side="right")) - 1
    last = int(np.searchsorted(doc_starts, end, side="left"))  # one past the last overlapping doc
    out.append(ExampleSpan(index=index, start=start, symbols=stream[start:end],
                           first_doc=first, doc_starts=doc_starts[first:last] - start))
  return out


def make_examples(docs: Iterable[bytes],
                  docs_per_group: int = constants.DOCS_PER_GROUP,
                  example_symbols: int = constants.EXAMPLE_SYMBOLS) -> Iterator[np.ndarray]:
  """Yields the examples of a document stream, group by group.

  Args:
    docs: documents as raw bytes (`str` is taken as UTF-8).
    docs_per_group: consecutive documents concatenated before cutting (128).
    example_symbols: symbols per example (10,240); the last example of each
      group is shorter unless the group's length is a multiple of it.

  Yields:
    [<= example_symbols] int32 symbol arrays (bytes 0..255, EOS = 256).
  """
  _check_sizes(docs_per_group, example_symbols)
  for group in group_documents(docs, docs_per_group):
    for span in split_group(group, example_symbols):
      yield span.symbols
