"""Training M1 and M2: loss, learning, resumption, data parallelism, checkpoints, eval."""
import gzip
import json
import math
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from pipelines import cli
from training import checkpoint as checkpoint_lib
from training import configs
from training import evaluate
from training import loss as loss_lib
from training import m1_input
from training import metrics as metrics_lib
from training import model as model_lib
from training import optim
from training import train
from training import train_flags
from training import train_m1
from training import train_m2
from training.m1 import float_m1 as m1_lib

REPO = pathlib.Path(__file__).resolve().parents[2]
QUIET = ["--no_progress", "--peak_flops", "1e12"]


def m2_flags(m2_shards, out, steps, *extra):
  return ["--train", str(m2_shards / "train-*.array_record"),
          "--validation", str(m2_shards / "validation" / "*.array_record"),
          "--size", "tiny", "--steps", str(steps), "--batch_size", "8", "--seq_len", "32",
          "--warmup", "10", "--log_every", "2", "--eval_batches", "2", "--out", str(out),
          *QUIET, *extra]


def restore_params(run_dir) -> dict:
  """The latest checkpoint's params of a run directory, as numpy."""
  loaded = evaluate.load(str(run_dir), train.make_mesh())
  return jax.device_get(loaded.params)


def ids_by_step(run_dir) -> dict[int, list[int]]:
  """example_ids.jsonl as {step: ids}; a step replayed after a resume keeps its last entry."""
  out = {}
  for line in (pathlib.Path(run_dir) / "example_ids.jsonl").read_text().splitlines():
    record = json.loads(line)
    out[record["step"]] = record["ids"]
  return out


def run_cli(args, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


# ----------------------------------------------------------------------------
# objective and schedule


def test_rsqrt_schedule_and_masked_loss():
  schedule = optim.rsqrt_schedule(100)
  assert float(schedule(0)) == pytest.approx(0.1) and float(schedule(400)) == pytest.approx(0.05)
  logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]], np.float32))  # [1, 2, 3]
  loss, sums = loss_lib.masked_loss(logits, np.array([[0, 2]]), np.array([[1.0, 0.0]]), z_loss=0.5)
  assert float(sums["xent"]) == pytest.approx(math.log(2), rel=1e-6)  # masked token ignored
  assert float(sums["tokens"]) == 1.0
  assert float(loss) == pytest.approx(math.log(2), rel=1e-5)  # logsumexp = 0: no z-loss
  _, sums = loss_lib.masked_loss(logits + 1.0, np.array([[0, 2]]), np.array([[1.0, 1.0]]), 1e-4)
  assert float(sums["z_loss"]) == pytest.approx(2e-4, rel=1e-5)  # 1e-4 * 1**2 per token


def test_configs_are_strict():
  config = train.TrainConfig(out="x", steps=3)
  with pytest.raises(ValueError, match="unknown TrainConfig key 'stepz'"):
    train.override(config, stepz=4)
  with pytest.raises(ValueError, match="must be int"):
    train.override(config, steps="4")
  with pytest.raises(ValueError, match="warmup must be >= 1"):
    train.TrainConfig(out="x", steps=3, warmup=0)
  args = train_m2.parse_flags(["--train", "x", "--out", "y", "--steps", "1",
                               "--model", "num_layerz=2"])
  with pytest.raises(ValueError, match="unknown model config key"):
    train_flags.model_config_from_flags(args, 257)


# ----------------------------------------------------------------------------
# M1 learns


