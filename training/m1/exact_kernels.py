"""The integer kernels and forward pass of the integer-exact M1 (int32 in, int32 out).

Number formats (all values are int32 at run time; int64 is never needed):

* residual stream: integers in units of one calibrated scale, clipped to
  +-RESIDUAL_MAX (the token embedding is stored in these units);
* RMSNorm: the row is shifted by a power of two to `norm_bits` bits (a no-op
  for the norm, which is scale-free), squared and summed, and divided by the
  integer square root (bit by bit). Per-channel multipliers set the output
  scale (and SmoothQuant factors), so the output is int8 in [-127, 127]; the
  learned norm scale is folded into the next weight matrix;
* matmuls: int8 x int8 products with int32 accumulation (`lax.dot_general`,
  `preferred_element_type=int32`), each summing at most DOT_CHUNK terms
  (longer contractions are summed chunk by chunk in int32), so a product stays
  exact even where a backend computes it through float arithmetic with partial
  sums below 2**24;
* layer 0's normed input depends on the token alone, so it is a table
  computed once on the host (`first_norm_table`) and gathered on the device;
* attention sums (weights times values, below 2**12 * 127 * 2048 < 2**31) are
  an integer multiply and an integer reduction, not matrix products (on CPU
  the reduction is also the faster of the two);
* requantisation: `mul_shift(x, mult, shift)` = round(x * mult / 2**shift)
  with 15-bit multipliers, per output channel, evaluated in int32 without
  overflow (the product is split into 15-bit halves);
* attention: int8 queries, keys and values (the KV cache holds int8 values,
  in int8 or int32 arrays); scores in
  int32 plus the relative position bias as int32 in the same units; softmax by
  an exp lookup table on the max-subtracted scores (requantised to 2**-6 nats),
  weights up to ATT_ONE = 2**12, and an exact integer division by their sum;
* MLP: 12-bit branches, their product requantised to int8;
* table: logits requantised to 2**-8 nats, exp lookup table up to
  OUT_ONE = 2**16, then `1 + floor(p * (2**14 - 257) / sum(p))` per symbol and
  the remainder to the most probable symbol (lowest index on ties), the rule of
  `compressor.models.base.quantize`.

The lookup tables and the relative-position bucket table are stored with the
weights, so no transcendental function is evaluated when tables are made.

Every int32 intermediate is bounded by construction for max_len <= 2048,
matmul depths <= 2**16 and head_dim <= DOT_CHUNK (`check_config`);
`training.m1.exact_reference` recomputes everything in int64 and checks the
bounds.
"""
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from compressor import constants
from training import configs
from training import model as model_lib
from training.m1 import exact_int
from training.m1.exact_int import ACT_MAX, LINEAR_BRANCH_MAX, RELU_BRANCH_MAX, RESIDUAL_MAX
from training.m1.exact_params import DOT_CHUNK, SPARE, norm_bits

CACHE_CHUNK = model_lib.DECODE_CHUNK  # the KV cache grows in whole chunks of slots
_INT32_MIN = np.iinfo(np.int32).min
TRACE_NAMES = ("x", "q", "k", "v", "scores", "p", "acc", "o")  # per layer, in computation order
ATTENTION_SUM_ELEMENTS = 1 << 24  # most int32 products a full-recompute attention sum holds at once


def unflatten(flat: dict[str, Any]) -> dict:
  """{"a/b/c": x} -> {"a": {"b": {"c": x}}}."""
  tree: dict = {}
  for name, array in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = array
  return tree


# -- integer primitives (int32 in, int32 out) ----------------------------------

def mul_shift(x: jax.Array, mult: jax.Array, shift: jax.Array) -> jax.Array:
  """round(x * mult / 2**shift), halves rounded up, without int32 overflow.

  Args:
    x: int32 with |x| < 2**30.
    mult: int32 in [0, 2**15), broadcastable to x.
    shift: int32 in [1, 30], broadcastable to x. The result must fit in int32.

  x * mult = hi * mult * 2**15 + lo * mult with lo = x mod 2**15: both partial
  products fit in int32, and so does every sum below.
  """
  hi = x >> 15
  lo = x & 0x7FFF
  b = lo * mult + jnp.left_shift(1, shift - 1)  # < 2**31
  a = hi * mult
  down = (a + (b >> 15)) >> jnp.maximum(shift - 15, 0)  # shift >= 15
  up = jnp.left_shift(a, jnp.maximum(15 - shift, 0)) + (b >> jnp.minimum(shift, 15))
  return jnp.where(shift >= 15, down, up)


