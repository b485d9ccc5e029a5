"""Quantisation-aware fine-tuning (QAT) of a float M1 for the integer-exact M1.

Post-training quantisation (`training.m1.quantize.convert`) rounds a float M1
that never saw its own rounding. QAT fine-tunes the float weights through a
forward pass that rounds where the exact M1 rounds (Jacob et al. 2018), so the
weights move to where the integer model loses least; `convert` then quantises
the fine-tuned weights as usual.

`fake_quant_logits` mirrors `training.m1.exact` on the calibrated scales of
`quantize_m1.calibrate`:

* the residual stream on the grid of the residual scale, clipped;
* each RMSNorm output divided by its SmoothQuant factors and rounded to int8
  with its calibrated scale; the following weight matrix (norm scale and
  smoothing folded in) rounded to int8 per output column;
* q and k rounded per head, v and the attention output per channel, the
  relative bias in score units; attention weights as the exp table makes
  them (score differences to 2**-6 nats, weights to 2**-12 of the largest);
* gated MLP branches rounded to 12 bits, their product to int8;
* each block's output rounded to the residual grid; logits to 2**-8 nats.

Rounding passes gradients straight through inside the clip range and none
outside it (the clipped straight-through estimator). The final softmax and
the integer square root of RMSNorm stay in float: their error is far below
the rounding above. The loss is the cross entropy of the 257 symbols the
exact M1 codes (BOS is never a target), plus the usual z-loss.
"""
import dataclasses
import logging
import math
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from compressor import constants
from training import configs
from training import loss as loss_lib
from training import model as model_lib
from training.m1 import exact_int
from training.m1 import exact_params
from training.m1 import float_m1 as m1_lib

Scales = dict[str, np.ndarray]  # calibrated activation scales by site (`quantize_m1.calibrate`)
LOGIT_STEP = 2.0 ** -exact_params.OUT_FRAC_BITS  # the exact M1's logit unit (nats)


@dataclasses.dataclass(frozen=True)
class QATConfig:
  """How long and how fast the float M1 is fine-tuned."""
  steps: int = 500               # optimiser steps
  batch_size: int = 16           # sequences per step
  seq_len: int = 512             # symbols per sequence (at most the M1's max_len)
  learning_rate: float = 1e-3    # constant Adafactor learning rate
  seed: int = 0                  # data order

  def __post_init__(self):
    for name in ("steps", "batch_size", "seq_len"):
      if getattr(self, name) < 1:
        raise ValueError(f"QATConfig.{name} must be >= 1, got {getattr(self, name)}")
    if not self.learning_rate > 0:
      raise ValueError(f"QATConfig.learning_rate must be > 0, got {self.learning_rate}")


# -- rounding with straight-through gradients ---------------------------------

def fake_quant(x: jax.Array, scale: jax.Array, lo: float, hi: float) -> jax.Array:
  """clip(round(x / scale), lo, hi) * scale, with gradient 1 inside the range, 0 outside.

  Args:
    x: float array.
    scale: > 0, broadcastable to x.
    lo, hi: the integer range.
  """
  clipped = jnp.clip(x, lo * scale, hi * scale)
  return clipped + jax.lax.stop_gradient(jnp.round(clipped / scale) * scale - clipped)


def fake_quant_columns(w: jax.Array) -> jax.Array:
  """[K, N] -> [K, N]: symmetric int8 per output column (scale amax / 127, held constant)."""
  amax = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=0))
  scale = jnp.where(amax > 0, amax, 1.0) / exact_int.ACT_MAX
  return fake_quant(w, scale, -exact_int.ACT_MAX, exact_int.ACT_MAX)


def _rms(x: jax.Array, eps: float) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def _norm_dense(x: jax.Array, w: jax.Array, scales: Scales, site: str, eps: float) -> jax.Array:
  """RMSNorm of the residual, int8 rounding, int8 weights: [..., d] x [d, n] -> [..., n].

  `w` has the norm's learned scale folded in, as in the converter.
  """
  smooth = scales[f"{site}/smooth"]  # [d]
  act = exact_int.ACT_MAX
  h = fake_quant(_rms(x, eps) / smooth, scales[f"{site}/act"], -act, act)
  return h @ fake_quant_columns(smooth[:, None] * w)


def _round_ste(x: jax.Array, step: float) -> jax.Array:
  """x rounded to a multiple of `step`, gradient 1."""
  return x + jax.lax.stop_gradient(jnp.round(x / step) * step - x)


