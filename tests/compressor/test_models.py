"""Tests of the models that need no training run: UnigramModel and ContextModel."""
import hashlib
import pickle

import numpy as np
import pytest

from compressor import constants
from compressor import symbols as symbols_lib
from compressor.models import base
from compressor.models.context import MAX_ORDER, ContextModel
from compressor.models.unigram import UnigramModel

V = constants.ALPHABET_SIZE


@pytest.fixture(scope="module")
def train_stream(train_docs):
  return [symbols_lib.symbols_from_text(d) for d in train_docs]


@pytest.fixture(scope="module")
def valid_stream(validation_docs):
  return symbols_lib.concat(symbols_lib.symbols_from_text(d) for d in validation_docs)


@pytest.fixture(scope="module")
def order3(train_stream):
  return ContextModel(order=3).fit(train_stream)


def assert_tables(cdf):
  """cdf [T, 258]: starts at 0, ends at 2**14, every frequency >= 1."""
  assert cdf.dtype == np.int32 and cdf.ndim == 2 and cdf.shape[1] == base.CDF_WIDTH
  assert np.all(cdf[:, 0] == 0) and np.all(cdf[:, -1] == constants.TOTAL_FREQ)
  base.check_freqs(np.diff(cdf, axis=1))


def lane_bits(model, stream, num_lanes=128):
  """Bits/symbol of `stream` cut into `num_lanes` chunks, one per lane, via the lane tables."""
  n = stream.size // num_lanes
  chunks = stream[:n * num_lanes].reshape(num_lanes, n)  # [L, n]
  lanes = model.lanes(num_lanes)
  push, reset = np.ones(num_lanes, bool), np.zeros(num_lanes, bool)
  bits = 0.0
  for t in range(n):
    cdf, rows = lanes.tables()
    sym = chunks[:, t]
    freq = cdf[rows, sym + 1] - cdf[rows, sym]
    bits -= np.log2(freq / constants.TOTAL_FREQ).sum()
    lanes.update(sym, push, reset)
  return bits / chunks.size


# UnigramModel.


def test_unigram_fit_counts_with_add_one():
  stream = np.array([0, 0, 0, 5, constants.EOS], np.int32)
  model = UnigramModel.fit(stream)
  counts = np.ones(V)
  counts[0] += 3
  counts[5] += 1
  counts[constants.EOS] += 1
  assert np.array_equal(model.table, base.quantize(counts[None])[0])
  assert model.table.sum() == constants.TOTAL_FREQ and model.table.min() >= 1


def test_unigram_fit_accepts_docs_arrays_and_lists(train_docs):
  docs = train_docs[:20]
  from_text = UnigramModel.fit(docs)
  from_arrays = UnigramModel.fit([symbols_lib.symbols_from_text(d) for d in docs])
  from_one = UnigramModel.fit(symbols_lib.concat(symbols_lib.symbols_from_text(d) for d in docs))
  assert from_text == from_arrays == from_one
  assert from_text.fingerprint == from_one.fingerprint and len(from_text.fingerprint) == 16


def test_unigram_freqs_and_lanes(train_stream):
  model = UnigramModel.fit(train_stream)
  freqs = model.freqs([np.zeros(0, np.int32), np.array([1, 2, 3]), train_stream[0]])
  assert freqs.shape == (3, V) and freqs.dtype == np.int32
  assert all(np.array_equal(row, model.table) for row in freqs)
  lanes = model.lanes(4096)
  cdf, rows = lanes.tables()
  assert cdf.shape == (1, base.CDF_WIDTH) and rows.shape == (4096,) and not rows.any()
  assert_tables(cdf)
  assert np.array_equal(np.diff(cdf[0]), model.table)
  lanes.update(np.full(4096, 7), np.ones(4096, bool), np.zeros(4096, bool))
  assert np.array_equal(lanes.tables()[0], cdf) and not lanes.tables()[1].any()


