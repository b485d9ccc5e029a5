"""The training objective a chunk of positions at a time, where [B, T, V] logits would not fit.

M2 over `equal_info_ac[b=16,v=65k]` has 65,537 output classes. At the paper's
batch of 256 x 512 tokens its logits alone are 34 GB in float32, and their
gradient as much again, more than one accelerator holds. When one device's
share of the batch would hold more than WHOLE_LOGITS_BYTES of float32 logits,
`masked_loss` projects the hidden states to logits a few positions of every
row at a time inside a `lax.scan`, and recomputes each chunk's logits in the
backward pass (`jax.checkpoint`). The logits of one chunk are then all that
exists at once, about CHUNK_LOGITS_BYTES per device. Chunks cut the
position axis, so the batch axis stays sharded over the devices. Below the
threshold (every byte-level model, and v=65k with up to 35 rows of 512 per
device, as the paper's batch of 256 on 8 devices has), the loss is computed in
one piece, exactly as `loss.masked_loss` computes it, with no recompute. The
recompute costs one more forward pass of the output projection, which is the
largest matrix product of a small M2 at v=65k.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from training import loss as loss_lib

WHOLE_LOGITS_BYTES = 9 << 29  # per device: float32 logits up to 4.5 GiB are computed whole
CHUNK_LOGITS_BYTES = 1 << 30  # per device: float32 logits of one chunk, beyond that


def chunk_positions(rows: int, seq_len: int, vocab_size: int,
                    whole_bytes: int = WHOLE_LOGITS_BYTES,
                    chunk_bytes: int = CHUNK_LOGITS_BYTES) -> int:
  """Positions of every row projected at once: `seq_len` (whole) or fewer.

  Beyond `whole_bytes`, a chunk is the largest divisor of T whose logits fit
  `chunk_bytes` when that is at least half of what fits (T = 512: powers of
  two); otherwise what fits, the last chunk padded.

  Args:
    rows: rows of the batch on one device.
    seq_len: T.
    vocab_size: V, the outputs of the model.
    whole_bytes: the float32 logits of `rows` x `seq_len` up to this are one chunk.
    chunk_bytes: beyond that, a chunk's logits stay within this (at least one position).
  """
  per_position = 4 * vocab_size * rows
  if per_position * seq_len <= whole_bytes:
    return seq_len
  fits = max(1, min(seq_len, chunk_bytes // per_position))
  divisor = max(c for c in range(1, fits + 1) if seq_len % c == 0)
  return divisor if 2 * divisor >= fits else fits


def masked_loss(project: Callable[[jax.Array], jax.Array], hidden: jax.Array,
                targets: jax.Array, weights: jax.Array, z_loss: float, chunk: int
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """`loss.masked_loss` of the logits `project(hidden)`, `chunk` positions of every row at a time.

  Args:
    project: final states [..., d] -> float32 logits [..., V] (`Transformer.project`).
    hidden: [B, T, d] final normed states.
    targets: [B, T] int.
    weights: [B, T] float loss mask.
    z_loss: weight of the z-loss term.
    chunk: positions per chunk (`chunk_positions`); T or more computes the loss whole.

  Returns:
    (loss, sums) as `loss.masked_loss`: the scalar objective and the summed
    {"xent", "z_loss", "tokens"}.
  """
  b, t, d = hidden.shape
  if chunk >= t:
    return loss_lib.masked_loss(project(hidden), targets, weights, z_loss)
  pad = -t % chunk  # padded positions weigh 0
  n = (t + pad) // chunk
  by_chunk = lambda x: jnp.moveaxis(  # [B, T, ...] -> [n, B, chunk, ...]
      jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)).reshape(b, n, chunk,
                                                                        *x.shape[2:]), 1, 0)
  weights = weights.astype(jnp.float32)

  @jax.checkpoint
  def chunk_sums(h, y, w):  # [B, C, d], [B, C], [B, C] -> the chunk's (xent, z-loss) sums
    xent, zl = loss_lib.token_losses(project(h), y, z_loss)
    return jnp.sum(xent * w), jnp.sum(zl * w)

  def body(carry, xs):
    xent, zl = chunk_sums(*xs)
    return (carry[0] + xent, carry[1] + zl), None

  zero = jnp.zeros((), jnp.float32)
  (xent, zl), _ = jax.lax.scan(body, (zero, zero),
                               (by_chunk(hidden), by_chunk(targets), by_chunk(weights)))
  tokens = jnp.sum(weights)
  sums = {"xent": xent, "z_loss": zl, "tokens": tokens}
  return (xent + zl) / jnp.maximum(tokens, 1.0), sums
