"""The M1 / M2 input pipelines."""
import dataclasses
import json

import jax
import numpy as np
import pytest

from compressor import corpus
from compressor import symbols as symbols_lib
from training import evaluate
from training import batch_layout
from training import m1_input
from training import m2_records
from training import m2_input
from training import m1_epoch

M2_VOCAB = 256  # as written by conftest.write_m2_shards
M2_SEQ_LEN = 32

# First batch of record ids of the fixture's 96 train records, seed 0, batch 8
# (grain 0.2.18 global shuffle). A change here changes every training run's order.
GOLDEN_FIRST_IDS = [49, 83, 10, 87, 39, 69, 95, 9]
GOLDEN_SECOND_IDS = [62, 20, 54, 7, 23, 13, 28, 35]


# ----------------------------------------------------------------------------
# packing convention


def test_pack_sequence_bos_shift_and_mask():
  out = batch_layout.pack_sequence(np.array([5, 6, 7]), 5, bos=9)
  np.testing.assert_array_equal(out["inputs"], [9, 5, 6, 0, 0])
  np.testing.assert_array_equal(out["targets"], [5, 6, 7, 0, 0])
  np.testing.assert_array_equal(out["weights"], [1, 1, 1, 0, 0])
  with pytest.raises(ValueError, match="seq_len"):
    batch_layout.pack_sequence(np.arange(6), 5, bos=9)


# ----------------------------------------------------------------------------
# M1


def _m1_config(**kw):
  values = dict(spec="builtin:pydoc", seq_len=64, batch_size=4, docs_per_group=16,
                shuffle_buffer=64)
  return m1_input.M1DataConfig(**{**values, **kw})


def _corpus_symbols(texts) -> np.ndarray:
  return symbols_lib.concat(symbols_lib.symbols_from_text(t) for t in texts)


def test_m1_pass_is_the_documents_plus_eos_cut_with_no_padding_but_the_last():
  cfg = _m1_config(shuffle=False, repeat=False)
  texts = [d.data.decode() for d in corpus.read_documents("builtin:pydoc")]
  got, weights = [], []
  for batch in m1_input.M1Batches(cfg):
    assert np.all(batch["inputs"][batch["ids"] >= 0, 0] == m1_input.M1_BOS)
    for row_targets, row_weights, seq_id in zip(batch["targets"], batch["weights"], batch["ids"]):
      if seq_id >= 0:
        got.append(row_targets[row_weights > 0])
        weights.append(int(row_weights.sum()))
  np.testing.assert_array_equal(np.concatenate(got), _corpus_symbols(texts))
  assert len(texts) > 3 * 16  # several groups of 16 documents, yet one short sequence
  assert set(weights[:-1]) == {64} and 0 < weights[-1] < 64


def test_a_pass_scores_every_m1_sequence_and_fills_its_last_batch():
  cfg = _m1_config(shuffle=False, repeat=False, batch_size=6)
  sequences = list(m1_input.m1_sequences(cfg))
  assert len(sequences) % 6  # so the pass ends with a partial batch
  batches = list(m1_input.M1Batches(cfg))
  assert all(b["inputs"].shape == (6, 64) and b["ids"].shape == (6,) for b in batches)
  ids = np.concatenate([b["ids"] for b in batches])
  assert ids[ids >= 0].tolist() == [i for i, _ in sequences]
  last = batches[-1]
  empty = last["ids"] < 0
  assert empty.sum() == 6 - len(sequences) % 6
  assert not last["weights"][empty].any() and not last["num_bytes"][empty].any()
  assert sum(int(b["num_bytes"].sum()) for b in batches) == sum(len(c) for _, c in sequences)
  assert sum(int(b["weights"].sum()) for b in batches) == sum(len(c) for _, c in sequences)


def test_m1_order_is_a_function_of_the_seed_and_resumes():
  first = [b["ids"].tolist() for b, _ in zip(m1_input.M1Batches(_m1_config(seed=1)), range(6))]
  again = [b["ids"].tolist() for b, _ in zip(m1_input.M1Batches(_m1_config(seed=1)), range(6))]
  other = [b["ids"].tolist() for b, _ in zip(m1_input.M1Batches(_m1_config(seed=2)), range(6))]
  assert first == again and first != other
  batches = m1_input.M1Batches(_m1_config(seed=1))
  for _ in range(3):
    next(batches)
  state = json.loads(json.dumps(batches.get_state()))
  resumed = m1_input.M1Batches(_m1_config(seed=1))
  resumed.set_state(state)
  assert [next(resumed)["ids"].tolist() for _ in range(3)] == first[3:]