def round_div(n: jax.Array, d: jax.Array) -> jax.Array:
  """floor((n + floor(d / 2)) / d) for d >= 1: n / d rounded, halves up."""
  return jnp.floor_divide(n + (d >> 1), d)


def isqrt(n: jax.Array) -> jax.Array:
  """floor(sqrt(n)) of int32 n in [0, 2**30], bit by bit."""
  res = jnp.zeros_like(n)
  bit = 1 << 30
  while bit:
    t = res + bit
    ge = n >= t
    n = jnp.where(ge, n - t, n)
    res = jnp.where(ge, (res >> 1) + bit, res >> 1)
    bit >>= 2
  return res


def rms_norm(x: jax.Array, norm: dict, bits: int) -> jax.Array:
  """Integer RMSNorm: [..., d] residual -> [..., d] int8 values.

  The row is rounded to `bits` bits by a power of two (RMSNorm does not see
  the scale), and output i is round(x_i * mult_i / (isqrt(sum x^2) * 2**shift))
  with mult_i < `norm_mult_limit(d)` and shift in [0, 15].
  """
  m = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
  down = jnp.maximum(32 - jax.lax.clz(m) - bits, 0)
  up = jnp.maximum(bits - 32 + jax.lax.clz(m), 0)
  half = jnp.left_shift(1, down) >> 1
  xr = jnp.left_shift((x + half) >> down, up)  # |xr| <= 2**bits
  ss = jnp.sum(xr * xr, axis=-1, keepdims=True)  # <= 2**30
  r = jnp.maximum(isqrt(ss), 1)  # <= 2**15
  h = round_div(xr * norm["mult"], jnp.left_shift(r, norm["shift"]))  # < 2**29, <= 2**30
  return jnp.clip(h, -ACT_MAX, ACT_MAX)


