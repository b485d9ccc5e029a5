"""The Dataflow graph, built offline: DataflowRunner with --dry_run, no cloud call.

This catches DoFns that do not pickle, labels that collide and options that
Dataflow rejects, without a project: the runner translates the pipeline into a
job description and returns before submitting it. The options are the ones
deploy/dataflow/submit.sh passes for each accelerator it knows; `--setup_file`
is left out here only because the runner would build an sdist in the working
tree, and `--m1` is a table model because the test has no bucket.
"""
import os
import pathlib
import subprocess

import apache_beam as beam
from apache_beam.options.pipeline_options import WorkerOptions
import cloudpickle
import pytest

from compressor import corpus
from pipelines import accounting, compress, options, sink, sources, transforms
from training import shards

SUBMIT = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "dataflow" / "submit.sh"
ACCELERATORS = {  # ACCELERATOR of submit.sh -> (machine type, Dataflow service option, image)
    "nvidia-l4": ("g2-standard-8",
                  "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver", "worker"),
    "tpu-v5e": ("ct5lp-hightpu-1t", "worker_accelerator=type:tpu-v5-lite-podslice;topology:1x1",
                "worker-tpu"),
    "tpu-v6e": ("ct6e-standard-1t", "worker_accelerator=type:tpu-v6e-slice;topology:1x1",
                "worker-tpu"),
}


def submit_args(accelerator: str, method: str) -> list[str]:
  """The arguments deploy/dataflow/submit.sh would pass to `eqinfo` (its PRINT_ARGS mode)."""
  env = {**os.environ, "PRINT_ARGS": "1", "ACCELERATOR": accelerator,
         "JOB_NAME": "eqinfo-compress-dry-run"}
  proc = subprocess.run(["bash", str(SUBMIT), "fake-project", "fake-bucket", method,
                         "gs://fake-bucket/m1/3m", "--input", "builtin:pydoc"],
                        env=env, capture_output=True, text=True, check=True, timeout=60)
  return proc.stdout.splitlines()


def replace_flag(argv: list[str], flag: str, value: str | None) -> list[str]:
  """argv with `flag VALUE` set to `flag value`, or dropped when value is None."""
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
  argv = replace_flag(argv, "--setup_file", None) + ["--no_auth", "--dry_run=True"]
  config, beam_args = options.parse(argv + ["--num_shards", "8"])
  result = compress.make_pipeline(config, beam_args).run()
  job = result.job.proto
  assert job.name == "eqinfo-compress-dry-run"
  labels = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
  for step in ("ReadDocuments/ReadTask", "Screen", "GroupDocuments/GroupByKey", "MakeExamples",
               "Compress/Pack", "WriteShards/WriteShard", "Finalize/WriteStats"):
    assert step in labels, sorted(labels)
  assert ("Compress/Verify" in labels) == config.verify
  machine_type, service_option, image = ACCELERATORS[accelerator]
  assert result.job.google_cloud_options.dataflow_service_options == [service_option]
  assert result.job.options.view_as(WorkerOptions).machine_type == machine_type
  images = str(result.job.proto_pipeline.components.environments)
  assert f"us-central1-docker.pkg.dev/fake-project/eqinfo/{image}:latest" in images
  assert not (tmp_path / "out" / shards.COMPLETED).exists()


def test_submit_script_names_the_accelerators_it_knows():
  env = {**os.environ, "ACCELERATOR": "h100"}
  proc = subprocess.run(["bash", str(SUBMIT), "p", "b", "bytes", "gs://b/m1"], env=env,
                        capture_output=True, text=True, check=False, timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "submit.sh: ACCELERATOR must be nvidia-l4, tpu-v5e or tpu-v6e, got 'h100'"]


def test_every_dofn_pickles():
  dofns = [
      sources.ReadTaskFn(corpus.InputSpec("jsonl", "gs://b/*.json.gz", ((0, "gs://b/a.json.gz"),))),
      sources.ReadTaskFn(corpus.InputSpec("tfds", "tfds:c4/en:3.1.0", ((0, "0:10"),),
                                          "c4/en:3.1.0", "train"), tfds_data_dir="gs://b/tfds"),
      transforms.ScreenDocumentsFn(10),
      transforms.MakeExamplesFn(10240),
      transforms.CompressFn("equal_info_ac[b=16,v=65k]", "gs://b/m1", 512, "continue", True),
      transforms.VerifyFn("equal_info_ac[b=16,v=65k]", "gs://b/m1"),
      accounting.RecordStatsFn(65536),
      accounting.DropStatsFn(),
      sink.WriteShardFn("gs://b/out", "train", "gzip[v=256]", 4),
      sink.FinalizeFn("gs://b/out", {"vocab_size": 256}, "{}"),
  ]
  for fn in dofns:
    clone = cloudpickle.loads(cloudpickle.dumps(fn))
    assert type(clone) is type(fn)
    assert isinstance(clone, (beam.DoFn, beam.CombineFn))
