"""The Dataflow graph, built offline: DataflowRunner with --dry_run, no cloud call.

This catches DoFns that do not pickle, labels that collide and options that
Dataflow rejects, without a project: the runner translates the pipeline into a
job description and returns before submitting it. The options are the ones
deploy/dataflow/submit.sh passes for each worker type it knows (the workers run
the image's copy of eqinfo: no `--setup_file`), and `--m1` is a table model
because the test has no bucket.
"""
import os
import pathlib
import subprocess
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import WorkerOptions
import cloudpickle
import pytest

from compressor import corpus
from pipelines import accounting, compress, options, sink, sources, transforms
from tests.conftest import REPO
from training import shards

SUBMIT = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "dataflow" / "submit.sh"
DIGEST = "sha256:" + "0123456789abcdef" * 4
ACCELERATORS = {  # ACCELERATOR of submit.sh -> (machine type, Dataflow service option, image)
    "cpu": ("n2-standard-8", None, "worker"),
    "nvidia-l4": ("g2-standard-8",
                  "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver", "worker"),
    "tpu-v5e": ("ct5lp-hightpu-1t", "worker_accelerator=type:tpu-v5-lite-podslice;topology:1x1",
                "worker-tpu"),
    "tpu-v6e": ("ct6e-standard-1t", "worker_accelerator=type:tpu-v6e-slice;topology:1x1",
                "worker-tpu"),
}


def image(name: str) -> str:
  return f"us-central1-docker.pkg.dev/fake-project/eqinfo/{name}@{DIGEST}"


def run_submit(method: str, **env) -> subprocess.CompletedProcess:
  """deploy/dataflow/submit.sh in its PRINT_ARGS mode, with this Python."""
  env = {**os.environ, "PRINT_ARGS": "1", "JOB_NAME": "eqinfo-compress-dry-run",
         "PYTHON": sys.executable, **env}
  return subprocess.run(["bash", str(SUBMIT), "fake-project", "fake-bucket", method,
                         "gs://fake-bucket/m1/3m", "--input", "builtin:pydoc"],
                        env=env, capture_output=True, text=True, check=False, timeout=60)


def submit_args(accelerator: str, method: str) -> list[str]:
  """The arguments deploy/dataflow/submit.sh would pass to `eqinfo` (its PRINT_ARGS mode)."""
  proc = run_submit(method, ACCELERATOR=accelerator, IMAGE=image(ACCELERATORS[accelerator][2]))
  assert proc.returncode == 0, proc.stderr
  return proc.stdout.splitlines()


def replace_flag(argv: list[str], flag: str, value: str | None) -> list[str]:
  """argv with `flag VALUE` set to `flag value` (dropped where value is None)."""
  i = argv.index(flag)
  return argv[:i] + ([flag, value] if value is not None else []) + argv[i + 2:]


@pytest.mark.parametrize("accelerator", sorted(ACCELERATORS))
@pytest.mark.parametrize("method,m1", [
    ("equal_info_ac[b=16,v=65k]", "context[order=2,fit=builtin:pydoc,docs=20]"),
    ("gzip[v=256]", None),
])
def test_submit_script_builds_the_dataflow_job(tmp_path, accelerator, method, m1):
  argv = submit_args(accelerator, method)
  assert argv[0] == "compress"
  # Offline: a table model for M1 (no bucket), a local output, no sdist of the working tree.
  argv = replace_flag(argv[1:], "--m1", m1)
  argv = replace_flag(argv, "--output", str(tmp_path / "out"))
  assert "--setup_file" not in argv  # one copy of the code on the workers: the image's
  # One SDK process owns an accelerator; a CPU worker runs one per vCPU (Dataflow's default).
  one_process = accelerator != "cpu"
  assert ("no_use_multiple_sdk_containers" in argv) == one_process
  assert ("--number_of_worker_harness_threads" in argv) == one_process
  argv = argv + ["--no_auth", "--dry_run=True"]
  config, beam_args = options.parse(argv + ["--groups_per_shard", "8"])
  result = compress.make_pipeline(config, beam_args).run()
  job = result.job.proto
  assert job.name == "eqinfo-compress-dry-run"
  labels = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
  for step in ("ReadShardInputs/ReadTask", "ReadShardInputs/SpreadShards",  # auto: on Dataflow
               "CodeShards/CodeShard", "WriteShard", "Finalize/WriteStats"):
    assert step in labels, sorted(labels)
  assert not [label for label in labels if "GroupByKey" in label and "Spread" not in label
              and "Finalize" not in label and "Vocabulary" not in label
              and "Accounting" not in label], sorted(labels)  # no shuffle of documents
  machine_type, service_option, image_name = ACCELERATORS[accelerator]
  assert (result.job.google_cloud_options.dataflow_service_options or []) == (
      [service_option] if service_option else [])
  assert result.job.options.view_as(WorkerOptions).machine_type == machine_type
  assert config.accelerator == {"cpu": "cpu", "nvidia-l4": "gpu"}.get(accelerator, "tpu")
  images = str(result.job.proto_pipeline.components.environments)
  assert image(image_name) in images
  assert not (tmp_path / "out" / shards.COMPLETED).exists()


