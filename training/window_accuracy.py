"""M2's next-token accuracy by position within an Equal-Info window (paper §6: window-initial
tokens are learned first).

A record starts at a window boundary, and a b-bit window is b / token_bits tokens
(b=16, v=256: 2), so the target at position p of its record is token p mod k of
its window, k = tokens_per_window. Positions within a record come from the
row's `segments` where rows hold several records (`training/row_packing.py`),
else from the column.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from training import configs
from training import model as model_lib


def tokens_per_window(stats: dict) -> int:
  """k of a shard directory's stats.json: window_bits / token_bits, or 0 where the method
  has no windows or a token is a whole window (nothing to tell apart)."""
  window_bits, token_bits = stats.get("window_bits"), stats.get("token_bits")
  if not window_bits or not token_bits or window_bits % token_bits:
    return 0
  k = window_bits // token_bits
  return k if k > 1 else 0


def positions_in_record(segments: jax.Array | None, shape: tuple[int, int]) -> jax.Array:
  """[B, T] position of each target within its record.

  Args:
    segments: [B, T] 1, 2, ... per record of a packed row (0 on padding), or None for
      one record per row.
    shape: (B, T).
  """
  columns = jnp.broadcast_to(jnp.arange(shape[1], dtype=jnp.int32), shape)
  if segments is None:
    return columns
  starts = jnp.concatenate([jnp.ones((shape[0], 1), bool),
                            segments[:, 1:] != segments[:, :-1]], axis=1)
  first = jax.lax.cummax(jnp.where(starts, columns, 0), axis=1)
  return columns - first


def make_window_accuracy(model_config: configs.ModelConfig, k: int) -> Callable:
  """Returns fn(params, batch) -> {"correct_by_window_position": [k], "tokens_by_window_position":
  [k]} sums of weighted targets that the argmax of M2's logits predicts, by position p mod k.
  """
  model = model_lib.Transformer(model_config)

  def window_accuracy(params, batch):
    logits = model.apply({"params": params}, batch["inputs"], batch.get("segments"))
    correct = (jnp.argmax(logits, axis=-1) == batch["targets"]).astype(jnp.float32)
    weights = batch["weights"].astype(jnp.float32)
    slot = jax.nn.one_hot(positions_in_record(batch.get("segments"), weights.shape) % k, k)
    return {"correct_by_window_position": jnp.einsum("bt,btk->k", correct * weights, slot),
            "tokens_by_window_position": jnp.einsum("bt,btk->k", weights, slot)}

  return window_accuracy