def _table_softmax(z: jax.Array, valid: jax.Array, frac_bits: int, one: int) -> jax.Array:
  """Softmax over the last axis as the exact M1's exp tables make it.

  Differences to the maximum are rounded to 2**-frac_bits, the weights
  exp(-difference) to multiples of 1 / one, then normalised; invalid entries
  (`valid` broadcastable to z) get weight 0.
  """
  zmax = jax.lax.stop_gradient(jnp.max(jnp.where(valid, z, -jnp.inf), axis=-1, keepdims=True))
  d = _round_ste(jnp.where(valid, zmax - z, 0.0), 2.0 ** -frac_bits)
  e = jnp.where(valid, _round_ste(jnp.exp(-d), 1.0 / one), 0.0)
  return e / jnp.sum(e, axis=-1, keepdims=True)


def _residual_add(x: jax.Array, y: jax.Array, s_x: jax.Array) -> jax.Array:
  """Adds a block output on the residual grid, clipped like the exact M1."""
  limit = exact_int.RESIDUAL_MAX
  return jnp.clip(x + fake_quant(y, s_x, -limit, limit), -limit * s_x, limit * s_x)


def _attention(c: configs.ModelConfig, p: dict, scales: Scales, pre: str, x: jax.Array,
               bucket: jax.Array, valid: jax.Array) -> jax.Array:
  """[B, T, d] residual -> [B, T, d] residual after the attention block."""
  att, act = p["attention"], exact_int.ACT_MAX
  gamma = p["pre_attention_norm"]["scale"][:, None]
  w = jnp.concatenate([att[n]["kernel"].reshape(c.d_model, c.attn_dim)
                       for n in ("query", "key", "value")], axis=1)
  qkv = _norm_dense(x, gamma * w, scales, f"{pre}/attn_norm", c.norm_eps)  # [B, T, 3A]
  heads = lambda a: a.reshape(a.shape[:-1] + (c.num_heads, c.head_dim))
  s_q, s_k = scales[f"{pre}/q"][:, None], scales[f"{pre}/k"][:, None]  # [H, 1]
  s_v = scales[f"{pre}/v"]  # [A]
  q = fake_quant(heads(qkv[..., :c.attn_dim]), s_q, -act, act)
  k = fake_quant(heads(qkv[..., c.attn_dim:2 * c.attn_dim]), s_k, -act, act)
  v = heads(fake_quant(qkv[..., 2 * c.attn_dim:], s_v, -act, act))
  unit = scales[f"{pre}/q"] * scales[f"{pre}/k"] / math.sqrt(c.head_dim)  # [H]
  limit = exact_int.RESIDUAL_MAX
  rel = fake_quant(att["rel_embedding"], unit, -limit, limit)  # [buckets, H]
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(c.head_dim)
  scores = scores + jnp.transpose(rel[bucket], (2, 0, 1))[None]
  probs = _table_softmax(scores, valid, exact_params.ATT_FRAC_BITS, exact_params.ATT_ONE)
  o = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(x.shape[:-1] + (c.attn_dim,))
  o = fake_quant(o, s_v, -act, act) / s_v  # the exact M1's int8 attention output
  wo = att["out"]["kernel"].reshape(c.attn_dim, c.d_model)
  return _residual_add(x, o @ fake_quant_columns(s_v[:, None] * wo), scales["residual"])


def _mlp(c: configs.ModelConfig, p: dict, scales: Scales, pre: str, x: jax.Array) -> jax.Array:
  """[B, T, d] residual -> [B, T, d] residual after the MLP block."""
  mlp, act = p["mlp"], exact_int.ACT_MAX
  gamma = p["pre_mlp_norm"]["scale"][:, None]
  s_g = scales[f"{pre}/g"]  # [F]
  if c.mlp_gated:
    w = jnp.concatenate([mlp["wi_0"]["kernel"], mlp["wi_1"]["kernel"]], axis=1)
    a = _norm_dense(x, gamma * w, scales, f"{pre}/mlp_norm", c.norm_eps)  # [B, T, 2F]
    u = fake_quant(jax.nn.relu(a[..., :c.mlp_dim]), scales[f"{pre}/u"], 0,
                   exact_int.RELU_BRANCH_MAX)
    b = fake_quant(a[..., c.mlp_dim:], scales[f"{pre}/b"], -exact_int.LINEAR_BRANCH_MAX,
                   exact_int.LINEAR_BRANCH_MAX)
    g = fake_quant(u * b, s_g, -act, act)
  else:
    a = _norm_dense(x, gamma * mlp["wi"]["kernel"], scales, f"{pre}/mlp_norm", c.norm_eps)
    g = fake_quant(jax.nn.relu(a), s_g, 0, act)
  y = (g / s_g) @ fake_quant_columns(s_g[:, None] * mlp["wo"]["kernel"])
  return _residual_add(x, y, scales["residual"])


