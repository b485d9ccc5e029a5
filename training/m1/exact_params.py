"""The integer-exact M1's weights: the constants of its number formats, the bounds
a config must meet, the shape and range of every integer array, the fingerprint, and the
fixed lookup tables stored with the weights (`training/m1/exact_kernels.py` computes with
them; `training/m1/quantize.py` makes them).
"""
import hashlib

import numpy as np

from compressor import constants
from training import configs
from training.m1.exact_int import ACT_MAX, RESIDUAL_MAX

EXACT_FORMAT = "eqinfo-exact-m1-v1"  # tag of the directory layout and of the arithmetic
BOS = constants.ALPHABET_SIZE  # 257: input token that starts every context
VOCAB_SIZE = constants.ALPHABET_SIZE + 1  # 258 input tokens
MULT_BITS = 15  # requantisation multipliers lie in [0, 2**15)
MAX_SHIFT = 30  # requantisation shifts lie in [1, 30]
ATT_FRAC_BITS = 6  # attention exp table index: max-subtracted score in units of 2**-6 nats
ATT_ONE = 1 << 12  # attention exp table at 0
OUT_FRAC_BITS = 8  # output exp table index: max-subtracted logit in units of 2**-8 nats
OUT_ONE = 1 << 16  # output exp table at 0
SPARE = constants.TOTAL_FREQ - constants.ALPHABET_SIZE  # counts shared out by probability
DOT_CHUNK = 1024  # int8 terms per exact contraction: 1024 * 127**2 < 2**24


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
  digest = hashlib.sha256(EXACT_FORMAT.encode())
  for name, array in sorted(params.items()):
    array = np.ascontiguousarray(array)
    digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()[:16]