def test_tiny_m1_beats_the_unigram_baseline(webtext_dir, tmp_path, capsys):
  out = tmp_path / "m1"
  assert train_m1.run([
      "--train", str(webtext_dir / "train" / "*.jsonl.gz"),
      "--validation", str(webtext_dir / "validation" / "*.jsonl.gz"),
      "--size", "tiny", "--steps", "200", "--batch_size", "16", "--seq_len", "128",
      "--warmup", "100", "--log_every", "100", "--checkpoint_every", "200",
      "--eval_batches", "8", "--shuffle_buffer", "2048", "--out", str(out), *QUIET]) == 0
  assert isinstance(m1_lib.load(out, exact=False), m1_lib.M1Model)
  assert m1_lib.load(out).exact  # the coders read the integer-exact M1 written beside it
  capsys.readouterr()
  assert evaluate.run(["--checkpoint", str(out), "--data",
                       str(webtext_dir / "validation" / "*.jsonl.gz"), "--num_batches", "8"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["kind"] == "m1" and result["tokens_per_byte"] == 1.0
  assert result["baselines"]["uniform"] == pytest.approx(math.log2(257))
  assert result["bits_per_byte"] < result["baselines"]["unigram"] - 0.3, result
  metrics = [json.loads(l) for l in (out / "train" / "metrics.jsonl").read_text().splitlines()]
  train_bpb = [m["bits_per_byte"] for m in metrics if m["split"] == "train"]
  assert train_bpb[-1] < train_bpb[0]
  assert {"flops_per_byte", "tokens_per_s", "mfu", "loss"} <= set(metrics[0])
  # M1 reads a byte per position and pads no sequence but the corpus's last:
  # a step trains on batch x seq_len bytes.
  per_step = [m["bytes_per_step"] for m in metrics if m["split"] == "train"]
  assert per_step == [16 * 128, 16 * 128]
  assert list((out / "train" / "tensorboard" / "train").glob("events.out.tfevents.*"))


def test_a_wrong_data_path_fails_before_training(m2_shards, tmp_path, capsys):
  (tmp_path / "empty.jsonl").write_text("")
  m1 = ["--size", "tiny", "--steps", "2", "--batch_size", "2", "--seq_len", "32", "--no-exact",
        "--out", str(tmp_path / "m1"), *QUIET]
  m2 = m2_flags(m2_shards, tmp_path / "m2", 2)
  m2_val = list(m2)
  m2_val[m2.index("--validation") + 1] = str(tmp_path / "val-*.array_record")
  m2_train = list(m2)
  m2_train[m2.index("--train") + 1] = str(tmp_path / "train-*.array_record")
  for argv, message in [
      (["train-m1", *m1, "--train", str(tmp_path / "t-*.jsonl")],
       f"--train: '{tmp_path / 't-*.jsonl'}' matches no files"),
      (["train-m1", *m1, "--train", str(tmp_path / "empty.jsonl")], "--train: "),
      (["train-m1", *m1, "--train", "builtin:pydoc", "--validation", str(tmp_path / "v-*.jsonl")],
       f"--validation: '{tmp_path / 'v-*.jsonl'}' matches no files"),
      (["train-m1", *m1, "--train", "builtin:pydoc", "--validation",
        str(tmp_path / "empty.jsonl")], "validation data holds no examples"),
      (["train-m2", *m2_train], "--train: no files match"),
      (["train-m2", *m2, "--seq_len", "16"], "--seq_len 16 is shorter than the records of"),
      (["train-m2", *m2_val], "--validation: no files match")]:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
  assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


# ----------------------------------------------------------------------------
# M2: resume, data parallelism, checkpoints


@pytest.mark.parametrize("pack", [["--no-pack_records"], []], ids=["record_per_row", "packed"])
def test_killed_then_resumed_m2_equals_uninterrupted(m2_shards, tmp_path, pack):
  steps = 12  # 12 x 8 = the 96 training records: one epoch (one record per row)
  whole = tmp_path / "whole"
  assert train_m2.run(m2_flags(m2_shards, whole, steps, "--checkpoint_every", "4",
                               "--log_example_ids", *pack)) == 0
  killed = tmp_path / "killed"
  flags = m2_flags(m2_shards, killed, steps, "--checkpoint_every", "4", "--log_example_ids",
                   *pack)
  proc = run_cli(["train-m2", *flags, "--stop_after", "10"])
  assert proc.returncode == 3, proc.stderr[-2000:]  # os._exit(3): died without cleaning up
  assert max(ids_by_step(killed)) == 10
  # Step 8's asynchronous save may have been cut short by the kill: then 4 is the latest.
  assert checkpoint_lib.Checkpointer(str(killed)).latest_step() in (4, 8)
  assert train_m2.run(flags) == 0  # resumes from there and replays the lost steps
  expected, got = restore_params(whole), restore_params(killed)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  ids_whole, ids_killed = ids_by_step(whole), ids_by_step(killed)
  assert ids_killed == ids_whole and sorted(ids_whole) == list(range(1, steps + 1))
  ids = sorted(i for ids in ids_whole.values() for i in ids)
  if not pack:  # packed: more than an epoch of records in the same 12 steps
    assert len(ids) > 96 and set(ids) == set(range(96))
    assert checkpoint_lib.load_config(str(killed))["data"]["pack_records"] is True
  else:
    assert ids == list(range(96))


def test_sigterm_saves_the_current_step_and_the_rerun_is_bit_identical(m2_shards, tmp_path):
  """A preemption (SIGTERM, through the real handler) after step 5 of 8, with no checkpoint
  due until step 8: a checkpoint at step 5 and exit status 143; the rerun ends where an
  uninterrupted run ends, parameter for parameter."""
  whole, preempted = tmp_path / "whole", tmp_path / "preempted"
  assert train_m2.run(m2_flags(m2_shards, whole, 8, "--checkpoint_every", "8")) == 0
  flags = m2_flags(m2_shards, preempted, 8, "--checkpoint_every", "8", "--log_example_ids")
  proc = run_cli(["train-m2", *flags, "--sigterm_after", "5"])
  assert proc.returncode == 143, proc.stderr[-2000:]
  assert "preempted (SIGTERM) at step 5: checkpoint saved" in proc.stderr
  assert checkpoint_lib.Checkpointer(str(preempted)).latest_step() == 5
  assert max(ids_by_step(preempted)) == 5
  assert train_m2.run(flags) == 0
  assert sorted(ids_by_step(preempted)) == list(range(1, 9))
  expected, got = restore_params(whole), restore_params(preempted)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_a_half_written_newest_checkpoint_is_passed_over_and_the_resume_is_identical(
    m2_shards, tmp_path):
  """A run killed while saving step 8 leaves an unfinished directory (orbax's
  `8.orbax-checkpoint-tmp-*`, some of its files written): the rerun resumes from step 4
  and ends where an uninterrupted run ends, parameter for parameter."""
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  assert train_m2.run(m2_flags(m2_shards, whole, 12, "--checkpoint_every", "4")) == 0
  flags = m2_flags(m2_shards, killed, 12, "--checkpoint_every", "4")
  assert train_m2.run(m2_flags(m2_shards, killed, 8, "--checkpoint_every", "4")) == 0
  checkpoints = killed / "checkpoints"
  half = checkpoints / "8.orbax-checkpoint-tmp-1234567"
  (checkpoints / "8").rename(half)
  files = sorted(p for p in half.rglob("*") if p.is_file())
  for path in files[len(files) // 2:]:  # the second half was never written
    path.unlink()
  assert checkpoint_lib.Checkpointer(str(killed)).latest_step() == 4
  assert train_m2.run(flags) == 0
  expected, got = restore_params(whole), restore_params(killed)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_a_run_killed_after_its_time_interval_resumes_from_a_checkpoint(m2_shards, tmp_path):
  """--checkpoint_minutes saves by wall time whatever --checkpoint_every says: a run killed at
  step 6, with no step checkpoint due before step 1000, resumes from a recent step."""
  steps = 8
  whole = tmp_path / "whole"
  assert train_m2.run(m2_flags(m2_shards, whole, steps)) == 0
  killed = tmp_path / "killed"
  flags = m2_flags(m2_shards, killed, steps, "--checkpoint_every", "1000",
                   "--checkpoint_minutes", "1e-6")  # due after every step
  proc = run_cli(["train-m2", *flags, "--stop_after", "6"])
  assert proc.returncode == 3, proc.stderr[-2000:]
  latest = checkpoint_lib.Checkpointer(str(killed)).latest_step()
  assert latest is not None and 4 <= latest <= 6  # the last save may have been cut short
  assert train_m2.run(flags) == 0
  expected, got = restore_params(whole), restore_params(killed)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_the_checkpoint_clock_waits_its_interval(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(train.time, "monotonic", lambda: now[0])
  clock = train.CheckpointClock(minutes=10, log_every=5)
  assert not clock.due(1)
  now[0] += 599
  assert not clock.due(2)
  now[0] += 1
  assert clock.due(3)
  clock.saved()
  assert not clock.due(4)
  assert not train.CheckpointClock(minutes=0, log_every=5).due(5)  # 0: by steps only


def test_killed_then_resumed_m1_equals_uninterrupted(train_docs, tmp_path):
  corpus_path = tmp_path / "docs.jsonl"
  corpus_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in train_docs[:12]))
  def flags(out):
    return ["--train", str(corpus_path), "--size", "tiny", "--steps", "9", "--batch_size", "4",
            "--seq_len", "32", "--docs_per_group", "4", "--shuffle_buffer", "32",
            "--warmup", "10", "--checkpoint_every", "3", "--log_example_ids", "--out", str(out),
            *QUIET]
  assert train_m1.run(flags(tmp_path / "whole")) == 0
  proc = run_cli(["train-m1", *flags(tmp_path / "killed"), "--stop_after", "7"])
  assert proc.returncode == 3, proc.stderr[-2000:]
  assert train_m1.run(flags(tmp_path / "killed")) == 0
  whole, killed = m1_lib.load(tmp_path / "whole"), m1_lib.load(tmp_path / "killed")
  assert whole.fingerprint == killed.fingerprint  # bit-identical parameters
  ids_whole = ids_by_step(tmp_path / "whole" / "train")
  assert ids_by_step(tmp_path / "killed" / "train") == ids_whole
  seen = [i for ids in ids_whole.values() for i in ids]
  assert len(seen) == len(set(seen)) == 36  # no sequence twice within the epoch


TWO_PROCESSES = (
    "import sys, jax; jax.config.update('jax_cpu_collectives_implementation', 'gloo'); "
    "jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2])); "
    "from pipelines import cli; sys.exit(cli.main(sys.argv[3:]))")


def run_two_processes(args: list[str], errors: list[str] | None = None) -> list[int]:
  """Runs `eqinfo ARGS` as two JAX processes of one job on this CPU; returns their exit codes.

  Exit codes other than 0 and 3 (--stop_after) fail, unless `errors` is given:
  it receives each process's last stderr line.
  """
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESSES, f"localhost:{port}", str(i),
                             *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True) for i in (0, 1)]
  codes = []
  try:
    for proc in procs:
      _, err = proc.communicate(timeout=300)  # a process waiting on the other one hangs
      codes.append(proc.returncode)
      if errors is None:
        assert proc.returncode in (0, 3), err[-3000:]
      else:
        errors.append(err.strip().splitlines()[-1] if err.strip() else "")
  finally:
    for proc in procs:
      proc.kill()
  return codes


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["m1", "m2_packed"])
def test_two_processes_killed_then_resumed_equal_uninterrupted(kind, m2_shards, train_docs,
                                                              tmp_path):
  # Each process must resume at its own data position.
  if kind == "m1":
    corpus_path = tmp_path / "docs.jsonl"
    corpus_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in train_docs[:8]))
    cfg = m1_input.M1DataConfig(str(corpus_path), seq_len=256, batch_size=8, docs_per_group=2)
    lengths = [len(list(m1_input.m1_sequences(cfg, shard=(p, 2)))) for p in (0, 1)]
    assert lengths[0] != lengths[1] and max(lengths) < 8 * 4  # epochs of unequal length end
    def flags(out):                                             # before the step-8 checkpoint
      return ["train-m1", "--train", str(corpus_path), "--size", "tiny", "--steps", str(steps),
              "--batch_size", "8", "--seq_len", "256", "--docs_per_group", "2",
              "--shuffle_buffer", "64", "--warmup", "10", "--checkpoint_every", str(every),
              "--no-exact", "--log_example_ids", "--out", str(out), *QUIET]
    steps, every, stop = 12, 4, 10
  else:  # by step 16 the processes' packers have read different numbers of records
    def flags(out):
      return ["train-m2", *m2_flags(m2_shards, out, steps, "--checkpoint_every", str(every),
                                    "--sync_checkpoint", "--log_example_ids")]
    steps, every, stop = 20, 8, 18
  assert run_two_processes(flags(tmp_path / "whole")) == [0, 0]
  assert run_two_processes([*flags(tmp_path / "killed"), "--stop_after", str(stop)]) == [3, 3]
  if kind != "m1":
    assert checkpoint_lib.Checkpointer(str(tmp_path / "killed")).latest_step() == 16
  assert run_two_processes(flags(tmp_path / "killed")) == [0, 0]
  run = "train" if kind == "m1" else ""
  ids_whole = ids_by_step(tmp_path / "whole" / run)
  assert ids_by_step(tmp_path / "killed" / run) == ids_whole
  assert sorted(ids_whole) == list(range(1, steps + 1))
  if kind == "m1":  # 4 of each process per step: ids p, p + 2, ... of process p
    assert all([i % 2 for i in ids] == [0] * 4 + [1] * 4 for ids in ids_whole.values())
  expected = restore_params(tmp_path / "whole" / run)
  got = restore_params(tmp_path / "killed" / run)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_two_processes_validate_all_their_text_though_it_differs_in_length(train_docs, tmp_path):
  corpus_path = tmp_path / "docs.jsonl"
  corpus_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in train_docs[:8]))
  cfg = m1_input.M1DataConfig(str(corpus_path), seq_len=256, batch_size=8, docs_per_group=2)
  parts = [list(m1_input.m1_sequences(cfg, shard=(p, 2))) for p in (0, 1)]
  assert len(parts[0]) // 4 != len(parts[1]) // 4  # one process has more batches to score
  out = tmp_path / "m1"
  assert run_two_processes([
      "train-m1", "--train", str(corpus_path), "--validation", str(corpus_path), "--size",
      "tiny", "--steps", "2", "--batch_size", "8", "--seq_len", "256", "--docs_per_group", "2",
      "--warmup", "10", "--eval_batches", "50", "--no-exact", "--out", str(out), *QUIET]) == [0, 0]
  metrics = [json.loads(l) for l in (out / "train" / "metrics.jsonl").read_text().splitlines()]
  validation = [m for m in metrics if m["split"] == "validation"]
  assert len(validation) == 1
  assert validation[0]["bytes"] == sum(len(c) for part in parts for _, c in part)


