"""The decoder-only transformer shared by M1 (bytes) and M2 (compressed tokens).

Architecture (paper §3.2, §3.5; T5 style): token embedding, pre-norm blocks of
RMSNorm -> causal multi-head self-attention with a learned T5 relative position
bias in every layer (unidirectional buckets) -> RMSNorm -> ReLU MLP, a final
RMSNorm and an untied projection to `vocab_size` logits.

Two ways to run it, which agree to float rounding:

* `Transformer(config).apply(params, tokens)`: the full causal sequence,
  `[B, T] -> [B, T, V]`, positions 0..T-1. A position attends to at most
  `max_len` positions (itself included), so T may exceed `max_len`: the model
  then slides its window.
* `decode_step(config, params, cache, tokens, positions)`: one token per lane,
  `[B] -> [B, V]`, each lane at its own position, with a ring-buffer KV cache
  of `max_len` slots (`init_cache`). Position p is stored in slot p % max_len;
  the relative bias always uses the true distance. Attention runs over the
  cache in chunks of `DECODE_CHUNK` slots with an online softmax, and only over
  the chunks that some active lane needs; chunks that hold no valid slot for a
  lane leave its result bit-for-bit unchanged, so a lane's logits do not depend
  on what other lanes hold.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from training.configs import ModelConfig

Cache = list[dict[str, jax.Array]]  # per layer {"k", "v"}: [B, H, S, D]

DECODE_CHUNK = 64  # cache slots per attention chunk of `decode_step`
_NEG = -1e30  # score of a masked slot
_EMBEDDING_MODULES = ("token_embed", "logits_dense")


def relative_bucket_table(config: ModelConfig) -> np.ndarray:
  """T5 unidirectional relative-position buckets for distances 0..max_len-1.

  Distance n = query position - key position >= 0. Distances below
  buckets/2 get their own bucket; larger ones share log-spaced buckets up to
  `rel_pos_max_distance`. Computed once in float64 numpy, so every code path
  uses the same integers.

  Returns:
    [max_len] int32 bucket per distance.
  """
  n = np.arange(config.max_len, dtype=np.int64)
  max_exact = config.rel_pos_buckets // 2
  ratio = np.log(np.maximum(n, 1) / max_exact) / np.log(config.rel_pos_max_distance / max_exact)
  large = max_exact + (ratio * (config.rel_pos_buckets - max_exact)).astype(np.int64)
  large = np.minimum(large, config.rel_pos_buckets - 1)
  return np.where(n < max_exact, n, large).astype(np.int32)


def _dtype(config: ModelConfig):
  return jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32


def _dense_init():
  """Truncated normal with variance 1 / fan_in."""
  return nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


class RMSNorm(nn.Module):
  """Root-mean-square norm with a learned scale, computed in float32."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x):  # [..., d]
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(var + self.config.norm_eps) * scale
    return y.astype(_dtype(self.config))


