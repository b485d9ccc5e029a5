"""The int64 numpy primitives of the integer-exact M1, each checked against its bounds.

`training.m1.exact` computes in int32 on the device and relies on these bounds;
the same primitives in plain int64 numpy (textbook `x * mult`, `math.isqrt`,
floor division), with every intermediate checked, serve the numpy oracle
(`exact_reference`) and the host-side table of layer 0's norm
(`exact.first_norm_table`). The bounds of activations live here so that both
take them from one place.
"""
import math

import numpy as np

ACT_MAX = 127  # int8 activations: normed inputs, q, k, v, attention outputs, gated products
RELU_BRANCH_MAX = 4095  # gated MLP: relu(x W0) in [0, 4095] (12 bits)
LINEAR_BRANCH_MAX = 2047  # gated MLP: x W1 in [-2047, 2047] (12 bits)
RESIDUAL_MAX = (1 << 24) - 1  # residual stream clip
_INT32 = 1 << 31


def bounded(name: str, x: np.ndarray, limit: int = _INT32) -> np.ndarray:
  """Asserts |x| < limit (default: fits int32) and returns x."""
  if x.size and np.abs(x).max() >= limit:
    raise OverflowError(f"{name}: |value| {np.abs(x).max()} >= {limit}")
  return x


def mul_shift(x: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
  """round(x * mult / 2**shift), halves up, in int64."""
  x = bounded("mul_shift input", np.asarray(x, np.int64), 1 << 30)
  mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
  return bounded("mul_shift output", (x * mult + (np.int64(1) << (shift - 1))) >> shift)


def round_div(n: np.ndarray, d: np.ndarray) -> np.ndarray:
  """floor((n + floor(d / 2)) / d) for d >= 1."""
  n, d = np.asarray(n, np.int64), np.asarray(d, np.int64)
  assert np.all(d >= 1)
  return bounded("round_div numerator", n + d // 2) // d


def isqrt(n: np.ndarray) -> np.ndarray:
  """floor(sqrt(n)) elementwise, by math.isqrt."""
  n = np.asarray(n, np.int64)
  return np.array([math.isqrt(int(v)) for v in n.reshape(-1)], np.int64).reshape(n.shape)


def bit_length(m: np.ndarray) -> np.ndarray:
  """Number of bits of non-negative integers (0 -> 0)."""
  m = np.asarray(m, np.int64)
  return sum((m >= (np.int64(1) << k)).astype(np.int64) for k in range(63))


def rms_norm(x: np.ndarray, mult: np.ndarray, shift: int, bits: int) -> np.ndarray:
  """[T, d] residual -> [T, d] values in [-127, 127]."""
  scale = bit_length(np.abs(x).max(axis=-1, keepdims=True)) - bits  # [T, 1]
  down, up = np.maximum(scale, 0), np.maximum(-scale, 0)
  half = np.where(down > 0, np.int64(1) << np.maximum(down - 1, 0), 0)
  row = bounded("normed row", ((x + half) >> down) << up, (1 << bits) + 1)
  ss = bounded("sum of squares", np.sum(row * row, axis=-1, keepdims=True), (1 << 30) + 1)
  r = np.maximum(isqrt(ss), 1)
  out = round_div(bounded("norm numerator", row * mult, 1 << 29), r << np.int64(shift))
  return np.clip(out, -ACT_MAX, ACT_MAX)