@pytest.mark.slow
def test_two_processes_stop_together_when_one_would_have_no_data(train_docs, tmp_path):
  corpus_path = tmp_path / "docs.jsonl"
  corpus_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in train_docs[:8]))
  one_doc = tmp_path / "one.jsonl"
  one_doc.write_text(json.dumps({"text": train_docs[0]}) + "\n")  # one group: process 0's
  errors = []
  assert run_two_processes([
      "train-m1", "--train", str(corpus_path), "--validation", str(one_doc), "--size", "tiny",
      "--steps", "2", "--batch_size", "8", "--seq_len", "256", "--docs_per_group", "2",
      "--no-exact", "--out", str(tmp_path / "m1"), *QUIET], errors) == [1, 1]
  assert errors == ["eqinfo train-m1: error: the validation data holds no examples for one of "
                    "the processes (with several processes, each needs some of it); check the "
                    "--validation path"] * 2
  errors = []
  assert run_two_processes([
      "train-m1", "--train", str(one_doc), "--size", "tiny", "--steps", "2", "--batch_size", "8",
      "--seq_len", "256", "--docs_per_group", "2", "--no-exact", "--out", str(tmp_path / "m1"),
      *QUIET], errors) == [1, 1]
  assert errors == [f"eqinfo train-m1: error: --train: '{one_doc}' holds 1 documents, fewer "
                    "than the 3 that 2 processes reading groups of 2 documents in turn need; "
                    "lower --docs_per_group or use fewer processes"] * 2
  assert not (tmp_path / "m1").exists()


