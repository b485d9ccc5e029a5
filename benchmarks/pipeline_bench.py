"""Throughput of `eqinfo compress` on the DirectRunner with 1 and 2 worker processes, as JSON.

Usage:
  python benchmarks/pipeline_bench.py [--data ../shared/data/webtext] [--docs 5000] [--repeats 2]
      [--m1 SPEC] [--coder auto|vocabulary|arithmetic] [--out bench.json]

Every run calls `pipelines.compress.run(argv)` on the first `--docs` documents
of each file of both splits (`*/*.jsonl.gz`: validation and train, 8 MB, so that the
job has enough 128-example batches to spread over two workers), with
EqualInfoAC[b=16, v=65k] and `--coder` (default auto: the window vocabulary).
M1 is `--m1`, by default an order-3 `ContextModel` fitted on the first file of
`train/` (a throughput measurement: coding its own fit data is fine); pass
an `eqinfo train-m1` directory to time the exact M1:

  * `runs`: wall time of the whole job (driver fit, worker start-up, the
    workers' own fit in `setup()`, every stage) with
    `--direct_num_workers=N --direct_running_mode=multi_processing`, N = 1, 2;
    `input_bytes_per_s` = stats.json's bytes_in / wall time.
  * `overhead_runs`: the same command on `--overhead_docs` documents per file;
    `steady_bytes_per_s` = extra bytes / extra seconds between the two runs,
    i.e. the throughput with fixed costs (start-up, M1 fits) taken out;
    `steady_bytes_per_cpu_s` = extra bytes / extra CPU seconds of the workers
    and the driver, what a corpus costs in core-hours.
  * `speedup`: 2-worker over 1-worker throughput, end to end and steady.
  * `cpu_s_per_worker`, `driver_cpu_s`: CPU seconds of each SDK worker and of
    this process (the runner: shuffles, side inputs, scheduling) in a run.
    `worker_cpu_speedup` = the 1-worker run's worker CPU / the busiest
    worker's CPU with 2 workers: the speed-up of the workers' part on two
    free cores, which wall times cannot show while other processes keep the
    CPUs busy (see `load_average`); `worker_balance` = least / most busy
    worker's CPU with 2 workers.
  * `peak_rss_mb`: peak resident memory of each SDK worker process (sampled
    with psutil every 0.1 s) and of the driver.
  * `time_shares`: one in-process run (`in_memory`, 1 worker) with M1 (its
    lanes' `tables()` and `update()` in arithmetic coding, its `freqs()` in
    the window vocabulary's build: the context model, the float and the
    exact M1), `encode_batch`, `decode_batch` and the
    model fit timed exclusively (nested calls subtracted): M1, coder
    (encode, decode for verification), model fit, and the rest (reading,
    grouping, serialization, shards, Beam).
  * `m1_fit_s`: one fit of the M1 spec in this process.
  * `load_average`: the machine's 1-minute load before and after (other
    processes share the CPUs and skew every number).
"""
import argparse
import collections
import contextlib
import functools
import json
import os
import pathlib
import resource
import shlex
import sys
import tempfile
import threading
import time

import psutil

from compressor.methods.equal_info import EqualInfoACMethod
from compressor.models.context import ContextLanes, ContextModel
from pipelines import compress, m1_loader
from training import shards
from training.m1.exact import ExactLanes, ExactM1Model
from training.m1.float_m1 import M1Lanes, M1Model
from webtext import DEFAULT_DATA  # benchmarks/webtext.py

METHOD = "equal_info_ac[b=16,v=65k]"
WORKER_MARK = "sdk_worker_main"  # in the command line of Beam's SDK worker processes
IN_MEMORY = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def multi_processing(workers: int) -> list[str]:
  return [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]


SPLITS = "*"  # every split directory of --data


def fit_file(data: pathlib.Path) -> pathlib.Path:
  """The first file of train/ in name order (the real C4 shard's start in the shared text)."""
  return sorted((data / "train").glob("*.jsonl.gz"))[0]


def default_m1(data: pathlib.Path) -> str:
  return f"context[order=3,fit={fit_file(data)}]"


def compress_argv(data: pathlib.Path, docs: int, output: str, beam_args: list[str],
                  m1: str | None = None, coder: str = "auto") -> list[str]:
  """The `eqinfo compress` arguments of one run."""
  return ["--input", str(data / SPLITS / "*.jsonl.gz"), "--method", METHOD,
          "--m1", m1 or default_m1(data), "--coder", coder,
          "--output", output, "--max_docs_per_file", str(docs),
          "--overwrite"] + beam_args


def command_line(argv: list[str]) -> str:
  return "eqinfo compress " + " ".join(shlex.quote(a) for a in argv)


def cpu_seconds(process: psutil.Process) -> float:
  times = process.cpu_times()
  return times.user + times.system


