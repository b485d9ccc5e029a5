"""The chunked objective: the whole-batch loss and gradients, without [B, T, V] logits."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import REPO
from training import chunked_loss, configs, train
from training import batch_layout
from training import loss as loss_lib
from training import model as model_lib


def _problem(vocab: int = 300, batch: int = 3, seq_len: int = 50, seed: int = 0):
  """A tiny M2 of `vocab` outputs and one seeded batch with padding in its last row."""
  config = configs.model_config("tiny", vocab_size=vocab, max_len=seq_len)
  params = model_lib.Transformer(config).init(jax.random.PRNGKey(seed),
                                              jnp.zeros((1, 1), jnp.int32))["params"]
  rng = np.random.default_rng(seed)
  targets = rng.integers(0, vocab - 1, (batch, seq_len)).astype(np.int32)
  inputs = np.concatenate([np.full((batch, 1), vocab - 1), targets[:, :-1]], 1).astype(np.int32)
  weights = np.ones((batch, seq_len), np.float32)
  weights[-1, seq_len // 3:] = 0.0
  batch = {"inputs": inputs, "targets": targets, "weights": weights,
           "num_bytes": np.full(batch, 7 * seq_len, np.int64)}
  return config, params, batch


def _whole_loss(config, params, batch, z_loss):
  logits = model_lib.Transformer(config).apply({"params": params}, batch["inputs"])
  return loss_lib.masked_loss(logits, batch["targets"], batch["weights"], z_loss)


@pytest.mark.parametrize("seq_len,fits,positions", [
    (50, 7, 5), (50, 16, 10),  # divisors of T
    (53, 16, 16), (53, 52, 52)])  # T prime: the last chunk padded
def test_chunks_give_the_whole_batch_loss_and_gradients(seq_len, fits, positions):
  config, params, batch = _problem(seq_len=seq_len)
  chunk_bytes = fits * 3 * 4 * config.vocab_size
  assert chunked_loss.chunk_positions(3, seq_len, config.vocab_size, 0, chunk_bytes) == positions
  chunked = train.batch_loss(config, whole_bytes=0, chunk_bytes=chunk_bytes)
  (loss, sums), grads = jax.value_and_grad(chunked, has_aux=True)(params, batch, 1e-2)
  (want, want_sums), want_grads = jax.value_and_grad(
      lambda p, b, z: _whole_loss(config, p, b, z), has_aux=True)(params, batch, 1e-2)
  assert float(sums["tokens"]) == float(want_sums["tokens"]) == 3 * seq_len - (seq_len
                                                                                - seq_len // 3)
  for key in ("xent", "z_loss"):
    np.testing.assert_allclose(sums[key], want_sums[key], rtol=1e-5)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  for got, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_chunks_only_where_one_devices_logits_would_not_fit():
  v = 65537  # v=65k and BOS
  assert chunked_loss.chunk_positions(35, 512, v) == 512  # 4.4 GiB: whole
  assert chunked_loss.chunk_positions(36, 512, v) == 64  # 113 fit (1 GiB / (4 x 65,537 x 36))
  assert chunked_loss.chunk_positions(256, 512, v) == 8  # the paper's batch on one device: 15 fit
  assert chunked_loss.chunk_positions(256, 509, v) == 15  # T prime: padded
  assert chunked_loss.chunk_positions(1 << 14, 512, v) == 1  # at least one position
  assert chunked_loss.chunk_positions(256, 512, 258) == 512  # byte-level models


def test_one_chunk_is_the_whole_loss_exactly():
  config, params, batch = _problem()
  loss, sums = jax.jit(train.batch_loss(config))(params, batch, 1e-4)
  want, want_sums = jax.jit(lambda p, b: _whole_loss(config, p, b, 1e-4))(params, batch)
  assert float(loss) == float(want)
  assert {k: float(v) for k, v in sums.items()} == {k: float(v) for k, v in want_sums.items()}


def _step_temp_bytes(config, batch_size: int, seq_len: int, whole_bytes: int,
                     devices: int = 1) -> int:
  """Temporary bytes XLA allocates for one gradient of the objective (compiled, not run)."""
  loss_of = train.batch_loss(config, devices, whole_bytes, chunk_bytes=1 << 24)
  grad = jax.jit(jax.grad(lambda p, b: loss_of(p, b, loss_lib.Z_LOSS)[0]))
  params = model_lib.param_shapes(config)["params"]
  shape = lambda dtype: jax.ShapeDtypeStruct((batch_size, seq_len), dtype)
  batch = {"inputs": shape(jnp.int32), "targets": shape(jnp.int32),
           "weights": shape(jnp.float32)}
  return grad.lower(params, batch).compile().memory_analysis().temp_size_in_bytes


def test_a_65k_vocabulary_step_never_holds_its_whole_logits():
  """v=65k: 2,048 tokens' float32 logits are 512 MiB; 16 MiB chunks keep the step far below."""
  config = configs.model_config("tiny", vocab_size=batch_layout.model_vocab_size(65536),
                                max_len=512)
  logits_bytes = 4 * 512 * 4 * config.vocab_size
  whole = _step_temp_bytes(config, 4, 512, whole_bytes=logits_bytes)
  chunked = _step_temp_bytes(config, 4, 512, whole_bytes=logits_bytes - 1)
  assert whole > 2 * logits_bytes  # the logits and their gradient, at least
  assert chunked < logits_bytes / 4, (chunked, whole)
  # Four devices' shares fit whole: a batch of 16 rows is then one piece again.
  assert _step_temp_bytes(config, 16, 512, logits_bytes, devices=4) > 4 * 2 * logits_bytes


SHARDED_CHECK = """
import json
import jax, jax.numpy as jnp, numpy as np
from training import configs, train
from training import model as model_lib
config = configs.model_config("tiny", vocab_size=65537, max_len=64)
mesh = train.make_mesh()
params = model_lib.Transformer(config).init(jax.random.PRNGKey(0),
                                            jnp.zeros((1, 1), jnp.int32))["params"]
rng = np.random.default_rng(0)
batch = {"inputs": rng.integers(0, 65536, (8, 64)).astype(np.int32),
         "targets": rng.integers(0, 65536, (8, 64)).astype(np.int32),
         "weights": np.ones((8, 64), np.float32), "num_bytes": np.ones(8, np.int32)}
batch = train.shard_batch(batch, mesh)
out = {"devices": mesh.size}
for name, whole_bytes in (("whole", 1 << 40), ("chunked", 0)):
  loss_of = train.batch_loss(config, mesh.size, whole_bytes, chunk_bytes=1 << 22)
  compiled = jax.jit(jax.grad(lambda p, b: loss_of(p, b, 1e-4)[0])).lower(params, batch).compile()
  out[name] = {"all_gathers": compiled.as_text().count("all-gather("),
               "grads": [float(jnp.sum(g)) for g in jax.tree.leaves(compiled(params, batch))]}
print(json.dumps(out))
"""


def test_chunks_keep_the_batch_sharded_over_devices():
  """Two devices, batch sharded: the chunked step gathers nothing and gives the same gradients."""
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, "-c", SHARDED_CHECK], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  assert out["devices"] == 2
  assert out["whole"]["all_gathers"] == out["chunked"]["all_gathers"] == 0
  np.testing.assert_allclose(out["chunked"]["grads"], out["whole"]["grads"], rtol=1e-4,
                             atol=1e-6)
