"""The window vocabulary of an M1: every b=16 Equal-Info window as a static table.

M1 and the coder restart at every window, so a window's text is a function of
its b-bit code alone (docs/DESIGN.md, "The window vocabulary (b=16)"). For b=16 the
whole code book is built once per M1 by walking the tree of *nodes*: prefixes
whose interval still holds a whole cell. The walk goes one depth at a time and
asks the model for the tables of all nodes of a depth in batches, so M1 runs
once per node. At every node it records what `lane_encoder` computes there:

- the node's children (the symbols whose sub-interval still holds a cell);
- whether a window may end there (`window_arith.straddle` finds a cell
  straddling the next symbol's subdivision) and, if so, that cell's code;
- which cells the node holds whole, so the deepest node holding a cell is
  what that code decodes to (`WindowDecoder`'s rule).

From the tree follow the encoder's choice at every node (`emit`): the deepest
endable node at most HISTORY - 1 symbols up, else a literal window of the
first symbol. A vocabulary holds those choices as *entries* (string, code) for
longest-match tokenization (`window_tokenizer`), the decode table of all
65,536 codes, and the rare *traps*: nodes where the encoder's choice is not
the longest entry on the way (a chain of over HISTORY symbols with no endable
node), so the tokenizer must walk those texts node by node.
"""
import dataclasses
import functools
import hashlib
import json
from typing import Callable

import numpy as np

from compressor import constants
from compressor import window_arith
from compressor import lane_encoder
from compressor.models.base import ProbabilityModel, cdf_from_freqs

VOCAB_FILE_FORMAT = "eqinfo-window-vocab-v1"
FILENAME = "window_vocab.json"
METHODS = "equal_info_ac[b=16,v=256|65k]"  # the methods a vocabulary codes (both token widths)
_BITS = 16
_NUM_CODES = 1 << _BITS
BATCH = 1024  # contexts per model call while walking the tree (tables do not depend on it)


@dataclasses.dataclass
class Tree:
  """The node tree of one model, parent pointers in breadth-first order (root = 0).

  Attributes:
    parent: [N] int32, -1 for the root.
    symbol: [N] int32 the symbol that leads from the parent (-1 for the root).
    depth: [N] int32 symbols from the root.
    endable: [N] bool: a window may end here.
    code: [N] int64 the window code the encoder writes here (where endable).
    decode: [2**16] int32 the node each code decodes to (-1: literal codes).
  """
  parent: np.ndarray
  symbol: np.ndarray
  depth: np.ndarray
  endable: np.ndarray
  code: np.ndarray
  decode: np.ndarray

  def string(self, node: int) -> tuple[int, ...]:
    """The symbols from the root to `node`."""
    out = []
    while node > 0:
      out.append(int(self.symbol[node]))
      node = int(self.parent[node])
    return tuple(reversed(out))


def _child_intervals(low: np.ndarray, r: np.ndarray, cdf: np.ndarray):
  """[N] intervals and [N, 258] tables -> [N, 257] children's (low, r, fits)."""
  bounds = window_arith.split(r[:, None], cdf.astype(np.int64))  # [N, 258]
  child_low = low[:, None] + bounds[:, :-1]
  child_r = np.diff(bounds, axis=1)
  fits = window_arith.cell_fits(child_low.ravel(), child_r.ravel()).reshape(child_r.shape)
  return child_low, child_r, fits


def _tables(model: ProbabilityModel, contexts: np.ndarray, batch: int,
            progress: Callable | None) -> np.ndarray:
  """[N, d] contexts -> [N, 258] int64 cdf rows, `batch` contexts per model call."""
  out = np.zeros((contexts.shape[0], constants.ALPHABET_SIZE + 1), np.int64)
  for start in range(0, contexts.shape[0], batch):
    chunk = contexts[start:start + batch]
    out[start:start + chunk.shape[0]] = cdf_from_freqs(model.freqs(list(chunk)))
    if progress is not None:
      progress(chunk.shape[0])
  return out


