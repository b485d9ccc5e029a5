"""M1 as a coder model: identical integer tables whatever the batching, and checkpoints."""
import json

import jax
import numpy as np
import pytest

from compressor import constants
from compressor.models import base
from tests.lanes_contract import (assert_lanes_match_freqs,
                                  assert_old_tables_kept_and_reset_restarts)
from training import configs
from training.m1 import float_m1 as m1

MAX_LEN = 96  # two cache chunks, ring buffer wraps inside the test contexts


@pytest.fixture(scope="module")
def model():
  """A random tiny M1 whose logits are scaled up, so its tables are far from uniform."""
  config = m1.m1_config("tiny", max_len=MAX_LEN)
  params = m1.M1Model.random(config, seed=0).params
  params = jax.tree_util.tree_map(lambda x: x, params)  # fresh dicts, safe to edit
  params["params"]["logits_dense"]["kernel"] = params["params"]["logits_dense"]["kernel"] * 8
  return m1.M1Model(config, params)


@pytest.fixture(scope="module")
def reference(model, contexts):
  """Probabilities of all 70 contexts in one call."""
  return model.probs(contexts)


def test_tables_identical_across_batch_sizes(model, contexts, reference):
  fives = np.concatenate([model.probs(contexts[i:i + 5]) for i in range(0, 70, 5)])
  np.testing.assert_array_equal(fives, reference)  # bit-identical floats
  np.testing.assert_array_equal(model.probs(contexts[6:70]), reference[6:70])  # 64 lanes
  for i in (0, 1, 17, 65):
    np.testing.assert_array_equal(model.probs([contexts[i]])[0], reference[i])
  np.testing.assert_array_equal(model.freqs(contexts), base.quantize(reference))


def test_row_position_inside_a_block_does_not_matter(model, contexts, reference):
  target = 1  # the longest context
  for row in (0, 13, 63):
    batch = [contexts[(row + k) % 70] for k in range(64)]
    batch[row] = contexts[target]
    np.testing.assert_array_equal(model.probs(batch)[row], reference[target])


def test_lanes_equal_freqs_with_random_resets(model, streams):
  assert_lanes_match_freqs(model, streams, num_lanes=70, steps=130, check_at=(0, 61, 129),
                           push_rate=0.9, reset_rate=0.03, seed=1)


def test_lanes_equal_freqs_when_lanes_change_rows(model, streams):
  """Short windows: lanes restart often, so they keep moving to other rows and blocks."""
  assert_lanes_match_freqs(model, streams, num_lanes=150, steps=24, check_at=(3, 11, 23),
                           push_rate=0.8, reset_rate=0.4, seed=2)


def test_cache_grows_and_shrinks_with_the_contexts(streams):
  """One long context grows its block's cache; once it restarts, the cache shrinks."""
  config = m1.m1_config("tiny", max_len=512)
  model = m1.M1Model.random(config, seed=1)
  streams = [s for s in streams if s.size >= 300][:4]  # 300 steps of three lanes, then one
  lanes = model.lanes(3)
  history = [[] for _ in range(3)]
  for step in range(300):
    cdf, rows = lanes.tables()
    symbols = np.array([streams[i][step] for i in range(3)])
    push = np.array([True, step % 7 != 0, True])
    reset = np.array([False, step % 7 == 0, step == 299])
    lanes.update(symbols, push, reset)
    for i in range(3):
      history[i] = [] if reset[i] else history[i] + ([int(symbols[i])] if push[i] else [])
  lanes.update(np.zeros(3, np.int32), np.zeros(3, bool), np.array([True, False, False]))
  lanes.update(np.array(streams[3][:3]), np.ones(3, bool), np.zeros(3, bool))
  history = [[int(s) for s in streams[3][:1]], history[1] + [int(streams[3][1])],
             [int(streams[3][2])]]
  cdf, rows = lanes.tables()
  assert lanes._blocks[0].slots == 128  # pylint: disable=protected-access
  expected = base.cdf_from_freqs(model.freqs([np.asarray(h, np.int32) for h in history]))
  np.testing.assert_array_equal(cdf[rows], expected)