def test_unigram_fingerprint_is_sha256_of_table(train_stream):
  model = UnigramModel.fit(train_stream)
  want = hashlib.sha256(model.table.astype("<i4").tobytes()).hexdigest()[:16]
  assert model.fingerprint == want and repr(model) == f"UnigramModel(fingerprint={want!r})"


@pytest.mark.parametrize("table", [np.ones(V), np.ones(V - 1), np.zeros(V)])
def test_unigram_rejects_bad_tables(table):
  with pytest.raises(ValueError):
    UnigramModel(table)


def test_uniform_is_flat():
  table = UnigramModel.uniform().table
  assert table.max() - table.min() <= constants.TOTAL_FREQ - V * (constants.TOTAL_FREQ // V)


# ContextModel: construction and fitting.


@pytest.mark.parametrize("kwargs", [
    dict(order=-1), dict(order=MAX_ORDER + 1), dict(order=1.5), dict(order=True),
    dict(min_count=0), dict(min_count=2.0), dict(alpha=0.0), dict(alpha=float("nan")),
])
def test_context_model_validates_arguments(kwargs):
  with pytest.raises(ValueError, match="got"):
    ContextModel(**kwargs)


def test_unfitted_context_model_says_to_fit():
  model = ContextModel(order=2)
  assert "num_tables=0" in repr(model)
  with pytest.raises(ValueError, match="fit"):
    model.freqs([np.zeros(0, np.int32)])
  with pytest.raises(ValueError, match="fit"):
    model.lanes(4)


def test_interpolation_matches_formula():
  """Tables equal the interpolated, quantised estimates computed by hand."""
  stream = np.array([1, 2, 3, 1, 2, 4, 1, 2, 3, 5], np.int32)
  model = ContextModel(order=2, min_count=1, alpha=0.5).fit(stream)

  def blend(counts, lower):
    counts = np.asarray(counts, float)
    w = 0.5 * max((counts > 0).sum(), 1)
    return (counts + w * lower) / (counts.sum() + w)

  p0 = blend(np.bincount(stream, minlength=V), np.full(V, 1 / V))
  p1 = blend(np.bincount([3, 4, 3], minlength=V), p0)  # after (2,)
  p2 = blend(np.bincount([3, 4, 3], minlength=V), p1)  # after (1, 2)
  got = model.freqs([np.zeros(0, np.int32), np.array([2]), np.array([1, 2]),
                     np.array([9, 9, 1, 2])])
  assert np.array_equal(got[0], base.quantize(p0[None])[0])
  assert np.array_equal(got[1], base.quantize(p1[None])[0])
  assert np.array_equal(got[2], base.quantize(p2[None])[0])
  assert np.array_equal(got[3], got[2])  # only the last k symbols matter


def test_short_contexts_and_back_off(train_stream):
  model = ContextModel(order=3, min_count=2).fit(train_stream[:100])
  order1 = ContextModel(order=1, min_count=2).fit(train_stream[:100])
  # A one-symbol context uses the order-1 estimate, whatever k is.
  for s in (ord("e"), ord(" "), constants.EOS):
    assert np.array_equal(model.freqs([np.array([s])]), order1.freqs([np.array([s])]))
  # An unseen order-3 context backs off to its longest suffix with a table.
  unseen = np.array([0x07, 0x07, ord("t")])
  assert np.array_equal(model.freqs([unseen]), model.freqs([unseen[1:]]))
  assert np.array_equal(model.freqs([unseen]), model.freqs([unseen[2:]]))
  # Longer contexts: only the last 3 symbols matter.
  text = symbols_lib.symbols_from_text("in the morning the", eos=False)
  assert np.array_equal(model.freqs([text]), model.freqs([text[-3:]]))


def test_min_count_prunes_tables(train_stream):
  data = train_stream[:100]
  sizes = [ContextModel(order=3, min_count=m).fit(data).num_tables for m in (1, 2, 8)]
  assert sizes[0] > sizes[1] > sizes[2] > 1


def test_tables_contract(order3):
  assert order3.num_tables > 1000
  assert_tables(order3.cdf)
  assert not order3.cdf.flags.writeable


def test_fit_forms_agree_and_items_are_separate(train_docs):
  docs = train_docs[:30]
  arrays = [symbols_lib.symbols_from_text(d) for d in docs]
  a = ContextModel(order=2, min_count=1).fit(docs)
  b = ContextModel(order=2, min_count=1).fit(arrays)
  c = ContextModel(order=2, min_count=1).fit(symbols_lib.concat(arrays))
  assert a.fingerprint == b.fingerprint and np.array_equal(a.cdf, b.cdf)
  assert c.fingerprint != a.fingerprint  # contexts across documents are counted only in c


def test_fit_on_nothing_gives_a_uniform_model():
  model = ContextModel(order=2).fit([])
  assert model.num_tables == 1
  assert np.array_equal(model.freqs([np.array([1, 2])])[0], UnigramModel.uniform().table)


def test_models_survive_pickling(order3, train_stream, valid_stream):
  """Beam ships models to workers by pickling them."""
  contexts = [valid_stream[i:i + 4] for i in range(0, 400, 3)]
  for model in (order3, UnigramModel.fit(train_stream)):
    clone = pickle.loads(pickle.dumps(model))
    assert clone.fingerprint == model.fingerprint
    assert np.array_equal(clone.freqs(contexts), model.freqs(contexts))


# ContextModel: lanes.


@pytest.mark.parametrize("order,min_count", [(0, 2), (1, 1), (2, 3), (3, 2), (5, 2)])
def test_lanes_equal_freqs(order, min_count, train_stream, valid_stream):
  """Random pushes and resets on real text: lane tables are the reference tables, exactly."""
  model = ContextModel(order=order, min_count=min_count).fit(train_stream[:300])
  rng = np.random.default_rng(order)
  num_lanes, steps = 48, 300
  lanes = model.lanes(num_lanes)
  starts = rng.integers(0, valid_stream.size - steps, num_lanes)
  contexts = [[] for _ in range(num_lanes)]
  for t in range(steps):
    cdf, rows = lanes.tables()
    want = model.freqs([np.array(c, np.int32) for c in contexts])
    assert np.array_equal(np.diff(cdf[rows], axis=1), want), f"step {t}"
    push = rng.random(num_lanes) < 0.8
    reset = rng.random(num_lanes) < 0.05
    symbols = np.where(push, valid_stream[starts + t], 10_000)  # junk where not pushed
    lanes.update(symbols, push, reset)
    for i in range(num_lanes):
      if push[i]:
        contexts[i].append(int(symbols[i]))
      if reset[i]:
        contexts[i] = []


def test_lanes_reject_symbols_out_of_range(order3):
  lanes = order3.lanes(2)
  with pytest.raises(ValueError, match="got"):
    lanes.update(np.array([1, constants.EOS + 1]), np.ones(2, bool), np.zeros(2, bool))


def test_lanes_never_modify_returned_arrays(order3, valid_stream):
  lanes = order3.lanes(16)
  ones, none = np.ones(16, bool), np.zeros(16, bool)
  lanes.update(valid_stream[:16], ones, none)
  cdf, rows = lanes.tables()
  kept = rows.copy()
  lanes.update(valid_stream[16:32], ones, ones)
  assert np.array_equal(rows, kept)
  assert lanes.tables()[0] is cdf  # the tables themselves are shared, not copied


# Cross-entropy on validation text.


def test_context_models_beat_unigram_on_validation(train_stream, valid_stream, order3):
  unigram = lane_bits(UnigramModel.fit(train_stream), valid_stream)
  order1 = lane_bits(ContextModel(order=1).fit(train_stream), valid_stream)
  order3_bits = lane_bits(order3, valid_stream)
  assert order3_bits < order1 < unigram
  assert 4.0 < unigram < 5.5 and order3_bits < 3.2, (unigram, order1, order3_bits)
