"""The integer arithmetic of `training.m1.exact`, written again in plain int64 numpy.

An oracle for tests: each context is recomputed from scratch (full causal
attention over all its positions, no cache, no lanes), every primitive is
written in its textbook form (`x * mult` in int64, `math.isqrt`, numpy floor
division), and every intermediate is checked against the int32 bounds that the
jitted path relies on, so an overflow there shows up here as an error.
"""
from typing import Sequence

import numpy as np

from compressor import constants
from training import configs
from training.m1 import exact
from training.m1 import exact_int
from training.m1 import exact_params
from training.m1.exact_int import (  # pylint: disable=unused-import  (the oracle's primitives)
    bit_length, bounded as _bounded, isqrt, mul_shift, rms_norm, round_div)


def dense(h: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """[T, K] x [K, N] in int64, checked to fit int32."""
  return _bounded("matmul", h.astype(np.int64) @ kernel.astype(np.int64))


def softmax_weights(z, valid, mult, shift, table):
  """[..., S] scores -> unnormalised weights (see `exact_kernels.softmax_weights`)."""
  zmax = np.max(np.where(valid, z, np.iinfo(np.int64).min), axis=-1, keepdims=True)
  diff = np.where(valid, zmax - z, 0)
  t = np.minimum(mul_shift(diff, mult, shift), table.size - 1)
  return np.where(valid, table[t], 0)


def table_freqs(params: dict, x: np.ndarray, bits: int) -> np.ndarray:
  """[T, d] residual -> [T, 257] frequency tables."""
  h = rms_norm(x, params["final_norm/mult"], params["final_norm/shift"], bits)
  z = mul_shift(dense(h, params["logits/kernel"]), params["logits/mult"], params["logits/shift"])
  table = params["out_exp"].astype(np.int64)
  p = table[np.minimum(z.max(axis=-1, keepdims=True) - z, table.size - 1)]
  total = p.sum(axis=-1, keepdims=True)
  freqs = 1 + _bounded("freq numerator", p * exact_params.SPARE) // total
  rest = constants.TOTAL_FREQ - freqs.sum(axis=-1)
  top = np.argmax(p, axis=-1)  # first index of the largest weight
  freqs[np.arange(freqs.shape[0]), top] += rest
  assert freqs.min() >= 1 and np.all(freqs.sum(axis=-1) == constants.TOTAL_FREQ)
  return freqs


def sequence_freqs(config: configs.ModelConfig, params: dict[str, np.ndarray],
                   inputs: np.ndarray) -> np.ndarray:
  """[T] inputs (positions 0..T-1) -> [T, 257] int64 tables; row t follows inputs[:t + 1].

  Args:
    config: the M1 config.
    params: flat integer weights (`exact_params.param_specs`).
    inputs: token ids, normally BOS first.
  """
  c = config
  p = {k: np.asarray(v).astype(np.int64) for k, v in params.items()}
  bits = exact_params.norm_bits(c.d_model)
  inputs = np.asarray(inputs, np.int64)
  t = inputs.size
  pos = np.arange(t)
  dist = pos[:, None] - pos[None, :]
  valid = (dist >= 0) & (dist < c.max_len)  # [T, T]
  bucket = p["buckets"][np.clip(dist, 0, c.max_len - 1)]
  x = p["embed"][inputs]  # [T, d]
  for i in range(c.num_layers):
    pre = f"layers_{i}/"
    h = rms_norm(x, p[pre + "attn_norm/mult"], p[pre + "attn_norm/shift"], bits)
    qkv = mul_shift(dense(h, p[pre + "qkv/kernel"]), p[pre + "qkv/mult"], p[pre + "qkv/shift"])
    qkv = np.clip(qkv, -exact_int.ACT_MAX, exact_int.ACT_MAX).reshape(t, 3, c.num_heads, c.head_dim)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # [T, H, D]
    o = np.zeros((t, c.num_heads, c.head_dim), np.int64)
    for head in range(c.num_heads):
      scores = _bounded("scores", q[:, head] @ k[:, head].T + p[pre + "rel_bias"][bucket, head])
      w = softmax_weights(scores, valid, p[pre + "softmax/mult"][head],
                          p[pre + "softmax/shift"][head], p["att_exp"])  # [T, T]
      acc = _bounded("attention sum", w @ v[:, head])
      o[:, head] = round_div(acc, np.maximum(w.sum(axis=-1, keepdims=True), 1))
    y = mul_shift(dense(o.reshape(t, -1), p[pre + "out/kernel"]), p[pre + "out/mult"],
                  p[pre + "out/shift"])
    x = np.clip(x + y, -exact_int.RESIDUAL_MAX, exact_int.RESIDUAL_MAX)
    h = rms_norm(x, p[pre + "mlp_norm/mult"], p[pre + "mlp_norm/shift"], bits)
    a = mul_shift(dense(h, p[pre + "wi/kernel"]), p[pre + "wi/mult"], p[pre + "wi/shift"])
    if c.mlp_gated:
      u = np.clip(a[:, :c.mlp_dim], 0, exact_int.RELU_BRANCH_MAX)
      b = np.clip(a[:, c.mlp_dim:], -exact_int.LINEAR_BRANCH_MAX, exact_int.LINEAR_BRANCH_MAX)
      g = np.clip(mul_shift(u * b, p[pre + "gate/mult"], p[pre + "gate/shift"]),
                  -exact_int.ACT_MAX, exact_int.ACT_MAX)
    else:
      g = np.clip(a, 0, exact_int.ACT_MAX)
    y = mul_shift(dense(g, p[pre + "wo/kernel"]), p[pre + "wo/mult"], p[pre + "wo/shift"])
    x = np.clip(x + y, -exact_int.RESIDUAL_MAX, exact_int.RESIDUAL_MAX)
  return table_freqs(p, x, bits)


def freqs(config: configs.ModelConfig, params: dict[str, np.ndarray],
          contexts: Sequence[np.ndarray | bytes]) -> np.ndarray:
  """[len(contexts), 257] int32 tables: BOS + context, recomputed from scratch each."""
  out = [sequence_freqs(config, params,
                        np.concatenate([[exact_params.BOS], exact.check_symbols(c)]))[-1]
         for c in contexts]
  return np.array(out, np.int32).reshape(len(contexts), constants.ALPHABET_SIZE)
