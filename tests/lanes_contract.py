"""The probability-model contract, checked the same way for every model: lanes == freqs."""
import numpy as np

from compressor.models import base


def assert_lanes_match_freqs(model, streams, num_lanes: int, steps: int, check_at,
                             push_rate: float, reset_rate: float, seed: int) -> None:
  """Drives `model.lanes` with random pushes and resets; at `check_at` steps every
  lane's table must equal `model.freqs` of the context it holds (same integers).

  Args:
    model: a `compressor.models.ProbabilityModel`.
    streams: per lane, a symbol array it pushes from (cycled).
    num_lanes, steps: lanes driven, and steps taken.
    check_at: the steps at which tables are compared.
    push_rate, reset_rate: per lane and step, the chance to push / to reset.
    seed: seeds the pushes and resets.
  """
  rng = np.random.default_rng(seed)
  lanes = model.lanes(num_lanes)
  offsets = np.zeros(num_lanes, np.int64)
  history = [[] for _ in range(num_lanes)]
  for step in range(steps):
    cdf, rows = lanes.tables()
    if step in check_at:
      expected = base.cdf_from_freqs(model.freqs([np.asarray(h, np.int32) for h in history]))
      np.testing.assert_array_equal(cdf[rows], expected)
    symbols = np.array([streams[i][offsets[i] % streams[i].size] for i in range(num_lanes)])
    push = rng.random(num_lanes) < push_rate
    reset = rng.random(num_lanes) < reset_rate
    lanes.update(symbols, push, reset)
    for i in range(num_lanes):
      if push[i]:
        history[i].append(int(symbols[i]))
        offsets[i] += 1
      if reset[i]:
        history[i] = []


def assert_old_tables_kept_and_reset_restarts(model, stream) -> None:
  """Three lanes push `stream`'s first 20 symbols, then lane 1 resets: tables returned
  earlier are never modified, lane 1 is back at the empty context's table, and the
  other two still hold their (equal) contexts.
  """
  lanes = model.lanes(3)
  first, _ = lanes.tables()
  kept = first.copy()
  for s in stream[:20]:
    lanes.update(np.full(3, s), np.ones(3, bool), np.zeros(3, bool))
    lanes.tables()
  lanes.update(np.zeros(3, np.int32), np.zeros(3, bool), np.array([False, True, False]))
  cdf, rows = lanes.tables()
  np.testing.assert_array_equal(first, kept)
  np.testing.assert_array_equal(cdf[rows[1]], kept[0])
  np.testing.assert_array_equal(cdf[rows[0]], cdf[rows[2]])
  assert not np.array_equal(cdf[rows[0]], kept[0])
