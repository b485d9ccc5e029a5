"""Integer-exact M1: frequency tables that are the same integers on every device.

Arithmetic decoding fails if one table entry differs between the machine that
encodes and the one that decodes, so this M1 computes its tables with integer
arithmetic only (integer-only inference after Jacob et al. 2018 and I-BERT,
Kim et al. 2021). The float M1 (`training.m1`) is converted once, by
`training.quantize_m1.convert`; from then on a table is a pure function of the
integer weights and the context: the same on CPU, GPU and TPU, whatever the
batch size, the lane, the padding, or whether a KV cache or a full recompute
produced it.

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
`training.exact_reference` recomputes everything in int64 and checks the
bounds.

Model directory (`save`/`load`): `config.json` (format tag, `ModelConfig`,
fingerprint, how it was made) and `params.npz` (integer arrays by name).
"""
import collections
import functools
import hashlib
import io
import json
import os
import zipfile
from typing import Any, Sequence

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from compressor import constants
from compressor.models import base
from training import configs
from training import exact_int
from training import model as model_lib
from training.exact_int import ACT_MAX, LINEAR_BRANCH_MAX, RELU_BRANCH_MAX, RESIDUAL_MAX

FORMAT = "eqinfo-exact-m1-v1"  # tag of the directory layout and of the arithmetic below
CONFIG_FILE = "config.json"
PARAMS_FILE = "params.npz"
SUBDIR = "exact"  # where `eqinfo quantize-m1` puts the exact model of an M1 directory

BOS = constants.ALPHABET_SIZE  # 257: input token that starts every context
VOCAB_SIZE = constants.ALPHABET_SIZE + 1  # 258 input tokens
MULT_BITS = 15  # requantisation multipliers lie in [0, 2**15)
MAX_SHIFT = 30  # requantisation shifts lie in [1, 30]
ATT_FRAC_BITS = 6  # attention exp table index: max-subtracted score in units of 2**-6 nats
ATT_ONE = 1 << 12  # attention exp table at 0
OUT_FRAC_BITS = 8  # output exp table index: max-subtracted logit in units of 2**-8 nats
OUT_ONE = 1 << 16  # output exp table at 0
SPARE = constants.TOTAL_FREQ - constants.ALPHABET_SIZE  # counts shared out by probability
CACHE_CHUNK = model_lib.DECODE_CHUNK  # the KV cache grows in whole chunks of slots
CPU_BLOCK_LANES = 64  # most rows of one compiled step on CPU; more lanes run as several blocks
ACCELERATOR_BLOCK_LANES = 2048  # the same on GPU/TPU (H100, 3m: 212k symbols/s at 2048)
MIN_BLOCK_LANES = 16  # fewest rows of one compiled step (a power of two from here up)
CACHE_DTYPES = ("int8", "int32")  # KV cache containers; both hold int8 values, same tables
_INT32_MIN = np.iinfo(np.int32).min
TRACE_NAMES = ("x", "q", "k", "v", "scores", "p", "acc", "o")  # per layer, in computation order
DOT_CHUNK = 1024  # int8 terms per exact contraction: 1024 * 127**2 < 2**24
ATTENTION_SUM_ELEMENTS = 1 << 24  # most int32 products a full-recompute attention sum holds at once


