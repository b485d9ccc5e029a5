"""The objective of M1 and M2 (paper §3.2): cross entropy plus z-loss, over weighted tokens.

`chunked_loss` computes the same objective a chunk of positions at a time.
"""
import jax
import jax.numpy as jnp

Z_LOSS = 1e-4  # weight of logsumexp(logits)**2 (paper §3.2)


def token_losses(logits: jax.Array, targets: jax.Array, z_loss: float = Z_LOSS
                 ) -> tuple[jax.Array, jax.Array]:
  """Per-token cross entropy and z-loss.

  Args:
    logits: [B, T, V] float.
    targets: [B, T] int.
    z_loss: weight of logsumexp(logits)**2.

  Returns:
    (xent, zl), both [B, T] float32: xent = -log p(target) in nats,
    zl = z_loss * logsumexp(logits)**2.
  """
  logits = logits.astype(jnp.float32)
  lse = jax.nn.logsumexp(logits, axis=-1)  # [B, T]
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]  # [B, T]
  return lse - target_logit, z_loss * jnp.square(lse)


def masked_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                z_loss: float = Z_LOSS) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The training objective: mean over weighted tokens of cross entropy + z-loss.

  Args:
    logits: [B, T, V].
    targets: [B, T] int.
    weights: [B, T] float loss mask.
    z_loss: weight of the z-loss term.

  Returns:
    (loss, sums): the scalar objective and the summed statistics
    {"xent": sum of token cross entropies (nats), "z_loss": sum of z-loss,
     "tokens": sum of weights}.
  """
  xent, zl = token_losses(logits, targets, z_loss)
  tokens = jnp.sum(weights)
  sums = {"xent": jnp.sum(xent * weights), "z_loss": jnp.sum(zl * weights), "tokens": tokens}
  loss = (sums["xent"] + sums["z_loss"]) / jnp.maximum(tokens, 1.0)
  return loss, sums
