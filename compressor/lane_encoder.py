"""Encodes many examples at once, one symbol per step in each lane.

Each lane codes one example as a sequence of *codes*: Equal-Info windows of
exactly b bits (`window_arith`), or one AC stream of whole tokens (`arith`). A
code grows greedily while its interval still holds a cell of the allowed
length; at its end the encoder backs off to the longest prefix whose interval
holds a cell straddling the next symbol's subdivision, so the decoder stops
after exactly that prefix. The model's context restarts with every code.

Memory is O(lanes * (HISTORY + code length)): the model's tables are never held
for every position of an example.
"""
import dataclasses

import numpy as np

from compressor import arith
from compressor import window_arith
from compressor.methods.base import CodingError
from compressor.models.base import ProbabilityModel

HISTORY = 64  # positions of a code the encoder can back off over
PAD_SYMBOL = 0


@dataclasses.dataclass(frozen=True)
class CodeSpec:
  """How codes are shaped.

  Attributes:
    window_bits: exact code length in bits (Equal-Info), or None for one AC
      stream per example.
    token_bits: stream lengths are whole tokens of this many bits.
    max_codes: windows per lane (Equal-Info with max_tokens), None for no limit.
    max_bits: stream length limit in bits (AC with max_tokens), None for none.
  """
  window_bits: int | None
  token_bits: int
  max_codes: int | None = None
  max_bits: int | None = None


@dataclasses.dataclass
class LaneResult:
  """What one lane produced: its code bytes and counts."""
  data: bytes
  num_symbols: int
  num_codes: int
  num_literals: int


class LaneEncoder:
  """Encodes examples in lanes with a probability model.

  Args:
    model: the probability model (its lanes are reset at every code start).
    spec: the shape of codes.
    num_lanes: examples coded at once.
  """

  def __init__(self, model: ProbabilityModel, spec: CodeSpec, num_lanes: int = 1024):
    if model is None:
      raise ValueError("an arithmetic coder needs a probability model: pass model=...")
    if num_lanes < 1:
      raise ValueError(f"num_lanes must be >= 1, got {num_lanes}")
    self.model = model
    self.spec = spec
    self.num_lanes = num_lanes

  def encode(self, examples: list[np.ndarray]) -> list[LaneResult]:
    """Codes every example; returns one LaneResult per example, in order."""
    batch_cls = _StreamBatch if self.spec.window_bits is None else _WindowBatch
    results = []
    for start in range(0, len(examples), self.num_lanes):
      batch = batch_cls(self.model, self.spec, examples[start:start + self.num_lanes])
      results += batch.run()
    return results


