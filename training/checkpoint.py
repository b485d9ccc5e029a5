"""Checkpoints of M1 and M2 training: params, optimiser state, step and data position.

Layout of a run directory:

  DIR/config.json             resolved run config (model, training, data), written first
  DIR/checkpoints/<step>/     orbax: "state" (params, opt_state, step) and
                              "data" (the input iterator's get_state(), JSON; with
                              several processes {"process_states": [one per process]})
"""
import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

CONFIG_FILE = "config.json"
CHECKPOINT_SUBDIR = "checkpoints"
TMP_MARKER = ".orbax-checkpoint-tmp"  # in the names of checkpoints still being written


def as_path(directory: str) -> epath.Path:
  """A local (made absolute) or remote (gs://) path."""
  return epath.Path(directory if "://" in directory else os.path.abspath(directory))


def save_config(directory: str, config: dict) -> str:
  """Writes the resolved config as DIR/config.json and returns its path."""
  path = as_path(directory)
  path.mkdir(parents=True, exist_ok=True)
  (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
  return str(path / CONFIG_FILE)


def load_config(directory: str) -> dict:
  """Reads DIR/config.json.

  Raises:
    FileNotFoundError: if it is missing (not a run directory).
    ValueError: if it is not valid JSON.
  """
  path = as_path(directory) / CONFIG_FILE
  if not path.exists():
    raise FileNotFoundError(
        f"no {CONFIG_FILE} in {directory!r}: not a training run directory; pass the --out "
        "directory of `eqinfo train-m1` or `eqinfo train-m2`")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is corrupt ({e}); restore it or retrain into a new --out") from None


def remove_unfinished(directory: epath.Path) -> list[str]:
  """Deletes checkpoint directories a killed run left unfinalised; returns their names.

  Done here, before the manager starts, because orbax's own clean-up runs in a
  background thread that races with its listing of steps.
  """
  removed = []
  if jax.process_index() == 0 and directory.exists():
    for child in directory.iterdir():
      if TMP_MARKER in child.name:
        child.rmtree()
        removed.append(child.name)
        logging.warning("removed unfinished checkpoint %s", child)
  return removed


PROCESS_STATES = "process_states"


def gather_json(value: Any) -> list[Any]:
  """Every process's JSON-able `value`, in process order (a collective of all processes)."""
  if jax.process_count() == 1:
    return [value]
  raw = np.frombuffer(json.dumps(value).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.int32(raw.size))).ravel()
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:raw.size] = raw
  rows = np.asarray(multihost_utils.process_allgather(padded))  # [P, max size]
  return [json.loads(row[:n].tobytes()) for row, n in zip(rows, sizes)]


def data_state_of_this_process(saved: Any) -> Any:
  """This process's data state out of what `Checkpointer.save` wrote.

  Raises:
    ValueError: if the checkpoint was written by another number of processes.
  """
  if not (isinstance(saved, dict) and set(saved) == {PROCESS_STATES}):
    if jax.process_count() > 1:
      raise ValueError("this checkpoint holds the data position of one process; resume it "
                       "with one process")
    return saved
  states = saved[PROCESS_STATES]
  if len(states) != jax.process_count():
    raise ValueError(f"this checkpoint was written by {len(states)} processes; resume it with "
                     f"{len(states)}, not {jax.process_count()}")
  return states[jax.process_index()]


class _DropReadOnlyNotice(logging.Filter):
  """Drops orbax's warning that a read-only manager's directory is read only (expected)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Given directory is read only")


logging.getLogger("absl").addFilter(_DropReadOnlyNotice())  # orbax logs through absl


def _abstract(x):
  return x if isinstance(x, jax.ShapeDtypeStruct) else ocp.utils.to_shape_dtype_struct(x)


class Checkpointer:
  """Saves and restores (train state, data iterator state) under DIR/checkpoints.

  The training loop decides when to save (`--checkpoint_every`, the last step, the clock,
  a SIGTERM).

  Args:
    directory: the run directory.
    keep: number of checkpoints kept (None keeps all).
    async_save: write in a background thread (orbax async checkpointing).
    read_only: only restore (evaluation): creates and deletes nothing, so it
      can read a run that is still training.
  """

  def __init__(self, directory: str, keep: int | None = 3, async_save: bool = True,
               read_only: bool = False):
    self.directory = as_path(directory)
    if not read_only:
      remove_unfinished(self.directory / CHECKPOINT_SUBDIR)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep, save_interval_steps=0 if read_only else 1,
        create=not read_only, enable_async_checkpointing=async_save, read_only=read_only)
    self.manager = ocp.CheckpointManager(self.directory / CHECKPOINT_SUBDIR, options=options)

  def __repr__(self):
    return f"Checkpointer('{self.directory}', latest={self.latest_step()})"

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict) -> bool:
    """Saves (state, data iterator state) at `step`; returns whether orbax saved."""
    if jax.process_count() > 1:  # orbax writes JSON from process 0 alone: it keeps them all
      data_state = {PROCESS_STATES: gather_json(data_state)}
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state))
    return self.manager.save(step, args=args, force=True)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[int, Any, dict]:
    """Restores (step, state, data_state) of `step` (default: the latest).

    data_state is what `save` wrote: `data_state_of_this_process` picks this
    process's out of it.

    Args:
      abstract_state: a pytree like the train state (arrays or ShapeDtypeStructs
        with shardings), giving structure, dtypes and placement.
      step: the step to restore; None for the latest.

    Raises:
      FileNotFoundError: if there is no checkpoint.
      ValueError: if the checkpoint cannot be read.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(
          f"no checkpoint in {self.manager.directory}; train one first "
          "(`eqinfo train-m1/train-m2 --out DIR`) or check the path")
    target = jax.tree.map(_abstract, abstract_state)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target),
                              data=ocp.args.JsonRestore())
    try:
      restored = self.manager.restore(step, args=args)
    except Exception as e:  # orbax raises many kinds; report one line
      first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise ValueError(
          f"checkpoint step {step} in {self.manager.directory} is unreadable ({first}); "
          "delete that step's directory to fall back to an earlier one, or retrain") from None
    logging.info("restored checkpoint step %d from %s", step, self.manager.directory)
    return step, restored.state, restored.data

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