def test_four_device_step_equals_one_device_step(m2_shards, tmp_path):
  one = tmp_path / "one"
  assert train_m2.run(m2_flags(m2_shards, one, 4)) == 0
  assert jax.device_count() == 1
  four = tmp_path / "four"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
         "JAX_PLATFORMS": "cpu"}
  code = ("import sys, jax; assert jax.device_count() == 4, jax.devices(); "
          "from pipelines import cli; sys.exit(cli.main(sys.argv[1:]))")
  proc = subprocess.run([sys.executable, "-c", code, "train-m2",
                         *m2_flags(m2_shards, four, 4)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  expected, got = restore_params(one), restore_params(four)
  init = train.init_state(configs.from_dict(checkpoint_lib.load_config(str(one))["model"]),
                          optim.adafactor(10), 0, train.make_mesh())["params"]
  leaves = zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got),
               jax.tree.leaves(jax.device_get(init)))
  for (path, a), b, a0 in leaves:
    # Only the order of the cross-device sums differs: float32 rounding, which the
    # optimizer carries into each update. Bounded relative to how far 4 steps moved
    # the parameters (diff ~1e-5 to 3e-4, moved ~0.1 to 1.5), never by a fixed atol
    # that one CPU happens to meet.
    diff, moved = float(np.abs(a - b).max()), float(np.abs(a - a0).max())
    assert moved > 0.05 and diff < 1e-3 * moved, (jax.tree_util.keystr(path), diff, moved)