def test_submit_script_names_the_accelerators_it_knows():
  proc = run_submit("bytes", ACCELERATOR="h100", IMAGE=image("worker"))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "submit.sh: ACCELERATOR must be cpu, nvidia-l4, tpu-v5e or tpu-v6e, got 'h100'"]


def test_submit_script_picks_cpu_workers_for_the_window_vocabulary():
  """b=16 codes by the window vocabulary (M1 runs once): CPU workers; per-symbol M1: GPUs."""
  for method, accelerator, options_given in (("equal_info_ac[b=16,v=65k]", "cpu", False),
                                             ("equal_info_ac[b=32,v=256]", "gpu", True),
                                             ("ac[v=256]", "gpu", True)):
    proc = run_submit(method, IMAGE=image("worker"))
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert argv[argv.index("--accelerator") + 1] == accelerator
    assert ("--dataflow_service_options" in argv) == options_given
    assert argv[argv.index("--sdk_container_image") + 1] == image("worker")


def test_submit_script_wants_an_image_digest_and_matching_versions(tmp_path):
  proc = run_submit("bytes", IMAGE="us-central1-docker.pkg.dev/p/eqinfo/worker:latest")
  assert proc.returncode == 2 and "IMAGE must name the worker image by digest" in proc.stderr
  fake = tmp_path / "python"
  fake.write_text("#!/bin/sh\necho 3.12 2.70.0\n")
  fake.chmod(0o755)
  proc = run_submit("bytes", IMAGE=image("worker"), PYTHON=str(fake))
  assert proc.returncode == 2
  assert proc.stderr.strip() == ("submit.sh: this machine has Python 3.12 and Beam 2.70.0, the "
                                 "worker image Python 3.11 and Beam 2.77.0; launch from a "
                                 "matching environment")


def test_every_script_passes_bash_n_and_shellcheck():
  scripts = sorted(str(p) for p in REPO.glob("**/*.sh") if ".venv" not in p.parts)
  scripts.append(str(REPO / ".ci" / "run"))
  assert len(scripts) >= 4
  for script in scripts:
    subprocess.run(["bash", "-n", script], check=True)
  shellcheck = pathlib.Path(sys.executable).parent / "shellcheck"
  done = subprocess.run([str(shellcheck), *scripts], capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stdout


def test_every_dofn_pickles():
  dofns = [
      sources.ReadShardInputsFn(corpus.InputSpec("jsonl", "gs://b/*.json.gz",
                                                 ((0, "gs://b/a.json.gz"),)), 128, 64),
      sources.ReadShardInputsFn(corpus.InputSpec("tfds", "tfds:c4/en:3.1.0", ((0, "0:10"),),
                                                 "c4/en:3.1.0", "train"), 128, 64,
                                tfds_data_dir="gs://b/tfds"),
      transforms.CodeShardFn("equal_info_ac[b=16,v=65k]", "gs://b/m1", 512, "continue", 10240,
                             256, True),
      accounting.ShardTotalsFn(65536),
      accounting.DropStatsFn(),
      sink.WriteShardFn("gs://b/out", "train", "gzip[v=256]", 256),
      sink.FinalizeFn("gs://b/out", {"vocab_size": 256}, "{}"),
  ]
  for fn in dofns:
    clone = cloudpickle.loads(cloudpickle.dumps(fn))
    assert type(clone) is type(fn)
    assert isinstance(clone, (beam.DoFn, beam.CombineFn))
