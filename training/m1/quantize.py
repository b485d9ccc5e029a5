"""Post-training quantisation of a float M1 into the integer-exact M1.

Example:

  eqinfo quantize-m1 --m1 runs/m1 \\
      --calibration '../shared/data/webtext/train/*.jsonl.gz' \\
      --validation '../shared/data/webtext/validation/*.jsonl.gz'

writes runs/m1/exact (the default `--out`, where `training.m1.float_m1.load` finds it)
and prints a JSON report: bits/byte of the float and the exact M1 on the
validation text, each from its own quantised 2**14 tables.

Conversion (`convert`): a float forward pass over calibration text records
every tensor that the exact path quantises; each gets a scale that minimises
the squared quantisation error (per tensor, per head or per channel). Learned
norm scales, attention value scales and gated-product scales are folded into
the following weight matrix, which is then quantised to int8 per output
channel. RMSNorm outputs are smoothed per channel (SmoothQuant, Xiao et al.
2023) through the norm's integer multipliers, at no run-time cost.

With `--qat_steps N` (`convert_with_qat`), the float M1 is first fine-tuned for
N steps through a forward pass rounded on the calibrated scales
(`training.m1.qat`), then converted; the report then also gives the bits/byte of
post-training quantisation alone and of the fine-tuned float M1. QAT reads
training sequences from the calibration corpus, so pass `--validation` text
that it does not hold.
"""
import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Callable, Iterable, Sequence

import jax
import numpy as np

from compressor import constants, help_format
from compressor.models import base
from compressor.symbols import symbols_from_text
from compressor import corpus
from training import configs, log_setup
from training import m1_input
from training import model as model_lib
from training.m1 import exact as exact_lib
from training.m1 import exact_int
from training.m1 import exact_params
from training.m1 import float_m1 as m1_lib
from training.m1 import qat

CLIP_STEPS = 32  # candidate clips per tensor: amax * 2**(-k / 8), k < CLIP_STEPS
MAX_ROWS = 8192  # activation rows used to pick each scale
RESIDUAL_BITS = 16  # the calibrated residual maximum maps to 2**RESIDUAL_BITS


def _clip_scales(x: np.ndarray, qmin: int, qmax: int, per_channel: bool) -> np.ndarray:
  """Scale s minimising sum((clip(round(x / s), qmin, qmax) * s - x)**2).

  Args:
    x: [N, C] float activations.
    qmin, qmax: integer range (qmin is 0 or -qmax).
    per_channel: one scale per column, else one for all.

  Returns:
    [C] (per channel) or [] scales > 0.
  """
  x = x.astype(np.float32)
  if not per_channel:
    x = x.reshape(-1, 1)
  amax = np.abs(x).max(axis=0) if qmin < 0 else np.maximum(x.max(axis=0), 0)
  amax = np.where(amax > 0, amax, 1.0)
  best, best_err = amax / qmax, np.full(amax.shape, np.inf)
  for k in range(CLIP_STEPS):
    s = amax * 2.0 ** (-k / 8) / qmax
    err = np.sum(np.square(np.clip(np.round(x / s), qmin, qmax) * s - x), axis=0)
    better = err < best_err
    best, best_err = np.where(better, s, best), np.where(better, err, best_err)
  return best if per_channel else best[0]


