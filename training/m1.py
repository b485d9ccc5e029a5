"""M1, the byte-level transformer, as a probability model for the arithmetic coders.

Vocabulary: inputs are the 257 symbols (bytes 0..255, EOS = 256) plus BOS = 257,
which starts every context (a window or an example); `vocab_size` is 258 for
both the embedding and the logits. BOS is never a target, so its logit is
dropped before the float32 softmax over the 257 symbols, whose probabilities
`compressor.models.base.quantize` turns into frequency tables.

Inference contract (DESIGN.md): a table is a pure function of the weights and
the context. Floats cannot promise that in general, so every table comes out of
one compiled function, `decode_step` on a block of `BLOCK_LANES` lanes:

* `M1Model.freqs` replays each context through that same step (BOS, then
  the symbols), so "full recompute" and "KV cache" are the same computation;
* lanes always run in blocks of exactly `BLOCK_LANES` rows (padded), so a
  lane's result cannot depend on how many lanes exist;
* rows of a block do not mix (tests check every row position), and attention
  chunks past a lane's context add exact zeros.

Results are therefore identical integers on one machine and backend; across
devices they are not promised (`exact=False`); integer-exact inference is a
later addition.

Checkpoint directory (`save`/`load`): `config.json` (the resolved
`ModelConfig`, format tag and fingerprint) and `params.npz` (numpy arrays keyed
by "/"-joined parameter paths). npz rather than orbax: one small file, stable
bytes, and nothing to restore asynchronously in Beam workers.
"""
import collections
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

