"""The transformer: Table 4 sizes, strict configs, and cached decoding equal to full sequences."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training import configs
from training import model

# Non-embedding parameters of each Table 4 name.
TABLE4_COUNTS = {"3m": 3e6, "25m": 25e6, "113m": 113e6, "403m": 403e6, "2b": 2e9,
                 "tiny": 1e5, "mini": 1e6}


@pytest.mark.parametrize("size", list(TABLE4_COUNTS))
def test_table4_parameter_counts(size):
  config = configs.model_config(size, vocab_size=65_536, max_len=512)
  n = model.count_params(model.param_shapes(config))
  print(f"{size}: {n:,} non-embedding parameters")
  tolerance = 0.10 if size in ("tiny", "mini") else 0.05
  assert abs(n - TABLE4_COUNTS[size]) <= tolerance * TABLE4_COUNTS[size]


def test_embeddings_are_excluded_from_the_count():
  config = configs.model_config("tiny", vocab_size=1000, max_len=64)
  shapes = model.param_shapes(config)
  every = model.count_params(shapes, exclude_embeddings=False)
  assert every - model.count_params(shapes) == 2 * 1000 * config.d_model


def test_flops_per_token_formula():
  config = configs.model_config("3m", vocab_size=258, max_len=1024)
  n = model.count_params(model.param_shapes(config))
  assert model.flops_per_token(config, 1024, include_attention=False) == 2 * n
  assert model.flops_per_token(config, 1024) == 2 * n + 2 * 3 * 1024 * 256
  assert model.flops_per_token(config, 1024, include_logits=True) == (
      2 * n + 2 * 3 * 1024 * 256 + 2 * 256 * config.vocab_size)  # MFU's output projection


def test_config_round_trips_through_json():
  config = configs.model_config("25m", vocab_size=256, max_len=512, dtype="bfloat16")
  assert configs.from_dict(json.loads(json.dumps(configs.to_dict(config)))) == config


@pytest.mark.parametrize("overrides, message", [
    ({"num_layer": 3}, "valid keys"),
    ({"num_layers": "3"}, "must be int"),
    ({"num_layers": 2.0}, "must be int"),
    ({"mlp_gated": 1}, "must be bool"),
    ({"dtype": "float16"}, "dtype"),
    ({"num_heads": 0}, ">= 1"),
])
def test_strict_overrides(overrides, message):
  with pytest.raises(ValueError, match=message):
    configs.model_config("tiny", vocab_size=258, max_len=64, **overrides)


def test_unknown_size_and_bad_dicts():
  with pytest.raises(ValueError, match="valid sizes"):
    configs.model_config("7b", vocab_size=258, max_len=64)
  values = configs.to_dict(configs.model_config("tiny", vocab_size=258, max_len=64))
  with pytest.raises(ValueError, match="missing"):
    configs.from_dict({k: v for k, v in values.items() if k != "d_model"})
  with pytest.raises(ValueError, match="valid keys"):
    configs.from_dict({**values, "extra": 1})
  assert configs.parse_override("num_layers", "4") == 4
  assert configs.parse_override("remat", "true") is True
  with pytest.raises(ValueError, match="expects int"):
    configs.parse_override("num_layers", "four")


def test_relative_buckets_are_t5_unidirectional():
  config = configs.model_config("tiny", vocab_size=258, max_len=1024)
  table = model.relative_bucket_table(config)
  np.testing.assert_array_equal(table[:16], np.arange(16))
  assert table[100] < 31 and np.all(table[128:] == 31)
  assert np.all(np.diff(table) >= 0)


def _random_model(max_len, num_layers=2, vocab=50, dtype="float32"):
  config = configs.model_config("tiny", vocab_size=vocab, max_len=max_len, num_layers=num_layers,
                                dtype=dtype)
  params = model.Transformer(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
  return config, params


def _decode_all(config, params, tokens, offsets):
  """Feeds tokens[b, t] at step offsets[b] + t; returns [B, T, V] logits."""
  b, t = tokens.shape
  step = jax.jit(lambda c, x, pos, act: model.decode_step(config, params, c, x, pos, act))
  cache = model.init_cache(config, b)
  out = np.zeros((b, t, config.vocab_size), np.float32)
  for s in range(t + max(offsets)):
    pos = s - np.asarray(offsets)
    active = (pos >= 0) & (pos < t)
    x = tokens[np.arange(b), np.clip(pos, 0, t - 1)]
    logits, cache = step(cache, x, np.where(active, pos, 0).astype(np.int32), active)
    out[active, pos[active]] = np.asarray(logits)[active]
  return out


@pytest.mark.parametrize("max_len", [40, 100])
def test_cached_steps_equal_full_sequence(max_len):
  """Lanes at different positions, contexts past max_len (sliding window, ring buffer)."""
  config, params = _random_model(max_len)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 150), 0, config.vocab_size)
  full = model.Transformer(config).apply(params, tokens)  # [B, T, V]
  cached = _decode_all(config, params, np.asarray(tokens), offsets=[0, 7, 30])
  np.testing.assert_allclose(cached, full, atol=1e-5, rtol=1e-5)


def test_one_layer_long_context_equals_recompute_on_last_window():
  """With one layer, the window of the last max_len symbols is all the model sees."""
  max_len = 40
  config, params = _random_model(max_len, num_layers=1)
  tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (2, 130), 0, config.vocab_size))
  cached = _decode_all(config, params, tokens, offsets=[0, 3])
  apply = jax.jit(model.Transformer(config).apply)
  for t in (max_len, 77, 129):
    window = tokens[:, t - max_len + 1:t + 1]
    recompute = apply(params, window)[:, -1]
    np.testing.assert_allclose(cached[:, t], recompute, atol=1e-5, rtol=1e-5)


def test_packed_records_get_the_logits_they_get_alone():
  """Segments keep records apart: each record's logits equal those of the record alone."""
  config, params = _random_model(max_len=40)
  rng = np.random.default_rng(0)
  a, b = rng.integers(1, config.vocab_size, 11), rng.integers(1, config.vocab_size, 15)
  row = np.zeros((1, 32), np.int32)
  row[0, :11], row[0, 11:26] = a, b
  segments = np.array([[1] * 11 + [2] * 15 + [0] * 6], np.int32)
  apply = jax.jit(model.Transformer(config).apply)
  packed = np.asarray(apply(params, row, segments))
  alone = [np.asarray(apply(params, np.pad(x, (0, 32 - x.size))[None]))[0] for x in (a, b)]
  np.testing.assert_allclose(packed[0, :11], alone[0][:11], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(packed[0, 11:26], alone[1][:15], atol=1e-5, rtol=1e-5)
  unmasked = np.asarray(apply(params, row))  # without segments, b would see a
  assert np.abs(unmasked[0, 11:26] - alone[1][:15]).max() > 1e-2


def test_bfloat16_compute_keeps_float32_params_and_logits():
  config, params = _random_model(32, dtype="bfloat16")
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
  tokens = jnp.arange(20, dtype=jnp.int32)[None] % config.vocab_size
  full = model.Transformer(config).apply(params, tokens)
  assert full.dtype == jnp.float32 and full.shape == (1, 20, config.vocab_size)
  cached = _decode_all(config, params, np.asarray(tokens), offsets=[0])
  np.testing.assert_allclose(cached, full, atol=0.1)


def test_gradients_flow_with_remat():
  config = configs.model_config("tiny", vocab_size=20, max_len=16, num_layers=1, remat=True)
  tokens = jnp.ones((2, 8), jnp.int32)
  params = model.Transformer(config).init(jax.random.PRNGKey(0), tokens)
  loss = lambda p: jnp.mean(model.Transformer(config).apply(p, tokens) ** 2)
  grads = jax.jit(jax.grad(loss))(params)
  norms = [float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads)]
  assert all(np.isfinite(norms)) and sum(norms) > 0


