"""M1, the byte-level transformer, as a probability model for the arithmetic coders.

Vocabulary: inputs are the 257 symbols (bytes 0..255, EOS = 256) plus BOS = 257,
which starts every context (a window or an example); `vocab_size` is 258 for
both the embedding and the logits. BOS is never a target, so its logit is
dropped before the float32 softmax over the 257 symbols, whose probabilities
`compressor.models.base.quantize` turns into frequency tables.

Inference contract (docs/DESIGN.md): a table is a pure function of the weights and
the context. Floats cannot promise that in general, so every table comes out of
one compiled function, `decode_step` on a block of `BLOCK_LANES` lanes:

* `M1Model.freqs` replays each context through that same step (BOS, then
  the symbols), so "full recompute" and "KV cache" are the same computation;
* lanes always run in blocks of exactly `BLOCK_LANES` rows (padded), so a
  lane's result cannot depend on how many lanes exist;
* rows of a block do not mix (tests check every row position), and attention
  chunks past a lane's context add exact zeros, so a lane may sit in any row
  of any block: `M1Lanes` gives a lane a free row each time its context
  restarts, packing the lanes that need a step into as few blocks as possible;
* the BOS-only context is the same for every lane: its table and its keys and
  values are computed once by that step and copied, instead of one step per
  restart (most steps of short Equal-Info windows).

Results are therefore identical integers on one machine and backend; across
devices they are not promised. `training.m1.exact` holds the integer-exact M1
(the same integers on every device), converted from this one by
`training.m1.quantize` into `DIR/exact`; `load(DIR)` returns it when present.

Checkpoint directory (`save`/`load`): `config.json` (the resolved
`ModelConfig`, format tag and fingerprint) and `params.npz` (numpy arrays keyed
by "/"-joined parameter paths). npz rather than orbax: one small file, stable
bytes, and nothing to restore asynchronously in Beam workers.
"""
import hashlib
import io
import json
import os
import zipfile
from typing import Any, Sequence

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from compressor import constants
from compressor.models import base
from training import configs, model
from training.m1 import exact as exact_lib
from training.m1 import exact_kernels
from training.m1.exact_params import BOS, VOCAB_SIZE  # one definition for the float and exact M1

BLOCK_LANES = 64  # rows of every compiled step; lane counts are padded up to a multiple
M1_DIR_FORMAT = "eqinfo-m1-v1"  # tag of the checkpoint directory layout
CONFIG_FILE = "config.json"
PARAMS_FILE = "params.npz"


def m1_config(size: str = "3m", max_len: int = 1024, **overrides: Any) -> configs.ModelConfig:
  """Config of an M1 (paper §3.2: size "3m", context 1024)."""
  return configs.model_config(size, vocab_size=VOCAB_SIZE, max_len=max_len, **overrides)


def fingerprint(params: Any) -> str:
  """Short sha256 of the parameters: names, dtypes, shapes and bytes, in sorted order."""
  digest = hashlib.sha256()
  for name, array in sorted(_flatten(params).items()):
    array = np.ascontiguousarray(array)
    digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()[:16]