def fake_quant_logits(config: configs.ModelConfig, params: Any, scales: Scales,
                      inputs: jax.Array) -> jax.Array:
  """The float M1 rounded where the exact M1 rounds: [B, T] inputs -> [B, T, 257] logits.

  Args:
    config: the M1 config.
    params: the float M1's variables ({"params": ...} or the inner tree).
    scales: `quantize_m1.calibrate(...).scales` of this M1.
    inputs: [B, T] int32, BOS first; row t predicts the symbol after inputs[:, :t + 1].
  """
  p = params["params"] if "params" in params else params
  t = inputs.shape[1]
  pos = np.arange(t)
  dist = pos[:, None] - pos[None, :]
  valid = jnp.asarray((dist >= 0) & (dist < config.max_len))
  bucket = jnp.asarray(model_lib.relative_bucket_table(config)[np.clip(dist, 0,
                                                                       config.max_len - 1)])
  s_x = scales["residual"]
  limit = exact_int.RESIDUAL_MAX
  x = fake_quant(p["token_embed"]["embedding"][inputs], s_x, -limit, limit)  # [B, T, d]
  for i in range(config.num_layers):
    pre = f"layers_{i}"
    x = _attention(config, p[pre], scales, pre, x, bucket, valid)
    x = _mlp(config, p[pre], scales, pre, x)
  w = p["final_norm"]["scale"][:, None] * p["logits_dense"]["kernel"][:, :constants.ALPHABET_SIZE]
  z = _norm_dense(x, w, scales, "final_norm", config.norm_eps)
  return z + jax.lax.stop_gradient(jnp.round(z / LOGIT_STEP) * LOGIT_STEP - z)


# -- fine-tuning ---------------------------------------------------------------

def make_step(config: configs.ModelConfig, scales: Scales,
              optimizer: optax.GradientTransformation):
  """Returns step(params, opt_state, batch) -> (params, opt_state, mean nats per symbol)."""
  scales = jax.tree_util.tree_map(jnp.asarray, scales)

  def loss_fn(params, batch):
    logits = fake_quant_logits(config, params, scales, batch["inputs"])
    loss, sums = loss_lib.masked_loss(logits, batch["targets"], batch["weights"])
    return loss, sums["xent"] / jnp.maximum(sums["tokens"], 1.0)

  def step(params, opt_state, batch):
    grads, xent = jax.grad(loss_fn, has_aux=True)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, xent

  return jax.jit(step, donate_argnums=(0, 1))


def finetune(m1: m1_lib.M1Model, scales: Scales, batches: Iterator[dict[str, np.ndarray]],
             config: QATConfig, progress: bool = True) -> tuple[m1_lib.M1Model, list[float]]:
  """Fine-tunes the float M1 through `fake_quant_logits`.

  Args:
    m1: the float M1 (left unchanged).
    scales: its calibrated activation scales (`quantize_m1.calibrate`).
    batches: M1 batches, inputs/targets/weights [B, T] (e.g. `training.m1_input.M1Batches`).
    config: steps and learning rate (the batch shape comes from `batches`).
    progress: show a progress bar.

  Returns:
    (the fine-tuned float M1, the training cross entropy of each step in bits/symbol).
  """
  optimizer = optax.adafactor(learning_rate=config.learning_rate)
  params = jax.tree_util.tree_map(jnp.array, m1.params["params"])
  opt_state = optimizer.init(params)
  step = make_step(m1.config, scales, optimizer)
  history = []
  for _ in tqdm.trange(config.steps, desc="QAT", disable=not progress):
    batch = next(batches)
    batch = {k: jnp.asarray(batch[k]) for k in ("inputs", "targets", "weights")}
    params, opt_state, xent = step(params, opt_state, batch)
    history.append(float(xent) / math.log(2))
  logging.info("QAT: %d steps, bits/symbol %.4f -> %.4f", config.steps, history[0], history[-1])
  return m1_lib.M1Model(m1.config, {"params": params}), history
