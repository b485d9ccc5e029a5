"""Every benchmark runs as its usage line says, on tiny settings, and reports what it promises.

Speeds are not asserted (they belong to the benchmarks' own JSON, read on a
quiet machine); the figures each one derives and the checks it makes are.
"""
import json
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import REPO

TINY = {
    "coder_fuzz.py": ["--windows", "3000", "--examples", "8", "--length", "512", "--lanes", "16",
                      "--bank", "64"],
    "m1_resume_bench.py": ["--repeats", "1", "--fraction", "0.5", "--shuffle_buffer", "64",
                           "--batch_size", "16"],
    "exact_m1_bench.py": ["--size", "tiny", "--lanes", "8", "--symbols", "32"],
    "m1_bench.py": ["--size", "tiny", "--lanes", "8", "--symbols", "16", "--steps", "2",
                    "--repeats", "1", "--max-len", "64"],
    "compressor_bench.py": ["--greedy_sample", "2000", "--lanes", "8", "--lane_symbols", "64",
                            "--sp_vocab", "500"],
    "pipeline_bench.py": ["--docs", "40", "--overhead_docs", "2", "--repeats", "1"],
    "pipeline_memory_bench.py": ["--sizes_mb", "1,3", "--methods", "bytes"],
    "window_vocab_bench.py": ["--m1_size", "tiny", "--m1_steps", "4", "--arith_lanes", "8",
                              "--arith_symbols", "32", "--sp_vocab", "500", "--sp_docs", "200"],
    "m2_bench.py": ["--sizes", "tiny", "--steps", "3", "--batch_size", "4"],
    "m2_step_bench.py": ["--size", "tiny", "--steps", "2", "--batch_size", "4", "--seq_len", "64",
                         "--token_vocab", "256", "--dtype", "float32", "--peak_flops", "1e12"],
}


def run_benchmark(script: str, data: pathlib.Path | None) -> dict:
  """Runs benchmarks/`script` with its TINY flags in a new process; its JSON (stdout)."""
  argv = [sys.executable, str(REPO / "benchmarks" / script), *TINY[script]]
  if data is not None:
    argv += ["--data", str(data)]
  done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600,
                        check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout[done.stdout.index("{"):])


def test_every_benchmark_is_covered():
  helpers = {"webtext.py"}  # where they read text, not a benchmark
  assert sorted(TINY) == sorted(p.name for p in (REPO / "benchmarks").glob("*.py")
                                if p.name not in helpers)