def test_m1_training_batches_run_across_epochs_and_drop_nothing():
  cfg = _m1_config(seed=3, batch_size=6)
  sequences = dict(m1_input.m1_sequences(cfg))
  n = len(sequences)
  assert n % 6  # so an epoch ends inside a batch
  batches = m1_input.M1Batches(cfg)
  ids = np.concatenate([next(batches)["ids"] for _ in range(-(-2 * n // 6))])
  assert sorted(ids[:n]) == sorted(sequences) == sorted(ids[n:2 * n])  # each epoch whole
  assert ids[:n].tolist() != ids[n:2 * n].tolist()  # and reshuffled
  state = batches.get_state()
  assert (state["epoch"], state["sequences"]) == (2, len(ids) - 2 * n)
  resumed = m1_input.M1Batches(cfg)
  resumed.set_state(json.loads(json.dumps(state)))
  expected = [next(batches)["ids"].tolist() for _ in range(3)]
  assert [next(resumed)["ids"].tolist() for _ in range(3)] == expected


def test_m1_processes_part_in_position_and_each_resumes_at_its_own():
  # Their groups hold different text, so their epochs end at different steps:
  # the reason a checkpoint keeps every process's data state.
  cfg = _m1_config(seed=6, seq_len=256, batch_size=64)
  lengths = [len(list(m1_input.m1_sequences(cfg, shard=(p, 2)))) for p in (0, 1)]
  assert lengths[0] != lengths[1]
  steps = max(lengths) // 32 + 3  # past the end of both processes' first epochs
  for p in (0, 1):
    expected = [b["ids"].tolist() for b, _ in zip(m1_input.M1Batches(cfg, shard=(p, 2)),
                                                   range(steps + 2))]
    assert all(i % 2 == p for batch in expected for i in batch)
    batches = m1_input.M1Batches(cfg, shard=(p, 2))
    for _ in range(steps):
      next(batches)
    state = json.loads(json.dumps(batches.get_state()))
    assert (state["epoch"], state["sequences"]) == divmod(steps * 32, lengths[p])
    resumed = m1_input.M1Batches(cfg, shard=(p, 2))
    resumed.set_state(state)
    assert [next(resumed)["ids"].tolist() for _ in range(2)] == expected[steps:]


# First two batches of M1 sequence ids of `_m1_config(seed=1)` over builtin:pydoc
# (7,285 sequences). A change here changes every M1 training run's order.
GOLDEN_M1_IDS = [[30, 32, 48, 60], [2, 9, 52, 67]]


def test_m1_order_is_golden():
  batches = m1_input.M1Batches(_m1_config(seed=1))
  assert [next(batches)["ids"].tolist() for _ in range(2)] == GOLDEN_M1_IDS


def _count_conversions(monkeypatch) -> list[int]:
  """Counts the documents M1 data turns into symbols from here on."""
  calls = [0]
  convert = symbols_lib.symbols_from_text

  def counted(text):
    calls[0] += 1
    return convert(text)
  monkeypatch.setattr(symbols_lib, "symbols_from_text", counted)
  return calls


@pytest.mark.parametrize("shuffle", [True, False])
def test_m1_resumes_from_the_oldest_buffered_group_not_the_epoch_start(webtext_dir, monkeypatch,
                                                                       shuffle):
  cfg = m1_input.M1DataConfig(str(webtext_dir / "validation" / "*.jsonl.gz"), seq_len=256,
                          batch_size=16, docs_per_group=16, shuffle_buffer=32, shuffle=shuffle)
  n = len(list(m1_input.m1_sequences(cfg)))
  steps = n * 3 // 4 // 16  # three quarters into epoch 0
  batches = m1_input.M1Batches(cfg)
  expected = [next(batches)["ids"].tolist() for _ in range(steps + 3)]
  batches = m1_input.M1Batches(cfg)
  for _ in range(steps):
    next(batches)
  state = json.loads(json.dumps(batches.get_state()))
  documents = sum(1 for _ in corpus.read_documents(cfg.spec))
  calls = _count_conversions(monkeypatch)
  resumed = m1_input.M1Batches(cfg)
  resumed.set_state(state)
  assert calls[0] < documents // 5  # a replay converts three quarters of them
  assert [next(resumed)["ids"].tolist() for _ in range(3)] == expected[steps:]
  calls[0] = 0
  replayed = m1_input.M1Batches(cfg)  # a state without the position: the epoch is replayed
  replayed.set_state({"epoch": state["epoch"], "sequences": state["sequences"]})
  assert calls[0] > documents // 2
  assert [next(replayed)["ids"].tolist() for _ in range(3)] == expected[steps:]


def test_m1_resumes_in_every_phase_of_the_shuffle_buffer():
  # the first batch, mid-epoch, draining (the pass ended), the next epoch; 2 processes
  cfg = _m1_config(seed=5, seq_len=256, batch_size=8, shuffle_buffer=200)
  for p in (0, 1):
    n = len(list(m1_input.m1_sequences(cfg, shard=(p, 2))))
    assert n > 200
    stops = [1, 30, (n - 100) // 4, -(-n // 4) + 2]
    phases = []
    expected = [b["ids"].tolist() for b, _ in zip(m1_input.M1Batches(cfg, shard=(p, 2)),
                                                   range(max(stops) + 2))]
    for stop in stops:
      batches = m1_input.M1Batches(cfg, shard=(p, 2))
      for _ in range(stop):
        next(batches)
      state = json.loads(json.dumps(batches.get_state()))
      phases.append((state["epoch"], state["position"]["draining"]))
      resumed = m1_input.M1Batches(cfg, shard=(p, 2))
      resumed.set_state(state)
      assert [next(resumed)["ids"].tolist() for _ in range(2)] == expected[stop:stop + 2], stop
    assert phases == [(0, False), (0, False), (0, True), (1, False)]


def test_m1_buffered_sequences_hold_only_their_own_symbols():
  # a view into its group's stream would keep the whole group in memory
  items = list(m1_epoch.sequences(_m1_config(seq_len=100)))
  assert all(item.symbols.base is None and item.point.carry.base is None for item in items)
  assert {item.symbols.nbytes for item in items[:-1]} == {100 * items[0].symbols.itemsize}


def test_m1_position_checks_the_corpus_and_the_buffer(tmp_path):
  texts = [d.data.decode() for d in corpus.read_documents("builtin:pydoc")]
  path = tmp_path / "docs.jsonl"
  path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
  cfg = _m1_config(spec=str(path), seed=2)
  batches = m1_input.M1Batches(cfg)
  for _ in range(400):
    next(batches)
  state = json.loads(json.dumps(batches.get_state()))
  with pytest.raises(ValueError, match="--shuffle_buffer 64 .0: no shuffle., not 32"):
    m1_input.M1Batches(dataclasses.replace(cfg, shuffle_buffer=32)).set_state(state)
  doc = state["position"]["restart"]["doc"]
  texts[doc] = texts[doc].upper()  # the document the position restarts at changed
  path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
  with pytest.raises(ValueError, match="no longer holds the documents"):
    m1_input.M1Batches(cfg).set_state(state)


def test_m1_state_of_an_older_format_says_what_to_do():
  with pytest.raises(ValueError, match="resume with the eqinfo that wrote it"):
    m1_input.M1Batches(_m1_config()).set_state({"epoch": 0, "batches": 4})


def test_m1_empty_corpus_says_so(tmp_path):
  (tmp_path / "empty.jsonl").write_text("")
  with pytest.raises(ValueError, match="holds no documents"):
    next(m1_input.M1Batches(_m1_config(spec=str(tmp_path / "empty.jsonl"))))
  batches = m1_input.M1Batches(_m1_config(docs_per_group=100_000), shard=(1, 2))  # one group
  with pytest.raises(ValueError, match="process 1 of 2; check the path or lower --docs_per_group"):
    next(batches)


def test_m1_processes_read_disjoint_groups_with_distinct_ids():
  cfg = _m1_config(docs_per_group=7, seq_len=100)
  texts = [d.data.decode() for d in corpus.read_documents("builtin:pydoc")]
  groups = [texts[i:i + 7] for i in range(0, len(texts), 7)]
  for p in (0, 1):
    part = list(m1_input.m1_sequences(cfg, shard=(p, 2)))
    assert [i for i, _ in part] == list(range(p, 2 * len(part), 2))
    mine = [t for group in groups[p::2] for t in group]
    np.testing.assert_array_equal(np.concatenate([c for _, c in part]), _corpus_symbols(mine))
    assert {len(c) for _, c in part[:-1]} == {100}


def test_prefetch_state_counts_only_batches_handed_out():
  expected = [b["ids"].tolist() for b, _ in zip(m1_input.M1Batches(_m1_config(seed=4)), range(8))]
  batches = m1_input.Prefetch(m1_input.M1Batches(_m1_config(seed=4)), depth=3)
  assert [next(batches)["ids"].tolist() for _ in range(2)] == expected[:2]
  state = batches.get_state()
  assert (state["epoch"], state["sequences"]) == (0, 8)  # not the batches already queued
  batches.set_state({"epoch": 0, "sequences": 20})
  assert [next(batches)["ids"].tolist() for _ in range(3)] == expected[5:]
  resumed = m1_input.Prefetch(m1_input.M1Batches(_m1_config(seed=4)))
  resumed.set_state(state)
  assert next(resumed)["ids"].tolist() == expected[2]


# ----------------------------------------------------------------------------
# M2 (grain over ArrayRecord)


def _m2_config(m2_shards, **kw):
  values = dict(pattern=str(m2_shards / "train-*.array_record"), token_vocab=M2_VOCAB,
                seq_len=M2_SEQ_LEN, batch_size=8, seed=0)
  return m2_records.M2DataConfig(**{**values, **kw})


def test_m2_grain_order_is_golden(m2_shards):
  batches = m2_input.m2_batches(_m2_config(m2_shards))
  assert next(batches)["ids"].tolist() == GOLDEN_FIRST_IDS
  assert next(batches)["ids"].tolist() == GOLDEN_SECOND_IDS


def test_m2_epoch_sees_each_record_once_and_reshuffles(m2_shards):
  batches = m2_input.m2_batches(_m2_config(m2_shards))
  epoch1 = np.concatenate([next(batches)["ids"] for _ in range(12)])
  epoch2 = np.concatenate([next(batches)["ids"] for _ in range(12)])
  assert sorted(epoch1) == list(range(96)) == sorted(epoch2)
  assert epoch1.tolist() != epoch2.tolist()


def test_m2_batch_layout_matches_records(m2_shards):
  batch = next(m2_input.m2_batches(_m2_config(m2_shards, shuffle=False)))
  assert batch["ids"].tolist() == list(range(8))
  assert batch["inputs"].shape == (8, M2_SEQ_LEN) and batch["num_bytes"].shape == (8,)
  lengths = batch["weights"].sum(axis=1).astype(int)
  assert np.all(batch["inputs"][:, 0] == M2_VOCAB)  # BOS = token vocab
  for row, n in enumerate(lengths):
    np.testing.assert_array_equal(batch["inputs"][row, 1:n], batch["targets"][row, :n - 1])
    assert 3 * n <= batch["num_bytes"][row] <= 3 * n + 2
  assert batch["targets"].max() < M2_VOCAB


@pytest.mark.parametrize("pack", [False, True])
def test_a_pass_scores_every_m2_record_and_fills_its_last_batch(m2_shards, pack):
  whole = list(m2_input.m2_batches(_m2_config(m2_shards, shuffle=False, repeat=False)))
  assert len(whole) == 12  # 96 records in batches of 8: nothing to fill
  batches = list(m2_input.m2_batches(_m2_config(m2_shards, batch_size=10, shuffle=False,
                                            repeat=False, pack=pack)))
  assert all(b["inputs"].shape == (10, M2_SEQ_LEN) for b in batches)
  ids = np.concatenate([b["ids"].ravel() for b in batches])
  assert sorted(ids[ids >= 0].tolist()) == list(range(96))
  assert (sum(int(b["num_bytes"].sum()) for b in batches) ==
          sum(int(b["num_bytes"].sum()) for b in whole))
  assert (sum(float(b["weights"].sum()) for b in batches) ==
          sum(float(b["weights"].sum()) for b in whole))
  last = batches[-1]
  empty = ~last["weights"].any(axis=-1)
  assert empty.sum() == (0 if pack else 4)  # 96 records in 10 rows per batch, or fewer rows
  assert not last["num_bytes"][empty].any() and np.all(last["ids"][empty] == -1)
  counter = evaluate.SampleCounter(M2_VOCAB)
  assert len(list(counter.wrap(iter(batches)))) == len(batches) and counter.examples == 96


def test_m2_iterator_state_resumes_exactly(m2_shards):
  reference = m2_input.m2_batches(_m2_config(m2_shards, seed=3))
  expected = [next(reference)["ids"].tolist() for _ in range(20)]
  batches = m2_input.m2_batches(_m2_config(m2_shards, seed=3))
  for _ in range(7):
    next(batches)
  state = json.loads(json.dumps(batches.get_state()))
  resumed = m2_input.m2_batches(_m2_config(m2_shards, seed=3))
  resumed.set_state(state)
  assert [next(resumed)["ids"].tolist() for _ in range(13)] == expected[7:]


def test_m2_processes_read_disjoint_halves(m2_shards, monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  seen = []
  for index in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    batches = m2_input.m2_batches(_m2_config(m2_shards, batch_size=16))
    ids = np.concatenate([next(batches)["ids"] for _ in range(6)])  # 6 x 8 local = one epoch
    assert all(i % 2 == index for i in ids)
    seen.append(ids)
  assert sorted(np.concatenate(seen).tolist()) == list(range(96))