def test_a_checkpoint_gives_each_process_its_own_data_state(monkeypatch):
  assert checkpoint_lib.gather_json({"sequences": 3}) == [{"sequences": 3}]
  saved = {checkpoint_lib.PROCESS_STATES: [{"next_index": 8}, {"next_index": 9}]}
  with pytest.raises(ValueError, match="written by 2 processes; resume it with 2, not 1"):
    checkpoint_lib.data_state_of_this_process(saved)
  assert checkpoint_lib.data_state_of_this_process({"next_index": 8}) == {"next_index": 8}
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert checkpoint_lib.data_state_of_this_process(saved) == {"next_index": 9}
  with pytest.raises(ValueError, match="resume it with one process"):
    checkpoint_lib.data_state_of_this_process({"next_index": 8})


def test_missing_or_corrupt_checkpoint_gives_a_one_line_error(m2_shards, tmp_path, capsys):
  assert cli.main(["eval", "--checkpoint", str(tmp_path / "absent"), "--data", "x"]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "eqinfo train-m2" in err
  unfinished = tmp_path / "empty" / "checkpoints" / "7.orbax-checkpoint-tmp-1234"
  unfinished.mkdir(parents=True)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "empty"))
  assert not unfinished.exists()  # what a killed run left behind is not a checkpoint
  with pytest.raises(FileNotFoundError, match="train one first"):
    ckpt.restore({"x": np.zeros(2)})
  run_dir = tmp_path / "run"
  assert train_m2.run(m2_flags(m2_shards, run_dir, 2, "--checkpoint_every", "2")) == 0
  with pytest.raises(ValueError, match=r"different data \(seed: 0 -> 5\)"):  # another order
    train_m2.run(m2_flags(m2_shards, run_dir, 4, "--seed", "5"))          # would break resume
  with pytest.raises(ValueError, match=r"different data \(pack_records: True -> unset\)"):
    train_m2.run(m2_flags(m2_shards, run_dir, 4, "--no-pack_records"))
  with pytest.raises(ValueError, match=r"different training \(z_loss: 0.0001 -> 0.5\)"):
    train_m2.run(m2_flags(m2_shards, run_dir, 4, "--z_loss", "0.5"))  # another objective
  state_dir = run_dir / "checkpoints" / "2" / "state"
  for path in state_dir.rglob("*"):
    if path.is_file() and path.stat().st_size > 0:
      path.write_bytes(b"garbage")
  data = str(m2_shards / "validation" / "*.array_record")
  logged = capsys.readouterr().err  # the training's log lines
  assert re.search(r"INFO step 2 validation: \d+\.\d{4} bits/byte, loss ", logged)
  assert cli.main(["eval", "--checkpoint", str(run_dir), "--data", data]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "unreadable" in err and "delete" in err


def test_profile_traces_exactly_the_steps_asked_into_tensorboard(m2_shards, tmp_path):
  run_dir = tmp_path / "run"
  assert train_m2.run(m2_flags(m2_shards, run_dir, 4, "--profile", "2:3")) == 0
  (trace,) = (run_dir / "tensorboard" / "plugins" / "profile").glob("*/*.trace.json.gz")
  events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
  calls, end = 0, -math.inf  # the outermost of nested PjitFunction events
  for event in sorted((e for e in events if e.get("name") == "PjitFunction(step)"),
                      key=lambda e: e["ts"]):
    if event["ts"] >= end:
      calls, end = calls + 1, event["ts"] + event["dur"]
  assert calls == 2  # steps 2 and 3, not 1, 4 or the validation at the end
  with pytest.raises(ValueError, match="1 <= FIRST <= LAST"):
    train_m2.run(m2_flags(m2_shards, tmp_path / "other", 3, "--profile", "3:2"))
  assert not (tmp_path / "other").exists()


def test_eval_of_m2_reports_table3_baselines(m2_shards, tmp_path, capsys):
  run_dir = tmp_path / "run"
  assert train_m2.run(m2_flags(m2_shards, run_dir, 2)) == 0
  shutil.copy(m2_shards / "stats.json", m2_shards / "validation" / "stats.json")
  capsys.readouterr()
  data = str(m2_shards / "validation" / "*.array_record")
  assert evaluate.run(["--checkpoint", str(run_dir), "--data", data, "--num_batches", "4"]) == 0
  result = json.loads(capsys.readouterr().out)
  ratio = result["tokens"] / result["bytes"]
  assert 0.3 < ratio < 0.34 and result["examples"] == 32
  assert result["baselines"]["uniform"] == pytest.approx(8 * ratio)
  assert result["unigram_histogram"] == "stats.json"
  assert result["baselines"]["unigram"] < result["baselines"]["uniform"]
  # Random tokens: an untrained M2 cannot beat the uniform baseline by much.
  assert result["bits_per_byte"] > 0.9 * result["baselines"]["uniform"]
  for num_batches, batches, examples in (("2", 2, 6), ("0", 11, 32)):  # 0: all of --data
    assert evaluate.run(["--checkpoint", str(run_dir), "--data", data, "--batch_size", "3",
                         "--num_batches", num_batches]) == 0
    part = json.loads(capsys.readouterr().out)
    assert (part["batches"], part["examples"]) == (batches, examples)
  assert (part["tokens"], part["bytes"]) == (result["tokens"], result["bytes"])


def test_flops_per_byte_adds_m1_share_and_mfu_can_be_measured(tmp_path):
  m1_config = m1_lib.m1_config("tiny", max_len=64)
  m1_lib.M1Model.random(m1_config).save(tmp_path / "m1")
  n = model_lib.count_params(model_lib.param_shapes(m1_config))
  assert metrics_lib.m1_flops_per_byte({"m1": str(tmp_path / "m1")}) == 2.0 * n
  assert metrics_lib.m1_flops_per_byte({"m1_flops_per_byte": 5.0, "m1": "x"}) == 5.0
  assert metrics_lib.m1_flops_per_byte({"m1": None}) == 0.0
  assert metrics_lib.measure_peak_flops(size=128, reps=2) > 1e6
  assert metrics_lib.measure_peak_flops("bfloat16", size=128, reps=2, repeats=1) > 1e6


def test_an_out_of_memory_step_says_what_to_change():
  """XLA's allocation failure (as an H100 raised it for a 25m M2 at batch 256) becomes one line."""
  xla = jax.errors.JaxRuntimeError(
      "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 70.53GiB with allocator "
      "GPU_0_bfc on device 0. [tf-allocator-allocation-error='']\nmore lines")
  error = train.out_of_memory_error(xla)
  assert isinstance(error, ValueError)  # so `eqinfo` prints it as one line
  message = str(error)
  assert "\n" not in message and "70.53GiB" in message
  for flag in ("--model remat=true", "--batch_size"):
    assert flag in message
  other = jax.errors.JaxRuntimeError("INTERNAL: other")
  assert train.out_of_memory_error(other) is None
  with pytest.raises(train.DeviceMemoryError, match=r"; pass a smaller --batch_size \(8 now\)$"):
    with train.out_of_memory_as_error("pass a smaller --batch_size (8 now)"):  # as eval uses it
      raise xla
  with pytest.raises(jax.errors.JaxRuntimeError) as raised:  # any other error passes unchanged
    with train.out_of_memory_as_error():
      raise other
  assert raised.value is other


def test_the_progress_bar_counts_finished_steps_from_the_first_one():
  """The estimate of time left starts after the first finished step (which held the
  compilation), and counts steps whose results are ready, not steps merely dispatched."""
  bar = metrics_lib.StepBar(total=10, start=2, enabled=True)
  assert bar.bar.n == 2 and not bar.settled
  bar.finished(3, {"loss": jax.numpy.ones(2)})
  assert bar.settled and bar.bar.n == bar.bar.initial == 3  # the rate counts from here
  assert bar.bar.format_dict["rate"] is None
  bar.finished(4)
  bar.finished(6)
  assert bar.bar.n == 6 and bar.bar.initial == 3
  bar.close()


def test_bad_shards_are_one_line_errors_naming_them(m2_shards, tmp_path, capsys):
  """train-m2, eval and inspect name a truncated, empty or foreign shard, a record whose ids
  do not fit the vocabulary, and a glob that mixes methods, in one line each, before or
  instead of training."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  bad = tmp_path / "bad"
  shutil.copytree(m2_shards, bad)
  first = sorted(bad.glob("train-*.array_record"))[0]
  truncated = bad / "truncated"
  truncated.mkdir()
  shutil.copy(bad / "stats.json", truncated / "stats.json")
  (truncated / first.name).write_bytes(first.read_bytes()[:first.stat().st_size // 2])
  empty = bad / "empty"
  empty.mkdir()
  shutil.copy(bad / "stats.json", empty / "stats.json")
  (empty / first.name).write_bytes(b"")
  (empty / "COMPLETED").write_text("")
  foreign = bad / "foreign"
  foreign.mkdir()
  writer = array_record_module.ArrayRecordWriter(
      str(foreign / "train-x-00000-of-00001.array_record"), "group_size:1")
  writer.write(b"not a tf.train.Example")
  writer.close()
  mixed = tmp_path / "mixed"
  for name, method in (("a", "gzip[v=256]"), ("b", "ac[v=256]")):
    shutil.copytree(m2_shards, mixed / name)
    stats = json.loads((mixed / name / "stats.json").read_text())
    (mixed / name / "stats.json").write_text(json.dumps({**stats, "method": method}))
  out = ["--size", "tiny", "--steps", "2", "--batch_size", "8", "--seq_len", "32", *QUIET]
  for argv, message in [
      (["train-m2", "--train", str(truncated / "*.array_record"), "--out", str(tmp_path / "r1"),
        *out], f"shard {truncated / first.name} cannot be read ("),
      (["eval", "--checkpoint", str(tmp_path / "r1"), "--data", str(truncated / "*.array_record")],
       None),
      (["train-m2", "--train", str(empty / "*.array_record"), "--out", str(tmp_path / "r5"),
        *out], f"shard {empty / first.name} cannot be read ("),
      (["inspect", str(empty), "--check"], str(empty / first.name)),
      (["train-m2", "--train", str(foreign / "*.array_record"), "--vocab_size", "256",
        "--out", str(tmp_path / "r2"), *out], "M2 record 0: not an eqinfo record"),
      (["train-m2", "--train", str(bad / "train-*.array_record"), "--vocab_size", "16",
        "--out", str(tmp_path / "r3"), *out], "outside the 16 ids of the vocabulary"),
      (["train-m2", "--train", str(mixed / "*" / "train-*.array_record"),
        "--out", str(tmp_path / "r4"), *out], "mixes shards of different methods")]:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert message is None or message in err, err
