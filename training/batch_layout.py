"""The batch layout that M1's and M2's input pipelines both yield, a dict of numpy arrays:

  inputs     [B, T] int32    token fed at each position (BOS first)
  targets    [B, T] int32    token to predict at each position
  weights    [B, T] float32  loss mask: 1 on real targets, 0 on padding
  num_bytes  [B]    int64    raw symbols covered by the example (bits/byte denominator)
  ids        [B]    int64    example id (sequence index for M1, record index for M2)

BOS / pad convention (M1 and M2 alike): the model vocabulary is the token
vocabulary plus one id, BOS = token_vocab, which only ever appears as the
first input. A sequence of n <= T tokens t[0..n) becomes

  inputs  = [BOS, t0, ..., t(n-2), 0, ..., 0]
  targets = [t0,  t1, ..., t(n-1), 0, ..., 0]
  weights = [1,   1,  ..., 1,      0, ..., 0]

so every token of the record is predicted exactly once, the padding id 0 is
never scored, and causal attention keeps padding out of the real positions.
For M1 the token vocabulary is the 257 symbols (bytes + EOS), so BOS = 257
and num_bytes = n (every symbol counts as one byte, EOS included).
"""
import functools

import numpy as np

PAD = 0


def model_vocab_size(token_vocab: int) -> int:
  """Vocabulary of the model's embedding and output: the tokens plus BOS."""
  return token_vocab + 1


def check_fits(n: int, seq_len: int) -> None:
  """Raises the one-line error of a sequence of n tokens longer than seq_len."""
  if n > seq_len:
    raise ValueError(f"sequence of {n} tokens does not fit seq_len={seq_len}; "
                     "raise --seq_len or write shorter records")


def pack_sequence(tokens: np.ndarray, seq_len: int, bos: int) -> dict[str, np.ndarray]:
  """Lays one token sequence out as inputs/targets/weights (see module doc).

  Args:
    tokens: [n] ints, n <= seq_len.
    seq_len: T.
    bos: the BOS id.

  Returns:
    dict with inputs [T] int32, targets [T] int32, weights [T] float32.

  Raises:
    ValueError: if n > seq_len.
  """
  n = len(tokens)
  check_fits(n, seq_len)
  inputs = np.full(seq_len, PAD, np.int32)
  targets = np.full(seq_len, PAD, np.int32)
  weights = np.zeros(seq_len, np.float32)
  inputs[0] = bos
  inputs[1:n] = tokens[:n - 1]
  targets[:n] = tokens
  weights[:n] = 1.0
  return {"inputs": inputs, "targets": targets, "weights": weights}


def stack(examples: list[dict]) -> dict[str, np.ndarray]:
  """Stacks a list of per-example dicts into a batch dict."""
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def empty_row(example: dict) -> dict[str, np.ndarray]:
  """A row shaped like `example` that holds nothing: zeros (weights 0, num_bytes 0), ids -1."""
  return {k: np.full_like(v, -1 if k == "ids" else 0) for k, v in example.items()}


def stack_full(examples: list[dict], rows: int) -> dict[str, np.ndarray]:
  """`stack` of up to `rows` examples, filled up to `rows` with `empty_row`s.

  The last batch of an evaluation pass: every example is scored, and the batch
  keeps the shape the compiled step expects.
  """
  examples = list(examples)
  return stack(examples + [empty_row(examples[0])] * (rows - len(examples)))


def batched(ds, rows: int, repeat: bool):
  """grain dataset -> batches of `rows`; without `repeat` the last batch is filled up
  (`stack_full`) instead of dropped, so a pass over the data scores all of it."""
  if repeat:
    return ds.batch(rows, drop_remainder=True, batch_fn=stack)
  return ds.batch(rows, drop_remainder=False, batch_fn=functools.partial(stack_full, rows=rows))
