"""One epoch of one process's M1 sequences, shuffled, with a position that resumes at once.

The stream (paper §3.1): the corpus's documents (bytes + EOS each) form groups
of `docs_per_group` in corpus order; group g goes to process g % P, which
concatenates its groups' symbols into one stream and cuts it into sequences of
T symbols, so only the last sequence of a pass is short. Process p's k-th
sequence has local index k.

An epoch is that stream through a seeded shuffle buffer (`Epoch`). Its
position (`Epoch.get_state`, JSON) names the buffered sequences by local index,
holds the RNG state, and a restart point: the start of the group from which the
oldest buffered sequence was cut (its first document's corpus position, the
symbols carried over from the process's earlier groups, the index of the first
sequence cut after it). `Epoch.restore` reads the corpus from that point on,
typically some buffer x ln(buffer) sequences back, instead of replaying the
epoch from its start.
"""
import dataclasses
import logging
import zlib
from typing import Iterator, NamedTuple

import numpy as np

from compressor import symbols as symbols_lib
from compressor import corpus


def text_crc(data: bytes) -> int:
  """crc32 of a document's bytes."""
  return zlib.crc32(data)


def corpus_changed(config) -> ValueError:
  """The one-line error of a restart point that the corpus no longer matches."""
  return ValueError(f"the M1 corpus {config.spec!r} no longer holds the documents this data "
                    "position was saved at; resume with the corpus the run started on, or train "
                    "into a new --out")


@dataclasses.dataclass(frozen=True)
class RestartPoint:
  """Where a process's stream can start again: the start of one of its groups."""
  doc: int                 # corpus index of the group's first document
  at: corpus.Position      # that document's corpus position
  crc: int | None          # text_crc of that document (None: the start of the corpus)
  k: int                   # local index of the first sequence cut from here on
  carry: np.ndarray        # [< T] symbols carried over from the process's earlier groups

  def to_json(self) -> dict:
    return {"doc": self.doc, "at": list(self.at), "crc": self.crc, "k": self.k,
            "carry": self.carry.tolist()}

  @classmethod
  def from_json(cls, value: dict) -> "RestartPoint":
    return cls(int(value["doc"]), tuple(value["at"]), value["crc"], int(value["k"]),
               np.asarray(value["carry"], symbols_lib.SYMBOL_DTYPE))


EPOCH_START = RestartPoint(0, corpus.START, None, 0, np.zeros(0, symbols_lib.SYMBOL_DTYPE))


class Sequence(NamedTuple):
  """One sequence of a process's stream."""
  k: int                   # local index
  symbols: np.ndarray      # [<= T] symbols
  point: RestartPoint      # where the stream restarts to cut it again


def groups(config, start: RestartPoint = EPOCH_START
           ) -> Iterator[tuple[int, corpus.Position, list[bytes]]]:
  """(group index, its first document's position, its documents) from group start.doc on.

  `config` is a `training.m1_input.M1DataConfig`; the last group may be short.
  """
  g, first, group = start.doc // config.docs_per_group, None, []
  for doc in corpus.read_documents(config.spec, config.tfds_data_dir, start=start.at):
    if not group:
      first = (doc.file_index, doc.doc_index)
    group.append(doc.data)
    if len(group) == config.docs_per_group:
      yield g, first, group
      g, group = g + 1, []
  if group:
    yield g, first, group


def sequences(config, shard: tuple[int, int] = (0, 1),
              start: RestartPoint = EPOCH_START) -> Iterator[Sequence]:
  """This process's stream of one pass, unshuffled, from `start` on (see module doc).

  Args:
    config: a `training.m1_input.M1DataConfig`.
    shard: (process index p, process count P).
    start: a restart point of this process (`EPOCH_START`: the whole pass).

  Raises:
    ValueError: if the corpus no longer holds `start`'s group.
  """
  index, count = shard
  carry, k, point = start.carry, start.k, None
  for g, at, group in groups(config, start):
    if g % count != index:
      continue
    crc = text_crc(group[0])
    if point is None and start.crc is not None and (g * config.docs_per_group != start.doc
                                                    or crc != start.crc):
      raise corpus_changed(config)
    point = RestartPoint(g * config.docs_per_group, at, crc, k, carry)
    stream = symbols_lib.concat([carry, *(symbols_lib.symbols_from_text(t) for t in group)])
    whole = len(stream) - len(stream) % config.seq_len
    # Copies: a view would keep the group's whole stream alive while any one of
    # its sequences waits in the shuffle buffer (6x the buffer's own memory).
    for begin in range(0, whole, config.seq_len):
      yield Sequence(k, stream[begin:begin + config.seq_len].copy(), point)
      k += 1
    carry = stream[whole:].copy()
  if point is None and start.crc is not None:
    raise corpus_changed(config)
  if len(carry):
    yield Sequence(k, carry, point)


