"""Packing: 10,240-symbol examples -> M2 examples of at most `max_tokens` tokens.

Two policies (docs/DESIGN.md, "Symbols, examples, packing"):

- "truncate" (the paper): code each example once, stopping at `max_tokens`
  tokens; the symbols after that point are dropped (and counted).
- "continue" (eqinfo's default): code each example up to `max_tokens` tokens,
  then code the uncovered remainder as the next M2 example, and so on until
  every symbol is covered. Each round runs the remainders of all examples
  together through one `method.encode_batch` call (one lane each), so a batched
  M1 stays busy. No symbol is lost.

Every M2 example starts a fresh coder (and, for Equal-Info windows, a fresh
window), so each one decodes on its own to exactly the symbols it covers.
"""
import dataclasses
from typing import Sequence

import numpy as np

from compressor import constants
from compressor import symbols as symbols_lib

PACKING_POLICIES = ("continue", "truncate")


@dataclasses.dataclass(frozen=True)
class PackedRecord:
  """One M2 example.

  Attributes:
    example_index: index of the source example in `pack`'s input.
    piece: 0 for the first M2 example of that example, 1 for the next, ...
    offset: first symbol of the source example that the tokens cover.
    tokens: [<= max_tokens] int32 M2 tokens.
    num_bytes: symbols covered (EOS counted as one): example[offset:offset + num_bytes].
    num_windows: Equal-Info windows in `tokens` (0 for other methods).
    num_literal_windows: windows holding one raw symbol.
  """
  example_index: int
  piece: int
  offset: int
  tokens: np.ndarray
  num_bytes: int
  num_windows: int = 0
  num_literal_windows: int = 0

  def __repr__(self):
    return (f"PackedRecord(example_index={self.example_index}, piece={self.piece}, "
            f"offset={self.offset}, num_tokens={self.tokens.size}, num_bytes={self.num_bytes}, "
            f"num_windows={self.num_windows})")


def _check_args(max_tokens: int, packing: str) -> None:
  if packing not in PACKING_POLICIES:
    raise ValueError(f"packing must be one of {PACKING_POLICIES}, got {packing!r}")
  if not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1:
    raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")


def _record(method, index: int, piece: int, offset: int, remaining: int, enc,
            max_tokens: int) -> PackedRecord:
  """Checks one `Encoded` against the packing contract and wraps it."""
  if enc.tokens.size > max_tokens:
    raise AssertionError(f"{method.spec}: {enc.tokens.size} tokens exceed max_tokens={max_tokens}")
  if not 0 < enc.num_symbols <= remaining:
    raise RuntimeError(
        f"{method.spec} covered {enc.num_symbols} of {remaining} symbols within "
        f"{max_tokens} tokens (example {index}, offset {offset}); raise --max_tokens")
  return PackedRecord(example_index=index, piece=piece, offset=offset,
                      tokens=np.asarray(enc.tokens, np.int32), num_bytes=int(enc.num_symbols),
                      num_windows=int(enc.num_windows),
                      num_literal_windows=int(enc.num_literal_windows))


def pack(method, examples: Sequence[np.ndarray], max_tokens: int = constants.MAX_TOKENS,
         packing: str = "continue") -> list[PackedRecord]:
  """Codes examples into M2 examples of at most `max_tokens` tokens.

  Args:
    method: a `compressor.Method`.
    examples: symbol streams (values 0..256), e.g. from `examples.make_examples`.
    max_tokens: M2 sequence length (512 in the paper).
    packing: "continue" (cover every symbol) or "truncate" (one M2 example per
      example, the rest dropped; see `dropped_symbols`).

  Returns:
    Records sorted by (example_index, piece). Under "continue" the records of
    example i cover it exactly, in order.

  Raises:
    ValueError: on a bad `packing` or `max_tokens`.
    RuntimeError: if the method cannot cover a single symbol in `max_tokens`.
  """
  _check_args(max_tokens, packing)
  examples = [symbols_lib.as_symbols(x) for x in examples]
  pending = [(i, 0, 0) for i, x in enumerate(examples) if x.size]  # (index, piece, offset)
  records = []
  while pending:
    encoded = method.encode_batch([examples[i][off:] for i, _, off in pending], max_tokens)
    following = []
    for (i, piece, off), enc in zip(pending, encoded, strict=True):
      rec = _record(method, i, piece, off, examples[i].size - off, enc, max_tokens)
      records.append(rec)
      end = off + rec.num_bytes
      if packing == "continue" and end < examples[i].size:
        following.append((i, piece + 1, end))
    pending = following
  records.sort(key=lambda r: (r.example_index, r.piece))
  return records


def dropped_symbols(examples: Sequence[np.ndarray], records: Sequence[PackedRecord]) -> list[int]:
  """Returns, per example, how many of its symbols no record covers."""
  covered = np.zeros(len(examples), np.int64)
  for rec in records:
    covered[rec.example_index] += rec.num_bytes
  return [int(np.asarray(x).size - c) for x, c in zip(examples, covered)]