class M1Model(base.ProbabilityModel):
  """M1 as a `ProbabilityModel`: tables from one jitted KV-cached step.

  Args:
    config: an M1 config (vocab_size 258).
    params: the model's variables, {"params": ...}.
    device: where the weights live and so where tables are computed; None:
      JAX's default device.
  """

  exact = False  # float inference: identical integers on one machine, not across devices

  def __init__(self, config: configs.ModelConfig, params: Any, device: jax.Device | None = None):
    if config.vocab_size != VOCAB_SIZE:
      raise ValueError(f"M1 needs vocab_size {VOCAB_SIZE} (257 symbols + BOS), "
                       f"got {config.vocab_size}")
    params = params if "params" in params else {"params": params}
    _check_shapes(config, params)
    self.config = config
    self.params = jax.device_put(jax.tree_util.tree_map(jnp.asarray, params), device)
    self.device = device
    self.fingerprint = fingerprint(params)
    self._step = jax.jit(self._probs_step, donate_argnums=(1,))
    self._bos = None  # (probs, keys and values) of the BOS-only context, see `_bos_state`

  @classmethod
  def random(cls, config: configs.ModelConfig, seed: int = 0) -> "M1Model":
    """An untrained M1 with random weights (tests, benchmarks)."""
    tokens = jnp.zeros((1, 1), jnp.int32)
    return cls(config, model.Transformer(config).init(jax.random.PRNGKey(seed), tokens))

  def __repr__(self):
    n = model.count_params(self.params)
    return (f"M1Model(d_model={self.config.d_model}, num_layers={self.config.num_layers}, "
            f"max_len={self.config.max_len}, non_embedding_params={n}, "
            f"fingerprint={self.fingerprint!r})")

  def _probs_step(self, params, cache, bos_kv, tokens, positions, active):
    """[B] tokens -> ([B, 257] float32 next-symbol probabilities, cache).

    Position 0 of every context is BOS, so slot 0 of an active lane at a
    position in [1, max_len) is first set to BOS's keys and values `bos_kv`
    (per layer {"k", "v"}: [H, D]): a lane can then start in any row.
    """
    start = active & (positions > 0) & (positions < self.config.max_len)
    cache = _put_bos(cache, bos_kv, start)
    logits, cache = model.decode_step(self.config, params, cache, tokens, positions, active)
    return jax.nn.softmax(logits[:, :constants.ALPHABET_SIZE], axis=-1), cache

  def _bos_state(self) -> tuple[np.ndarray, list[dict[str, jax.Array]]]:
    """([257] float32 probabilities, per-layer BOS keys and values) of the empty context.

    Computed once, by the same step as every other table (BOS at position 0 in
    row 0 of a block), and reused for every lane that restarts.
    """
    if self._bos is None:
      block = _Block(self.config)
      zeros = [{name: jnp.zeros_like(x[0, :, 0]) for name, x in layer.items()}
               for layer in block.cache]
      active = np.arange(BLOCK_LANES) == 0
      probs, cache = self._step(self.params, block.cache, zeros,
                                np.full(BLOCK_LANES, BOS, np.int32),
                                np.zeros(BLOCK_LANES, np.int32), active)
      kv = [{name: layer[name][0, :, 0] for name in ("k", "v")} for layer in cache]
      self._bos = (np.asarray(probs)[0].copy(), kv)
    return self._bos

  def freqs(self, contexts: Sequence[np.ndarray | bytes]) -> np.ndarray:
    """[len(contexts), 257] int32 tables, computed by replaying each context."""
    return self._replay(contexts).freqs()[:len(contexts)].copy()

  def probs(self, contexts: Sequence[np.ndarray | bytes]) -> np.ndarray:
    """[len(contexts), 257] float32 probabilities that `freqs` quantises."""
    return self._replay(contexts).probs()[:len(contexts)].copy()

  def _replay(self, contexts: Sequence[np.ndarray | bytes]) -> "M1Lanes":
    """Lanes that have consumed BOS + context i in lane i."""
    lanes = M1Lanes(self, max(len(contexts), 1))
    for i, context in enumerate(contexts):
      lanes.push_context(i, exact_lib.check_symbols(context))
    lanes.tables()
    return lanes

  def lanes(self, num_lanes: int) -> "M1Lanes":
    return M1Lanes(self, num_lanes)

  def save(self, path: str | os.PathLike) -> None:
    """Writes the checkpoint directory `path` (see `save`)."""
    save(path, self.config, self.params)


