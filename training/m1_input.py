"""M1's input (paper §3.1): documents -> bytes + EOS -> groups of 128 documents (one per
process in turn) -> one stream per process -> sequences of T symbols, shuffled, in the
batch layout of `training/batch_layout.py` (`m1_epoch` cuts and shuffles one epoch).
"""
import dataclasses
import logging
import queue
import threading
from typing import Iterator, NoReturn

import jax
import numpy as np

from compressor import constants
from training import batch_layout
from training import m1_epoch

M1_TOKEN_VOCAB = constants.ALPHABET_SIZE  # 257 output symbols
M1_BOS = M1_TOKEN_VOCAB                   # 257, input only


@dataclasses.dataclass(frozen=True)
class M1DataConfig:
  """What M1 reads and how it is cut into sequences."""
  spec: str                      # corpus spec (compressor.corpus), e.g. a jsonl.gz glob
  seq_len: int = 1024            # T: symbols per sequence (paper §3.2: 1024)
  batch_size: int = 128          # global batch size B (paper: 128)
  seed: int = 0                  # shuffle seed; the order is a function of it alone
  shuffle: bool = True           # shuffle sequences (buffered); False for evaluation
  shuffle_buffer: int = 8192     # sequences held by the shuffle buffer
  docs_per_group: int = constants.DOCS_PER_GROUP  # documents per group (paper §3.1): the
                                                  # unit that processes share out
  repeat: bool = True            # loop over the corpus forever (training)
  tfds_data_dir: str | None = None  # TFDS data_dir for `tfds:` specs

  def __post_init__(self):
    for name in ("seq_len", "batch_size", "shuffle_buffer", "docs_per_group"):
      if getattr(self, name) < 1:
        raise ValueError(f"M1DataConfig.{name} must be >= 1, got {getattr(self, name)}")


def m1_sequences(config: M1DataConfig, shard: tuple[int, int] = (0, 1)
                 ) -> Iterator[tuple[int, np.ndarray]]:
  """Yields (sequence id, [<=T] symbols) for one pass over the corpus, unshuffled.

  Group g of 128 documents goes to process g % P. A process concatenates its
  groups' symbols (bytes + EOS per document) into one stream and cuts it into
  sequences of T symbols, so only its last sequence of the pass is short (no
  padding at group ends). Process p's k-th sequence has id k * P + p: unique
  across processes, and simply k on one. See `training.m1_epoch`.
  """
  index, count = shard
  for item in m1_epoch.sequences(config, shard):
    yield item.k * count + index, item.symbols