class _Batch:
  """Lane state shared by windows and streams: input, model lanes, history."""

  STATE = ()  # names of the per-lane interval arrays a subclass keeps

  def __init__(self, model, spec: CodeSpec, examples: list[np.ndarray]):
    self.spec = spec
    n = len(examples)
    self.lengths = np.array([x.size for x in examples], np.int64)
    width = int(self.lengths.max(initial=0)) + 1
    self.symbols = np.full((n, width), PAD_SYMBOL, np.int64)  # [L, T + 1]
    for i, x in enumerate(examples):
      self.symbols[i, :x.size] = x
    self.lanes = model.lanes(n)
    self.ids = np.arange(n)
    self.start = np.zeros(n, np.int64)  # first symbol of the current code
    self.k = np.zeros(n, np.int64)  # symbols in the current code
    self.codes = np.zeros(n, np.int64)
    self.literals = np.zeros(n, np.int64)
    self.done = np.zeros(n, bool)
    self.state = self.initial_state(n)
    self.ring = {name: np.zeros((HISTORY, n), a.dtype) for name, a in self.state.items()}
    self.ring["row"] = np.zeros((HISTORY, n), np.int64)
    self.stores = [None] * HISTORY  # the model's table store of each step
    self.step = 0

  def initial_state(self, n: int) -> dict:
    raise NotImplementedError

  def run(self) -> list[LaneResult]:
    while not self.done.all():
      self._step()
    return [LaneResult(self.output(i), int(self.start[i]), int(self.codes[i]),
                       int(self.literals[i])) for i in self.ids]

  def _step(self):
    store, rows = self.lanes.tables()
    rows = np.asarray(rows, np.int64)
    slot = self.k % HISTORY
    for name, arr in self.state.items():
      self.ring[name][slot, self.ids] = arr
    self.ring["row"][slot, self.ids] = rows
    self.stores[self.step % HISTORY] = store
    pos = self.start + self.k
    at_end = pos >= self.lengths
    x = self.symbols[self.ids, np.minimum(pos, self.symbols.shape[1] - 1)]
    lo_cum = store[rows, x].astype(np.int64)
    hi_cum = store[rows, x + 1].astype(np.int64)
    fits, new = self.try_symbol(lo_cum, hi_cum, x)
    active = ~self.done
    accept = fits & active & ~at_end
    end = active & ~accept
    self.commit(accept, new)
    ended = np.flatnonzero(end)
    if ended.size:
      self._end_codes(ended)
    self.lanes.update(x, accept, end)
    self.k[accept] += 1
    self.step += 1

  def history(self, lanes, back):
    """State of `lanes` `back` positions ago and the table that followed it."""
    slot = (self.k[lanes] - back) % HISTORY
    store = self.stores[(self.step - back) % HISTORY]
    state = {name: self.ring[name][slot, lanes] for name in self.state}
    return state, store[self.ring["row"][slot, lanes]]

  def _end_codes(self, lanes):
    chosen = self.end_codes(lanes)
    self.start[lanes] += chosen
    self.k[lanes] = 0
    for name, value in self.initial_state(lanes.size).items():
      self.state[name][lanes] = value
    self.codes[lanes] += 1
    self.done[lanes] = self.finished(lanes)

  def try_symbol(self, lo_cum, hi_cum, x):
    """Tentatively codes x in every lane; returns (fits [L] bool, new state)."""
    raise NotImplementedError

  def commit(self, accept, new):
    """Keeps the new state of lanes that accepted their symbol."""
    raise NotImplementedError

  def end_codes(self, lanes) -> np.ndarray:
    """Writes the code of each lane in `lanes`; returns the symbols it covers."""
    raise NotImplementedError

  def finished(self, lanes) -> np.ndarray:
    """Which of `lanes` are done after the code just ended."""
    raise NotImplementedError

  def output(self, lane: int) -> bytes:
    """The code bytes a lane wrote."""
    raise NotImplementedError


class _WindowBatch(_Batch):
  """Equal-Info windows of exactly b bits (docs/DESIGN.md's rule, literal escape)."""

  STATE = ("low", "r")

  def __init__(self, model, spec, examples):
    self.bits = spec.window_bits
    self.dtype = window_arith.dtype_for(self.bits)
    super().__init__(model, spec, examples)
    self.done = (self.lengths == 0) | (spec.max_codes == 0)
    self.window_codes = np.zeros((len(examples), 16), self.dtype)  # [L, windows] b-bit codes

  def initial_state(self, n):
    low = np.zeros(n, self.dtype)
    r = np.full(n, window_arith.start_range(self.bits), self.dtype)
    return {"low": low, "r": r}

  def try_symbol(self, lo_cum, hi_cum, x):
    low, r = self.state["low"], self.state["r"]
    lo = window_arith.split(r, lo_cum)
    new_low, new_r = low + lo, window_arith.split(r, hi_cum) - lo
    return window_arith.cell_fits(new_low, new_r), (new_low, new_r)

  def commit(self, accept, new):
    for name, value in zip(self.STATE, new):
      self.state[name][accept] = value[accept]

  def end_codes(self, lanes):
    chosen = np.ones(lanes.size, np.int64)  # a literal window holds one symbol
    code = np.zeros(lanes.size, self.dtype)
    pending = np.ones(lanes.size, bool)
    for back in range(HISTORY):
      idx = np.flatnonzero(pending & (self.k[lanes] - back >= 1))
      if not idx.size:
        break
      state, cdf = self.history(lanes[idx], back)
      ok, point = window_arith.straddle(state["low"], state["r"], cdf)
      hit = idx[ok]
      code[hit] = (state["low"][ok] + point[ok]) >> window_arith.G
      chosen[hit] = self.k[lanes[hit]] - back
      pending[hit] = False
    literal = lanes[pending]
    if literal.size:
      first = self.symbols[literal, self.start[literal]]
      code[pending] = [window_arith.literal_code(self.bits, int(s)) for s in first]
      self.literals[literal] += 1
    self._store_codes(lanes, code)
    return chosen

  def _store_codes(self, lanes, code):
    """Appends one window code per lane to the [L, windows] code table."""
    need = int(self.codes[lanes].max()) + 1
    if need > self.window_codes.shape[1]:
      grown = np.zeros((self.window_codes.shape[0], 2 * need), self.dtype)
      grown[:, :self.window_codes.shape[1]] = self.window_codes
      self.window_codes = grown
    self.window_codes[lanes, self.codes[lanes]] = code

  def output(self, lane):
    return _to_bytes(self.window_codes[lane, :self.codes[lane]], self.bits)

  def finished(self, lanes):
    done = self.start[lanes] >= self.lengths[lanes]
    if self.spec.max_codes is not None:
      done |= self.codes[lanes] >= self.spec.max_codes
    return done