def requant(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(mult, shift) with mult / 2**shift ~ real: mult in [2**14, 2**15), shift in [1, 30].

  Raises:
    ValueError: a multiplier of 2**14 or more.
  """
  real = np.asarray(real, np.float64)
  if np.any(real >= 1 << 14) or np.any(real < 0) or not np.all(np.isfinite(real)):
    raise ValueError(f"requantisation multiplier out of range: {real.min()}..{real.max()}")
  safe = np.where(real > 0, real, 1.0)
  shift = np.clip(14 - np.floor(np.log2(safe)).astype(np.int64), 1, exact_params.MAX_SHIFT)
  mult = np.round(safe * 2.0 ** shift).astype(np.int64)
  over = mult >= 1 << exact_params.MULT_BITS
  shift = np.where(over, shift - 1, shift)
  mult = np.round(safe * 2.0 ** shift).astype(np.int64)
  if np.any(shift < 1):
    raise ValueError(f"requantisation multiplier out of range: {real.max()}")
  mult = np.where(real > 0, mult, 0)
  return mult.astype(np.int32), shift.astype(np.int32)


def _quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[K, N] float -> (int8 [K, N], [N] scales): symmetric, per output column."""
  scale = np.abs(w).max(axis=0) / exact_int.ACT_MAX
  scale = np.where(scale > 0, scale, 1.0)
  return np.clip(np.round(w / scale), -exact_int.ACT_MAX, exact_int.ACT_MAX).astype(np.int8), scale


def _rms(x: np.ndarray, eps: float) -> np.ndarray:
  return x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + eps)


def _rows(x: np.ndarray) -> np.ndarray:
  """Flattens leading axes and keeps at most MAX_ROWS rows (evenly spaced)."""
  x = x.reshape(-1, x.shape[-1])
  if x.shape[0] > MAX_ROWS:
    x = x[np.linspace(0, x.shape[0] - 1, MAX_ROWS).astype(np.int64)]
  return x