class _Block:
  """KV cache of BLOCK_LANES lanes, sized in whole chunks to the contexts it holds."""

  def __init__(self, config: configs.ModelConfig):
    self.config = config
    self.slots = min(model.DECODE_CHUNK, model.cache_slots(config))
    self.cache = model.init_cache(config, BLOCK_LANES, self.slots)

  def fit(self, max_position: int) -> None:
    """Sizes the cache for positions up to `max_position` in each of its rows.

    Grows by doubling; once the need falls to a quarter of the slots, shrinks
    to twice the need, dropping only slots that no lane attends to (a lane at
    position p < max_len attends to slots 0..p).
    """
    full = model.cache_slots(self.config)
    need = min(-(-(max_position + 1) // model.DECODE_CHUNK) * model.DECODE_CHUNK, full)
    if need > self.slots:
      self.slots = min(max(need, 2 * self.slots), full)
      self.cache = model.grow_cache(self.config, self.cache, self.slots)
    elif 4 * need <= self.slots:
      self.slots = 2 * need
      self.cache = [{name: x[:, :, :self.slots] for name, x in layer.items()}
                    for layer in self.cache]


class M1Lanes(base.Lanes):
  """Lanes with a KV cache each; a reset lane's next table is the BOS-only context.

  A lane's inputs not yet fed to M1 wait in its row of one queue array, so a
  round of steps is assembled with array operations. BOS costs no step: its
  table and its keys and values are computed once (`M1Model._bos_state`). A
  lane holding only BOS has no cache to keep, so it is free to take any cache
  row when its first symbol comes; rows are handed out lowest block first,
  filling blocks that step anyway, so the lanes that need a step gather in as
  few blocks as possible. Every block with work is dispatched before any result
  is read back.
  """

  def __init__(self, m1: M1Model, num_lanes: int):
    super().__init__(num_lanes)
    self._m1 = m1
    num_blocks = -(-num_lanes // BLOCK_LANES)
    self._blocks = [_Block(m1.config) for _ in range(num_blocks)]
    self._queue = np.full((num_lanes, 4), BOS, np.int32)  # [lanes, capacity] queued inputs
    self._head = np.zeros(num_lanes, np.int64)  # index of each lane's next queued input
    self._tail = np.ones(num_lanes, np.int64)  # one past its last
    self._positions = np.zeros(num_lanes, np.int32)  # of each lane's next input
    self._row = np.full(num_lanes, -1, np.int64)  # cache row of each lane, -1 for none
    self._lane_of_row = np.full(num_blocks * BLOCK_LANES, -1, np.int64)  # -1 for a free row
    self._probs = np.zeros((num_lanes, constants.ALPHABET_SIZE), np.float32)
    self._freqs = np.zeros((num_lanes, constants.ALPHABET_SIZE), np.int32)
    self._cdf = np.zeros((num_lanes, base.CDF_WIDTH), np.int32)
    self._rows = np.arange(num_lanes)

  def __repr__(self):
    return f"M1Lanes(num_lanes={self.num_lanes}, blocks={len(self._blocks)}, m1={self._m1!r})"

  def push_context(self, lane: int, symbols: np.ndarray) -> None:
    """Queues many symbols on one lane (as repeated `update` pushes would)."""
    symbols = np.asarray(symbols).reshape(-1)
    end = int(self._tail[lane]) + symbols.size
    self._reserve(end)
    self._queue[lane, self._tail[lane]:end] = symbols
    self._tail[lane] = end

  def update(self, symbols, push, reset):
    symbols, push, reset = base.check_update(self.num_lanes, symbols, push, reset)
    pushed = np.flatnonzero(push)
    if pushed.size:
      values = exact_lib.check_symbols(symbols[pushed])
      self._reserve(int(self._tail[pushed].max()) + 1)
      self._queue[pushed, self._tail[pushed]] = values
      self._tail[pushed] += 1
    cleared = np.flatnonzero(reset)
    if cleared.size:
      self._queue[cleared, 0] = BOS
      self._head[cleared] = 0
      self._tail[cleared] = 1
      self._positions[cleared] = 0
      self._release(cleared)

  def _reserve(self, capacity: int) -> None:
    """Widens the queue array (doubling) to hold `capacity` inputs per lane."""
    if capacity > self._queue.shape[1]:
      wider = np.zeros((self.num_lanes, max(capacity, 2 * self._queue.shape[1])), np.int32)
      wider[:, :self._queue.shape[1]] = self._queue
      self._queue = wider

  def _release(self, lanes: np.ndarray) -> None:
    """Frees the cache rows of `lanes` (their contexts restart)."""
    held = lanes[self._row[lanes] >= 0]
    self._lane_of_row[self._row[held]] = -1
    self._row[held] = -1

  def tables(self):
    """Returns (cdf [num_lanes, 258] int32, rows = arange(num_lanes)).

    Runs one step per queued input of each changed lane. A returned array is
    never modified afterwards: changed tables come in a new array.
    """
    changed = np.zeros(self.num_lanes, bool)
    while (self._head < self._tail).any():
      changed |= self._run_round()
    if changed.any():
      rows = np.flatnonzero(changed)
      freqs = base.quantize(self._probs[rows])
      self._freqs, self._cdf = self._freqs.copy(), self._cdf.copy()
      self._freqs[rows] = freqs
      self._cdf[rows] = base.cdf_from_freqs(freqs)
    return self._cdf, self._rows

  def freqs(self) -> np.ndarray:
    """[num_lanes, 257] int32 current tables (call `tables` first)."""
    return self._freqs

  def probs(self) -> np.ndarray:
    """[num_lanes, 257] float32 current probabilities (call `tables` first)."""
    return self._probs

  def _run_round(self) -> np.ndarray:
    """Feeds the next queued input of every lane (and a leading BOS for free).

    Returns:
      [num_lanes] bool, lanes whose table changed.
    """
    bos = (self._head < self._tail) & (self._positions == 0)  # BOS is always at position 0
    if bos.any():
      bos_probs, _ = self._m1._bos_state()
      self._probs[bos] = bos_probs
      self._head[bos] += 1
      self._positions[bos] = 1
    lanes = np.flatnonzero(self._head < self._tail)
    if lanes.size:
      self._place(lanes[self._row[lanes] < 0])
      self._step_rows(lanes)
      self._head[lanes] += 1
      self._positions[lanes] += 1
    drained = self._head == self._tail
    self._head[drained] = 0
    self._tail[drained] = 0
    changed = bos
    changed[lanes] = True
    return changed

  def _place(self, lanes: np.ndarray) -> None:
    """Gives each of `lanes` (holding only BOS) a free cache row.

    Free rows of blocks that step this round come first, then those of the
    lowest blocks.
    """
    if not lanes.size:
      return
    busy = np.zeros(len(self._blocks), bool)
    held = self._row[self._head < self._tail]
    busy[held[held >= 0] // BLOCK_LANES] = True
    free = np.flatnonzero(self._lane_of_row < 0)
    free = free[np.argsort(~busy[free // BLOCK_LANES], kind="stable")][:lanes.size]
    self._row[lanes] = free
    self._lane_of_row[free] = lanes

  def _step_rows(self, lanes: np.ndarray) -> None:
    """One step for each of `lanes` (all placed), block by block; stores their probs."""
    rows = self._row[lanes]
    size = self._lane_of_row.size
    tokens = np.zeros(size, np.int32)
    positions = np.zeros(size, np.int32)
    active = np.zeros(size, bool)
    tokens[rows] = self._queue[lanes, self._head[lanes]]
    positions[rows] = self._positions[lanes]
    active[rows] = True
    held = np.flatnonzero(self._row >= 0)
    reach = np.zeros(size, np.int32)  # next position of the lane in each row, stepped or not
    reach[self._row[held]] = self._positions[held]
    _, bos_kv = self._m1._bos_state()
    pending = []
    for b in np.flatnonzero(active.reshape(-1, BLOCK_LANES).any(axis=1)):
      block, part = self._blocks[b], slice(b * BLOCK_LANES, (b + 1) * BLOCK_LANES)
      block.fit(int(reach[part].max()))
      probs, block.cache = self._m1._step(self._m1.params, block.cache, bos_kv, tokens[part],
                                          positions[part], active[part])
      pending.append((b, probs))  # dispatched; read back below
    out = np.zeros((size, constants.ALPHABET_SIZE), np.float32)
    for b, probs in pending:
      out[b * BLOCK_LANES:(b + 1) * BLOCK_LANES] = np.asarray(probs)
    self._probs[lanes] = out[rows]


def _put_bos(cache: model.Cache, bos_kv: list[dict[str, jax.Array]],
             lanes: jax.Array) -> model.Cache:
  """Writes BOS's keys and values [H, D] into slot 0 of the lanes [B] bool of `cache`.

  Other rows get an out-of-range index, whose update is dropped, so the cache
  is written in place and never read.
  """
  rows = jnp.where(lanes, jnp.arange(lanes.shape[0]), lanes.shape[0])  # [B]
  out = []
  for layer, bos in zip(cache, bos_kv):
    new = {}
    for name, x in layer.items():  # [B, H, S, D]
      values = jnp.broadcast_to(bos[name].astype(x.dtype), (lanes.shape[0],) + bos[name].shape)
      new[name] = x.at[rows, :, 0].set(values, mode="drop")
    out.append(new)
  return out


def save(path: str | os.PathLike, config: configs.ModelConfig, params: Any) -> str:
  """Writes an M1 checkpoint directory; returns the params' fingerprint.

  Args:
    path: directory, local or any `etils.epath` URL such as gs:// (created;
      config.json and params.npz in it are overwritten).
    config: the resolved M1 config.
    params: {"params": ...} (or the inner dict).
  """
  params = params if "params" in params else {"params": params}
  path = epath.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  flat = _flatten(params)
  buffer = io.BytesIO()
  np.savez(buffer, **flat)
  (path / PARAMS_FILE).write_bytes(buffer.getvalue())
  meta = {"format": M1_DIR_FORMAT, "fingerprint": fingerprint(params), "bos": BOS,
          "model": configs.to_dict(config)}
  (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
  return meta["fingerprint"]


def load(path: str | os.PathLike, exact: bool | None = None,
         device: jax.Device | None = None) -> "M1Model | exact_lib.ExactM1Model":
  """Loads an M1 directory written by `save` (and `training.m1.quantize`).

  Args:
    path: the directory holding config.json and params.npz (local or gs://),
      and, once converted, the integer-exact M1 in `path/exact`.
    exact: None for the integer-exact M1 if the directory has one, else the
      float M1; True for the exact M1 only; False for the float M1 (identical
      integers on one machine and backend only).
    device: where the model computes its tables; None: JAX's default device.

  Raises:
    FileNotFoundError: the directory or one of its files is missing, or
      exact=True and no exact M1 was converted.
    ValueError: the files are corrupt or do not match each other.
  """
  path = epath.Path(path)
  if exact is not False:
    found = exact_lib.find(path)  # path itself or path/exact; ValueError if stale
    if found is not None:
      return exact_lib.load(found, device=device)
    if exact:
      raise FileNotFoundError(
          f"no integer-exact M1 at {path} or {path / exact_lib.SUBDIR}; convert the float M1 "
          f"with `eqinfo quantize-m1 --m1 {path} --calibration GLOB`")
  elif exact_lib.is_exact_dir(path):
    raise ValueError(f"{path} holds an integer-exact M1 only; pass the float M1 directory it "
                     "was converted from")
  path = epath.Path(path)
  for name in (CONFIG_FILE, PARAMS_FILE):
    if not (path / name).exists():
      raise FileNotFoundError(f"no M1 checkpoint at {path}: {name} is missing; train one with "
                              f"`eqinfo train-m1` or pass the directory that holds {CONFIG_FILE} "
                              f"and {PARAMS_FILE}")
  meta = _read_meta(path)
  config = configs.from_dict(meta["model"])
  params = _read_params(path)
  if meta.get("fingerprint") not in (None, fingerprint(params)):
    raise ValueError(f"corrupt M1 checkpoint at {path}: params fingerprint differs from "
                     f"{CONFIG_FILE}; re-export it with training.m1.float_m1.save")
  return M1Model(config, params, device)


def _read_meta(path: epath.Path) -> dict:
  try:
    meta = json.loads((path / CONFIG_FILE).read_text())
    if meta.get("format") != M1_DIR_FORMAT or not isinstance(meta.get("model"), dict):
      raise ValueError(f"format is {meta.get('format')!r}, expected {M1_DIR_FORMAT!r}")
    configs.from_dict(meta["model"])
  except (ValueError, AttributeError, TypeError) as e:
    raise ValueError(f"corrupt M1 checkpoint at {path}/{CONFIG_FILE} ({e}); "
                     "re-export it with training.m1.float_m1.save") from None
  return meta


def _read_params(path: epath.Path) -> dict:
  try:
    with np.load(io.BytesIO((path / PARAMS_FILE).read_bytes()), allow_pickle=False) as npz:
      return exact_kernels.unflatten({k: npz[k] for k in npz.files})
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    raise ValueError(f"corrupt M1 checkpoint at {path}/{PARAMS_FILE} ({type(e).__name__}); "
                     "re-export it with training.m1.float_m1.save") from None


def _flat_items(tree: Any) -> list[tuple[str, Any]]:
  """[("params/layers_0/attention/query/kernel", leaf), ...]."""
  return [("/".join(str(getattr(k, "key", k)) for k in key_path), leaf)
          for key_path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def _flatten(params: Any) -> dict[str, np.ndarray]:
  return {name: np.asarray(leaf) for name, leaf in _flat_items(params)}


def _check_shapes(config: configs.ModelConfig, params: Any) -> None:
  expected = {k: tuple(v.shape) for k, v in _flat_items(model.param_shapes(config))}
  got = {k: tuple(np.shape(v)) for k, v in _flat_items(params)}
  if expected != got:
    diff = sorted(set(expected.items()) ^ set(got.items()))[:4]
    raise ValueError(f"params do not match the M1 config (first differences: {diff})")


def lane_throughput(m1: M1Model, num_lanes: int, steps: int = 16, window: int = 32) -> float:
  """Measures coding-like lane throughput: symbols per second.

  Every step pushes one random symbol into each lane and resets each lane at
  the end of a `window`-symbol window, as Equal-Info coding does. One warm-up
  window (compilation) is not timed.

  Returns:
    symbols per second over `steps` timed steps.
  """
  import time  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  lanes = m1.lanes(num_lanes)

  def run(n, t0):
    for t in range(t0, t0 + n):
      lanes.tables()
      symbols = rng.integers(0, 256, num_lanes)
      lanes.update(symbols, np.ones(num_lanes, bool), np.full(num_lanes, (t + 1) % window == 0))
    lanes.tables()

  run(min(window, 4), 0)
  start = time.perf_counter()
  run(steps, 4)
  return steps * num_lanes / (time.perf_counter() - start)
