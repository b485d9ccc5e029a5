"""Integer-exact M1: frequency tables that are the same integers on every device.

Arithmetic decoding fails if one table entry differs between the machine that
encodes and the one that decodes, so this M1 computes its tables with integer
arithmetic only (integer-only inference after Jacob et al. 2018 and I-BERT,
Kim et al. 2021). The float M1 (`training.m1.float_m1`) is converted once, by
`training.m1.quantize.convert`; from then on a table is a pure function of the
integer weights and the context: the same on CPU, GPU and TPU, whatever the
batch size, the lane, the padding, or whether a KV cache or a full recompute
produced it.

The number formats and kernels are in `training/m1/exact_kernels.py`, the weights' layout in
`training/m1/exact_params.py`.

Model directory (`save`/`load`): `config.json` (format tag, `ModelConfig`,
fingerprint, how it was made) and `params.npz` (integer arrays by name).
"""
import collections
import functools
import io
import json
import os
import zipfile
from typing import Sequence

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from compressor import constants
from compressor.models import base
from training import configs
from training import model as model_lib
from training.m1.exact_kernels import (CACHE_CHUNK, TRACE_NAMES, decode_step, device_tree,
                                       sequence_freqs)
from training.m1.exact_params import (BOS, EXACT_FORMAT, VOCAB_SIZE, check_config, check_params,
                                      fingerprint)

CONFIG_FILE = "config.json"
PARAMS_FILE = "params.npz"
SUBDIR = "exact"  # where `eqinfo quantize-m1` puts the exact model of an M1 directory
CPU_BLOCK_LANES = 64  # most rows of one compiled step on CPU; more lanes run as several blocks
ACCELERATOR_BLOCK_LANES = 2048  # the same on GPU/TPU (H100, 3m: 212k symbols/s at 2048)
MIN_BLOCK_LANES = 16  # fewest rows of one compiled step (a power of two from here up)
CACHE_DTYPES = ("int8", "int32")  # KV cache containers; both hold int8 values, same tables


# -- the probability model ----------------------------------------------------

def _block_rows(num_lanes: int, block_lanes: int) -> int:
  """Rows of each compiled step: a power of two from MIN_BLOCK_LANES to block_lanes."""
  return min(block_lanes, max(MIN_BLOCK_LANES, 1 << (num_lanes - 1).bit_length()))


def check_symbols(symbols: np.ndarray | bytes) -> np.ndarray:
  """Symbols as a 1-D int32 array, checked to lie in [0, 257)."""
  if isinstance(symbols, (bytes, bytearray)):
    symbols = np.frombuffer(symbols, np.uint8)
  symbols = np.asarray(symbols).reshape(-1)
  if symbols.size and (symbols.min() < 0 or symbols.max() >= constants.ALPHABET_SIZE):
    raise ValueError(f"M1 symbols must be in [0, {constants.ALPHABET_SIZE}), got "
                     f"[{symbols.min()}, {symbols.max()}]")
  return symbols.astype(np.int32)