BOS = constants.ALPHABET_SIZE  # 257: input token that starts every context
VOCAB_SIZE = constants.ALPHABET_SIZE + 1  # 258: 257 symbols + BOS
BLOCK_LANES = 64  # rows of every compiled step; lane counts are padded up to a multiple
FORMAT = "eqinfo-m1-v1"  # tag of the checkpoint directory layout
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
  """

  exact = False  # float inference: identical integers on one machine, not across devices

  def __init__(self, config: configs.ModelConfig, params: Any):
    if config.vocab_size != VOCAB_SIZE:
      raise ValueError(f"M1 needs vocab_size {VOCAB_SIZE} (257 symbols + BOS), "
                       f"got {config.vocab_size}")
    params = params if "params" in params else {"params": params}
    _check_shapes(config, params)
    self.config = config
    self.params = jax.device_put(jax.tree_util.tree_map(jnp.asarray, params))
    self.fingerprint = fingerprint(params)
    self._step = jax.jit(self._probs_step, donate_argnums=(1,))

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

  def _probs_step(self, params, cache, tokens, positions, active):
    """[B] tokens -> ([B, 257] float32 next-symbol probabilities, cache)."""
    logits, cache = model.decode_step(self.config, params, cache, tokens, positions, active)
    return jax.nn.softmax(logits[:, :constants.ALPHABET_SIZE], axis=-1), cache

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
      lanes.push_context(i, _check_symbols(context))
    lanes.tables()
    return lanes

  def lanes(self, num_lanes: int) -> "M1Lanes":
    return M1Lanes(self, num_lanes)

  def save(self, path: str | os.PathLike) -> None:
    """Writes the checkpoint directory `path` (see `save`)."""
    save(path, self.config, self.params)


class _Block:
  """KV cache of BLOCK_LANES lanes; grows in whole chunks as contexts lengthen."""

  def __init__(self, config: configs.ModelConfig):
    self.config = config
    self.slots = min(model.DECODE_CHUNK, model.cache_slots(config))
    self.cache = model.init_cache(config, BLOCK_LANES, self.slots)

  def ensure(self, max_position: int) -> None:
    """Grows the cache (doubling, whole chunks) to hold positions up to `max_position`."""
    full = model.cache_slots(self.config)
    need = min(-(-(max_position + 1) // model.DECODE_CHUNK) * model.DECODE_CHUNK, full)
    if need > self.slots:
      self.slots = min(max(need, 2 * self.slots), full)
      self.cache = model.grow_cache(self.config, self.cache, self.slots)


class M1Lanes(base.Lanes):
  """Lanes with a KV cache each; a reset lane's next table is the BOS-only context."""

  def __init__(self, m1: M1Model, num_lanes: int):
    super().__init__(num_lanes)
    self._m1 = m1
    num_blocks = -(-num_lanes // BLOCK_LANES)
    self._blocks = [_Block(m1.config) for _ in range(num_blocks)]
    self._queues = [collections.deque([BOS]) for _ in range(num_lanes)]
    self._positions = np.zeros(num_blocks * BLOCK_LANES, np.int32)  # of each lane's next input
    self._probs = np.zeros((num_lanes, constants.ALPHABET_SIZE), np.float32)
    self._freqs = np.zeros((num_lanes, constants.ALPHABET_SIZE), np.int32)
    self._cdf = np.zeros((num_lanes, base.CDF_WIDTH), np.int32)
    self._rows = np.arange(num_lanes)

  def __repr__(self):
    return f"M1Lanes(num_lanes={self.num_lanes}, blocks={len(self._blocks)}, m1={self._m1!r})"

  def push_context(self, lane: int, symbols: np.ndarray) -> None:
    """Queues many symbols on one lane (as repeated `update` pushes would)."""
    self._queues[lane].extend(int(s) for s in symbols)

  def update(self, symbols, push, reset):
    symbols, push, reset = (np.asarray(a) for a in (symbols, push, reset))
    for name, a in (("symbols", symbols), ("push", push), ("reset", reset)):
      if a.shape != (self.num_lanes,):
        raise ValueError(f"{name} must have shape ({self.num_lanes},), got {a.shape}")
    pushed = np.flatnonzero(push)
    if pushed.size:
      _check_symbols(symbols[pushed])
    for i in pushed:
      self._queues[i].append(int(symbols[i]))
    for i in np.flatnonzero(reset):
      self._queues[i] = collections.deque([BOS])
      self._positions[i] = 0

  def tables(self):
    """Returns (cdf [num_lanes, 258] int32, rows = arange(num_lanes)).

    Runs one step per queued input of each changed lane. A returned array is
    never modified afterwards: changed tables come in a new array.
    """
    changed = np.zeros(self.num_lanes, bool)
    while any(self._queues):
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
    """Feeds the next queued input of every lane; returns [num_lanes] bool lanes fed."""
    fed = np.zeros(self.num_lanes, bool)
    for b, block in enumerate(self._blocks):
      lo, hi = b * BLOCK_LANES, min((b + 1) * BLOCK_LANES, self.num_lanes)
      lanes = [i for i in range(lo, hi) if self._queues[i]]
      if lanes:
        self._run_block(block, lo, lanes)
        fed[lanes] = True
    return fed

  def _run_block(self, block: _Block, lo: int, lanes: list[int]) -> None:
    tokens = np.zeros(BLOCK_LANES, np.int32)
    positions = np.zeros(BLOCK_LANES, np.int32)
    active = np.zeros(BLOCK_LANES, bool)
    for i in lanes:
      tokens[i - lo] = self._queues[i].popleft()
      positions[i - lo] = self._positions[i]
      active[i - lo] = True
    block.ensure(int(positions.max()))
    probs, block.cache = self._m1._step(self._m1.params, block.cache, tokens, positions, active)
    self._probs[lanes] = np.asarray(probs)[np.asarray(lanes) - lo]
    self._positions[lanes] += 1


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
  meta = {"format": FORMAT, "fingerprint": fingerprint(params), "bos": BOS,
          "model": configs.to_dict(config)}
  (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
  return meta["fingerprint"]


def load(path: str | os.PathLike, exact: bool | None = None) -> M1Model:
  """Loads an M1 checkpoint directory written by `save`.

  Args:
    path: the directory holding config.json and params.npz (local or gs://).
    exact: None for the best available inference; False for float inference
      (identical integers on one machine); True for integer-exact inference,
      which is not available yet.

  Raises:
    FileNotFoundError: the directory or one of its files is missing.
    ValueError: the files are corrupt or do not match each other.
    NotImplementedError: exact=True.
  """
  if exact:
    raise NotImplementedError("integer-exact M1 inference is not available yet; "
                              "load with exact=None or exact=False")
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
                     f"{CONFIG_FILE}; re-export it with training.m1.save")
  return M1Model(config, params)


def _read_meta(path: epath.Path) -> dict:
  try:
    meta = json.loads((path / CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT or not isinstance(meta.get("model"), dict):
      raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
    configs.from_dict(meta["model"])
  except (ValueError, AttributeError, TypeError) as e:
    raise ValueError(f"corrupt M1 checkpoint at {path}/{CONFIG_FILE} ({e}); "
                     "re-export it with training.m1.save") from None
  return meta


def _read_params(path: epath.Path) -> dict:
  try:
    with np.load(io.BytesIO((path / PARAMS_FILE).read_bytes()), allow_pickle=False) as npz:
      return _unflatten({k: npz[k] for k in npz.files})
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    raise ValueError(f"corrupt M1 checkpoint at {path}/{PARAMS_FILE} ({type(e).__name__}); "
                     "re-export it with training.m1.save") from None


def _flat_items(tree: Any) -> list[tuple[str, Any]]:
  """[("params/layers_0/attention/query/kernel", leaf), ...]."""
  return [("/".join(str(getattr(k, "key", k)) for k in key_path), leaf)
          for key_path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def _flatten(params: Any) -> dict[str, np.ndarray]:
  return {name: np.asarray(leaf) for name, leaf in _flat_items(params)}


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, array in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = array
  return tree


def _check_shapes(config: configs.ModelConfig, params: Any) -> None:
  expected = {k: tuple(v.shape) for k, v in _flat_items(model.param_shapes(config))}
  got = {k: tuple(np.shape(v)) for k, v in _flat_items(params)}
  if expected != got:
    diff = sorted(set(expected.items()) ^ set(got.items()))[:4]
    raise ValueError(f"params do not match the M1 config (first differences: {diff})")


def _check_symbols(symbols: np.ndarray | bytes) -> np.ndarray:
  """Symbols as an int array, checked to lie in [0, 257)."""
  if isinstance(symbols, (bytes, bytearray)):
    symbols = np.frombuffer(symbols, np.uint8)
  symbols = np.asarray(symbols).reshape(-1)
  if symbols.size and (symbols.min() < 0 or symbols.max() >= constants.ALPHABET_SIZE):
    raise ValueError(f"M1 symbols must be in [0, {constants.ALPHABET_SIZE}), got "
                     f"[{symbols.min()}, {symbols.max()}]")
  return symbols


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