class _StreamBatch(_Batch):
  """One renormalising AC stream per example, ended at whole tokens."""

  STATE = ("low", "rng", "nbytes")

  def __init__(self, model, spec, examples):
    super().__init__(model, spec, examples)
    self.digits = np.zeros((len(examples), 64), np.int64)  # [L, capacity] shifted-out bytes
    self.out = [b""] * len(examples)

  def initial_state(self, n):
    return {"low": np.zeros(n, np.int64), "rng": np.full(n, arith.STREAM_RANGE, np.int64),
            "nbytes": np.zeros(n, np.int64)}

  def try_symbol(self, lo_cum, hi_cum, x):
    low, rng = arith.subdivide(self.state["low"], self.state["rng"], lo_cum, hi_cum, x)
    nbytes = self.state["nbytes"].copy()
    shifts = arith.renorm_steps(rng)
    digits = []
    for i in range(2):
      lanes = shifts > i
      digits.append((lanes, nbytes.copy(), low >> arith.RENORM_BITS))
      low = np.where(lanes, (low & arith.LOW_MASK) << 8, low)
      rng = np.where(lanes, rng << 8, rng)
      nbytes += lanes
    if self.spec.max_bits is None:
      fits = np.ones(low.shape, bool)
    else:
      fits = arith.cell_fits(low, rng, 8 * nbytes + arith.TOP_BITS - self.spec.max_bits)
    return fits, (low, rng, nbytes, digits)

  def commit(self, accept, new):
    low, rng, nbytes, digits = new
    need = int(nbytes[accept].max(initial=0))
    if need >= self.digits.shape[1]:
      grown = np.zeros((self.digits.shape[0], 2 * need), np.int64)
      grown[:, :self.digits.shape[1]] = self.digits
      self.digits = grown
    for lanes, at, d in digits:
      w = np.flatnonzero(lanes & accept)
      self.digits[w, at[w]] = d[w]
    for name, value in zip(self.STATE, (low, rng, nbytes)):
      self.state[name][accept] = value[accept]

  def end_codes(self, lanes):
    chosen = np.full(lanes.size, -1, np.int64)
    for back in range(HISTORY):
      idx = np.flatnonzero((chosen < 0) & (self.k[lanes] - back >= 0))
      if not idx.size:
        break
      state, cdf = self.history(lanes[idx], back)
      for i, n_bits, point, t in self._shortest_codes(state, cdf):
        lane = lanes[idx[i]]
        digits = self.digits[lane, :state["nbytes"][i]]
        self.out[lane] = arith.code_bytes(digits, state["low"][i] + point, t, n_bits // 8)
        chosen[idx[i]] = self.k[lane] - back
    if (chosen < 0).any():
      raise CodingError(f"AC could not end a stream within {HISTORY} symbols of its end; "
                         "this input hits a degenerate alignment: please report it")
    return chosen

  def _shortest_codes(self, state, cdf):
    """Yields (row, n_bits, point, t) of the shortest straddling code per row."""
    res = 8 * state["nbytes"] + arith.TOP_BITS
    step = self.spec.token_bits
    shortest = -(-(res - arith.TOP_BITS) // step) * step
    found = np.zeros(res.size, bool)
    for extra in range(0, arith.TOP_BITS + step, step):
      n_bits = shortest + extra
      if self.spec.max_bits is not None:
        n_bits = np.minimum(n_bits, self.spec.max_bits)
      ok, point = arith.straddle(state["low"], state["rng"], cdf, res - n_bits)
      for i in np.flatnonzero(ok & ~found):
        yield i, int(n_bits[i]), int(point[i]), int(res[i] - n_bits[i])
      found |= ok

  def finished(self, lanes):
    return np.ones(lanes.size, bool)  # one stream per example

  def output(self, lane):
    return self.out[lane]


def _to_bytes(codes: np.ndarray, bits: int) -> bytes:
  """[W] window codes -> their b-bit big-endian concatenation."""
  if codes.dtype == object:
    return b"".join(int(c).to_bytes(bits // 8, "big") for c in codes)
  wide = codes.astype(">u8").view(np.uint8).reshape(-1, 8)
  return wide[:, 8 - bits // 8:].tobytes()
