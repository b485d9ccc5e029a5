"""Optimiser of M1 and M2 (paper §3.2, §3.5): Adafactor on the rsqrt schedule."""
import jax
import jax.numpy as jnp
import optax

WARMUP_STEPS = 10_000  # constant learning rate 1/sqrt(warmup) before this step


def rsqrt_schedule(warmup_steps: int = WARMUP_STEPS) -> optax.Schedule:
  """Returns the paper's learning rate: lr(step) = 1 / sqrt(max(step, warmup_steps)).

  Raises:
    ValueError: if warmup_steps < 1.
  """
  if warmup_steps < 1:
    raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

  def schedule(step):
    return jax.lax.rsqrt(jnp.maximum(jnp.asarray(step, jnp.float32), float(warmup_steps)))

  return schedule


def adafactor(warmup_steps: int = WARMUP_STEPS) -> optax.GradientTransformation:
  """Adafactor (factored second moments, update clipping 1.0) on the rsqrt schedule."""
  return optax.adafactor(learning_rate=rsqrt_schedule(warmup_steps))