class ExactM1Model(base.ProbabilityModel):
  """M1 with integer-only inference: identical tables on every device.

  Args:
    config: the M1 config (vocab_size 258) the weights were converted from.
    params: flat integer weights, see `param_specs`.
    meta: JSON-able provenance saved with the model (e.g. the float M1's
      fingerprint and calibration settings).
    cache_dtype: container of the int8 KV cache values, "int8" or "int32";
      None picks int32 on CPU (whose int8 conversions are slow) and int8
      elsewhere. Tables do not depend on it.
    block_lanes: most cache rows of one compiled step of `lanes` (a power of
      two >= MIN_BLOCK_LANES); None: CPU_BLOCK_LANES on CPU, where small blocks
      are fastest, ACCELERATOR_BLOCK_LANES elsewhere, where one large step
      beats many small ones. Tables do not depend on it.
    device: where the weights live and so where tables are computed; None:
      JAX's default device.
  """

  exact = True  # tables are the same integers on every device

  def __init__(self, config: configs.ModelConfig, params: dict[str, np.ndarray],
               meta: dict | None = None, cache_dtype: str | None = None,
               block_lanes: int | None = None, device: jax.Device | None = None):
    check_config(config)
    platform = device.platform if device is not None else jax.default_backend()
    if block_lanes is None:
      block_lanes = CPU_BLOCK_LANES if platform == "cpu" else ACCELERATOR_BLOCK_LANES
    if block_lanes < MIN_BLOCK_LANES or block_lanes & (block_lanes - 1):
      raise ValueError(f"block_lanes must be a power of two >= {MIN_BLOCK_LANES}, "
                       f"got {block_lanes}")
    if cache_dtype is None:
      cache_dtype = "int32" if platform == "cpu" else "int8"
    if cache_dtype not in CACHE_DTYPES:
      raise ValueError(f"cache_dtype must be one of {CACHE_DTYPES}, got {cache_dtype!r}")
    params = {name: np.asarray(a) for name, a in params.items()}
    check_params(config, params)
    self.config = config
    self.params = params
    self.meta = dict(meta or {})
    self.cache_dtype = cache_dtype
    self.block_lanes = block_lanes
    self.device = device
    self.fingerprint = fingerprint(params)
    self._tree = jax.device_put(device_tree(config, params), device)
    self._step = jax.jit(functools.partial(decode_step, config), donate_argnums=(1,))
    self._sequence = jax.jit(functools.partial(sequence_freqs, config))
    self._trace = jax.jit(functools.partial(sequence_freqs, config, trace=True))
    self._bos = None  # see `bos_state`

  def __repr__(self):
    return (f"ExactM1Model(d_model={self.config.d_model}, num_layers={self.config.num_layers}, "
            f"max_len={self.config.max_len}, cache_dtype={self.cache_dtype!r}, "
            f"fingerprint={self.fingerprint!r})")

  def freqs(self, contexts: Sequence[np.ndarray | bytes]) -> np.ndarray:
    """[len(contexts), 257] int32 tables, computed by replaying each context."""
    lanes = ExactLanes(self, max(len(contexts), 1))
    for i, context in enumerate(contexts):
      lanes.push_context(i, check_symbols(context))
    cdf, _ = lanes.tables()
    return np.diff(cdf[:len(contexts)], axis=1).astype(np.int32)

  def sequence_freqs(self, inputs: np.ndarray) -> np.ndarray:
    """Full recompute without a cache: [B, T] inputs -> [B, T, 257] int32 tables.

    inputs[:, 0] is normally BOS; row t is the table after inputs[:, :t + 1].
    """
    inputs = np.asarray(inputs, np.int32)
    if inputs.ndim != 2 or inputs.size and (inputs.min() < 0 or inputs.max() >= VOCAB_SIZE):
      raise ValueError(f"inputs must be [B, T] tokens in [0, {VOCAB_SIZE}), got {inputs.shape}")
    return np.asarray(self._sequence(self._tree, inputs))

  def trace(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every intermediate of `sequence_freqs` for [B, T] inputs, by name, in order."""
    _, seen = self._trace(self._tree, np.asarray(inputs, np.int32))
    order = [f"{i}.{name}" for i in range(self.config.num_layers) for name in TRACE_NAMES]
    return {name: np.asarray(seen[name]) for name in order + ["x", "freqs"]}

  def compiled_text(self, inputs: np.ndarray, rows: int = MIN_BLOCK_LANES) -> dict[str, str]:
    """The optimised programs this model's device runs, as text, for finding where devices part.

    Returns:
      {"sequence_freqs": the full recompute of [B, T] `inputs`,
       "decode_step": one cached step of `rows` lanes with one chunk of slots}.
    """
    inputs = np.asarray(inputs, np.int32)
    slots = min(CACHE_CHUNK, model_lib.cache_slots(self.config))
    step_args = (self._tree, self.init_cache(rows, slots), np.zeros(rows, np.int32),
                 np.ones(rows, np.int32), np.ones(rows, bool), self.bos_state()[1])
    return {"sequence_freqs": self._sequence.lower(self._tree, inputs).compile().as_text(),
            "decode_step": self._step.lower(*step_args).compile().as_text()}

  def lanes(self, num_lanes: int) -> "ExactLanes":
    return ExactLanes(self, num_lanes)

  def init_cache(self, num_lanes: int, slots: int) -> list[dict]:
    """Zeroed KV cache: per layer {"k", "v"}: [num_lanes, H, slots, D] of `cache_dtype`."""
    c = self.config
    shape = (num_lanes, c.num_heads, slots, c.head_dim)
    return [{name: jnp.zeros(shape, self.cache_dtype, device=self.device) for name in ("k", "v")}
            for _ in range(c.num_layers)]

  def step(self, cache: list[dict], tokens: np.ndarray, positions: np.ndarray,
           active: np.ndarray, bos_kv: list[dict] | None = None) -> tuple[jax.Array, list[dict]]:
    """The jitted `decode_step` (the cache is donated)."""
    return self._step(self._tree, cache, tokens, positions, active, bos_kv)

  def bos_state(self) -> tuple[np.ndarray, list[dict]]:
    """([258] int32 cdf, per-layer BOS keys and values [H, D]) of the empty context.

    Computed once, by the same step as every other table (BOS at position 0),
    and reused for every lane that restarts.
    """
    if self._bos is None:
      rows = MIN_BLOCK_LANES
      cache = self.init_cache(rows, min(CACHE_CHUNK, model_lib.cache_slots(self.config)))
      cdf, cache = self.step(cache, np.full(rows, BOS, np.int32), np.zeros(rows, np.int32),
                             np.arange(rows) == 0)
      kv = [{name: layer[name][0, :, 0] for name in ("k", "v")} for layer in cache]
      self._bos = (np.asarray(cdf)[0].copy(), kv)
    return self._bos

  def save(self, path: str | os.PathLike) -> str:
    """Writes the model directory `path`; returns the fingerprint."""
    return save(path, self.config, self.params, self.meta)

  @classmethod
  def load(cls, path: str | os.PathLike, cache_dtype: str | None = None,
           device: jax.Device | None = None) -> "ExactM1Model":
    return load(path, cache_dtype, device)


class _Block:
  """KV cache of one block of rows; grows in whole chunks as contexts lengthen."""

  def __init__(self, m1: ExactM1Model, rows: int):
    self.rows = rows
    self.full = model_lib.cache_slots(m1.config)
    self.slots = min(CACHE_CHUNK, self.full)
    self.cache = m1.init_cache(rows, self.slots)

  def ensure(self, max_position: int) -> None:
    """Grows the cache (doubling, whole chunks) to hold positions up to `max_position`."""
    need = min(-(-(max_position + 1) // CACHE_CHUNK) * CACHE_CHUNK, self.full)
    if need > self.slots:
      self.slots = min(max(need, 2 * self.slots), self.full)
      widths = ((0, 0), (0, 0), (0, self.slots - self.cache[0]["k"].shape[2]), (0, 0))
      self.cache = [{k: jnp.pad(a, widths) for k, a in layer.items()} for layer in self.cache]


class ExactLanes(base.Lanes):
  """Lanes of an exact M1: KV cache rows in blocks, one jitted step per busy block and round.

  Every lane's next input is queued (BOS after a reset); `tables()` feeds the
  queued inputs of all lanes, one position per round. BOS costs no step: its
  table and keys and values are the model's `bos_state`. A lane holds a cache
  row only while its context has more than BOS, and takes a free row of a
  block that steps anyway, so blocks of idle lanes are skipped. Integer
  arithmetic makes a lane's table independent of its block, its row, the
  padding and the cache size.
  """

  def __init__(self, m1: ExactM1Model, num_lanes: int):
    super().__init__(num_lanes)
    self._m1 = m1
    rows = _block_rows(num_lanes, m1.block_lanes)
    self._blocks = [_Block(m1, rows) for _ in range(-(-num_lanes // rows))]
    self._next = np.full(num_lanes, BOS, np.int32)  # next input per lane; -1: none queued
    self._more = {}  # lane -> deque of inputs queued after `_next`
    self._positions = np.zeros(num_lanes, np.int32)  # of each lane's next input
    self._row = np.full(num_lanes, -1, np.int64)  # cache row of each lane; -1: none
    self._lane_of_row = np.full(len(self._blocks) * rows, -1, np.int64)
    self._cdf = np.zeros((num_lanes, base.CDF_WIDTH), np.int32)
    self._rows = np.arange(num_lanes)

  def __repr__(self):
    return (f"ExactLanes(num_lanes={self.num_lanes}, blocks={len(self._blocks)}x"
            f"{self._blocks[0].rows}, m1={self._m1!r})")

  def push_context(self, lane: int, symbols: np.ndarray) -> None:
    """Queues many symbols on one lane (as repeated `update` pushes would)."""
    for s in check_symbols(symbols):
      self._queue(lane, int(s))

  def _queue(self, lane: int, token: int) -> None:
    if self._next[lane] < 0:
      self._next[lane] = token
    else:
      self._more.setdefault(lane, collections.deque()).append(token)

  def update(self, symbols, push, reset):
    symbols, push, reset = base.check_update(self.num_lanes, symbols, push, reset)
    pushed = np.flatnonzero(push)
    if pushed.size:
      check_symbols(symbols[pushed])
      free = self._next[pushed] < 0
      if self._more:
        free &= np.array([int(i) not in self._more for i in pushed])
      self._next[pushed[free]] = symbols[pushed[free]]
      for i in pushed[~free]:
        self._queue(int(i), int(symbols[i]))
    cleared = np.flatnonzero(reset)
    if cleared.size:
      self._next[cleared] = BOS
      self._positions[cleared] = 0
      for i in cleared:
        self._more.pop(int(i), None)
      held = cleared[self._row[cleared] >= 0]
      self._lane_of_row[self._row[held]] = -1
      self._row[held] = -1

  def tables(self):
    """Returns (cdf [num_lanes, 258] int32, rows = arange(num_lanes)).

    Runs one step per queued input. A returned array is never modified
    afterwards: new tables come in a new array.
    """
    while (self._next >= 0).any():
      self._run_round()
    return self._cdf, self._rows

  def _advance(self, lanes: np.ndarray) -> None:
    """Moves each of `lanes` past its next input."""
    self._positions[lanes] += 1
    self._next[lanes] = -1
    for i in [i for i in lanes.tolist() if i in self._more]:
      queue = self._more[i]
      self._next[i] = queue.popleft()
      if not queue:
        del self._more[i]

  def _run_round(self) -> None:
    """Feeds the next queued input of every lane (and a leading BOS for free)."""
    cdf = self._cdf.copy()
    bos_cdf, bos_kv = self._m1.bos_state()
    bos = np.flatnonzero((self._next >= 0) & (self._positions == 0))  # BOS is at position 0
    cdf[bos] = bos_cdf
    self._advance(bos)
    lanes = np.flatnonzero(self._next >= 0)
    if lanes.size:
      self._place(lanes[self._row[lanes] < 0])
      for lo, hi, stepped, block_cdf in self._step_rows(lanes, bos_kv):
        cdf[self._lane_of_row[lo:hi][stepped]] = np.asarray(block_cdf)[stepped]
      self._advance(lanes)
    self._cdf = cdf

  def _place(self, lanes: np.ndarray) -> None:
    """Gives each of `lanes` a free cache row, first in blocks that step this round."""
    if not lanes.size:
      return
    rows = self._blocks[0].rows
    busy = np.zeros(len(self._blocks), bool)
    held = self._row[self._next >= 0]
    busy[held[held >= 0] // rows] = True
    free = np.flatnonzero(self._lane_of_row < 0)
    free = free[np.argsort(~busy[free // rows], kind="stable")][:lanes.size]
    self._row[lanes] = free
    self._lane_of_row[free] = lanes

  def _step_rows(self, lanes: np.ndarray, bos_kv: list[dict]) -> list:
    """Dispatches one step per block holding some of `lanes` (all placed).

    Returns:
      [(first row, end row, [rows] bool stepped, [rows, 258] cdf)] per block run.
    """
    size = self._lane_of_row.size
    tokens = np.zeros(size, np.int32)
    positions = np.zeros(size, np.int32)
    active = np.zeros(size, bool)
    rows = self._row[lanes]
    tokens[rows] = self._next[lanes]
    positions[rows] = self._positions[lanes]
    active[rows] = True
    results = []
    for b, block in enumerate(self._blocks):
      lo, hi = b * block.rows, (b + 1) * block.rows
      if not active[lo:hi].any():
        continue
      block.ensure(int(positions[lo:hi].max()))
      cdf, block.cache = self._m1.step(block.cache, tokens[lo:hi], positions[lo:hi],
                                       active[lo:hi], bos_kv)
      results.append((lo, hi, active[lo:hi], cdf))  # dispatched; read back by the caller
    return results


# -- files ---------------------------------------------------------------------

def save(path: str | os.PathLike, config: configs.ModelConfig, params: dict[str, np.ndarray],
         meta: dict | None = None) -> str:
  """Writes an exact M1 directory (config.json, params.npz); returns the fingerprint.

  Args:
    path: directory, local or any `etils.epath` URL (created; files overwritten).
    config: the M1 config.
    params: flat integer weights (`param_specs`).
    meta: JSON-able provenance stored under "meta".
  """
  check_params(config, params)
  path = epath.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  np.savez(buffer, **{k: np.asarray(v) for k, v in params.items()})
  (path / PARAMS_FILE).write_bytes(buffer.getvalue())
  info = {"format": EXACT_FORMAT, "fingerprint": fingerprint(params), "bos": BOS,
          "model": configs.to_dict(config), "meta": meta or {}}
  (path / CONFIG_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
  return info["fingerprint"]


def is_exact_dir(path: str | os.PathLike) -> bool:
  """Whether `path` holds an exact M1 (its config.json carries EXACT_FORMAT)."""
  path = epath.Path(path)
  try:
    return json.loads((path / CONFIG_FILE).read_text()).get("format") == EXACT_FORMAT
  except (OSError, ValueError, AttributeError):
    return False


def find(path: str | os.PathLike) -> epath.Path | None:
  """The exact M1 directory of `path`: itself, its SUBDIR, or None.

  Raises:
    ValueError: PATH/SUBDIR was converted from another float M1 than the one
      in PATH (its recorded source fingerprint differs).
  """
  path = epath.Path(path)
  if is_exact_dir(path):
    return path
  sub = path / SUBDIR
  if not is_exact_dir(sub):
    return None
  try:
    source = json.loads((sub / CONFIG_FILE).read_text()).get("meta", {}).get("source_fingerprint")
    current = json.loads((path / CONFIG_FILE).read_text()).get("fingerprint")
  except (OSError, ValueError, AttributeError):
    return sub
  if source and current and source != current:
    raise ValueError(f"the exact M1 in {sub} was converted from another float M1 (fingerprint "
                     f"{source}, {path} has {current}); re-run `eqinfo quantize-m1 "
                     f"--m1 {path} --calibration GLOB`")
  return sub


def load(path: str | os.PathLike, cache_dtype: str | None = None,
         device: jax.Device | None = None) -> ExactM1Model:
  """Loads an exact M1 directory written by `save`.

  Args:
    path: the directory.
    cache_dtype, device: see `ExactM1Model`.

  Raises:
    FileNotFoundError: a file is missing.
    ValueError: the files are corrupt or do not match each other.
  """
  path = epath.Path(path)
  for name in (CONFIG_FILE, PARAMS_FILE):
    if not (path / name).exists():
      raise FileNotFoundError(
          f"no exact M1 at {path}: {name} is missing; convert a float M1 with "
          f"`eqinfo quantize-m1 --m1 DIR --calibration GLOB`")
  try:
    info = json.loads((path / CONFIG_FILE).read_text())
    if info.get("format") != EXACT_FORMAT:
      raise ValueError(f"format is {info.get('format')!r}, expected {EXACT_FORMAT!r}")
    config = configs.from_dict(info["model"])
    with np.load(io.BytesIO((path / PARAMS_FILE).read_bytes()), allow_pickle=False) as npz:
      params = {k: npz[k] for k in npz.files}
  except (ValueError, KeyError, TypeError, AttributeError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f"corrupt exact M1 at {path} ({e}); re-run eqinfo quantize-m1") from None
  if info.get("fingerprint") != fingerprint(params):
    raise ValueError(f"corrupt exact M1 at {path}: weights do not match the fingerprint in "
                     f"{CONFIG_FILE}; re-run eqinfo quantize-m1")
  return ExactM1Model(config, params, info.get("meta"), cache_dtype, device=device)
