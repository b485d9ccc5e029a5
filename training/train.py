"""The training loop shared by M1 and M2: train state, jitted data-parallel step, metrics.

Data parallelism: one mesh axis "data" over every device of every process;
each batch array is sharded along its first axis, parameters and optimiser
state are replicated. On a CPU host, `XLA_FLAGS=--xla_force_host_platform_device_count=N`
gives N devices. Multi-host runs call `jax.distributed.initialize()` first
(`--multihost`); every process then reads its own slice of the data
(`training.m1_input`, `training.m2_records`).
"""
import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import time
from typing import Any, Callable, Iterator, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.contrib import logging as tqdm_logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from training import checkpoint as checkpoint_lib
from training import chunked_loss
from training import configs
from training import accelerator
from training import batch_layout
from training import log_setup
from training import loss as loss_lib
from training import metrics as metrics_lib
from training import model as model_lib
from training import optim
from training import preemption
from training import window_accuracy

State = dict[str, Any]  # {"params", "opt_state", "step"}
DEVICE_KEYS = ("inputs", "targets", "weights", "num_bytes")  # batch arrays sent to devices
PACKED_KEYS = ("segments",)  # also sent, where rows hold several records (train-m2 --pack_records)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How long and how M1 or M2 trains, and what it records."""
  out: str                        # run directory: config.json, checkpoints/, metrics, TensorBoard
  steps: int                      # total optimiser steps (paper: M2 200,000)
  warmup: int = optim.WARMUP_STEPS  # rsqrt schedule: lr = 1/sqrt(max(step, warmup))
  z_loss: float = loss_lib.Z_LOSS    # weight of logsumexp**2
  seed: int = 0                   # parameter initialisation seed
  log_every: int = 100            # steps between metric records
  checkpoint_every: int = 1000    # steps between checkpoints (the last step is always saved)
  checkpoint_minutes: float = 10.0  # also save when this long has passed since the last; 0: off
  keep_checkpoints: int = 3       # checkpoints kept on disk
  async_checkpoint: bool = True   # write checkpoints in the background
  eval_every: int = 0             # steps between validation passes; 0: only at the end
  eval_batches: int = 8           # validation batches per pass (a fixed sample)
  peak_flops: float = 0.0         # peak FLOP/s of all devices for MFU; 0 measures a matmul
  stop_after: int = 0             # testing: exit hard (os._exit) after this step; 0: never
  sigterm_after: int = 0          # testing: send this process SIGTERM after this step
  log_example_ids: bool = False   # write the ids of every batch to example_ids.jsonl
  progress: bool = True           # tqdm progress bar
  profile_first: int = 0          # JAX profiler trace of steps first..last into
  profile_last: int = 0           # OUT/tensorboard (TensorBoard's Profile tab); 0: none

  def __post_init__(self):
    for name in ("steps", "warmup", "log_every", "checkpoint_every", "keep_checkpoints",
                 "eval_batches"):
      if getattr(self, name) < 1:
        raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
    for name in ("eval_every", "stop_after", "sigterm_after", "checkpoint_minutes"):
      if getattr(self, name) < 0:
        raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
    if (self.profile_first, self.profile_last) != (0, 0) and not (
        1 <= self.profile_first <= self.profile_last):
      raise ValueError(f"--profile {self.profile_first}:{self.profile_last}: expected FIRST:LAST "
                       "steps with 1 <= FIRST <= LAST, e.g. --profile 100:110")


def override(config, **changes):
  """dataclasses.replace that rejects unknown keys and values of the wrong type."""
  fields = {f.name: f for f in dataclasses.fields(config)}
  for key, value in changes.items():
    if key not in fields:
      raise ValueError(f"unknown {type(config).__name__} key {key!r}; valid: {', '.join(fields)}")
    current = getattr(config, key)
    if current is not None and value is not None and not isinstance(value, type(current)):
      if not (isinstance(current, float) and isinstance(value, int)):
        raise ValueError(f"{type(config).__name__}.{key} must be {type(current).__name__}, "
                         f"got {type(value).__name__} {value!r}")
  return dataclasses.replace(config, **changes)