def test_reset_lane_gives_bos_table_and_old_arrays_stay(model, streams):
  assert_old_tables_kept_and_reset_restarts(model, streams[5])


def test_freqs_contract(model, streams):
  freqs = model.freqs([b"", b"hello", streams[0][:10]])
  base.check_freqs(freqs)
  assert freqs.shape == (3, constants.ALPHABET_SIZE) and freqs.dtype == np.int32
  assert model.freqs([]).shape == (0, constants.ALPHABET_SIZE)
  with pytest.raises(ValueError, match="symbols must be in"):
    model.freqs([np.array([1, 257])])
  with pytest.raises(ValueError, match="vocab_size"):
    m1.M1Model(configs.model_config("tiny", vocab_size=300, max_len=8), model.params)
  with pytest.raises(ValueError, match="do not match"):
    m1.M1Model(m1.m1_config("tiny", max_len=8, num_layers=1), model.params)
  assert "fingerprint" in repr(model) and "M1Lanes" in repr(model.lanes(2))


def test_ideal_code_length_smoke(model, streams):
  """Walks 4 documents in Equal-Info-like windows of 24 symbols: tables stay valid, and the
  code length is the one of `freqs` on each window's context since its reset."""
  lanes = model.lanes(4)
  bits, want = 0.0, 0.0
  for t in range(96):
    cdf, rows = lanes.tables()
    assert np.all(np.diff(cdf[rows], axis=1) >= 1) and np.all(cdf[rows, -1] == 1 << 14)
    x = np.array([streams[i][t] for i in range(4)])
    f = cdf[rows, x + 1] - cdf[rows, x]
    bits += float(np.sum(constants.PRECISION - np.log2(f)))
    start = t - t % 24
    freqs = model.freqs([streams[i][start:t] for i in range(4)])
    want += float(np.sum(constants.PRECISION - np.log2(freqs[np.arange(4), x])))
    lanes.update(x, np.ones(4, bool), np.full(4, (t + 1) % 24 == 0))
  assert bits == want > 0


def test_save_load_round_trip(model, contexts, reference, tmp_path):
  m1.save(tmp_path / "m1", model.config, model.params)
  for exact in (None, False):
    loaded = m1.load(tmp_path / "m1", exact=exact)
    assert loaded.fingerprint == model.fingerprint and loaded.config == model.config
  np.testing.assert_array_equal(loaded.probs(contexts[:8]), reference[:8])
  with pytest.raises(FileNotFoundError, match="quantize-m1"):
    m1.load(tmp_path / "m1", exact=True)


def test_load_prefers_the_integer_exact_m1(model, contexts, tmp_path):
  from training.m1 import exact  # pylint: disable=import-outside-toplevel
  from training.m1 import quantize as quantize_m1  # pylint: disable=import-outside-toplevel
  m1.save(tmp_path / "m1", model.config, model.params)
  converted = quantize_m1.convert(model, contexts[:8], seq_len=64, max_sequences=4)
  converted.save(tmp_path / "m1" / exact.SUBDIR)
  assert isinstance(m1.load(tmp_path / "m1"), exact.ExactM1Model)
  assert isinstance(m1.load(tmp_path / "m1", exact=True), exact.ExactM1Model)
  assert m1.load(tmp_path / "m1", exact=False).fingerprint == model.fingerprint


def test_missing_and_corrupt_checkpoints(model, tmp_path):
  with pytest.raises(FileNotFoundError, match="train-m1"):
    m1.load(tmp_path / "nothing")
  path = tmp_path / "m1"
  model.save(path)
  meta = json.loads((path / m1.CONFIG_FILE).read_text())
  (path / m1.PARAMS_FILE).write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="corrupt"):
    m1.load(path)
  model.save(path)
  (path / m1.CONFIG_FILE).write_text("{")
  with pytest.raises(ValueError, match="corrupt"):
    m1.load(path)
  meta["fingerprint"] = "0" * 16
  (path / m1.CONFIG_FILE).write_text(json.dumps(meta))
  with pytest.raises(ValueError, match="fingerprint"):
    m1.load(path)