class Epoch:
  """This process's sequences of one epoch, through a seeded shuffle buffer.

  The order is that of a buffer of `config.shuffle_buffer` sequences: once
  full, each new sequence takes the place of one drawn with the epoch's RNG
  (seeded with (seed, epoch)), which comes out; at the end of the pass the
  buffer comes out in an RNG permutation. Without `config.shuffle` the
  stream's own order.
  """

  def __init__(self, config, shard: tuple[int, int], epoch: int):
    """Epoch `epoch` of `config` (a `training.m1_input.M1DataConfig`) for process `shard`."""
    self.config, self.shard, self.epoch = config, shard, epoch
    self.size = config.shuffle_buffer if config.shuffle else 0
    self._rng = np.random.default_rng([config.seed, epoch]) if config.shuffle else None
    self._stream = sequences(config, shard)
    self._slots: list[Sequence] = []       # the buffer; in the drain, in reverse output order
    self._ks = np.zeros(self.size, np.int64)  # [size] local index of each slot's sequence
    self._draining = False
    self._next_k = 0                       # local index of the stream's next sequence
    self._last_point = EPOCH_START         # restart point of the last sequence read

  def __repr__(self):
    return (f"Epoch({self.epoch}, shard={self.shard}, buffered={len(self._slots)}, "
            f"next={self._next_k}, draining={self._draining})")

  def _drain(self) -> None:
    """The pass ended: the buffer comes out in an RNG permutation (popped from the end)."""
    self._draining = True
    if self._slots:
      order = self._rng.permutation(len(self._slots))[::-1]
      self._slots = [self._slots[j] for j in order]
      self._ks = np.asarray([s.k for s in self._slots], np.int64)

  def next(self) -> Sequence | None:
    """The epoch's next sequence; None once it is over."""
    while not self._draining:
      item = next(self._stream, None)
      if item is None:
        self._drain()
        break
      self._next_k, self._last_point = item.k + 1, item.point
      if not self.size:
        return item
      if len(self._slots) < self.size:
        self._ks[len(self._slots)] = item.k
        self._slots.append(item)
        continue
      j = int(self._rng.integers(self.size))
      out, self._slots[j], self._ks[j] = self._slots[j], item, item.k
      return out
    return self._slots.pop() if self._slots else None

  def get_state(self) -> dict:
    """The JSON-able position of the epoch (see module doc)."""
    ks = self._ks[:len(self._slots)]
    point = self._slots[int(np.argmin(ks))].point if len(ks) else self._last_point
    return {"next": self._next_k, "buffer": ks.tolist(), "draining": self._draining,
            "shuffle_buffer": self.size,
            "rng": self._rng.bit_generator.state if self._rng is not None else None,
            "restart": point.to_json()}

  @classmethod
  def restore(cls, config, shard: tuple[int, int], epoch: int, state: dict) -> "Epoch":
    """Epoch `epoch` at the position `state` (from `get_state`), reading from its restart point.

    Raises:
      ValueError: if the state was written with another shuffle buffer, or the
        corpus no longer holds the sequences it names.
    """
    self = cls(config, shard, epoch)
    if state["shuffle_buffer"] != self.size:
      raise ValueError(f"the M1 data position was saved with --shuffle_buffer "
                       f"{state['shuffle_buffer']} (0: no shuffle), not {self.size}; resume "
                       "with the flags the run started with")
    point = RestartPoint.from_json(state["restart"])
    logging.info("M1 data: resuming epoch %d with %d sequences buffered; reading the corpus "
                 "again from document %d (sequences %d to %d)", epoch, len(state["buffer"]),
                 point.doc, point.k, state["next"])
    self._stream, self._last_point = sequences(config, shard, point), point
    wanted = {k: slot for slot, k in enumerate(state["buffer"])}
    slots = [None] * len(wanted)
    for _ in range(state["next"] - point.k):
      item = next(self._stream, None)
      if item is None:
        raise corpus_changed(config)
      if item.k in wanted:
        slots[wanted[item.k]] = item
      self._last_point = item.point
    if any(s is None for s in slots):
      raise corpus_changed(config)
    self._slots, self._next_k, self._draining = slots, state["next"], state["draining"]
    self._ks[:len(slots)] = state["buffer"]  # in the drain, len(slots) <= size as well
    if self._rng is not None:
      self._rng.bit_generator.state = state["rng"]
    return self