def test_benchmarks_read_the_text_that_eqinfo_webtext_names(tmp_path):
  def default_data(**env) -> str:
    done = subprocess.run([sys.executable, "-c", "import webtext; print(webtext.DEFAULT_DATA)"],
                          cwd=REPO / "benchmarks", env=env, capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.strip()
  assert default_data(EQINFO_WEBTEXT=str(tmp_path)) == str(tmp_path)
  assert default_data() == str(REPO.parent / "shared" / "data" / "webtext")


def test_m1_resume_bench(webtext_dir):
  result = run_benchmark("m1_resume_bench.py", webtext_dir)
  assert result["same_next_batch"]
  assert 0 < result["restore"]["documents_read"] < result["replay"]["documents_read"]
  assert result["sequences_cut_again"] < result["resumed_at_sequence"]


def test_exact_m1_bench(webtext_dir):
  result = run_benchmark("exact_m1_bench.py", webtext_dir)
  import jax  # pylint: disable=import-outside-toplevel
  assert (result["size"], result["lanes"], result["backend"]) == ("tiny", 8,
                                                                 jax.default_backend())
  assert result["exact_over_float"] == pytest.approx(
      result["exact_symbols_per_s"] / result["float_symbols_per_s"], abs=2e-3)
  for name in ("float", "exact"):  # the model's share of the timed encode
    assert 0 < result[f"{name}_model_fraction"] < 1


def test_m1_bench(webtext_dir):
  result = run_benchmark("m1_bench.py", webtext_dir)
  (coding,) = result["coding"]
  assert (coding["lanes"], coding["symbols"]) == (8, 8 * 16)
  assert coding["m1_steps_per_symbol"] <= 1 <= coding["inputs_per_symbol"]
  assert 0 < coding["fraction_per_symbol"] < 1 and result["memory"]["lanes"] == 8


def test_compressor_bench(webtext_dir):
  result = run_benchmark("compressor_bench.py", webtext_dir)
  ratios, bit_ratios = result["compression_ratios"], result["raw_bits_per_coded_bit"]
  assert {"bytes", "gzip[v=256]", "ac[v=65k]", "static_ac[v=256]", "sentencepiece",
          "equal_info_ac[b=16,v=65k]"} <= set(ratios) == set(bit_ratios)
  assert bit_ratios["ac[v=256]"] > bit_ratios["equal_info_ac[b=16,v=256]"] > bit_ratios["bytes"]
  assert ratios["bytes"] == bit_ratios["bytes"] == 1.0  # a token counts as a byte, as in
  # stats.json (training/shards.py: raw_bits_per_coded_bit)
  for v256, v65k in (("ac[v=256]", "ac[v=65k]"), ("gzip[v=256]", "gzip[v=65k]")):
    assert ratios[v65k] == pytest.approx(2 * ratios[v256], rel=1e-2)  # 16-bit tokens
    assert bit_ratios[v65k] == pytest.approx(bit_ratios[v256], rel=1e-2)
  rule = result["greedy_rule"]
  assert rule["greedy_wrong_windows"] > 0  # the paper's rule mis-decodes windows
  assert rule["lossless_windows"] > 0 and rule["sample_symbols"] == 2000


def test_pipeline_bench(webtext_dir):
  result = run_benchmark("pipeline_bench.py", webtext_dir)
  assert set(result["runs"]) == {"workers_1", "workers_2"}
  assert all(run["input_bytes_per_s"] > 0 for run in result["runs"].values())
  seconds = result["time_shares"]["seconds"]  # the vocabulary build's M1 calls are M1's time
  assert seconds["m1"] > 0 and seconds["m1_fit"] > 0
  for name, run in result["runs"].items():  # extra bytes over extra CPU of workers and driver
    small = result["overhead_runs"][name]
    cpu = lambda r: sum(r["cpu_s_per_worker"]) + r["driver_cpu_s"]
    extra = max(cpu(run) - cpu(small), 1e-9)
    assert run["steady_bytes_per_cpu_s"] == pytest.approx(
        (run["bytes_in"] - small["bytes_in"]) / extra, rel=1e-6, abs=1)


def test_pipeline_memory_bench(webtext_dir):
  result = run_benchmark("pipeline_memory_bench.py", webtext_dir)
  (method,) = result["methods"]
  small, large = result["methods"][method]["runs"]
  assert 1e6 <= small["bytes_in"] < 3e6 <= large["bytes_in"] and small["peak_rss_mb"] > 0
  assert result["methods"][method]["rss_bytes_per_input_byte"] == pytest.approx(
      (large["peak_rss_mb"] - small["peak_rss_mb"]) * 1e6 / (large["bytes_in"]
                                                           - small["bytes_in"]), abs=1e-3)
  assert result["methods"][method]["bytes_per_s_vs_read"] == [
      pytest.approx(r["bytes_per_s"] / result["read_bytes_per_s"], abs=1e-3)
      for r in (small, large)]


def test_window_vocab_bench(webtext_dir):
  result = run_benchmark("window_vocab_bench.py", webtext_dir)
  assert result["identical"]  # the vocabulary's tokens are the arithmetic coder's
  assert result["arith_lanes"] == 8 and result["arith_symbols"] == 8 * 32
  assert result["distinct_strings"] <= result["tree_nodes"]
  assert result["vocab_over_arith"] == pytest.approx(
      result["vocab_symbols_per_s"] / result["arith_symbols_per_s"], rel=0.01)
  assert result["vocab_over_sentencepiece"] == pytest.approx(
      result["vocab_symbols_per_s"] / result["sentencepiece_symbols_per_s"], rel=0.01)


def test_m2_bench():
  result = run_benchmark("m2_bench.py", None)
  row = result["sizes"]["tiny"]
  assert row["packed"]["bytes_per_step"] >= row["record_per_row"]["bytes_per_step"] > 0
  for mode in ("packed", "record_per_row"):
    assert row[mode]["input_batches_per_s"] > 0
    assert row[mode]["input_headroom"] == pytest.approx(
        row[mode]["input_batches_per_s"] / row[mode]["steps_per_s"], rel=0.02)
  assert row["packed_over_record_per_row_bytes_per_s"] == pytest.approx(
      row["packed"]["text_bytes_per_s"] / row["record_per_row"]["text_bytes_per_s"], abs=2e-3)


def test_m2_step_bench():
  result = run_benchmark("m2_step_bench.py", None)
  logits = 2 * 64 * 256  # tiny's d_model x v=256: the output projection
  assert result["train_flops_per_token"] > 3 * (2 * result["non_embedding_params"] + logits)
  assert result["logits"] == "whole"  # v=256: the chunked mode is forced
  for mode in ("rows", "packed", "rows_chunked_logits"):
    row = result[mode]
    assert row["tokens_per_s"] == pytest.approx(row["steps_per_s"] * 4 * 64, rel=1e-3)
    assert row["mfu"] == pytest.approx(  # both rounded to 4 decimals
        result["train_flops_per_token"] * row["tokens_per_s"] / result["matmul_flops_per_s"],
        abs=6e-5)
    assert row["mfu_vs_peak"] == pytest.approx(
        result["train_flops_per_token"] * row["tokens_per_s"] / 1e12, abs=6e-5)
    assert row["step_memory_gib"] > 0
  assert result["packed_over_rows"] == pytest.approx(
      result["packed"]["steps_per_s"] / result["rows"]["steps_per_s"], abs=2e-3)
  assert result["chunked_over_whole"] == pytest.approx(
      result["rows_chunked_logits"]["steps_per_s"] / result["rows"]["steps_per_s"], abs=2e-3)


def test_coder_fuzz():
  result = run_benchmark("coder_fuzz.py", None)
  assert result["mismatches"] == 0 and result["windows"] >= 3000
  settings = result["settings"]
  assert len(settings) == 3 * 6 * 2  # modes x b x v
  assert all(s["mismatches"] == 0 and s["windows"] > 0 for s in settings.values())
  assert result["literal_windows"] > 0  # random first symbols took the literal escape
  peaked = settings["peaked equal_info_ac[b=16,v=256]"]
  assert peaked["symbols"] / peaked["windows"] > 50  # the longest windows were coded
