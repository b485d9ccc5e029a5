"""SIGTERM during training: a spot VM's preemption, a TPU maintenance event, a GKE eviction.

The loop notes the signal, saves a checkpoint at the step it is on (with every
process's data position), waits until it is on disk, and the command exits with
`EXIT_CODE`, which the job specs in deploy/ treat as "run again" rather than as
a failure. The rerun resumes bit-identically, as after any kill.
"""
import logging
import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

EXIT_CODE = 143  # 128 + SIGTERM: what a shell reports for a process that SIGTERM ended


class Preempted(Exception):
  """Raised once a preempted run's checkpoint is on disk."""

  def __init__(self, step: int):
    super().__init__(f"preempted (SIGTERM) at step {step}: checkpoint saved; run the same "
                     "command again to resume")
    self.step = step


class SigtermWatch:
  """Notes SIGTERM while training runs (a context manager; the handler is this process's).

  With several processes, they agree at log steps (a collective) so that all of them save
  the same step; one process checks after every step.
  """

  def __init__(self, log_every: int):
    self.log_every = log_every
    self.received = False
    self._previous = None

  def __enter__(self) -> "SigtermWatch":
    if threading.current_thread() is threading.main_thread():  # only it may set handlers
      self._previous = signal.signal(signal.SIGTERM, self._note)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def _note(self, signum, frame) -> None:  # pylint: disable=unused-argument
    if not self.received:
      logging.warning("SIGTERM: saving a checkpoint at the current step, then exiting")
    self.received = True

  def requested(self, step: int) -> bool:
    """Whether to save and stop after `step`."""
    if jax.process_count() == 1:
      return self.received
    if step % self.log_every:
      return False
    flags = multihost_utils.process_allgather(np.bool_(self.received))
    return bool(np.any(flags))
