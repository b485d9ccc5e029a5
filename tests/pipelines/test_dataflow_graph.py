"""The Dataflow graph, built offline: DataflowRunner with --dry_run, no cloud call.

This catches DoFns that do not pickle, labels that collide and options that
Dataflow rejects, without a project: the runner translates the pipeline into a
job description and returns before submitting it. `--setup_file` is left out
here only because the runner would build an sdist in the working tree.
"""
import apache_beam as beam
import cloudpickle
import pytest

from pipelines import compress, options, sink, sources, transforms

DATAFLOW_ARGS = [
    "--runner=DataflowRunner",
    "--project=fake-project",
    "--region=us-central1",
    "--job_name=eqinfo-compress-dry-run",
    "--temp_location=gs://fake-bucket/tmp",
    "--staging_location=gs://fake-bucket/staging",
    "--no_auth",
    "--dry_run=True",
    "--sdk_location=container",
    "--sdk_container_image=us-central1-docker.pkg.dev/fake-project/eqinfo/worker:latest",
    "--experiments=use_runner_v2",
    "--experiments=no_use_multiple_sdk_containers",
    "--machine_type=g2-standard-8",
    "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
    "--number_of_worker_harness_threads=1",
]


@pytest.mark.parametrize("method,m1", [
    ("equal_info_ac[b=16,v=65k]", "context[order=2,fit=builtin:pydoc,docs=20]"),
    ("gzip[v=256]", None),
])
def test_dataflow_dry_run_builds_the_job(tmp_path, method, m1):
  argv = ["--input", "builtin:pydoc", "--method", method, "--output", str(tmp_path / "out"),
          "--num_shards", "8"] + (["--m1", m1] if m1 else []) + DATAFLOW_ARGS
  config, beam_args = options.parse(argv)
  assert beam_args == DATAFLOW_ARGS
  result = compress.make_pipeline(config, beam_args).run()
  job = result.job.proto
  assert job.name == "eqinfo-compress-dry-run"
  labels = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
  for step in ("ReadDocuments/ReadTask", "Screen", "GroupDocuments/GroupByKey", "MakeExamples",
               "Compress/Pack", "WriteShards/WriteShard", "Finalize/WriteStats"):
    assert step in labels, sorted(labels)
  assert ("Compress/Verify" in labels) == config.verify
  assert result.job.google_cloud_options.dataflow_service_options == [
      "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
  images = str(result.job.proto_pipeline.components.environments)
  assert "us-central1-docker.pkg.dev/fake-project/eqinfo/worker:latest" in images
  assert not (tmp_path / "out" / sink.COMPLETED).exists()


def test_every_dofn_pickles():
  dofns = [
      sources.ReadTaskFn("jsonl", "gs://b/*.json.gz"),
      sources.ReadTaskFn("tfds", "tfds:c4/en:3.1.0", tfds_data_dir="gs://b/tfds"),
      transforms.ScreenDocumentsFn(10),
      transforms.MakeExamplesFn(10240),
      transforms.CompressFn("equal_info_ac[b=16,v=65k]", "gs://b/m1", 512, "continue", True),
      transforms.VerifyFn("equal_info_ac[b=16,v=65k]", "gs://b/m1"),
      transforms.RecordStatsFn(65536),
      transforms.DropStatsFn(),
      sink.WriteShardFn("gs://b/out", "train", "gzip[v=256]", 4),
      sink.FinalizeFn("gs://b/out", {"vocab_size": 256}, "{}"),
  ]
  for fn in dofns:
    clone = cloudpickle.loads(cloudpickle.dumps(fn))
    assert type(clone) is type(fn)
    assert isinstance(clone, (beam.DoFn, beam.CombineFn))