class M1Batches:
  """Seeded, resumable batches of M1 sequences for this process.

  Epoch e is the corpus's sequences shuffled with (seed, e). In training
  (`repeat`) batches are cut from epoch 0, 1, ... back to back, so the last
  batch of an epoch is completed by the first sequences of the next and no
  sequence is dropped. A single pass (evaluation) fills its last batch with
  empty rows (`stack_full`), so every sequence is scored.

  The state is (epoch, sequences of the epoch taken, the epoch's position),
  this process's own (a checkpoint keeps every process's). `set_state`
  restores the position by reading the corpus from the group of the oldest
  sequence in the shuffle buffer (`training.m1_epoch`), so a resumed run
  continues at once with exactly the batches an uninterrupted run would see.
  A state without the position (older checkpoints) is reached by replaying the
  epoch from its start.
  """

  def __init__(self, config: M1DataConfig, shard: tuple[int, int] | None = None):
    """Batches of `config` for process `shard` = (index, count), default this JAX process."""
    index, count = shard or (jax.process_index(), jax.process_count())
    if config.batch_size % count:
      raise ValueError(f"batch_size={config.batch_size} must divide by the "
                       f"{count} processes")
    if not 0 <= index < count:
      raise ValueError(f"shard index {index} is not in [0, {count})")
    self.config = config
    self.local_batch = config.batch_size // count
    self.shard = (index, count)
    self._start(0)

  def __repr__(self):
    return (f"M1Batches(spec={self.config.spec!r}, seq_len={self.config.seq_len}, "
            f"local_batch={self.local_batch}, seed={self.config.seed}, epoch={self._epoch}, "
            f"sequences={self._taken})")

  def _start(self, epoch: int, taken: int = 0, position: dict | None = None) -> None:
    """Moves to sequence `taken` of epoch `epoch`: restored at `position`, else replayed."""
    self._epoch, self._taken = epoch, taken
    if position is not None:
      self._order = m1_epoch.Epoch.restore(self.config, self.shard, epoch, position)
      return
    self._order = m1_epoch.Epoch(self.config, self.shard, epoch)
    for _ in range(taken):
      self._order.next()

  def _next_sequence(self) -> m1_epoch.Sequence | None:
    """The next sequence, moving on to the next epoch in training; None at the end of a pass."""
    for _ in range(2):
      item = self._order.next()
      if item is not None:
        self._taken += 1
        return item
      if not self.config.repeat:
        return None
      if self._taken == 0:
        break
      self._start(self._epoch + 1)
    self._no_documents()

  def _no_documents(self) -> NoReturn:
    """Raises the one-line error of a process whose pass holds no sequence."""
    index, count = self.shard
    if count == 1:
      raise ValueError(f"corpus {self.config.spec!r} holds no documents; check the path")
    raise ValueError(f"corpus {self.config.spec!r} holds no group of {self.config.docs_per_group} "
                     f"documents for process {index} of {count}; check the path or lower "
                     "--docs_per_group")

  def _example(self, item: m1_epoch.Sequence) -> dict[str, np.ndarray]:
    index, count = self.shard
    example = batch_layout.pack_sequence(item.symbols, self.config.seq_len, M1_BOS)
    example["num_bytes"] = np.int64(len(item.symbols))
    example["ids"] = np.int64(item.k * count + index)
    return example

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = []
    while len(batch) < self.local_batch:
      item = self._next_sequence()
      if item is None:
        break
      batch.append(self._example(item))
    if not batch:
      raise StopIteration
    if len(batch) == self.local_batch:
      return batch_layout.stack(batch)
    return batch_layout.stack_full(batch, self.local_batch)

  def get_state(self) -> dict:
    """Returns the JSON-able position of the iterator."""
    return {"epoch": self._epoch, "sequences": self._taken, "position": self._order.get_state()}

  def set_state(self, state: dict) -> None:
    """Moves the iterator to a position returned by `get_state`."""
    if set(state) - {"position"} != {"epoch", "sequences"}:
      raise ValueError(f"M1 data position {state} is not one this eqinfo writes "
                       "({'epoch': E, 'sequences': N, 'position': ...}); resume with the eqinfo "
                       "that wrote it, or train into a new --out")
    if "position" not in state:
      logging.info("M1 data: replaying epoch %d to sequence %d to resume", state["epoch"],
                   state["sequences"])
    self._start(int(state["epoch"]), int(state["sequences"]), state.get("position"))


class Prefetch:
  """Builds batches of a resumable iterator in a background thread.

  `get_state` is the inner state after the last batch *handed out*, so
  batches waiting in the queue are not counted as seen.

  Args:
    inner: an iterator with get_state/set_state (e.g. M1Batches).
    depth: batches built ahead.
  """

  def __init__(self, inner, depth: int = 4):
    if depth < 1:
      raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    self.inner, self.depth = inner, depth
    self._state = inner.get_state()
    self._start()

  def __repr__(self):
    return f"Prefetch({self.inner!r}, depth={self.depth})"

  def _start(self) -> None:
    self._queue = queue.Queue(self.depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(self._queue, self._stop),
                                    daemon=True)
    self._thread.start()

  def _fill(self, out: queue.Queue, stop: threading.Event) -> None:
    try:
      for batch in self.inner:
        item = (batch, self.inner.get_state())
        while not stop.is_set():
          try:
            out.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      out.put(StopIteration())
    except Exception as e:  # handed to the consumer  # pylint: disable=broad-except
      out.put(e)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    item = self._queue.get()
    if isinstance(item, BaseException):
      self._queue.put(item)  # every later call raises it too
      raise item
    batch, self._state = item
    return batch

  def get_state(self) -> dict:
    return self._state

  def set_state(self, state: dict) -> None:
    self._stop.set()
    self._thread.join()
    self.inner.set_state(state)
    self._state = self.inner.get_state()
    self._start()