class RssSampler:
  """Samples the resident memory of this process's descendants in a thread.

  Attributes:
    peaks: {pid: peak RSS in bytes}.
    cpu_s: {pid: CPU seconds (user + system) at the last sample}.
    names: {pid: "worker" for Beam SDK workers, else the process name}.
  """

  def __init__(self, interval_s: float = 0.1):
    self._interval_s = interval_s
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self.peaks = collections.Counter()
    self.cpu_s = {}
    self.names = {}

  def _sample(self):
    for child in psutil.Process().children(recursive=True):
      try:
        rss = child.memory_info().rss
        self.cpu_s[child.pid] = cpu_seconds(child)
        if child.pid not in self.names:
          worker = child.name().startswith("python") and WORKER_MARK in " ".join(child.cmdline())
          self.names[child.pid] = "worker" if worker else child.name()
      except psutil.Error:
        continue
      self.peaks[child.pid] = max(self.peaks[child.pid], rss)

  def _loop(self):
    while not self._stop.is_set():
      self._sample()
      self._stop.wait(self._interval_s)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()

  def _workers(self) -> list[int]:
    return [pid for pid, name in self.names.items() if name == "worker"]

  def worker_peaks_mb(self) -> list[float]:
    return sorted((round(self.peaks[pid] / 2**20, 1) for pid in self._workers()), reverse=True)

  def worker_cpu_s(self) -> list[float]:
    return sorted((round(self.cpu_s[pid], 1) for pid in self._workers()), reverse=True)


def run_job(argv: list[str]) -> dict:
  """Runs `eqinfo compress argv` and returns its wall time, bytes and worker memory."""
  output = argv[argv.index("--output") + 1]
  start, driver_start = time.perf_counter(), cpu_seconds(psutil.Process())
  with RssSampler() as rss, contextlib.redirect_stdout(sys.stderr):
    status = compress.run(argv)
  wall = time.perf_counter() - start
  driver_cpu = cpu_seconds(psutil.Process()) - driver_start
  if status != 0:
    raise RuntimeError(f"{command_line(argv)} exited with {status}")
  stats = json.loads(pathlib.Path(output, shards.STATS).read_text())
  return {"command": command_line(argv), "wall_s": round(wall, 2),
          "bytes_in": stats["bytes_in"], "m1_examples": stats["m1_examples"],
          "m2_examples": stats["examples"],
          "input_bytes_per_s": round(stats["bytes_in"] / wall),
          "peak_rss_mb_per_worker": rss.worker_peaks_mb(),
          "cpu_s_per_worker": rss.worker_cpu_s(), "driver_cpu_s": round(driver_cpu, 1)}


class ExclusiveTimers:
  """Times methods by patching them; a call's time excludes the timed calls it makes."""

  def __init__(self):
    self.seconds = collections.Counter()
    self._local = threading.local()

  def _timed(self, key: str, original):
    @functools.wraps(original)
    def timed(*args, **kwargs):
      stack = self._local.__dict__.setdefault("stack", [])
      stack.append(0.0)  # time of nested timed calls
      start = time.perf_counter()
      try:
        return original(*args, **kwargs)
      finally:
        total = time.perf_counter() - start
        nested = stack.pop()
        self.seconds[key] += total - nested
        if stack:
          stack[-1] += total
    return timed

  @contextlib.contextmanager
  def patch(self, owner, name: str, key: str):
    """Times `owner.name` under `key` inside the `with` block."""
    original = owner.__dict__[name]
    setattr(owner, name, self._timed(key, original))
    try:
      yield
    finally:
      setattr(owner, name, original)


def profile_job(argv: list[str]) -> dict:
  """One in-process run with M1, coder and fit timed; returns seconds and shares of the wall."""
  timers = ExclusiveTimers()
  with contextlib.ExitStack() as stack:
    m1_calls = [(owner, name, "m1") for owner in (ContextLanes, M1Lanes, ExactLanes)
                for name in ("tables", "update")]
    m1_calls += [(owner, "freqs", "m1") for owner in (ContextModel, M1Model, ExactM1Model)]
    for owner, name, key in (*m1_calls,  # the lanes of arithmetic coding; the vocabulary build
                             (EqualInfoACMethod, "encode_batch", "coder_encode"),
                             (EqualInfoACMethod, "decode_batch", "coder_decode_verify"),
                             (ContextModel, "fit", "m1_fit"),
                             (ContextModel, "transitions", "m1_fit")):
      stack.enter_context(timers.patch(owner, name, key))
    run = run_job(argv)
  seconds = dict(timers.seconds)
  seconds["io_and_other"] = run["wall_s"] - sum(seconds.values())
  without_fit = run["wall_s"] - seconds.get("m1_fit", 0.0)
  return {
      "command": run["command"], "wall_s": run["wall_s"],
      "seconds": {k: round(v, 2) for k, v in seconds.items()},
      "shares_excluding_fit": {k: round(v / without_fit, 3) for k, v in seconds.items()
                               if k != "m1_fit"},
  }