def test_cache_growth_is_checked():
  config = configs.model_config("tiny", vocab_size=20, max_len=200)
  assert model.cache_slots(config) == 256
  cache = model.init_cache(config, 2, slots=64)
  assert model.grow_cache(config, cache, 128)[0]["k"].shape == (2, 2, 128, 32)
  with pytest.raises(ValueError, match="multiple"):
    model.init_cache(config, 2, slots=100)


def test_accuracy_by_window_position_counts_argmax_hits_per_slot():
  """window_accuracy's sums are those of the model's own argmax, by position in the record
  mod k, where a packed row's records each start at position 0."""
  from training import window_accuracy  # pylint: disable=import-outside-toplevel
  segments = jnp.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]], jnp.int32)
  np.testing.assert_array_equal(window_accuracy.positions_in_record(segments, (2, 6)),
                                [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])  # padding: weight 0
  np.testing.assert_array_equal(window_accuracy.positions_in_record(None, (1, 4)), [[0, 1, 2, 3]])
  assert [window_accuracy.tokens_per_window({"window_bits": b, "token_bits": t})
          for b, t in ((16, 8), (16, 16), (32, 8), (None, 8))] == [2, 0, 4, 0]
  config = configs.model_config("tiny", vocab_size=12, max_len=6)
  transformer = model.Transformer(config)
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(0, 12, (2, 6)), jnp.int32)
  targets = jnp.asarray(rng.integers(0, 12, (2, 6)), jnp.int32)
  weights = (segments > 0).astype(jnp.float32)
  params = transformer.init(jax.random.PRNGKey(0), inputs)["params"]
  batch = {"inputs": inputs, "targets": targets, "weights": weights, "segments": segments}
  got = window_accuracy.make_window_accuracy(config, 2)(params, batch)
  logits = transformer.apply({"params": params}, inputs, segments)
  hits = np.asarray(jnp.argmax(logits, -1) == targets)
  slot = np.asarray(window_accuracy.positions_in_record(segments, (2, 6))) % 2
  w = np.asarray(weights)
  np.testing.assert_allclose(got["correct_by_window_position"],
                             [(hits * w * (slot == s)).sum() for s in (0, 1)])
  np.testing.assert_allclose(got["tokens_by_window_position"], [6, 5])