class BatchIterator(Protocol):
  """What the loop needs from an input pipeline (M1Batches, grain iterators).

  A checkpoint keeps every process's `get_state()` (JSON; see
  checkpoint.Checkpointer.save), and a run resumes with as many processes.
  """

  def __next__(self) -> dict[str, np.ndarray]: ...
  def get_state(self) -> Any: ...
  def set_state(self, state: Any) -> None: ...


@dataclasses.dataclass
class Task:
  """What differs between M1 and M2 training."""
  kind: str                          # "m1" or "m2"
  model_config: configs.ModelConfig  # the transformer
  train_batches: BatchIterator       # seeded, resumable training batches
  validation: Callable[[], Iterator[dict]] | None  # fresh pass over a fixed validation sample
  extra_flops_per_byte: float = 0.0  # M1's FLOPs/byte for M1-based M2 methods (paper §3.8)
  tokens_per_window: int = 0         # > 1: validation counts accuracy by window position
  run_config: dict = dataclasses.field(default_factory=dict)  # saved as config.json


def check_batch_size(batch_size: int) -> None:
  """Raises ValueError unless the global batch splits evenly over all devices."""
  if batch_size < 1 or batch_size % jax.device_count():
    raise ValueError(f"--batch_size {batch_size} must be a positive multiple of the "
                     f"{jax.device_count()} devices")