class MLP(nn.Module):
  """ReLU MLP; gated `(relu(x W0) * (x W1)) W2` when `config.mlp_gated`."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x):  # [..., d]
    c = self.config
    dense = lambda n, name: nn.Dense(n, use_bias=False, dtype=_dtype(c), param_dtype=jnp.float32,
                                     kernel_init=_dense_init(), name=name)
    if c.mlp_gated:
      h = nn.relu(dense(c.mlp_dim, "wi_0")(x)) * dense(c.mlp_dim, "wi_1")(x)
    else:
      h = nn.relu(dense(c.mlp_dim, "wi")(x))
    return dense(c.d_model, "wo")(h)


class Attention(nn.Module):
  """Causal multi-head self-attention with a T5 relative position bias."""

  config: ModelConfig

  def setup(self):
    c = self.config
    proj = lambda name: nn.DenseGeneral((c.num_heads, c.head_dim), use_bias=False,
                                        dtype=_dtype(c), param_dtype=jnp.float32,
                                        kernel_init=_dense_init(), name=name)
    self.query, self.key, self.value = proj("query"), proj("key"), proj("value")
    self.out = nn.DenseGeneral(c.d_model, axis=(-2, -1), use_bias=False, dtype=_dtype(c),
                               param_dtype=jnp.float32, kernel_init=_dense_init(), name="out")
    self.rel_embedding = self.param("rel_embedding", nn.initializers.normal(0.1),
                                    (c.rel_pos_buckets, c.num_heads), jnp.float32)

  def __call__(self, x, buckets, valid):
    """Full causal sequence.

    Args:
      x: [B, T, d] normed inputs.
      buckets: [T, T] int32 relative bucket of (query, key).
      valid: [B or 1, T, T] bool, key visible from query.

    Returns:
      [B, T, d].
    """
    c = self.config
    q, k, v = self.query(x), self.key(x), self.value(x)  # [B, T, H, D]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    bias = jnp.transpose(self.rel_embedding[buckets], (2, 0, 1))  # [H, T, T]
    scores = scores / math.sqrt(c.head_dim) + bias[None]
    scores = jnp.where(valid[:, None], scores, _NEG)
    probs = jax.nn.softmax(scores, axis=-1).astype(_dtype(c))  # [B, H, T, T]
    out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    return self.out(out)

  def step(self, x, positions, active, cache, num_chunks, bucket_table):
    """One token per lane against a ring-buffer cache.

    Args:
      x: [B, d] normed inputs.
      positions: [B] int32 absolute positions.
      active: [B] bool; inactive lanes leave the cache untouched.
      cache: {"k", "v"}: [B, H, S, D].
      num_chunks: int32 scalar, chunks of DECODE_CHUNK slots to visit.
      bucket_table: [max_len] int32.

    Returns:
      ([B, d], new cache).
    """
    c = self.config
    q, k, v = self.query(x), self.key(x), self.value(x)  # [B, H, D]
    cache = _write_slot(cache, k, v, positions % c.max_len, active)
    _, l, acc = _online_attention(q / math.sqrt(c.head_dim), cache, positions, num_chunks,
                                  self.rel_embedding, bucket_table, c.max_len)
    out = (acc / l[..., None]).astype(_dtype(c))  # [B, H, D]
    return self.out(out), cache


def _write_slot(cache, k, v, slots, active):
  """Writes k, v [B, H, D] into slot[b] of each active lane."""
  rows = jnp.arange(k.shape[0])
  keep = active[:, None, None]
  out = {}
  for name, new in (("k", k), ("v", v)):
    old = cache[name][rows, :, slots]  # [B, H, D]
    new = jnp.where(keep, new.astype(old.dtype), old)
    out[name] = cache[name].at[rows, :, slots].set(new)
  return out


def _online_attention(q, cache, positions, num_chunks, rel_embedding, bucket_table, max_len):
  """Softmax attention over the first `num_chunks` chunks of the cache.

  Returns (m, l, acc): running max [B, H], normaliser [B, H], and
  unnormalised output [B, H, D], all float32.
  """
  b, h, s, d = cache["k"].shape
  chunk = min(DECODE_CHUNK, s)

  def body(i, carry):
    m, l, acc = carry
    start = i * chunk
    kc = jax.lax.dynamic_slice_in_dim(cache["k"], start, chunk, axis=2)  # [B, H, C, D]
    vc = jax.lax.dynamic_slice_in_dim(cache["v"], start, chunk, axis=2)
    slots = start + jnp.arange(chunk)  # [C]
    dist = jnp.mod(positions[:, None] - slots[None, :], max_len)  # [B, C]
    valid = (slots[None, :] < max_len) & (dist <= positions[:, None])
    bias = rel_embedding[bucket_table[dist]]  # [B, C, H]
    scores = jnp.einsum("bhd,bhcd->bhc", q, kc, preferred_element_type=jnp.float32)
    scores = scores + jnp.transpose(bias, (0, 2, 1))
    valid = valid[:, None, :]  # [B, 1, C]
    scores = jnp.where(valid, scores, _NEG)
    m_new = jnp.maximum(m, scores.max(axis=-1))
    corr = jnp.exp(m - m_new)
    p = jnp.where(valid, jnp.exp(scores - m_new[..., None]), 0.0)  # [B, H, C]
    l = l * corr + p.sum(axis=-1)
    acc = acc * corr[..., None] + jnp.einsum("bhc,bhcd->bhd", p, vc.astype(jnp.float32))
    return m_new, l, acc

  init = (jnp.full((b, h), _NEG, jnp.float32), jnp.zeros((b, h), jnp.float32),
          jnp.zeros((b, h, d), jnp.float32))
  return jax.lax.fori_loop(0, num_chunks, body, init)


class DecoderBlock(nn.Module):
  """Pre-norm attention and MLP with residual connections."""

  config: ModelConfig

  def setup(self):
    self.pre_attention_norm = RMSNorm(self.config)
    self.attention = Attention(self.config)
    self.pre_mlp_norm = RMSNorm(self.config)
    self.mlp = MLP(self.config)

  def __call__(self, x, buckets, valid):  # [B, T, d]
    x = x + self.attention(self.pre_attention_norm(x), buckets, valid)
    return x + self.mlp(self.pre_mlp_norm(x))

  def step(self, x, positions, active, cache, num_chunks, bucket_table):  # [B, d]
    y, cache = self.attention.step(self.pre_attention_norm(x), positions, active, cache,
                                   num_chunks, bucket_table)
    x = x + y
    return x + self.mlp(self.pre_mlp_norm(x)), cache


class Transformer(nn.Module):
  """Decoder-only transformer: `[B, T]` int32 tokens -> `[B, T, V]` float32 logits."""

  config: ModelConfig

  def setup(self):
    c = self.config
    self.token_embed = nn.Embed(c.vocab_size, c.d_model, embedding_init=nn.initializers.normal(1.0),
                                param_dtype=jnp.float32, dtype=_dtype(c))
    block = nn.remat(DecoderBlock) if c.remat else DecoderBlock
    self.layers = [block(c) for _ in range(c.num_layers)]
    self.final_norm = RMSNorm(c)
    self.logits_dense = nn.Dense(c.vocab_size, use_bias=False, dtype=_dtype(c),
                                 param_dtype=jnp.float32, kernel_init=_dense_init())

  def __call__(self, tokens, segments=None):
    """Causal logits of a full sequence, or of several sequences packed in a row.

    Args:
      tokens: [B, T] int32, positions 0..T-1.
      segments: optional [B, T] int32 segment ids of packed rows: a position
        sees only earlier positions of its own segment. A segment's relative
        position biases are those of the sequence alone (they depend on the
        distance only), so its logits are the sequence's own.

    Returns:
      [B, T, V] float32 logits; row t predicts token t+1.
    """
    return self.project(self.hidden(tokens, segments))

  def hidden(self, tokens, segments=None):
    """The final normed states [B, T, d] of `__call__`, before the output projection.

    Where [B, T, V] logits would not fit a device, training projects these to
    logits a chunk of positions at a time (`training.chunked_loss`).
    """
    c = self.config
    t = tokens.shape[1]
    pos = np.arange(t)
    dist = pos[:, None] - pos[None, :]  # [T, T] query - key
    valid = jnp.asarray((dist >= 0) & (dist < c.max_len))[None]  # [1, T, T]
    if segments is not None:
      valid = valid & (segments[:, :, None] == segments[:, None, :])  # [B, T, T]
    buckets = jnp.asarray(relative_bucket_table(c)[np.clip(dist, 0, c.max_len - 1)])
    x = self.token_embed(tokens)  # [B, T, d]
    for layer in self.layers:
      x = layer(x, buckets, valid)
    return self.final_norm(x)

  def project(self, hidden):
    """Logits [..., V] float32 of final normed states [..., d]."""
    return self.logits_dense(hidden).astype(jnp.float32)

  def decode_step(self, tokens, positions, cache, active=None):
    """One token per lane with a KV cache (see `decode_step` below)."""
    c = self.config
    if active is None:
      active = jnp.ones(tokens.shape, bool)
    seen = jnp.minimum(jnp.max(jnp.where(active, positions, 0)) + 1, c.max_len)
    chunk = min(DECODE_CHUNK, cache[0]["k"].shape[2])
    num_chunks = (seen + chunk - 1) // chunk
    table = jnp.asarray(relative_bucket_table(c))
    x = self.token_embed(tokens)  # [B, d]
    new_cache = []
    for layer, layer_cache in zip(self.layers, cache):
      x, layer_cache = layer.step(x, positions, active, layer_cache, num_chunks, table)
      new_cache.append(layer_cache)
    return self.logits_dense(self.final_norm(x)).astype(jnp.float32), new_cache


def cache_slots(config: ModelConfig) -> int:
  """Slots per lane of the ring-buffer cache: max_len rounded up to whole chunks."""
  chunk = min(DECODE_CHUNK, config.max_len)
  return -(-config.max_len // chunk) * chunk


def init_cache(config: ModelConfig, batch_size: int, slots: int | None = None) -> Cache:
  """Zeroed KV cache for `batch_size` lanes, in the compute dtype.

  Args:
    config: the model's config.
    batch_size: lanes.
    slots: cache slots per lane, a multiple of DECODE_CHUNK (or `cache_slots`);
      default `cache_slots(config)`. A smaller cache serves lanes whose
      positions stay below `slots`; `grow_cache` enlarges it.
  """
  slots = cache_slots(config) if slots is None else slots
  _check_slots(config, slots)
  shape = (batch_size, config.num_heads, slots, config.head_dim)
  return [{"k": jnp.zeros(shape, _dtype(config)), "v": jnp.zeros(shape, _dtype(config))}
          for _ in range(config.num_layers)]


def grow_cache(config: ModelConfig, cache: Cache, slots: int) -> Cache:
  """Returns `cache` padded with zeroed slots up to `slots` per lane."""
  _check_slots(config, slots)
  pad = slots - cache[0]["k"].shape[2]
  if pad < 0:
    raise ValueError(f"cannot shrink a cache from {cache[0]['k'].shape[2]} to {slots} slots")
  widths = ((0, 0), (0, 0), (0, pad), (0, 0))
  return [{name: jnp.pad(x, widths) for name, x in layer.items()} for layer in cache]


def _check_slots(config: ModelConfig, slots: int) -> None:
  full = cache_slots(config)
  if slots != full and (slots < 1 or slots % DECODE_CHUNK or slots > full):
    raise ValueError(f"cache slots must be a multiple of {DECODE_CHUNK} up to {full}, got {slots}")


def decode_step(config: ModelConfig, params: Any, cache: Cache, tokens: jax.Array,
                positions: jax.Array, active: jax.Array | None = None) -> tuple[jax.Array, Cache]:
  """Feeds one token per lane and returns the logits of the next token.

  Lane b consumes tokens[b] at absolute position positions[b] (its context so
  far is positions 0..positions[b]-1 in the cache). Restarting a lane is just
  feeding position 0: slots of older positions are masked by distance. The
  cache must hold min(positions[b] + 1, max_len) slots for every active lane.

  Args:
    config: the model's config.
    params: the model's variables ({"params": ...}).
    cache: from `init_cache` or a previous call.
    tokens: [B] int32.
    positions: [B] int32 absolute positions.
    active: optional [B] bool; inactive lanes neither write the cache nor
      affect other lanes (their logits are meaningless).

  Returns:
    ([B, V] float32 logits, new cache).
  """
  return Transformer(config).apply(params, tokens, positions, cache, active,
                                   method=Transformer.decode_step)


def count_params(params: Any, exclude_embeddings: bool = True) -> int:
  """Number of parameters; by default without the token embedding and logits projection.

  Works on arrays or `jax.ShapeDtypeStruct`s (e.g. from `jax.eval_shape`).
  """
  params = params.get("params", params) if isinstance(params, dict) else params
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    names = [getattr(k, "key", str(k)) for k in path]
    if exclude_embeddings and any(n in _EMBEDDING_MODULES for n in names):
      continue
    total += int(np.prod(leaf.shape))
  return total


def m1_flops_per_byte(config) -> float:
  """M1's inference FLOPs per coded symbol: 2 x its non-embedding parameters (paper §3.8)."""
  return 2.0 * count_params(param_shapes(config))


