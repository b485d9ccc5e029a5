"""Failures during `eqinfo compress`: recovered without duplicates, or failed without COMPLETED.

Beam 2.77's DirectRunner runs a batch pipeline on the FnApiRunner (it tries
Prism first, which is not available offline), in every
`--direct_running_mode`. The FnApiRunner does not retry a bundle: an exception
that leaves a DoFn fails the job. (The BundleBasedDirectRunner retries a
bundle up to 4 times, but it cannot run this pipeline: its GroupByKey
evaluator trips an assertion in Finalize/FirstErrorLines.) Hence two tests:

- a model (with `--coder arithmetic`) or a window tokenizer (with the
  vocabulary) that fails on one batch: `CompressFn` catches the error and codes
  the batch again example by example, so the shards are byte-identical to an
  undisturbed run's and every example is counted once;
- a failure that leaves a DoFn (the shard writer, after a shard landed):
  the job fails without stats.json or COMPLETED, and running the same job
  again, into a fresh directory or over the failed one with --overwrite,
  gives the undisturbed run's shards.

Both inject the failure by patching module functions, so they run the
pipeline in this process (`in_memory`); a marker file makes each failure
happen exactly once, however many processes would call.
"""
import collections
import json
import os
import pathlib
import traceback

import pytest

from compressor.models.base import Lanes, ProbabilityModel
from compressor.window_tokenizer import WindowTokenizer
from pipelines import compress, m1_loader, options, sink
from training import shards

IN_MEMORY = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
METHOD = "equal_info_ac[b=16,v=256]"


def claim(marker: pathlib.Path) -> bool:
  """Creates `marker` holding the caller's stack; True for the one caller that created it."""
  try:
    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    f.write("".join(traceback.format_stack()))
  return True


class FailOnceLanes(Lanes):
  """Lanes of another model, except that the first `tables()` overall raises."""

  def __init__(self, inner: Lanes, marker: pathlib.Path):
    super().__init__(inner.num_lanes)
    self._inner = inner
    self._marker = marker

  def tables(self):
    if claim(self._marker):
      raise RuntimeError("transient M1 failure (injected by the test)")
    return self._inner.tables()

  def update(self, symbols, push, reset) -> None:
    self._inner.update(symbols, push, reset)


class FailOnceModel(ProbabilityModel):
  """A model whose lanes fail once (see FailOnceLanes); otherwise exactly `inner`."""

  def __init__(self, inner: ProbabilityModel, marker: pathlib.Path):
    self._inner = inner
    self._marker = marker
    self.fingerprint = inner.fingerprint

  def freqs(self, contexts):
    return self._inner.freqs(contexts)

  def lanes(self, num_lanes: int) -> Lanes:
    return FailOnceLanes(self._inner.lanes(num_lanes), self._marker)


def _config(corpus: pathlib.Path, output: pathlib.Path, **flags) -> options.CompressConfig:
  return options.CompressConfig(input=str(corpus), method=METHOD, output=str(output),
                                m1=f"context[order=3,fit={corpus}]",
                                batch_size=8, **flags)


def _outputs(output: pathlib.Path) -> dict[str, bytes]:
  """Shards and stats.json by name."""
  return {p.name: p.read_bytes()
          for p in sorted(output.glob("*.array_record")) + [output / shards.STATS]}


def _counters(result) -> collections.Counter:
  from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=import-outside-toplevel
  counters = collections.Counter()
  for c in result.metrics().query(MetricsFilter())["counters"]:
    counters[c.key.metric.name] += c.committed
  return counters


@pytest.fixture(scope="module")
def undisturbed(small_jsonl, tmp_path_factory) -> pathlib.Path:
  """The output directory of a run without failures."""
  out = tmp_path_factory.mktemp("undisturbed")
  assert compress.compress(_config(small_jsonl, out), IN_MEMORY) is not None
  return out


def _shards(output: pathlib.Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(output.glob("*.array_record"))}


def _run_and_check_once_failed(config, marker, undisturbed):
  """Runs `config`; checks the failure hit a batch and the result is the undisturbed run's."""
  result = compress.make_pipeline(config, IN_MEMORY).run()
  result.wait_until_finish()
  out = pathlib.Path(config.output)
  assert "in _pack" in marker.read_text()  # the failure hit CompressFn's batch
  assert (out / shards.COMPLETED).exists()
  assert _shards(out) == _shards(undisturbed)
  counters = _counters(result)
  keys = [r["key"] for p in shards.shard_paths(str(out))
          for r in shards.read_shard(p)]
  stats = json.loads((out / shards.STATS).read_text())
  assert len(keys) == len(set(keys)) == stats["examples"] == counters["m2_examples"]
  assert stats["dropped"] == {} and counters["dropped_coding_failed"] == 0
  return stats


def test_a_batch_that_fails_is_coded_again_once(small_jsonl, undisturbed, tmp_path,
                                                monkeypatch):
  marker = tmp_path / "failed-once"
  load_model = m1_loader.load_model
  monkeypatch.setattr(m1_loader, "load_model",
                      lambda spec, device=None: FailOnceModel(load_model(spec, device), marker))
  monkeypatch.setattr(m1_loader, "_METHODS", {})  # the per-process cache of shared_method
  config = _config(small_jsonl, tmp_path / "out", coder="arithmetic")
  stats = _run_and_check_once_failed(config, marker, undisturbed)
  assert stats["coder"] == "arithmetic"  # M1 per symbol gives the vocabulary's shards


def test_a_batch_the_window_tokenizer_fails_is_coded_again_once(small_jsonl, undisturbed,
                                                                tmp_path, monkeypatch):
  marker = tmp_path / "failed-once"
  encode = WindowTokenizer.encode

  def fail_once(self, examples, max_codes=None):
    if claim(marker):
      raise RuntimeError("transient tokenizer failure (injected by the test)")
    return encode(self, examples, max_codes)

  monkeypatch.setattr(WindowTokenizer, "encode", fail_once)
  monkeypatch.setattr(m1_loader, "_METHODS", {})
  stats = _run_and_check_once_failed(_config(small_jsonl, tmp_path / "out"), marker, undisturbed)
  assert stats["coder"] == "vocabulary"
  assert _outputs(tmp_path / "out") == _outputs(undisturbed)


def test_a_crash_leaves_no_completed_and_a_rerun_matches(small_jsonl, undisturbed, tmp_path,
                                                         monkeypatch):
  marker = tmp_path / "crashed-once"
  write = sink.write_array_record

  def write_then_crash(path, records):
    write(path, records)
    if claim(marker):
      raise OSError("worker lost after writing a shard (injected by the test)")

  monkeypatch.setattr(sink, "write_array_record", write_then_crash)
  crashed = tmp_path / "crashed"
  with pytest.raises(Exception, match="injected by the test"):
    compress.compress(_config(small_jsonl, crashed), IN_MEMORY)
  assert list(crashed.glob("*.array_record"))  # a shard landed before the crash
  assert not (crashed / shards.COMPLETED).exists() and not (crashed / shards.STATS).exists()
  with pytest.raises(FileExistsError, match="--overwrite"):
    compress.make_pipeline(_config(small_jsonl, crashed), IN_MEMORY)

  fresh = tmp_path / "fresh"
  assert compress.compress(_config(small_jsonl, fresh), IN_MEMORY) is not None
  assert compress.compress(_config(small_jsonl, crashed, overwrite=True), IN_MEMORY) is not None
  assert _outputs(fresh) == _outputs(crashed) == _outputs(undisturbed)
  assert (crashed / shards.COMPLETED).exists()