def m1_fit_seconds(data: pathlib.Path) -> float:
  start = time.perf_counter()
  m1_loader.load_model(default_m1(data)).transitions()
  return round(time.perf_counter() - start, 2)


def steady(full: dict, small: dict) -> int:
  """Bytes/s of the extra input of `full` over `small` (fixed costs cancel)."""
  extra_s = max(full["wall_s"] - small["wall_s"], 1e-9)
  return round((full["bytes_in"] - small["bytes_in"]) / extra_s)


def cpu_s(run: dict) -> float:
  """CPU seconds of a run's SDK workers and its driver."""
  return sum(run["cpu_s_per_worker"]) + run["driver_cpu_s"]


def steady_per_cpu_s(full: dict, small: dict) -> int:
  """Bytes per CPU second of the extra input of `full` over `small`."""
  return round((full["bytes_in"] - small["bytes_in"]) / max(cpu_s(full) - cpu_s(small), 1e-9))


def fastest(results: list[dict]) -> dict:
  """The run with the lowest wall time, with every run's wall time beside it."""
  best = dict(min(results, key=lambda r: r["wall_s"]))
  best["wall_s_of_repeats"] = [r["wall_s"] for r in results]
  return best


def benchmark(data: pathlib.Path, docs: int, overhead_docs: int, repeats: int,
              workdir: str, m1: str | None = None, coder: str = "auto") -> dict:
  """Runs every job and collects the figures (see the module docstring)."""
  load_before = round(os.getloadavg()[0], 2)
  done = collections.defaultdict(list)
  for _ in range(repeats):  # 1 and 2 workers interleaved, so load spikes hit both
    for workers in (1, 2):
      args = multi_processing(workers)
      done[("overhead", workers)].append(
          run_job(compress_argv(data, overhead_docs, f"{workdir}/o{workers}", args, m1, coder)))
      done[("full", workers)].append(
          run_job(compress_argv(data, docs, f"{workdir}/r{workers}", args, m1, coder)))
  runs, overhead = {}, {}
  for workers in (1, 2):
    name = f"workers_{workers}"
    overhead[name] = fastest(done[("overhead", workers)])
    runs[name] = fastest(done[("full", workers)])
    runs[name]["steady_bytes_per_s"] = steady(runs[name], overhead[name])
    runs[name]["steady_bytes_per_cpu_s"] = steady_per_cpu_s(runs[name], overhead[name])
  profile = profile_job(compress_argv(data, docs, f"{workdir}/profile", IN_MEMORY, m1, coder))
  one, two = runs["workers_1"], runs["workers_2"]
  return {
      "method": METHOD, "m1": m1 or f"context[order=3,fit=train/{fit_file(data).name}]",
      "coder": coder,
      "docs_per_file": docs, "cpu_count": os.cpu_count(),
      "m1_fit_s": m1_fit_seconds(data) if m1 is None else None,
      "runs": runs, "overhead_runs": overhead,
      "speedup": round(two["input_bytes_per_s"] / one["input_bytes_per_s"], 3),
      "steady_speedup": round(two["steady_bytes_per_s"] / one["steady_bytes_per_s"], 3),
      "worker_cpu_speedup": round(sum(one["cpu_s_per_worker"])
                                  / max(two["cpu_s_per_worker"]), 3),
      "worker_balance": round(min(two["cpu_s_per_worker"]) / max(two["cpu_s_per_worker"]), 3),
      "peak_rss_mb": {"workers_1": one["peak_rss_mb_per_worker"],
                      "workers_2": two["peak_rss_mb_per_worker"],
                      "driver_max": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                          / 1024, 1)},
      "time_shares": profile,
      "load_average": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--docs", type=int, default=5000,
                      help="documents read per input file (--max_docs_per_file)")
  parser.add_argument("--overhead_docs", type=int, default=8,
                      help="documents per file of the fixed-cost runs")
  parser.add_argument("--repeats", type=int, default=2,
                      help="runs of each job; the fastest is reported")
  parser.add_argument("--m1", default=None,
                      help="M1 spec (default: an order-3 ContextModel fitted on a train file)")
  parser.add_argument("--coder", default="auto", choices=m1_loader.CODERS)
  parser.add_argument("--out", type=pathlib.Path, help="also write the JSON here")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory(prefix="eqinfo-pipeline-bench-") as workdir:
    result = benchmark(args.data, args.docs, args.overhead_docs, args.repeats, workdir,
                       args.m1, args.coder)
  result["bench_command"] = ("python benchmarks/pipeline_bench.py "
                             + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    args.out.write_text(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