class _Converter:
  """Runs the float forward pass over calibration inputs and builds the integer weights."""

  def __init__(self, config: configs.ModelConfig, params: dict, smooth_alpha: float):
    self.c = config
    self.p = params["params"] if "params" in params else params
    self.p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), self.p)
    self.alpha = smooth_alpha
    self.out: dict[str, np.ndarray] = {}
    self.residual_amax = float(np.abs(self.p["token_embed"]["embedding"]).max())
    self.residual_scales: list[tuple[str, np.ndarray]] = []  # (name, acc units)
    self.scales: dict[str, np.ndarray] = {}  # calibrated activation scales (`training.m1.qat`)

  def _norm_site(self, name: str, h: np.ndarray, w: np.ndarray):
    """Quantises normed input h [N, d] for weights w [d, n] (norm scale folded in).

    Returns (integer kernel, [n] units of its int32 sums).
    """
    d = self.c.d_model
    hr = _rows(h)
    if self.alpha > 0:
      c = (np.abs(hr).max(axis=0) ** self.alpha
           / np.maximum(np.abs(w).max(axis=1), 1e-12) ** (1 - self.alpha))
      c = np.where(c > 0, c, 1.0)
      c = c / math.exp(np.mean(np.log(c)))
    else:
      c = np.ones(d)
    s_h = _clip_scales(hr / c, -exact_int.ACT_MAX, exact_int.ACT_MAX, per_channel=False)
    self.scales[f"{name}/act"], self.scales[f"{name}/smooth"] = np.float32(s_h), c
    real = math.sqrt(d) / (s_h * c)
    limit = exact_params.norm_mult_limit(d)
    shift = int(np.clip(np.floor(np.log2((limit - 1) / real.max())), 0, 15))
    mult = np.round(real * 2.0 ** shift)
    if mult.max() >= limit:
      raise ValueError(f"{name}: RMSNorm multiplier out of range ({real.max()})")
    self.out[f"{name}/mult"] = mult.astype(np.int32)
    self.out[f"{name}/shift"] = np.array(shift, np.int32)
    kernel, s_w = _quantize_columns(w * c[:, None])
    return kernel, s_h * s_w

  def _attention(self, i: int, x: np.ndarray, valid: np.ndarray, bucket: np.ndarray):
    c, p = self.c, self.p[f"layers_{i}"]
    pre, att = f"layers_{i}", p["attention"]
    h = _rms(x, c.norm_eps)
    gamma = p["pre_attention_norm"]["scale"][:, None]
    w = {n: att[n]["kernel"].reshape(c.d_model, c.attn_dim) for n in ("query", "key", "value")}
    q, k, v = (h @ (gamma * w[n]) for n in ("query", "key", "value"))  # [N, T, A]
    heads = lambda a: a.reshape(a.shape[:-1] + (c.num_heads, c.head_dim))
    qh, kh, vh = heads(q), heads(k), heads(v)
    act = exact_int.ACT_MAX
    s_q = np.array([_clip_scales(_rows(qh[..., j, :]), -act, act, False)
                    for j in range(c.num_heads)])
    s_k = np.array([_clip_scales(_rows(kh[..., j, :]), -act, act, False)
                    for j in range(c.num_heads)])
    s_v = _clip_scales(_rows(v), -act, act, per_channel=True)  # [A]
    self.scales.update({f"{pre}/q": s_q, f"{pre}/k": s_k, f"{pre}/v": s_v})
    kernel, units = self._norm_site(f"{pre}/attn_norm", h, gamma * np.concatenate(
        [w["query"], w["key"], w["value"]], axis=1))
    per_col = np.concatenate([np.repeat(s_q, c.head_dim), np.repeat(s_k, c.head_dim), s_v])
    self.out[f"{pre}/qkv/kernel"] = kernel
    self.out[f"{pre}/qkv/mult"], self.out[f"{pre}/qkv/shift"] = requant(units / per_col)
    unit = s_q * s_k / math.sqrt(c.head_dim)  # [H] score units
    rel = att["rel_embedding"]  # [buckets, H]
    self.out[f"{pre}/rel_bias"] = np.clip(np.round(rel / unit), -exact_int.RESIDUAL_MAX,
                                          exact_int.RESIDUAL_MAX).astype(np.int32)
    self.out[f"{pre}/softmax/mult"], self.out[f"{pre}/softmax/shift"] = requant(
        unit * 2.0 ** exact_params.ATT_FRAC_BITS)
    scores = np.einsum("nqhd,nkhd->nhqk", qh, kh) / math.sqrt(c.head_dim)
    scores = scores + np.transpose(rel[bucket], (2, 0, 1))[None]
    scores = np.where(valid, scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    o = np.einsum("nhqk,nkhd->nqhd", probs, vh).reshape(q.shape)
    wo = att["out"]["kernel"].reshape(c.attn_dim, c.d_model)
    kernel, s_wo = _quantize_columns(s_v[:, None] * wo)
    self.out[f"{pre}/out/kernel"] = kernel
    self.residual_scales.append((f"{pre}/out", s_wo))
    return x + o @ wo

  def _mlp(self, i: int, x: np.ndarray) -> np.ndarray:
    c, p = self.c, self.p[f"layers_{i}"]
    pre, mlp = f"layers_{i}", p["mlp"]
    h = _rms(x, c.norm_eps)
    gamma = p["pre_mlp_norm"]["scale"][:, None]
    act = exact_int.ACT_MAX
    if c.mlp_gated:
      w0, w1 = gamma * mlp["wi_0"]["kernel"], gamma * mlp["wi_1"]["kernel"]
      a, b = h @ w0, h @ w1
      u = np.maximum(a, 0)
      g = u * b
      s_u = _clip_scales(_rows(u), 0, exact_int.RELU_BRANCH_MAX, per_channel=True)
      s_b = _clip_scales(_rows(b), -exact_int.LINEAR_BRANCH_MAX, exact_int.LINEAR_BRANCH_MAX,
                         per_channel=True)
      s_g = _clip_scales(_rows(g), -act, act, per_channel=True)
      self.scales.update({f"{pre}/u": s_u, f"{pre}/b": s_b})
      kernel, units = self._norm_site(f"{pre}/mlp_norm", h, np.concatenate([w0, w1], axis=1))
      wi_real = units / np.concatenate([s_u, s_b])
      self.out[f"{pre}/gate/mult"], self.out[f"{pre}/gate/shift"] = requant(s_u * s_b / s_g)
    else:
      w0 = gamma * mlp["wi"]["kernel"]
      g = np.maximum(h @ w0, 0)
      s_g = _clip_scales(_rows(g), 0, act, per_channel=True)
      kernel, units = self._norm_site(f"{pre}/mlp_norm", h, w0)
      wi_real = units / s_g
    self.scales[f"{pre}/g"] = s_g
    self.out[f"{pre}/wi/kernel"] = kernel
    self.out[f"{pre}/wi/mult"], self.out[f"{pre}/wi/shift"] = requant(wi_real)
    w2 = mlp["wo"]["kernel"]
    kernel, s_w2 = _quantize_columns(s_g[:, None] * w2)
    self.out[f"{pre}/wo/kernel"] = kernel
    self.residual_scales.append((f"{pre}/wo", s_w2))
    return x + g @ w2

  def observe(self, inputs: np.ndarray) -> None:
    """Float forward over [N, T] inputs; sets every scale from its activations."""
    c = self.c
    t = inputs.shape[1]
    pos = np.arange(t)
    dist = pos[:, None] - pos[None, :]
    valid = (dist >= 0) & (dist < c.max_len)
    bucket = model_lib.relative_bucket_table(c)[np.clip(dist, 0, c.max_len - 1)]
    x = self.p["token_embed"]["embedding"][inputs]  # [N, T, d]
    for i in range(c.num_layers):
      x = self._attention(i, x, valid, bucket)
      self.residual_amax = max(self.residual_amax, float(np.abs(x).max()))
      x = self._mlp(i, x)
      self.residual_amax = max(self.residual_amax, float(np.abs(x).max()))
    h = _rms(x, c.norm_eps)
    w = self.p["final_norm"]["scale"][:, None] * self.p["logits_dense"]["kernel"][:, :-1]
    kernel, units = self._norm_site("final_norm", h, w)
    self.out["logits/kernel"] = kernel
    self.out["logits/mult"], self.out["logits/shift"] = requant(
        units * 2.0 ** exact_params.OUT_FRAC_BITS)

  def finish(self) -> dict[str, np.ndarray]:
    """Residual scale, residual requantisation, embedding and tables."""
    s_x = max(self.residual_amax / 2 ** RESIDUAL_BITS,
              max(float(s.max()) for _, s in self.residual_scales))
    for name, units in self.residual_scales:
      self.out[f"{name}/mult"], self.out[f"{name}/shift"] = requant(units / s_x)
    embed = np.round(self.p["token_embed"]["embedding"] / s_x)
    self.out["embed"] = np.clip(embed, -exact_int.RESIDUAL_MAX,
                                exact_int.RESIDUAL_MAX).astype(np.int32)
    self.out["buckets"] = model_lib.relative_bucket_table(self.c).astype(np.int32)
    self.out["att_exp"] = exact_params.exp_table(exact_params.ATT_FRAC_BITS, exact_params.ATT_ONE)
    self.out["out_exp"] = exact_params.exp_table(exact_params.OUT_FRAC_BITS, exact_params.OUT_ONE)
    self.residual_scale = s_x
    self.scales["residual"] = np.float32(s_x)
    return self.out


def calibration_inputs(contexts: Sequence[np.ndarray | bytes | str], seq_len: int,
                       max_sequences: int) -> np.ndarray:
  """[N, seq_len] inputs: BOS + the contexts' symbols, concatenated and cut.

  Strings and bytes are documents (their UTF-8 bytes + EOS, as the corpus reader yields
  them and M1 trains on them); arrays are symbols.
  """
  streams = [symbols_from_text(x) if isinstance(x, (str, bytes)) else exact_lib.check_symbols(x)
             for x in contexts]
  stream = np.concatenate(streams or [np.zeros(0, np.int32)])
  n = min(max_sequences, stream.size // (seq_len - 1))
  if n < 1:
    raise ValueError(f"calibration text too short: {stream.size} symbols, need at least "
                     f"{seq_len - 1}")
  body = stream[:n * (seq_len - 1)].reshape(n, seq_len - 1)
  return np.concatenate([np.full((n, 1), exact_params.BOS, np.int32), body], axis=1)


def calibrate(m1: m1_lib.M1Model, calibration_contexts: Sequence[np.ndarray | bytes | str],
              seq_len: int = 256, max_sequences: int = 32, smooth_alpha: float = 0.5):
  """Runs the float M1 over calibration text and chooses every integer weight and scale.

  Args: as `convert`.

  Returns:
    the finished converter: `.out` the exact M1's integer weights, `.scales`
    the calibrated activation scales by site (what `training.m1.qat` simulates),
    `.meta` how they were made.
  """
  if not 0 <= smooth_alpha <= 1:
    raise ValueError(f"smooth_alpha must lie in [0, 1], got {smooth_alpha}")
  seq_len = min(seq_len, m1.config.max_len)
  if seq_len < 2:
    raise ValueError(f"seq_len must be >= 2, got {seq_len}")
  inputs = calibration_inputs(calibration_contexts, seq_len, max_sequences)
  converter = _Converter(m1.config, jax.device_get(m1.params), smooth_alpha)
  converter.observe(inputs)
  converter.finish()
  converter.meta = {"source_fingerprint": m1.fingerprint,
                    "calibration_sequences": int(inputs.shape[0]),
                    "calibration_seq_len": int(seq_len), "smooth_alpha": smooth_alpha,
                    "residual_scale": converter.residual_scale}
  return converter


def convert(m1: m1_lib.M1Model, calibration_contexts: Sequence[np.ndarray | bytes | str],
            seq_len: int = 256, max_sequences: int = 32,
            smooth_alpha: float = 0.5) -> exact_lib.ExactM1Model:
  """Post-training quantisation of a float M1 into an `ExactM1Model`.

  Args:
    m1: the float M1.
    calibration_contexts: real text: documents (str or bytes, EOS added) or symbol arrays.
    seq_len: calibration sequence length (BOS + seq_len - 1 symbols).
    max_sequences: calibration sequences used at most.
    smooth_alpha: SmoothQuant migration strength for RMSNorm outputs (0: none).

  Returns:
    the exact M1; its `meta` records the float M1's fingerprint and settings.
  """
  converter = calibrate(m1, calibration_contexts, seq_len, max_sequences, smooth_alpha)
  return exact_lib.ExactM1Model(m1.config, converter.out, converter.meta)


def convert_with_qat(m1: m1_lib.M1Model, calibration_contexts: Sequence[np.ndarray | bytes | str],
                     batches: Iterable[dict[str, np.ndarray]], qat_config: qat.QATConfig,
                     seq_len: int = 256, max_sequences: int = 32, smooth_alpha: float = 0.5,
                     progress: bool = True, scales: qat.Scales | None = None
                     ) -> tuple[exact_lib.ExactM1Model, m1_lib.M1Model]:
  """Quantisation-aware fine-tuning, then `convert` of the fine-tuned float M1.

  The float M1 is calibrated, fine-tuned through `qat.fake_quant_logits` on
  those scales, and the fine-tuned weights are calibrated and converted
  afresh. The exact M1's `meta` keeps the original M1's fingerprint as
  `source_fingerprint` (so `training.m1.float_m1.load` pairs it with that directory)
  and records the fine-tuning under "qat".

  Args:
    m1, calibration_contexts, seq_len, max_sequences, smooth_alpha: as `convert`.
    batches: M1 training batches (inputs/targets/weights [B, T]).
    qat_config: steps and learning rate.
    progress: show a progress bar.
    scales: the float M1's calibrated scales, when `calibrate` already ran.

  Returns:
    (the exact M1, the fine-tuned float M1).
  """
  if scales is None:
    scales = calibrate(m1, calibration_contexts, seq_len, max_sequences, smooth_alpha).scales
  tuned, history = qat.finetune(m1, scales, iter(batches), qat_config, progress)
  exact_m1 = convert(tuned, calibration_contexts, seq_len, max_sequences, smooth_alpha)
  exact_m1.meta.update(source_fingerprint=m1.fingerprint, qat={
      **dataclasses.asdict(qat_config), "tuned_fingerprint": tuned.fingerprint,
      "first_bits_per_symbol": round(history[0], 5),
      "last_bits_per_symbol": round(history[-1], 5)})
  return exact_m1, tuned


# -- bits/byte of both models -------------------------------------------------

def eval_sequences(texts: Iterable[str | bytes], seq_len: int, max_sequences: int) -> np.ndarray:
  """[N, seq_len] symbols: documents (bytes + EOS) concatenated and cut (whole rows only)."""
  stream, total, rows = [], 0, max_sequences * seq_len
  for text in texts:
    stream.append(symbols_from_text(text))
    total += stream[-1].size
    if total >= rows:
      break
  stream = np.concatenate(stream or [np.zeros(0, np.int32)])
  n = min(max_sequences, stream.size // seq_len)
  if n < 1:
    raise ValueError(f"evaluation text too short: {stream.size} symbols, need {seq_len}")
  return stream[:n * seq_len].reshape(n, seq_len)


def bos_inputs(symbols: np.ndarray) -> np.ndarray:
  """[N, T] symbols -> [N, T] inputs: BOS, then the symbols shifted right."""
  bos = np.full((symbols.shape[0], 1), exact_params.BOS, np.int32)
  return np.concatenate([bos, symbols[:, :-1]], axis=1).astype(np.int32)


def float_sequence_freqs(m1: m1_lib.M1Model) -> Callable[[np.ndarray], np.ndarray]:
  """[B, T] inputs -> [B, T, 257] tables of the float M1 (full-sequence pass, quantised)."""
  apply = jax.jit(lambda params, x: jax.nn.softmax(
      model_lib.Transformer(m1.config).apply(params, x)[..., :constants.ALPHABET_SIZE], axis=-1))

  def run(inputs):
    probs = np.asarray(apply(m1.params, inputs))
    return base.quantize(probs.reshape(-1, probs.shape[-1])).reshape(probs.shape)

  return run


def bits_per_byte(freqs_fn: Callable[[np.ndarray], np.ndarray], symbols: np.ndarray,
                  batch_size: int = 8) -> float:
  """Mean over symbols of -log2(freq / 2**14), tables from `freqs_fn` of BOS-shifted inputs."""
  total = 0.0
  for start in range(0, symbols.shape[0], batch_size):
    batch = symbols[start:start + batch_size]
    freqs = freqs_fn(bos_inputs(batch))  # [B, T, 257]
    picked = np.take_along_axis(freqs, batch[..., None].astype(np.int64), axis=-1)[..., 0]
    total += float(np.sum(constants.PRECISION - np.log2(picked)))
  return total / symbols.size


def compare(m1: m1_lib.M1Model, exact_m1: exact_lib.ExactM1Model, symbols: np.ndarray) -> dict:
  """bits/byte of the float and the exact M1 on the same [N, T] symbols."""
  float_bpb = bits_per_byte(float_sequence_freqs(m1), symbols)
  exact_bpb = bits_per_byte(exact_m1.sequence_freqs, symbols)
  return {"symbols": int(symbols.size), "float_bits_per_byte": round(float_bpb, 5),
          "exact_bits_per_byte": round(exact_bpb, 5),
          "relative_increase": round(exact_bpb / float_bpb - 1, 5)}


# -- command line -------------------------------------------------------------

def parse_flags(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="eqinfo quantize-m1", description=__doc__,
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--m1", required=True, help="float M1 directory (config.json, params.npz)")
  parser.add_argument("--out", help=f"exact M1 directory (default: M1/{exact_lib.SUBDIR})")
  parser.add_argument("--calibration", required=True,
                      help="calibration corpus: jsonl[.gz] / text glob, builtin:pydoc, tfds:...")
  parser.add_argument("--validation", help="validation corpus for the report (default: the "
                      "calibration corpus after the documents used for calibration)")
  parser.add_argument("--calibration_docs", type=int, default=200, help="documents read")
  parser.add_argument("--calibration_sequences", type=int, default=32,
                      help="sequences whose activations choose the scales")
  parser.add_argument("--calibration_seq_len", type=int, default=256,
                      help="symbols per calibration sequence")
  parser.add_argument("--smooth_alpha", type=float, default=0.5,
                      help="SmoothQuant strength for RMSNorm outputs (0: none)")
  parser.add_argument("--eval_sequences", type=int, default=32,
                      help="sequences of the bits/byte report")
  parser.add_argument("--qat_steps", type=int, default=0,
                      help="quantisation-aware fine-tuning steps before conversion (0: none)")
  parser.add_argument("--qat_batch_size", type=int, default=qat.QATConfig.batch_size,
                      help="QAT batch size")
  parser.add_argument("--qat_seq_len", type=int, default=qat.QATConfig.seq_len,
                      help="QAT sequence length (at most M1's context)")
  parser.add_argument("--qat_learning_rate", type=float, default=qat.QATConfig.learning_rate,
                      help="QAT learning rate")
  parser.add_argument("--qat_seed", type=int, default=qat.QATConfig.seed,
                      help="QAT data-order seed")
  parser.add_argument("--qat_shuffle_buffer", type=int, default=1024,
                      help="QAT sequences held by the shuffle buffer")
  parser.add_argument("--qat_out", help="also save the fine-tuned float M1 here")
  parser.add_argument("--no_progress", action="store_true", help="no progress bar")
  parser.add_argument("--tfds_data_dir", help="TFDS data_dir for tfds: specs (never downloaded)")
  parser.add_argument("--eval_seq_len", type=int, default=512,
                      help="symbols per report sequence (at most M1's context)")
  return parser.parse_args(argv)


def run(argv=None) -> int:
  """Entry point: converts, saves and prints the JSON report."""
  log_setup.configure()
  args = parse_flags(argv)
  m1 = m1_lib.load(args.m1, exact=False)
  out = args.out or os.path.join(args.m1, exact_lib.SUBDIR)
  docs = corpus.read_documents(args.calibration, args.tfds_data_dir)
  calibration = [doc.data for _, doc in zip(range(args.calibration_docs), docs)]
  settings = dict(seq_len=args.calibration_seq_len, max_sequences=args.calibration_sequences,
                  smooth_alpha=args.smooth_alpha)
  converter = calibrate(m1, calibration, **settings)
  exact_m1 = ptq_m1 = exact_lib.ExactM1Model(m1.config, converter.out, converter.meta)
  tuned = None
  if args.qat_steps > 0:
    qat_config = qat.QATConfig(steps=args.qat_steps, batch_size=args.qat_batch_size,
                               seq_len=min(args.qat_seq_len, m1.config.max_len),
                               learning_rate=args.qat_learning_rate, seed=args.qat_seed)
    batches = m1_input.M1Batches(m1_input.M1DataConfig(
        spec=args.calibration, seq_len=qat_config.seq_len, batch_size=qat_config.batch_size,
        seed=qat_config.seed, shuffle_buffer=args.qat_shuffle_buffer,
        tfds_data_dir=args.tfds_data_dir))
    exact_m1, tuned = convert_with_qat(m1, calibration, batches, qat_config,
                                       progress=not args.no_progress, scales=converter.scales,
                                       **settings)
    if args.qat_out:
      tuned.save(args.qat_out)
  if args.validation:
    docs = corpus.read_documents(args.validation, args.tfds_data_dir)
  texts = (doc.data for doc in docs)
  seq_len = min(args.eval_seq_len, m1.config.max_len)
  symbols = eval_sequences(texts, seq_len, args.eval_sequences)
  report = compare(m1, ptq_m1, symbols)
  if tuned is not None:
    after = compare(tuned, exact_m1, symbols)
    report = {**report, "ptq_exact_bits_per_byte": report["exact_bits_per_byte"],
              "qat_float_bits_per_byte": after["float_bits_per_byte"],
              "exact_bits_per_byte": after["exact_bits_per_byte"],
              "relative_increase": round(after["exact_bits_per_byte"]
                                         / report["float_bits_per_byte"] - 1, 5)}
  exact_m1.meta["report"] = report
  exact_m1.meta["flags"] = vars(args)  # the command's resolved settings, beside its output
  digest = exact_m1.save(out)
  report = {"out": str(out), "fingerprint": digest, "source_fingerprint": m1.fingerprint,
            **report}
  print(json.dumps(report, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(run())