def norm_bits(d_model: int) -> int:
  """Bits of the shifted row inside RMSNorm: d_model * 4**bits <= 2**30, at most 12."""
  return min(12, (30 - (d_model - 1).bit_length()) // 2)


def norm_mult_limit(d_model: int) -> int:
  """Bound on RMSNorm multipliers: 2**(29 - norm_bits), so that x * mult < 2**29."""
  return 1 << (29 - norm_bits(d_model))


def exp_table(frac_bits: int, one: int) -> np.ndarray:
  """round(one * exp(-t / 2**frac_bits)) for t = 0, 1, ... down to the first 0.

  Computed in float64 by the converter only; the integers are stored with the
  weights.
  """
  size = int(np.ceil((1 << frac_bits) * np.log(2.0 * one))) + 2
  table = np.floor(one * np.exp(-np.arange(size) / (1 << frac_bits)) + 0.5).astype(np.int64)
  last = int(np.argmax(table == 0))
  return table[:last + 1].astype(np.int32)


def check_config(config: configs.ModelConfig) -> None:
  """Checks that the int32 arithmetic cannot overflow for this M1 config.

  Raises:
    ValueError: vocab_size is not 258, or a dimension is beyond the bounds.
  """
  if config.vocab_size != VOCAB_SIZE:
    raise ValueError(f"M1 needs vocab_size {VOCAB_SIZE} (257 symbols + BOS), "
                     f"got {config.vocab_size}")
  limits = {"max_len": 2048, "d_model": 1 << 16, "mlp_dim": 1 << 16, "attn_dim": 1 << 16,
            "head_dim": DOT_CHUNK}
  for name, limit in limits.items():
    if getattr(config, name) > limit:
      raise ValueError(f"the exact M1 supports {name} <= {limit}, got {getattr(config, name)}")


def param_specs(config: configs.ModelConfig) -> dict[str, tuple[tuple[int, ...], str]]:
  """Names, shapes and dtypes of the integer weights of an exact M1.

  Per layer i (prefix `layers_{i}/`): `attn_norm/{mult,shift}`,
  `qkv/{kernel,mult,shift}` (queries, keys, values side by side),
  `rel_bias` [buckets, H], `softmax/{mult,shift}` [H], `out/...`,
  `mlp_norm/...`, `wi/...` (gated: both branches side by side), `gate/...`
  (gated only), `wo/...`. Then `final_norm/...`, `logits/...` (257 symbols),
  `embed`, `buckets`, `att_exp`, `out_exp` (any length >= 2).
  """
  c = config
  wide = 2 * c.mlp_dim if c.mlp_gated else c.mlp_dim
  specs = {}

  def dense(name, k, n):
    specs[f"{name}/kernel"] = ((k, n), "int8")
    specs[f"{name}/mult"] = ((n,), "int32")
    specs[f"{name}/shift"] = ((n,), "int32")

  def norm(name):
    specs[f"{name}/mult"] = ((c.d_model,), "int32")
    specs[f"{name}/shift"] = ((), "int32")

  for i in range(c.num_layers):
    p = f"layers_{i}"
    norm(f"{p}/attn_norm")
    dense(f"{p}/qkv", c.d_model, 3 * c.attn_dim)
    specs[f"{p}/rel_bias"] = ((c.rel_pos_buckets, c.num_heads), "int32")
    specs[f"{p}/softmax/mult"] = ((c.num_heads,), "int32")
    specs[f"{p}/softmax/shift"] = ((c.num_heads,), "int32")
    dense(f"{p}/out", c.attn_dim, c.d_model)
    norm(f"{p}/mlp_norm")
    dense(f"{p}/wi", c.d_model, wide)
    if c.mlp_gated:
      specs[f"{p}/gate/mult"] = ((c.mlp_dim,), "int32")
      specs[f"{p}/gate/shift"] = ((c.mlp_dim,), "int32")
    dense(f"{p}/wo", c.mlp_dim, c.d_model)
  norm("final_norm")
  dense("logits", c.d_model, constants.ALPHABET_SIZE)
  specs["embed"] = ((VOCAB_SIZE, c.d_model), "int32")
  specs["buckets"] = ((c.max_len,), "int32")
  specs["att_exp"] = ((None,), "int32")
  specs["out_exp"] = ((None,), "int32")
  return specs


def check_params(config: configs.ModelConfig, params: dict[str, np.ndarray]) -> None:
  """Checks names, shapes, dtypes and value ranges of flat integer weights.

  Raises:
    ValueError: with the first problem found.
  """
  specs = param_specs(config)
  missing, unknown = sorted(set(specs) - set(params)), sorted(set(params) - set(specs))
  if missing or unknown:
    raise ValueError(f"exact M1 weights do not match the config: missing {missing[:4]}, "
                     f"unknown {unknown[:4]}")
  for name, (shape, dtype) in specs.items():
    a = np.asarray(params[name])
    if a.dtype != np.dtype(dtype) or a.ndim != len(shape) or any(
        s is not None and s != g for s, g in zip(shape, a.shape)):
      raise ValueError(f"exact M1 weight {name} must be {dtype}{list(shape)}, "
                       f"got {a.dtype}{list(a.shape)}")
    limit = norm_mult_limit(config.d_model) if name.endswith("norm/mult") else 1 << MULT_BITS
    if name.endswith("/mult") and a.size and (a.min() < 0 or a.max() >= limit):
      raise ValueError(f"{name} must lie in [0, {limit}), got [{a.min()}, {a.max()}]")
    if name.endswith("/kernel") and a.size and a.min() < -ACT_MAX:
      raise ValueError(f"{name} must lie in [-{ACT_MAX}, {ACT_MAX}], got min {a.min()}")
  for name, a in params.items():
    if name.endswith("norm/shift") and not 0 <= int(a) <= 15:
      raise ValueError(f"{name} must lie in [0, 15], got {int(a)}")
    elif name.endswith("/shift") and "norm/" not in name and a.size and (
        a.min() < 1 or a.max() > MAX_SHIFT):
      raise ValueError(f"{name} must lie in [1, {MAX_SHIFT}], got [{a.min()}, {a.max()}]")
  for name in ("att_exp", "out_exp"):
    table = params[name]
    if table.size < 2 or table[-1] != 0 or np.any(np.diff(table) > 0) or table[0] < 1:
      raise ValueError(f"{name} must decrease from a positive value to 0")
  if params["att_exp"][0] > ATT_ONE or params["out_exp"][0] > OUT_ONE:
    raise ValueError(f"exp tables must start at most at {ATT_ONE} (att_exp) and {OUT_ONE} "
                     "(out_exp)")
  buckets = params["buckets"]
  if buckets.min() < 0 or buckets.max() >= config.rel_pos_buckets:
    raise ValueError(f"buckets must lie in [0, {config.rel_pos_buckets})")
  for name, a in params.items():
    bounded = name == "embed" or name.endswith("/rel_bias")
    if bounded and a.size and np.abs(a).max() > RESIDUAL_MAX:
      raise ValueError(f"{name} must lie in [-{RESIDUAL_MAX}, {RESIDUAL_MAX}] (so that scores "
                       "and the residual stream stay within int32)")


def fingerprint(params: dict[str, np.ndarray]) -> str:
  """Short sha256 of the integer weights: names, dtypes, shapes and bytes, sorted."""
  digest = hashlib.sha256(FORMAT.encode())
  for name, array in sorted(params.items()):
    array = np.ascontiguousarray(array)
    digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()[:16]


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
  numpy norm of `training.exact_int` (which also checks its bounds), and
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


# -- the probability model ----------------------------------------------------

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


def _block_rows(num_lanes: int, block_lanes: int) -> int:
  """Rows of each compiled step: a power of two from MIN_BLOCK_LANES to block_lanes."""
  return min(block_lanes, max(MIN_BLOCK_LANES, 1 << (num_lanes - 1).bit_length()))


def check_symbols(symbols: np.ndarray | bytes) -> np.ndarray:
  """Symbols as a 1-D int32 array, checked to lie in [0, 257)."""
  if isinstance(symbols, (bytes, bytearray)):
    symbols = np.frombuffer(symbols, np.uint8)
  symbols = np.asarray(symbols).reshape(-1)
  if symbols.size and (symbols.min() < 0 or symbols.max() >= constants.ALPHABET_SIZE):
    raise ValueError(f"M1 symbols must be in [0, {constants.ALPHABET_SIZE}), got "
                     f"[{symbols.min()}, {symbols.max()}]")
  return symbols.astype(np.int32)


class ExactM1Model(base.ProbabilityModel):
  """M1 with integer-only inference: identical tables on every device.

  Args:
    config: the M1 config (vocab_size 258) the weights were converted from.
    params: flat integer weights, see `param_specs`.
    meta: JSON-able provenance saved with the model (e.g. the float M1's
      fingerprint and calibration settings).
    cache_dtype: container of the int8 KV cache values, "int8" or "int32";
      None picks int32 on CPU (whose int8 conversions are slow) and int8
      elsewhere. Tables do not depend on it.
    block_lanes: most cache rows of one compiled step of `lanes` (a power of
      two >= MIN_BLOCK_LANES); None: CPU_BLOCK_LANES on CPU, where small blocks
      are fastest, ACCELERATOR_BLOCK_LANES elsewhere, where one large step
      beats many small ones. Tables do not depend on it.
    device: where the weights live and so where tables are computed; None:
      JAX's default device.
  """

  exact = True  # tables are the same integers on every device

  def __init__(self, config: configs.ModelConfig, params: dict[str, np.ndarray],
               meta: dict | None = None, cache_dtype: str | None = None,
               block_lanes: int | None = None, device: jax.Device | None = None):
    check_config(config)
    platform = device.platform if device is not None else jax.default_backend()
    if block_lanes is None:
      block_lanes = CPU_BLOCK_LANES if platform == "cpu" else ACCELERATOR_BLOCK_LANES
    if block_lanes < MIN_BLOCK_LANES or block_lanes & (block_lanes - 1):
      raise ValueError(f"block_lanes must be a power of two >= {MIN_BLOCK_LANES}, "
                       f"got {block_lanes}")
    if cache_dtype is None:
      cache_dtype = "int32" if platform == "cpu" else "int8"
    if cache_dtype not in CACHE_DTYPES:
      raise ValueError(f"cache_dtype must be one of {CACHE_DTYPES}, got {cache_dtype!r}")
    params = {name: np.asarray(a) for name, a in params.items()}
    check_params(config, params)
    self.config = config
    self.params = params
    self.meta = dict(meta or {})
    self.cache_dtype = cache_dtype
    self.block_lanes = block_lanes
    self.device = device
    self.fingerprint = fingerprint(params)
    self._tree = jax.device_put(device_tree(config, params), device)
    self._step = jax.jit(functools.partial(decode_step, config), donate_argnums=(1,))
    self._sequence = jax.jit(functools.partial(sequence_freqs, config))
    self._trace = jax.jit(functools.partial(sequence_freqs, config, trace=True))
    self._bos = None  # see `bos_state`

  def __repr__(self):
    return (f"ExactM1Model(d_model={self.config.d_model}, num_layers={self.config.num_layers}, "
            f"max_len={self.config.max_len}, cache_dtype={self.cache_dtype!r}, "
            f"fingerprint={self.fingerprint!r})")

  def freqs(self, contexts: Sequence[np.ndarray | bytes]) -> np.ndarray:
    """[len(contexts), 257] int32 tables, computed by replaying each context."""
    lanes = ExactLanes(self, max(len(contexts), 1))
    for i, context in enumerate(contexts):
      lanes.push_context(i, check_symbols(context))
    cdf, _ = lanes.tables()
    return np.diff(cdf[:len(contexts)], axis=1).astype(np.int32)

  def sequence_freqs(self, inputs: np.ndarray) -> np.ndarray:
    """Full recompute without a cache: [B, T] inputs -> [B, T, 257] int32 tables.

    inputs[:, 0] is normally BOS; row t is the table after inputs[:, :t + 1].
    """
    inputs = np.asarray(inputs, np.int32)
    if inputs.ndim != 2 or inputs.size and (inputs.min() < 0 or inputs.max() >= VOCAB_SIZE):
      raise ValueError(f"inputs must be [B, T] tokens in [0, {VOCAB_SIZE}), got {inputs.shape}")
    return np.asarray(self._sequence(self._tree, inputs))

  def trace(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every intermediate of `sequence_freqs` for [B, T] inputs, by name, in order."""
    _, seen = self._trace(self._tree, np.asarray(inputs, np.int32))
    order = [f"{i}.{name}" for i in range(self.config.num_layers) for name in TRACE_NAMES]
    return {name: np.asarray(seen[name]) for name in order + ["x", "freqs"]}

  def compiled_text(self, inputs: np.ndarray, rows: int = MIN_BLOCK_LANES) -> dict[str, str]:
    """The optimised programs this model's device runs, as text, for finding where devices part.

    Returns:
      {"sequence_freqs": the full recompute of [B, T] `inputs`,
       "decode_step": one cached step of `rows` lanes with one chunk of slots}.
    """
    inputs = np.asarray(inputs, np.int32)
    slots = min(CACHE_CHUNK, model_lib.cache_slots(self.config))
    step_args = (self._tree, self.init_cache(rows, slots), np.zeros(rows, np.int32),
                 np.ones(rows, np.int32), np.ones(rows, bool), self.bos_state()[1])
    return {"sequence_freqs": self._sequence.lower(self._tree, inputs).compile().as_text(),
            "decode_step": self._step.lower(*step_args).compile().as_text()}

  def lanes(self, num_lanes: int) -> "ExactLanes":
    return ExactLanes(self, num_lanes)

  def init_cache(self, num_lanes: int, slots: int) -> list[dict]:
    """Zeroed KV cache: per layer {"k", "v"}: [num_lanes, H, slots, D] of `cache_dtype`."""
    c = self.config
    shape = (num_lanes, c.num_heads, slots, c.head_dim)
    return [{name: jnp.zeros(shape, self.cache_dtype, device=self.device) for name in ("k", "v")}
            for _ in range(c.num_layers)]

  def step(self, cache: list[dict], tokens: np.ndarray, positions: np.ndarray,
           active: np.ndarray, bos_kv: list[dict] | None = None) -> tuple[jax.Array, list[dict]]:
    """The jitted `decode_step` (the cache is donated)."""
    return self._step(self._tree, cache, tokens, positions, active, bos_kv)

  def bos_state(self) -> tuple[np.ndarray, list[dict]]:
    """([258] int32 cdf, per-layer BOS keys and values [H, D]) of the empty context.

    Computed once, by the same step as every other table (BOS at position 0),
    and reused for every lane that restarts.
    """
    if self._bos is None:
      rows = MIN_BLOCK_LANES
      cache = self.init_cache(rows, min(CACHE_CHUNK, model_lib.cache_slots(self.config)))
      cdf, cache = self.step(cache, np.full(rows, BOS, np.int32), np.zeros(rows, np.int32),
                             np.arange(rows) == 0)
      kv = [{name: layer[name][0, :, 0] for name in ("k", "v")} for layer in cache]
      self._bos = (np.asarray(cdf)[0].copy(), kv)
    return self._bos

  def save(self, path: str | os.PathLike) -> str:
    """Writes the model directory `path`; returns the fingerprint."""
    return save(path, self.config, self.params, self.meta)

  @classmethod
  def load(cls, path: str | os.PathLike, cache_dtype: str | None = None,
           device: jax.Device | None = None) -> "ExactM1Model":
    return load(path, cache_dtype, device)


class _Block:
  """KV cache of one block of rows; grows in whole chunks as contexts lengthen."""

  def __init__(self, m1: ExactM1Model, rows: int):
    self.rows = rows
    self.full = model_lib.cache_slots(m1.config)
    self.slots = min(CACHE_CHUNK, self.full)
    self.cache = m1.init_cache(rows, self.slots)

  def ensure(self, max_position: int) -> None:
    """Grows the cache (doubling, whole chunks) to hold positions up to `max_position`."""
    need = min(-(-(max_position + 1) // CACHE_CHUNK) * CACHE_CHUNK, self.full)
    if need > self.slots:
      self.slots = min(max(need, 2 * self.slots), self.full)
      widths = ((0, 0), (0, 0), (0, self.slots - self.cache[0]["k"].shape[2]), (0, 0))
      self.cache = [{k: jnp.pad(a, widths) for k, a in layer.items()} for layer in self.cache]


class ExactLanes(base.Lanes):
  """Lanes of an exact M1: KV cache rows in blocks, one jitted step per busy block and round.

  Every lane's next input is queued (BOS after a reset); `tables()` feeds the
  queued inputs of all lanes, one position per round. BOS costs no step: its
  table and keys and values are the model's `bos_state`. A lane holds a cache
  row only while its context has more than BOS, and takes a free row of a
  block that steps anyway, so blocks of idle lanes are skipped. Integer
  arithmetic makes a lane's table independent of its block, its row, the
  padding and the cache size.
  """

  def __init__(self, m1: ExactM1Model, num_lanes: int):
    super().__init__(num_lanes)
    self._m1 = m1
    rows = _block_rows(num_lanes, m1.block_lanes)
    self._blocks = [_Block(m1, rows) for _ in range(-(-num_lanes // rows))]
    self._next = np.full(num_lanes, BOS, np.int32)  # next input per lane; -1: none queued
    self._more = {}  # lane -> deque of inputs queued after `_next`
    self._positions = np.zeros(num_lanes, np.int32)  # of each lane's next input
    self._row = np.full(num_lanes, -1, np.int64)  # cache row of each lane; -1: none
    self._lane_of_row = np.full(len(self._blocks) * rows, -1, np.int64)
    self._cdf = np.zeros((num_lanes, base.CDF_WIDTH), np.int32)
    self._rows = np.arange(num_lanes)

  def __repr__(self):
    return (f"ExactLanes(num_lanes={self.num_lanes}, blocks={len(self._blocks)}x"
            f"{self._blocks[0].rows}, m1={self._m1!r})")

  def push_context(self, lane: int, symbols: np.ndarray) -> None:
    """Queues many symbols on one lane (as repeated `update` pushes would)."""
    for s in check_symbols(symbols):
      self._queue(lane, int(s))

  def _queue(self, lane: int, token: int) -> None:
    if self._next[lane] < 0:
      self._next[lane] = token
    else:
      self._more.setdefault(lane, collections.deque()).append(token)

  def update(self, symbols, push, reset):
    symbols, push, reset = base.check_update(self.num_lanes, symbols, push, reset)
    pushed = np.flatnonzero(push)
    if pushed.size:
      check_symbols(symbols[pushed])
      free = self._next[pushed] < 0
      if self._more:
        free &= np.array([int(i) not in self._more for i in pushed])
      self._next[pushed[free]] = symbols[pushed[free]]
      for i in pushed[~free]:
        self._queue(int(i), int(symbols[i]))
    cleared = np.flatnonzero(reset)
    if cleared.size:
      self._next[cleared] = BOS
      self._positions[cleared] = 0
      for i in cleared:
        self._more.pop(int(i), None)
      held = cleared[self._row[cleared] >= 0]
      self._lane_of_row[self._row[held]] = -1
      self._row[held] = -1

  def tables(self):
    """Returns (cdf [num_lanes, 258] int32, rows = arange(num_lanes)).

    Runs one step per queued input. A returned array is never modified
    afterwards: new tables come in a new array.
    """
    while (self._next >= 0).any():
      self._run_round()
    return self._cdf, self._rows

  def _advance(self, lanes: np.ndarray) -> None:
    """Moves each of `lanes` past its next input."""
    self._positions[lanes] += 1
    self._next[lanes] = -1
    for i in [i for i in lanes.tolist() if i in self._more]:
      queue = self._more[i]
      self._next[i] = queue.popleft()
      if not queue:
        del self._more[i]

  def _run_round(self) -> None:
    """Feeds the next queued input of every lane (and a leading BOS for free)."""
    cdf = self._cdf.copy()
    bos_cdf, bos_kv = self._m1.bos_state()
    bos = np.flatnonzero((self._next >= 0) & (self._positions == 0))  # BOS is at position 0
    cdf[bos] = bos_cdf
    self._advance(bos)
    lanes = np.flatnonzero(self._next >= 0)
    if lanes.size:
      self._place(lanes[self._row[lanes] < 0])
      for lo, hi, stepped, block_cdf in self._step_rows(lanes, bos_kv):
        cdf[self._lane_of_row[lo:hi][stepped]] = np.asarray(block_cdf)[stepped]
      self._advance(lanes)
    self._cdf = cdf

  def _place(self, lanes: np.ndarray) -> None:
    """Gives each of `lanes` a free cache row, first in blocks that step this round."""
    if not lanes.size:
      return
    rows = self._blocks[0].rows
    busy = np.zeros(len(self._blocks), bool)
    held = self._row[self._next >= 0]
    busy[held[held >= 0] // rows] = True
    free = np.flatnonzero(self._lane_of_row < 0)
    free = free[np.argsort(~busy[free // rows], kind="stable")][:lanes.size]
    self._row[lanes] = free
    self._lane_of_row[free] = lanes

  def _step_rows(self, lanes: np.ndarray, bos_kv: list[dict]) -> list:
    """Dispatches one step per block holding some of `lanes` (all placed).

    Returns:
      [(first row, end row, [rows] bool stepped, [rows, 258] cdf)] per block run.
    """
    size = self._lane_of_row.size
    tokens = np.zeros(size, np.int32)
    positions = np.zeros(size, np.int32)
    active = np.zeros(size, bool)
    rows = self._row[lanes]
    tokens[rows] = self._next[lanes]
    positions[rows] = self._positions[lanes]
    active[rows] = True
    results = []
    for b, block in enumerate(self._blocks):
      lo, hi = b * block.rows, (b + 1) * block.rows
      if not active[lo:hi].any():
        continue
      block.ensure(int(positions[lo:hi].max()))
      cdf, block.cache = self._m1.step(block.cache, tokens[lo:hi], positions[lo:hi],
                                       active[lo:hi], bos_kv)
      results.append((lo, hi, active[lo:hi], cdf))  # dispatched; read back by the caller
    return results


# -- files ---------------------------------------------------------------------

def save(path: str | os.PathLike, config: configs.ModelConfig, params: dict[str, np.ndarray],
         meta: dict | None = None) -> str:
  """Writes an exact M1 directory (config.json, params.npz); returns the fingerprint.

  Args:
    path: directory, local or any `etils.epath` URL (created; files overwritten).
    config: the M1 config.
    params: flat integer weights (`param_specs`).
    meta: JSON-able provenance stored under "meta".
  """
  check_params(config, params)
  path = epath.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  np.savez(buffer, **{k: np.asarray(v) for k, v in params.items()})
  (path / PARAMS_FILE).write_bytes(buffer.getvalue())
  info = {"format": FORMAT, "fingerprint": fingerprint(params), "bos": BOS,
          "model": configs.to_dict(config), "meta": meta or {}}
  (path / CONFIG_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
  return info["fingerprint"]


def is_exact_dir(path: str | os.PathLike) -> bool:
  """Whether `path` holds an exact M1 (its config.json carries FORMAT)."""
  path = epath.Path(path)
  try:
    return json.loads((path / CONFIG_FILE).read_text()).get("format") == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


def find(path: str | os.PathLike) -> epath.Path | None:
  """The exact M1 directory of `path`: itself, its SUBDIR, or None.

  Raises:
    ValueError: PATH/SUBDIR was converted from another float M1 than the one
      in PATH (its recorded source fingerprint differs).
  """
  path = epath.Path(path)
  if is_exact_dir(path):
    return path
  sub = path / SUBDIR
  if not is_exact_dir(sub):
    return None
  try:
    source = json.loads((sub / CONFIG_FILE).read_text()).get("meta", {}).get("source_fingerprint")
    current = json.loads((path / CONFIG_FILE).read_text()).get("fingerprint")
  except (OSError, ValueError, AttributeError):
    return sub
  if source and current and source != current:
    raise ValueError(f"the exact M1 in {sub} was converted from another float M1 (fingerprint "
                     f"{source}, {path} has {current}); re-run `eqinfo quantize-m1 "
                     f"--m1 {path} --calibration GLOB`")
  return sub


def load(path: str | os.PathLike, cache_dtype: str | None = None,
         device: jax.Device | None = None) -> ExactM1Model:
  """Loads an exact M1 directory written by `save`.

  Args:
    path: the directory.
    cache_dtype, device: see `ExactM1Model`.

  Raises:
    FileNotFoundError: a file is missing.
    ValueError: the files are corrupt or do not match each other.
  """
  path = epath.Path(path)
  for name in (CONFIG_FILE, PARAMS_FILE):
    if not (path / name).exists():
      raise FileNotFoundError(
          f"no exact M1 at {path}: {name} is missing; convert a float M1 with "
          f"`eqinfo quantize-m1 --m1 DIR --calibration GLOB`")
  try:
    info = json.loads((path / CONFIG_FILE).read_text())
    if info.get("format") != FORMAT:
      raise ValueError(f"format is {info.get('format')!r}, expected {FORMAT!r}")
    config = configs.from_dict(info["model"])
    with np.load(io.BytesIO((path / PARAMS_FILE).read_bytes()), allow_pickle=False) as npz:
      params = {k: npz[k] for k in npz.files}
  except (ValueError, KeyError, TypeError, AttributeError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f"corrupt exact M1 at {path} ({e}); re-run eqinfo quantize-m1") from None
  if info.get("fingerprint") != fingerprint(params):
    raise ValueError(f"corrupt exact M1 at {path}: weights do not match the fingerprint in "
                     f"{CONFIG_FILE}; re-run eqinfo quantize-m1")
  return ExactM1Model(config, params, info.get("meta"), cache_dtype, device=device)
