"""--m1 specs, the typed flags, and a smoke run of `eqinfo demo`."""
import json
import logging

import numpy as np
import pytest
from apache_beam.options.pipeline_options import StandardOptions

from pipelines import cli, compress, demo, m1_loader, options


def test_context_and_unigram_specs_fit_deterministically(tmp_path):
  (tmp_path / "a,b.txt").write_text("the quick brown fox " * 20)
  spec = f"context[order=2,fit=text:{tmp_path}/a,b.txt,min_count=1]"  # a comma in fit=
  first, second = m1_loader.load_model(spec), m1_loader.load_model(spec)
  assert first.order == 2 and first.min_count == 1
  assert first.fingerprint and first.fingerprint == second.fingerprint
  unigram = m1_loader.load_model("unigram[fit=builtin:pydoc,docs=5]")
  assert unigram.fingerprint
  method = m1_loader.build_method("static_ac[v=256]", "unigram[fit=builtin:pydoc,docs=5]")
  x = np.frombuffer(b"static arithmetic coding", np.uint8).astype(np.int32)
  np.testing.assert_array_equal(method.decode(method.encode(x).tokens), x)
  assert m1_loader.load_model(None) is None and m1_loader.load_model("none") is None


@pytest.mark.parametrize("spec,message", [
    ("context[order=3]", "needs fit=SRC"),
    ("context[order=x,fit=builtin:pydoc]", "bad --m1"),
    ("context[order=3,fit=builtin:pydoc,alpha=2]", "argument 'alpha=2'"),
    ("/no/such/m1", "does not exist"),
])
def test_bad_m1_specs(spec, message):
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    m1_loader.load_model(spec)


def test_model_free_methods_ignore_m1():
  assert not m1_loader.needs_model("gzip[v=65k]") and m1_loader.needs_model("ac[v=256]")
  assert m1_loader.build_method("bytes", "context[order=3,fit=/missing]").spec == "bytes"


def test_flags_split_app_and_beam():
  config, beam_args = options.parse([
      "--input", "builtin:pydoc", "--method", "bytes", "--output", "/tmp/x", "--noverify",
      "--max_doc_bytes", "none", "--runner", "DirectRunner", "--direct_num_workers=2"])
  assert not config.verify and config.max_doc_bytes is None and config.packing == "continue"
  assert beam_args == ["--runner", "DirectRunner", "--direct_num_workers=2"]
  assert json.loads(config.to_json())["max_tokens"] == 512
  with pytest.raises(ValueError, match="--groups_per_shard"):
    options.parse(["--input", "a", "--method", "b", "--output", "c", "--groups_per_shard", "0"])
  with pytest.raises(ValueError, match="--num_shards is no longer a flag of eqinfo compress: "
                     "a shard holds --groups_per_shard groups"):
    options.parse(["--input", "a", "--method", "b", "--output", "c", "--num_shards", "4"])
  with pytest.raises(ValueError, match="--spread_shards"):
    options.CompressConfig(input="a", method="b", output="c", spread_shards="x")
  base = ["--input", "a", "--method", "b", "--output", "c"]
  assert options.parse(base + ["--verify_fraction", "0.01"])[0].verify_fraction == 0.01
  for bad in ("0", "1.5"):
    with pytest.raises(ValueError, match="--verify_fraction"):
      options.parse(base + ["--verify_fraction", bad])
  with pytest.raises(ValueError, match="unknown config keys"):
    options.CompressConfig.from_dict({"input": "a", "method": "b", "output": "c", "shards": 3})


def test_demo_smoke(tmp_path, capsys, caplog):
  caplog.set_level(logging.INFO)
  assert cli.main(["demo", "--max_docs", "12", "--output", str(tmp_path / "demo")]) == 0
  out = capsys.readouterr().out
  assert demo.DEMO_METHOD in out and "every record decodes to its text" in out
  assert "compression ratio" in out and "record 1:" in out
  assert (tmp_path / "demo" / "COMPLETED").exists()
  assert "Prism" not in caplog.text  # one local runner, no download tried


def test_the_runner_is_the_fn_api_runner_unless_named():
  runner = lambda args: compress.pipeline_options(args).view_as(StandardOptions).runner
  assert runner([]) == "FnApiRunner" and runner(["--direct_num_workers=2"]) == "FnApiRunner"
  assert runner(["--runner", "DataflowRunner"]) == "DataflowRunner"


@pytest.mark.parametrize("flag, hint", [
    ("--groups_per_shards", "did you mean --groups_per_shard?"),
    ("--bogus_flag", "eqinfo compress --help"),
    ("--direct_num_worker", "did you mean --direct_num_workers?"),
])
def test_a_flag_nobody_knows_is_a_one_line_error(tmp_path, capsys, flag, hint):
  """Beam passes unknown flags through; a typo must not run a job with the default."""
  assert cli.main(["compress", "--input", "builtin:pydoc", "--method", "bytes",
                   "--output", str(tmp_path / "out"), flag, "3"]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and f"unknown flag {flag};" in err and hint in err
  assert not (tmp_path / "out").exists()  # before any work


def test_a_flag_nobody_knows_stops_the_demo_too(tmp_path, capsys):
  assert cli.main(["demo", "--max_docs", "2", "--output", str(tmp_path / "out"),
                   "--batchsize", "8"]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "unknown flag --batchsize;" in err
  assert "eqinfo demo --help" in err and not (tmp_path / "out").exists()


def test_beam_flags_pass():
  config, beam_args = options.parse([
      "--input", "x", "--method", "bytes", "--output", "o", "--runner", "DataflowRunner",
      "--experiments", "use_runner_v2", "--direct_num_workers=2", "--sdk_container_image", "i",
      "--dataflow_service_options", "worker_accelerator=type:nvidia-l4;count:1",
      "--number_of_worker_harness_threads", "1", "--machine_type", "g2-standard-8"])
  assert config.input == "x" and "--runner" in beam_args and len(beam_args) == 13


def test_dry_run_builds_the_graph_and_runs_nothing(tmp_path, capsys):
  """--dry_run means "build and show the graph" under the DirectRunner too, not a full run."""
  out = tmp_path / "out"
  out.mkdir()
  (out / "keep.txt").write_text("an earlier file")
  assert cli.main(["compress", "--input", "builtin:pydoc", "--method", "bytes",
                   "--output", str(out), "--dry_run=True"]) == 0
  text = capsys.readouterr().out
  assert "--dry_run: built the pipeline and ran nothing;" in text
  assert "ReadShardInputs -> CodeShards -> WriteShard -> AllErrors -> Accounting" in text
  assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # nothing written or cleared