def param_shapes(config: ModelConfig) -> Any:
  """Parameter shapes of a config without allocating them (jax.eval_shape)."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return jax.eval_shape(lambda t: Transformer(config).init(jax.random.PRNGKey(0), t), tokens)


def flops_per_token(config: ModelConfig, seq_len: int, non_embedding_params: int | None = None,
                    include_attention: bool = True, include_logits: bool = False) -> float:
  """Forward-pass FLOPs per token (Kaplan et al. 2020, Table 1).

  FLOPs = 2 * N + 2 * num_layers * seq_len * num_heads * head_dim, where N is
  the non-embedding parameter count (each weight is one multiply-add) and the
  second term is the attention scores QK^T and the weighted sum over values
  for a context of seq_len. The paper's FLOPs/byte (§3.8) uses 2 * N only
  (`include_attention=False`). `include_logits` adds the output projection,
  2 * d_model * vocab_size: work the device does (MFU counts it; at v=65k it is
  the largest matmul), which Kaplan's N leaves out. Training costs about 3x
  the forward pass.

  Args:
    config: the model's config.
    seq_len: context length the attention term assumes.
    non_embedding_params: N; computed from `config` when None.
    include_attention: add the attention term.
    include_logits: add the output projection.
  """
  if non_embedding_params is None:
    non_embedding_params = count_params(param_shapes(config))
  flops = 2.0 * non_embedding_params
  if include_attention:
    flops += 2.0 * config.num_layers * seq_len * config.attn_dim
  if include_logits:
    flops += 2.0 * config.d_model * config.vocab_size
  return flops