def maybe_initialize_distributed(multihost: bool) -> None:
  """Calls jax.distributed.initialize() for multi-host launches (cluster env detected)."""
  if multihost:
    jax.distributed.initialize()
    logging.info("process %d of %d, %d local devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count())


def make_mesh() -> Mesh:
  """A one-axis ("data") mesh over all devices."""
  return Mesh(np.asarray(jax.devices()), ("data",))


def init_state(model_config: configs.ModelConfig, optimizer: optax.GradientTransformation,
               seed: int, mesh: Mesh) -> State:
  """Initialises params and optimiser state, replicated over the mesh."""
  init = _state_initializer(model_config, optimizer, seed)
  return jax.jit(init, out_shardings=NamedSharding(mesh, P()))()


def _state_initializer(model_config: configs.ModelConfig,
                       optimizer: optax.GradientTransformation, seed: int) -> Callable[[], State]:
  def init():
    tokens = jnp.zeros((1, 1), jnp.int32)
    params = model_lib.Transformer(model_config).init(jax.random.PRNGKey(seed), tokens)["params"]
    return {"params": params, "opt_state": optimizer.init(params), "step": jnp.int32(0)}

  return init


def abstract_state(model_config: configs.ModelConfig, optimizer: optax.GradientTransformation,
                   mesh: Mesh) -> State:
  """Shapes, dtypes and (replicated) shardings of the train state, allocating nothing."""
  replicated = NamedSharding(mesh, P())
  shapes = jax.eval_shape(_state_initializer(model_config, optimizer, 0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                      shapes)


def batch_loss(model_config: configs.ModelConfig, devices: int = 1,
               whole_bytes: int = chunked_loss.WHOLE_LOGITS_BYTES,
               chunk_bytes: int = chunked_loss.CHUNK_LOGITS_BYTES) -> Callable:
  """Returns loss(params, batch, z_loss) -> (loss, sums) of `loss.masked_loss`.

  Where one device's share of the batch (B / `devices` rows) would hold more
  than `whole_bytes` of float32 logits, they are computed a chunk of positions
  at a time (`training.chunked_loss`).
  """
  model = model_lib.Transformer(model_config)

  def loss(params, batch, z_loss):
    variables = {"params": params}
    hidden = model.apply(variables, batch["inputs"], batch.get("segments"),
                         method=model_lib.Transformer.hidden)  # [B, T, d]
    project = lambda h: model.apply(variables, h, method=model_lib.Transformer.project)
    rows, seq_len = -(-hidden.shape[0] // devices), hidden.shape[1]
    chunk = chunked_loss.chunk_positions(rows, seq_len, model_config.vocab_size, whole_bytes,
                                         chunk_bytes)
    return chunked_loss.masked_loss(project, hidden, batch["targets"], batch["weights"],
                                    z_loss, chunk)

  return loss


def make_train_step(model_config: configs.ModelConfig, optimizer: optax.GradientTransformation,
                    z_loss: float, mesh: Mesh, **logits_bytes: int) -> Callable:
  """Returns step(state, batch) -> (state, sums), jitted with replicated outputs.

  `batch` holds inputs/targets/weights [B, T] sharded over "data"; `sums` are
  the batch's summed xent (nats), z-loss, weighted tokens and bytes.
  `logits_bytes` (whole_bytes, chunk_bytes) go to `batch_loss`.
  """
  loss_of = batch_loss(model_config, mesh.size, **logits_bytes)

  def loss_fn(params, batch):
    loss, sums = loss_of(params, batch, z_loss)
    return loss, {**sums, "bytes": jnp.sum(batch["num_bytes"].astype(jnp.float32))}

  def step(state, batch):
    grads, sums = jax.grad(loss_fn, has_aux=True)(state["params"], batch)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, sums

  replicated = NamedSharding(mesh, P())
  return jax.jit(step, out_shardings=(replicated, replicated), donate_argnums=0)


def make_eval_step(model_config: configs.ModelConfig, mesh: Mesh,
                   tokens_per_window: int = 0) -> Callable:
  """Returns eval(params, batch) -> {"xent", "z_loss", "tokens", "bytes"} sums (z-loss 0),
  and with `tokens_per_window` k > 1 the [k] sums of `window_accuracy`."""
  loss_of = batch_loss(model_config, mesh.size)
  accuracy_of = (window_accuracy.make_window_accuracy(model_config, tokens_per_window)
                 if tokens_per_window > 1 else None)

  def step(params, batch):
    sums = loss_of(params, batch, 0.0)[1]
    if accuracy_of is not None:
      sums = {**sums, **accuracy_of(params, batch)}
    return {**sums, "bytes": jnp.sum(batch["num_bytes"].astype(jnp.float32))}

  return jax.jit(step, out_shardings=NamedSharding(mesh, P()))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Places this process's slice of a batch on the mesh, sharded over "data"."""
  sharding = NamedSharding(mesh, P("data"))
  return {k: jax.make_array_from_process_local_data(sharding, _to_32(batch[k]))
          for k in DEVICE_KEYS + PACKED_KEYS if k in batch}


def _to_32(x: np.ndarray) -> np.ndarray:
  return x.astype(np.int32) if x.dtype == np.int64 else x


def any_process(flag: bool) -> bool:
  """Whether `flag` holds on any process (a collective of the hosts when there are several)."""
  if jax.process_count() == 1:
    return flag
  return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())


def evaluate(eval_step: Callable, params: Any, batches: Iterator[dict], mesh: Mesh,
             max_batches: int) -> dict[str, float]:
  """Bits/byte and loss over up to `max_batches` batches (0: until the data ends).

  Every process runs the same number of steps: one whose data ends before the
  others' feeds empty batches (no weight, no bytes) until all have ended.

  Returns:
    {"loss": mean xent in nats per token, "bits_per_byte", "tokens", "bytes", "batches"
    (evaluated)}, and where
    the eval step counts them (`window_accuracy`), "accuracy" and
    "accuracy_by_window_position" ([k], position 0 the window's first token).
  """
  xent = tokens = num_bytes = 0.0
  by_position = {}
  batches, last, count = iter(batches), None, 0
  while not max_batches or count < max_batches:
    batch = next(batches, None)
    if not any_process(batch is not None):
      break
    count += 1
    if batch is None:
      if last is None:
        raise ValueError(f"process {jax.process_index()} holds no validation data; pass more "
                         "validation files than processes")
      batch = batch_layout.empty_row(last)
    last = batch
    sums = jax.device_get(eval_step(params, shard_batch(batch, mesh)))
    xent += float(sums["xent"])
    tokens += float(sums["tokens"])
    num_bytes += float(sums["bytes"])
    for key in ("correct_by_window_position", "tokens_by_window_position"):
      if key in sums:
        by_position[key] = by_position.get(key, 0.0) + np.asarray(sums[key], np.float64)
  if tokens == 0:
    raise ValueError("the validation data holds no tokens; check the --validation / --data path")
  out = {"loss": xent / tokens, "bits_per_byte": xent / num_bytes / metrics_lib.LN2,
         "tokens": tokens, "bytes": num_bytes, "batches": count}
  if by_position:
    correct, counted = (by_position["correct_by_window_position"],
                        by_position["tokens_by_window_position"])
    out["accuracy"] = float(correct.sum() / max(counted.sum(), 1.0))
    out["accuracy_by_window_position"] = [float(c / max(n, 1.0)) for c, n in zip(correct,
                                                                                 counted)]
  return out


def prepare(argv, parse_flags, build_task) -> tuple[argparse.Namespace, Task, TrainConfig]:
  """The start of train-m1 and train-m2: logging, flags, jax.distributed, the Task.

  Args:
    argv: command-line arguments.
    parse_flags: argv -> parsed flags (with --multihost and --batch_size).
    build_task: parsed flags -> (Task, TrainConfig).
  """
  log_setup.configure()
  args = parse_flags(argv)
  if args.accelerator == "cpu":
    accelerator.require("cpu")  # before any backend starts
  maybe_initialize_distributed(args.multihost)
  if args.accelerator != "cpu":
    accelerator.require(args.accelerator)
  check_batch_size(args.batch_size)
  task, config = build_task(args)
  return args, task, config


def run_config(task: Task, config: TrainConfig) -> dict:
  """The resolved config saved as config.json."""
  return {"kind": task.kind, "model": configs.to_dict(task.model_config),
          "train": dataclasses.asdict(config), **task.run_config}


# What a step computes besides the model and data: a resume with other values would not be
# the run its checkpoint began (--steps, logging and checkpointing may change).
TRAJECTORY_FIELDS = ("warmup", "z_loss", "seed")


def check_resume_config(directory: str, resolved: dict) -> None:
  """Refuses to resume a run directory whose kind, model, data, schedule, z-loss or seed
  differ from this run's.

  Raises:
    ValueError: on a mismatch, saying what to do.
  """
  if not (checkpoint_lib.as_path(directory) / checkpoint_lib.CONFIG_FILE).exists():
    return
  saved = checkpoint_lib.load_config(directory)
  saved = {**saved, "training": {k: saved.get("train", {}).get(k) for k in TRAJECTORY_FIELDS}}
  resolved = {**resolved, "training": {k: resolved["train"][k] for k in TRAJECTORY_FIELDS}}
  for key in ("kind", "model", "data", "training"):
    if saved.get(key) != resolved[key]:
      raise ValueError(f"{directory} holds a run with a different {key} "
                       f"({_differences(saved.get(key), resolved[key])}); pass a new --out or "
                       "the same flags as that run")


def _differences(saved, now) -> str:
  """What differs between a saved and a resolved config entry, e.g. "seed: 0 -> 1"."""
  if not (isinstance(saved, dict) and isinstance(now, dict)):
    return f"{saved} -> {now}"
  keys = sorted(k for k in set(saved) | set(now) if saved.get(k, "unset") != now.get(k, "unset"))
  return ", ".join(f"{k}: {saved.get(k, 'unset')} -> {now.get(k, 'unset')}" for k in keys)


def restore_or_start(ckpt: checkpoint_lib.Checkpointer, state: State,
                     batches: BatchIterator) -> tuple[int, State]:
  """Restores the latest checkpoint (state and data position) if there is one."""
  if ckpt.latest_step() is None:
    return 0, state
  step, state, data_state = ckpt.restore(state)
  batches.set_state(checkpoint_lib.data_state_of_this_process(data_state))
  logging.info("resuming at step %d", step)
  return step, state


def check_validation(task: Task) -> None:
  """Reads the first validation batch, so that a wrong --validation path fails
  before training rather than at its first validation.

  Raises:
    FileNotFoundError: if the validation files do not exist.
    ValueError: if they hold no examples.
  """
  if task.validation is None:
    return
  try:
    batch = next(iter(task.validation()), None)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--validation: {e}") from None
  empty = batch is None or not (batch["ids"] >= 0).any()
  if any_process(empty):  # every process stops, not only the one without data
    where = "" if jax.process_count() == 1 else (
        " for one of the processes (with several processes, each needs some of it)")
    raise ValueError(f"the validation data holds no examples{where}; check the --validation "
                     "path")


def run_validation(task: Task, config: TrainConfig, eval_step, params, mesh) -> dict | None:
  if task.validation is None:
    return None
  return evaluate(eval_step, params, task.validation(), mesh, config.eval_batches)


def train(task: Task, config: TrainConfig) -> State:
  """Trains (or resumes training of) M1 or M2 into `config.out`.

  Returns:
    The final train state (replicated arrays).
  """
  mesh = make_mesh()
  optimizer = optim.adafactor(config.warmup)
  resolved = run_config(task, config)
  check_resume_config(config.out, resolved)
  check_validation(task)
  if jax.process_index() == 0:
    checkpoint_lib.save_config(config.out, resolved)
  ckpt = checkpoint_lib.Checkpointer(config.out, config.keep_checkpoints,
                                     config.async_checkpoint)
  state = init_state(task.model_config, optimizer, config.seed, mesh)
  try:
    with out_of_memory_as_error():
      start, state = restore_or_start(ckpt, state, task.train_batches)
      return _Loop(task, config, mesh, optimizer).run(state, start, ckpt)
  finally:
    ckpt.close()  # waits for a pending checkpoint, also when a step raised


class DeviceMemoryError(ValueError):
  """A step that does not fit the devices' memory: the flags to change are in the message."""


def out_of_memory_error(error: Exception, remedy: str = "") -> DeviceMemoryError | None:
  """The one-line DeviceMemoryError of an XLA out-of-memory error; None for any other error.

  `remedy` says what to change; by default, a training run's flags.
  """
  text = str(error)
  if "RESOURCE_EXHAUSTED" not in text:
    return None
  remedy = remedy or ("pass --model remat=true (each block recomputed in the backward pass), "
                      f"a smaller --batch_size, or run on more devices ({jax.device_count()} now)")
  return DeviceMemoryError(
      f"a step does not fit the devices' memory ({text.splitlines()[0].strip()}); {remedy}")


@contextlib.contextmanager
def out_of_memory_as_error(remedy: str = ""):
  """Raises an XLA out-of-memory error of the block as its one-line DeviceMemoryError."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    memory = out_of_memory_error(e, remedy)
    if memory is None:
      raise
    raise memory from None


class CheckpointClock:
  """Says when a checkpoint is due by wall time, so a killed run loses at most that long.

  With several processes, process 0's clock decides and every process gets its
  answer (a collective), only at log steps, so that steps stay asynchronous.
  """

  def __init__(self, minutes: float, log_every: int):
    self.interval_s = 60.0 * minutes
    self.log_every = log_every
    self.last = time.monotonic()

  def due(self, step: int) -> bool:
    if not self.interval_s:
      return False
    if jax.process_count() == 1:
      return time.monotonic() - self.last >= self.interval_s
    if step % self.log_every:
      return False
    due = np.bool_(time.monotonic() - self.last >= self.interval_s)
    return bool(multihost_utils.broadcast_one_to_all(due))

  def saved(self) -> None:
    self.last = time.monotonic()


class _Loop:
  """The step loop: train, log, checkpoint, validate."""

  def __init__(self, task: Task, config: TrainConfig, mesh: Mesh, optimizer):
    self.task, self.config, self.mesh = task, config, mesh
    self.train_step = make_train_step(task.model_config, optimizer, config.z_loss, mesh)
    self.eval_step = make_eval_step(task.model_config, mesh, task.tokens_per_window)
    self.writer = metrics_lib.MetricsWriter(config.out)
    self.ids = metrics_lib.ExampleIdLog(config.out, config.log_example_ids)
    self.non_embedding_params = model_lib.count_params(model_lib.param_shapes(task.model_config))

  def run(self, state: State, start: int, ckpt: checkpoint_lib.Checkpointer) -> State:
    """Steps start+1 .. steps; log lines print above the progress bar, not through it."""
    bar = metrics_lib.StepBar(self.config.steps, start,
                              enabled=self.config.progress and jax.process_index() == 0)
    profiler = metrics_lib.StepProfiler(self.config.profile_first, self.config.profile_last,
                                        os.path.join(self.config.out, "tensorboard"))
    with tqdm_logging.logging_redirect_tqdm(), preemption.SigtermWatch(
        self.config.log_every) as sigterm:
      state = self._steps(state, start, ckpt, bar, profiler, sigterm)
      profiler.close(state)
    bar.close()
    return state

  def _steps(self, state: State, start: int, ckpt: checkpoint_lib.Checkpointer,
             bar: metrics_lib.StepBar, profiler: metrics_lib.StepProfiler,
             sigterm: preemption.SigtermWatch) -> State:
    cfg, batches = self.config, self.task.train_batches
    rates = metrics_lib.Throughput(self.task.model_config, self.task.extra_flops_per_byte,
                                   self.task.model_config.max_len, self._peak_flops(),
                                   self.non_embedding_params)
    meter = metrics_lib.Meter()
    clock = CheckpointClock(cfg.checkpoint_minutes, cfg.log_every)
    in_flight = None  # (step, sums) of the step the device may still be running
    for done in range(start + 1, cfg.steps + 1):
      batch = next(batches)
      self.ids.write(done, batch)
      profiler.before(done)
      state, sums = self.train_step(state, shard_batch(batch, self.mesh))
      profiler.after(done, state)
      meter.add(sums, batch, timed=done > start + 1)  # the first step compiles
      if in_flight is not None:  # one step stays queued; the bar counts finished steps
        bar.finished(*in_flight)
      in_flight = (done, sums)
      if done % cfg.log_every == 0 or done == cfg.steps:
        metrics = rates.metrics(meter)
        self.writer.write("train", done, metrics)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", bpb=f"{metrics['bits_per_byte']:.3f}")
        meter = metrics_lib.Meter()
      if done == cfg.sigterm_after:
        os.kill(os.getpid(), signal.SIGTERM)  # testing: a preemption, through the real handler
      preempted = sigterm.requested(done)
      save = (done % cfg.checkpoint_every == 0 or done == cfg.steps or clock.due(done)
              or preempted)
      validate = (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps
      if save or validate:  # not training time: the step finishes first, then the clock stops
        jax.block_until_ready(state)
        paused = time.perf_counter()
      if save:
        ckpt.save(done, state, batches.get_state())
        clock.saved()
      if preempted:
        raise preemption.Preempted(done)  # train() waits for the checkpoint to be on disk
      if validate:
        self._validate(state, done)
      if save or validate:
        meter.pause(time.perf_counter() - paused)
      if done == cfg.stop_after:
        os._exit(3)  # a hard kill for resume tests: no flush, no pending checkpoint wait
    if in_flight is not None:
      bar.finished(*in_flight)
    return state

  def _validate(self, state: State, step: int) -> None:
    metrics = run_validation(self.task, self.config, self.eval_step, state["params"], self.mesh)
    if metrics is not None:
      metrics["flops_per_byte"] = metrics_lib.flops_per_byte(
          self.non_embedding_params, metrics["tokens"], metrics["bytes"],
          self.task.extra_flops_per_byte)
      self.writer.write("validation", step, metrics)
      logging.info("step %d validation: %.4f bits/byte, loss %.4f, %d tokens, %d bytes", step,
                   metrics["bits_per_byte"], metrics["loss"], metrics["tokens"], metrics["bytes"])

  def _peak_flops(self) -> float:
    return self.config.peak_flops or metrics_lib.measure_peak_flops(self.task.model_config.dtype)