def dense(h: jax.Array, kernel: jax.Array) -> jax.Array:
  """[..., K] int8 values x [K, N] int8 -> [..., N] int32 exact sums.

  Contractions longer than DOT_CHUNK run as chunks of DOT_CHUNK, summed in
  int32, so no partial sum of one product reaches 2**24.
  """
  k = kernel.shape[0]
  h = h.astype(jnp.int8)
  if k <= DOT_CHUNK:
    return jax.lax.dot_general(h, kernel, (((h.ndim - 1,), (0,)), ((), ())),
                               preferred_element_type=jnp.int32)
  chunks = -(-k // DOT_CHUNK)
  pad = chunks * DOT_CHUNK - k
  h = jnp.pad(h, [(0, 0)] * (h.ndim - 1) + [(0, pad)]).reshape(h.shape[:-1] + (chunks, DOT_CHUNK))
  w = jnp.pad(kernel, ((0, pad), (0, 0))).reshape(chunks, DOT_CHUNK, kernel.shape[1])
  parts = jax.lax.dot_general(h, w, (((h.ndim - 1,), (1,)), ((h.ndim - 2,), (0,))),
                              preferred_element_type=jnp.int32)  # [chunks, ..., N]
  return jnp.sum(jax.lax.optimization_barrier(parts), axis=0)  # not folded into one product


def attention_sum(p: jax.Array, v: jax.Array) -> jax.Array:
  """sum_s p[..., s] * v[..., s, :]: [..., S] weights, [..., S, D] values -> [..., D] int32.

  Weights lie in [0, ATT_ONE] and values in [-127, 127], so for S <= 2048 every
  partial sum fits in int32. The sum is an integer multiply and an integer
  reduction, not a matrix product: integer addition gives the same result in
  any order, and no backend routes it through a float or tensor-core matrix
  unit (see the module docstring). Leading dimensions broadcast.
  """
  return jnp.sum(p[..., None] * v.astype(jnp.int32), axis=-2)


def causal_attention_sum(p: jax.Array, v: jax.Array) -> jax.Array:
  """`attention_sum` of every query: [B, H, Tq, Tk] weights, [B, H, Tk, D] -> [B, H, Tq, D].

  Queries go in chunks so that one chunk's products hold at most
  ATTENTION_SUM_ELEMENTS integers.
  """
  b, h, tq, tk = p.shape
  chunk = max(1, min(tq, ATTENTION_SUM_ELEMENTS // max(b * h * tk * v.shape[-1], 1)))
  pieces = -(-tq // chunk)
  p = jnp.pad(p, ((0, 0), (0, 0), (0, pieces * chunk - tq), (0, 0)))
  p = jnp.moveaxis(p.reshape(b, h, pieces, chunk, tk), 2, 0)  # [pieces, B, H, chunk, Tk]
  out = jax.lax.map(lambda w: attention_sum(w, v[:, :, None]), p)  # [pieces, B, H, chunk, D]
  return jnp.moveaxis(out, 0, 2).reshape(b, h, pieces * chunk, -1)[:, :, :tq]


def int8_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """einsum of int8-valued operands as an int8 x int8 -> int32 product.

  int8 x int8 with int32 accumulation is the integer product that GPUs and
  TPUs run natively, and it stays exact even where a backend goes through
  float arithmetic, as long as each contraction has at most DOT_CHUNK terms.
  """
  return jnp.einsum(spec, a.astype(jnp.int8), b.astype(jnp.int8),
                    preferred_element_type=jnp.int32)


def softmax_weights(z: jax.Array, valid: jax.Array, mult: jax.Array, shift: jax.Array,
                    table: jax.Array) -> jax.Array:
  """Unnormalised integer softmax over the last axis: table[(max z - z) requantised].

  Args:
    z: [..., S] int32 scores.
    valid: bool, broadcastable to z; invalid entries get weight 0.
    mult, shift: requantisation of score differences to table steps,
      broadcastable to z.
    table: [n] int32 exp table.

  Returns:
    [..., S] int32 weights in [0, table[0]]; the largest valid score gets table[0].
  """
  zmax = jnp.max(jnp.where(valid, z, _INT32_MIN), axis=-1, keepdims=True)
  diff = jnp.where(valid, zmax - z, 0)
  t = jnp.minimum(mul_shift(diff, mult, shift), table.shape[0] - 1)
  return jnp.where(valid, table[t], 0)


def table_freqs(params: dict, x: jax.Array, bits: int) -> jax.Array:
  """Final norm, logits and the quantised table: [..., d] residual -> [..., 257] int32."""
  h = rms_norm(x, params["final_norm"], bits)
  logits = params["logits"]
  z = mul_shift(dense(h, logits["kernel"]), logits["mult"], logits["shift"])
  exp = params["out_exp"]
  zmax = jnp.max(z, axis=-1, keepdims=True)
  p = exp[jnp.minimum(zmax - z, exp.shape[0] - 1)]  # [..., 257]
  total = jnp.sum(p, axis=-1, keepdims=True)  # >= exp[0]
  freqs = 1 + (p * SPARE) // total
  rest = constants.TOTAL_FREQ - jnp.sum(freqs, axis=-1, keepdims=True)
  index = jnp.arange(constants.ALPHABET_SIZE)
  top = jnp.min(jnp.where(p == exp[0], index, constants.ALPHABET_SIZE), axis=-1, keepdims=True)
  return freqs + jnp.where(index == top, rest, 0)


# -- the transformer -----------------------------------------------------------

def first_norm_table(config: configs.ModelConfig, params: dict[str, np.ndarray]) -> np.ndarray:
  """[VOCAB_SIZE, d] int8: `rms_norm` of every embedding row with layer 0's attention norm.

  Layer 0 normalises the embedding of its input token, so its normed input is
  a table of the weights alone. It is computed once, on the host, by the int64
  numpy norm of `training.m1.exact_int` (which also checks its bounds), and
  the device programs gather from it: no device reduces over a
  gathered embedding row. On an H100 (jax 0.11.2), where the device computed
  this norm from the gathered row, one token's row of a converted M1 came out
  with one value off by one (-13 where the CPU and the int64 oracle give -14:
  what the row gives when its one entry above 2**15 is left out of its
  power-of-two scale), and every table after that token differed; those
  weights are kept in tests/training/data.
  """
  return exact_int.rms_norm(
      np.asarray(params["embed"], np.int64), params["layers_0/attn_norm/mult"],
      params["layers_0/attn_norm/shift"], norm_bits(config.d_model)).astype(np.int8)


def device_tree(config: configs.ModelConfig, params: dict[str, np.ndarray]) -> dict:
  """The nested weights that `decode_step` and `sequence_freqs` take: `params` plus
  "first_norm" (`first_norm_table`)."""
  return unflatten({**params, "first_norm": first_norm_table(config, params)})


def _normed_input(config: configs.ModelConfig, params: dict, i: int, x: jax.Array,
                  tokens: jax.Array) -> jax.Array:
  """Layer i's attention norm of its [..., d] input; layer 0's is looked up by token."""
  if i == 0:
    return params["first_norm"][tokens]
  return rms_norm(x, params[f"layers_{i}"]["attn_norm"], norm_bits(config.d_model))


def _qkv(config: configs.ModelConfig, layer: dict, h: jax.Array):
  """[..., d] normed int8 values -> q, k, v [..., H, D] int8 values."""
  qkv = layer["qkv"]
  y = jnp.clip(mul_shift(dense(h, qkv["kernel"]), qkv["mult"], qkv["shift"]), -ACT_MAX, ACT_MAX)
  y = y.reshape(y.shape[:-1] + (3, config.num_heads, config.head_dim))
  return y[..., 0, :, :], y[..., 1, :, :], y[..., 2, :, :]


def _residual_add(x: jax.Array, acc: jax.Array, requant: dict) -> jax.Array:
  y = mul_shift(acc, requant["mult"], requant["shift"])
  return jnp.clip(x + y, -RESIDUAL_MAX, RESIDUAL_MAX)


def _finish_block(config: configs.ModelConfig, layer: dict, x: jax.Array,
                  o: jax.Array) -> jax.Array:
  """Attention output projection, residual, MLP, residual: [..., d], [..., H, D] -> [..., d]."""
  o = o.reshape(o.shape[:-2] + (config.attn_dim,))
  x = _residual_add(x, dense(o, layer["out"]["kernel"]), layer["out"])
  h = rms_norm(x, layer["mlp_norm"], norm_bits(config.d_model))
  wi = layer["wi"]
  a = mul_shift(dense(h, wi["kernel"]), wi["mult"], wi["shift"])
  if config.mlp_gated:
    f = config.mlp_dim
    u = jnp.clip(a[..., :f], 0, RELU_BRANCH_MAX)
    b = jnp.clip(a[..., f:], -LINEAR_BRANCH_MAX, LINEAR_BRANCH_MAX)
    g = jnp.clip(mul_shift(u * b, layer["gate"]["mult"], layer["gate"]["shift"]), -ACT_MAX,
                 ACT_MAX)
  else:
    g = jnp.clip(a, 0, ACT_MAX)
  return _residual_add(x, dense(g, layer["wo"]["kernel"]), layer["wo"])


def _cdf(freqs: jax.Array) -> jax.Array:
  zero = jnp.zeros(freqs.shape[:-1] + (1,), jnp.int32)
  return jnp.concatenate([zero, jnp.cumsum(freqs, axis=-1, dtype=jnp.int32)], axis=-1)


def _write_slots(cache: jax.Array, slot: jax.Array, new: jax.Array,
                 write: jax.Array) -> jax.Array:
  """cache [B, H, S, D] with new[b] [H, D] in slot[b] where write[b]."""
  rows = jnp.arange(cache.shape[0])
  old = cache[rows, :, slot]  # [B, H, D]
  return cache.at[rows, :, slot].set(jnp.where(write[:, None, None], new.astype(cache.dtype), old))


def decode_step(config: configs.ModelConfig, params: dict, cache: list[dict], tokens: jax.Array,
                positions: jax.Array, active: jax.Array,
                bos_kv: list[dict] | None = None) -> tuple[jax.Array, list[dict]]:
  """One input per lane against an int8 ring-buffer KV cache.

  Position p lives in slot p % max_len; a lane attends to the slots whose
  distance (p - slot) mod max_len is at most p, i.e. to its last max_len
  positions, so a lane restarts by feeding position 0.

  Args:
    config: the M1 config.
    params: nested integer weights (`device_tree`).
    cache: per layer {"k", "v"}: [B, H, S, D] int8 values (int8 or int32
      container), S >= min(p + 1, max_len).
    tokens: [B] int32 inputs.
    positions: [B] int32 absolute positions of the inputs.
    active: [B] bool; inactive lanes leave the cache untouched.
    bos_kv: optional per layer {"k", "v"}: [H, D], the keys and values of BOS
      at position 0 (`ExactM1Model.bos_state`). When given, slot 0 of each
      active lane at a position in [1, max_len) is set to them first, so a
      lane can skip the BOS step and start at position 1 in any cache row.

  Returns:
    ([B, 258] int32 cumulative tables of the next symbol, new cache).
  """
  slots = cache[0]["k"].shape[2]
  s = jnp.arange(slots)
  dist = jnp.mod(positions[:, None] - s[None, :], config.max_len)  # [B, S]
  valid = ((s[None, :] < config.max_len) & (dist <= positions[:, None]))[:, None, :]
  bucket = params["buckets"][dist]  # [B, S]
  slot = positions % config.max_len
  start = active & (positions > 0) & (positions < config.max_len)
  x = params["embed"][tokens]  # [B, d]
  new_cache = []
  for i in range(config.num_layers):
    layer = params[f"layers_{i}"]
    q, k, v = _qkv(config, layer, _normed_input(config, params, i, x, tokens))  # [B, H, D]
    layer_cache = {}
    for name, new in (("k", k), ("v", v)):
      values = cache[i][name]
      if bos_kv is not None:
        bos = jnp.broadcast_to(bos_kv[i][name], new.shape)
        values = _write_slots(values, jnp.zeros_like(slot), bos, start)
      layer_cache[name] = _write_slots(values, slot, new, active)
    new_cache.append(layer_cache)
    scores = int8_einsum("bhd,bhsd->bhs", q, layer_cache["k"])
    scores = scores + jnp.transpose(layer["rel_bias"][bucket], (0, 2, 1))
    softmax = layer["softmax"]
    p = softmax_weights(scores, valid, softmax["mult"][:, None], softmax["shift"][:, None],
                        params["att_exp"])  # [B, H, S]
    acc = attention_sum(p, layer_cache["v"])  # [B, H, D]
    o = round_div(acc, jnp.maximum(jnp.sum(p, axis=-1, keepdims=True), 1))
    x = _finish_block(config, layer, x, o)
  return _cdf(table_freqs(params, x, norm_bits(config.d_model))), new_cache


def sequence_freqs(config: configs.ModelConfig, params: dict, inputs: jax.Array,
                   trace: bool = False):
  """Full causal recompute: [B, T] inputs (positions 0..T-1) -> [B, T, 257] int32 tables.

  Row t is the table of the symbol after inputs[:, :t + 1]; a position
  attends to its last max_len positions, itself included. With `trace`,
  returns (tables, {name: intermediate}) with every integer intermediate in
  computation order ("0.q", "0.scores", "0.p", "0.acc", ..., "freqs"), for
  finding where two devices part.
  """
  t = inputs.shape[1]
  pos = np.arange(t)
  dist = pos[:, None] - pos[None, :]  # [T, T] query - key
  valid = jnp.asarray((dist >= 0) & (dist < config.max_len))
  bucket = params["buckets"][jnp.asarray(np.clip(dist, 0, config.max_len - 1))]  # [T, T]
  x = params["embed"][inputs]  # [B, T, d]
  seen = {}
  for i in range(config.num_layers):
    layer = params[f"layers_{i}"]
    q, k, v = _qkv(config, layer, _normed_input(config, params, i, x, inputs))  # [B, T, H, D]
    scores = int8_einsum("bqhd,bkhd->bhqk", q, k)
    scores = scores + jnp.transpose(layer["rel_bias"][bucket], (2, 0, 1))[None]
    softmax = layer["softmax"]
    p = softmax_weights(scores, valid, softmax["mult"][:, None, None],
                        softmax["shift"][:, None, None], params["att_exp"])  # [B, H, T, T]
    acc = jnp.transpose(causal_attention_sum(p, jnp.transpose(v, (0, 2, 1, 3))),
                        (0, 2, 1, 3))  # [B, T, H, D]
    total = jnp.transpose(jnp.sum(p, axis=-1), (0, 2, 1))[..., None]  # [B, T, H, 1]
    o = round_div(acc, jnp.maximum(total, 1))
    x_in, x = x, _finish_block(config, layer, x, o)
    seen.update(zip((f"{i}.{name}" for name in TRACE_NAMES),
                    (x_in, q, k, v, scores, p, acc, o)))
  freqs = table_freqs(params, x, norm_bits(config.d_model))
  return (freqs, {**seen, "x": x, "freqs": freqs}) if trace else freqs