def build_tree(model: ProbabilityModel, batch: int = BATCH,
               progress: Callable | None = None) -> Tree:
  """Walks the node tree of `model` for b=16 windows, one depth at a time.

  Args:
    model: any `ProbabilityModel`; its tables for the empty context start
      every window.
    batch: contexts per model call (M1's lanes).
    progress: called with the number of nodes whose tables were computed.

  Returns:
    The `Tree`; its size is the number of model calls' contexts.
  """
  parents, symbols, depths, endables, codes = [], [], [], [], []
  decode = np.full(_NUM_CODES, -1, np.int64)
  low = np.zeros(1, np.int64)
  r = np.full(1, window_arith.start_range(_BITS), np.int64)
  contexts = np.zeros((1, 0), np.int32)  # [N, d] the strings of this depth's nodes
  parent = np.full(1, -1, np.int64)
  symbol = np.full(1, -1, np.int64)
  first_id, depth = 0, 0
  while low.size:
    n = low.size
    ids = first_id + np.arange(n)
    cdf = _tables(model, contexts, batch, progress)  # [n, 258]
    ok, point = window_arith.straddle(low, r, cdf)
    parents.append(parent)
    symbols.append(symbol)
    depths.append(np.full(n, depth, np.int64))
    endables.append(ok)
    codes.append(np.where(ok, (low + point) >> window_arith.G, -1))
    # Cells held whole: [ceil(low / CELL), floor((low + r) / CELL)); deeper nodes overwrite.
    first_cell = -(-low // window_arith.CELL)
    count = np.maximum((low + r) // window_arith.CELL - first_cell, 0)
    cells = np.repeat(first_cell - np.cumsum(count) + count, count) + np.arange(count.sum())
    decode[cells] = np.repeat(ids, count)
    child_low, child_r, fits = _child_intervals(low, r, cdf)
    node, sym = np.nonzero(fits)  # row-major: children in (parent, symbol) order
    contexts = np.concatenate([contexts[node], sym[:, None].astype(np.int32)], axis=1)
    low, r = child_low[node, sym], child_r[node, sym]
    parent, symbol = ids[node], sym.astype(np.int64)
    first_id += n
    depth += 1
  cat = np.concatenate
  return Tree(cat(parents).astype(np.int32), cat(symbols).astype(np.int32),
              cat(depths).astype(np.int32), cat(endables), cat(codes), decode.astype(np.int32))


def emit(tree: Tree) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The encoder's window at every node, were it the deepest node the text reaches.

  `lane_encoder` backs off from the deepest node K over at most HISTORY
  positions to the deepest endable node of depth >= 1; with none, the window
  is a literal of the first symbol.

  Returns:
    (chosen [N] int32: the node whose code is written, -1 for a literal;
     length [N] int32: the symbols the window holds, 1 for a literal;
     nearest [N] int32: the deepest endable ancestor-or-self of depth >= 1, -1 if none).
  """
  n = tree.parent.size
  nearest = np.full(n, -1, np.int64)
  ids = np.arange(n)
  bounds = np.searchsorted(tree.depth, np.arange(int(tree.depth.max(initial=0)) + 2))
  for start, stop in zip(bounds[1:-1], bounds[2:]):  # depth 1, 2, ...: parents come first
    level = slice(start, stop)
    nearest[level] = np.where(tree.endable[level], ids[level], nearest[tree.parent[level]])
  near_depth = np.where(nearest >= 0, tree.depth[np.maximum(nearest, 0)], -(1 << 30))
  ok = tree.depth - near_depth <= lane_encoder.HISTORY - 1
  chosen = np.where(ok, nearest, -1)
  length = np.where(ok, near_depth, 1)
  chosen[0], length[0] = -1, 0
  return chosen.astype(np.int32), length.astype(np.int32), nearest.astype(np.int32)


@dataclasses.dataclass
class WindowVocabulary:
  """The b=16 window vocabulary of one M1 (a file that loads without M1).

  Attributes:
    strings: [S] distinct window texts (tuples of symbols), the first 257
      being the single symbols 0..256 (literal windows).
    decode: [2**16] int32 index into `strings` of what each code decodes to.
    entries: [E, 2] int64 (string index, code) that the encoder writes for
      that string when it is the longest entry prefixing the text.
    traps: texts (tuples of symbols) at whose start the encoder's window is not
      the longest entry: a text holding one of them is walked node by node.
    trap_nodes: {string: (code, length)} of every node below a trap root,
      the walk's table (empty when there are no traps).
    meta: method, m1_fingerprint, window_bits, coder_version, wire format, tree size.
  """
  strings: list[tuple[int, ...]]
  decode: np.ndarray
  entries: np.ndarray
  traps: list[tuple[int, ...]]
  trap_nodes: dict
  meta: dict

  @functools.cached_property
  def digest(self) -> str:
    """sha256 of the file's content (its canonical JSON without the digest; fields are
    not changed after construction, so it is computed once)."""
    return hashlib.sha256(_canonical(self.to_json(with_digest=False))).hexdigest()[:16]

  @property
  def m1_fingerprint(self) -> str:
    return self.meta["m1_fingerprint"]

  @property
  def window_bits(self) -> int:
    return self.meta["window_bits"]

  def distinct_strings(self) -> int:
    """Distinct texts that the 2**16 codes decode to (literal singles included)."""
    return int(np.unique(self.decode).size)

  def to_json(self, with_digest: bool = True) -> dict:
    out = {"format": VOCAB_FILE_FORMAT, **self.meta,
           "strings": [list(s) for s in self.strings],
           "decode": self.decode.tolist(),
           "entries": self.entries.tolist(),
           "traps": [list(t) for t in self.traps],
           "trap_nodes": [[list(s), int(c), int(n)]
                          for s, (c, n) in sorted(self.trap_nodes.items())]}
    if with_digest:
      out["digest"] = self.digest
    return out

  def save(self, path) -> str:
    """Writes the vocabulary as JSON (same bytes for the same M1); returns its digest."""
    with open(path, "wb") as f:
      f.write(self.to_bytes())
    return self.digest

  def to_bytes(self) -> bytes:
    return _canonical(self.to_json())

  @classmethod
  def from_bytes(cls, data: bytes, where: str = "window vocabulary") -> "WindowVocabulary":
    """Parses a vocabulary file's bytes.

    Raises:
      ValueError: not a vocabulary, another format, or a digest that does not match.
    """
    try:
      obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ValueError(f"{where} is not a window vocabulary ({e}); rebuild it with "
                       f"eqinfo build-vocab") from None
    if not isinstance(obj, dict) or obj.get("format") != VOCAB_FILE_FORMAT:
      raise ValueError(f"{where} is not a {VOCAB_FILE_FORMAT} file; rebuild it with "
                       "eqinfo build-vocab")
    meta_keys = ("method", "m1_fingerprint", "window_bits", "coder_version", "wire_format",
                 "tree_nodes", "endable_nodes")
    try:
      vocab = cls(strings=[tuple(s) for s in obj["strings"]],
                  decode=np.asarray(obj["decode"], np.int32),
                  entries=np.asarray(obj["entries"], np.int64).reshape(-1, 2),
                  traps=[tuple(t) for t in obj["traps"]],
                  trap_nodes={tuple(s): (c, n) for s, c, n in obj["trap_nodes"]},
                  meta={k: obj[k] for k in meta_keys})
    except (KeyError, TypeError, ValueError) as e:  # a field missing or of the wrong kind
      raise ValueError(f"{where} is corrupt ({type(e).__name__}: {e}); rebuild it with "
                       "eqinfo build-vocab") from None
    if vocab.digest != obj.get("digest"):
      raise ValueError(f"{where} is corrupt: its digest {obj.get('digest')} does not match its "
                       f"content ({vocab.digest}); rebuild it with eqinfo build-vocab")
    return vocab

  @classmethod
  def load(cls, path) -> "WindowVocabulary":
    with open(path, "rb") as f:
      return cls.from_bytes(f.read(), str(path))


def _canonical(obj) -> bytes:
  return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def from_tree(tree: Tree, m1_fingerprint: str) -> WindowVocabulary:
  """The vocabulary of a walked tree (see the module docstring)."""
  chosen, length, nearest = emit(tree)
  strings = [(s,) for s in range(constants.ALPHABET_SIZE)]
  index = {s: i for i, s in enumerate(strings)}

  def string_index(node: int) -> int:
    s = tree.string(node)
    if s not in index:
      index[s] = len(strings)
      strings.append(s)
    return index[s]

  decode = np.zeros(_NUM_CODES, np.int32)
  base = window_arith.LITERAL_BASE
  decode[base:] = np.arange(constants.ALPHABET_SIZE)
  normal = tree.decode[:base]
  by_node = {int(node): string_index(int(node)) for node in np.unique(normal)}
  decode[:base] = [by_node[int(node)] for node in normal]
  entries = {}
  for node in np.flatnonzero(tree.endable & (tree.depth >= 1)):
    entries[string_index(int(node))] = int(tree.code[node])
  for s in range(constants.ALPHABET_SIZE):  # a first symbol that can't end a window alone
    if s not in entries:
      entries[s] = window_arith.literal_code(_BITS, s)
  traps, trap_nodes = _traps(tree, chosen, length, nearest)
  meta = {"method": METHODS, "m1_fingerprint": m1_fingerprint, "window_bits": _BITS,
          "coder_version": constants.CODER_VERSION, "wire_format": constants.wire_format(),
          "tree_nodes": int(tree.parent.size), "endable_nodes": int(tree.endable[1:].sum())}
  entries = np.array(sorted(entries.items()), np.int64).reshape(-1, 2)
  return WindowVocabulary(strings, decode, entries, traps, trap_nodes, meta)


def _traps(tree: Tree, chosen: np.ndarray, length: np.ndarray, nearest: np.ndarray):
  """Nodes where longest-match over the entries would not give the encoder's window.

  The longest entry on the way to node K is its deepest endable ancestor (or a
  literal of its first symbol where it has none); the encoder takes that
  ancestor only within HISTORY symbols of K and writes a literal otherwise.

  Returns:
    (trap roots: the shallowest such nodes' strings, {string: (code, length)}
     of every node under them, for the node-by-node walk).
  """
  bad = (chosen < 0) & (nearest >= 0)
  if not bad.any():
    return [], {}
  under = bad.copy()  # in the subtree of a trap root
  for node in range(1, tree.parent.size):  # parents come first
    under[node] |= under[tree.parent[node]]
  roots = np.flatnonzero(bad & ~under[np.maximum(tree.parent, 0)])
  nodes = {}
  for v in np.flatnonzero(under):
    string = tree.string(int(v))
    code = (int(tree.code[chosen[v]]) if chosen[v] >= 0
            else window_arith.literal_code(_BITS, string[0]))
    nodes[string] = (code, int(length[v]))
  return sorted(tree.string(int(v)) for v in roots), nodes


def build(model: ProbabilityModel, batch: int = BATCH,
          progress: Callable | None = None) -> WindowVocabulary:
  """The b=16 window vocabulary of `model` (see `build_tree`); the same file whatever `batch`."""
  return from_tree(build_tree(model, batch, progress),
                   str(getattr(model, "fingerprint", "") or ""))
