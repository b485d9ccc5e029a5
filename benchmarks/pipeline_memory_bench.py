"""Peak memory and throughput of `eqinfo compress` against the size of its input, as JSON.

Usage:
  python benchmarks/pipeline_memory_bench.py [--data ../shared/data/webtext]
      [--sizes_mb 50,200,500] [--methods 'bytes,equal_info_ac[b=16,v=65k]'] [--out bench.json]

For each size, builds a corpus of at least that many megabytes of text from
the shared files (the files of `train/` and `validation/` in turn, repeated
under new names as symlinks, so the job has as many input files as links), then
runs `eqinfo compress` on it with each method as a child process on the default
runner (one process, in memory), sampling the resident memory of its whole
process tree every 0.1 s. Model-based methods use an order-3 context M1 fitted
on the first train file and the default coder (the window vocabulary at b=16).

Per run: `bytes_in` (stats.json), `wall_s`, `bytes_per_s`, `peak_rss_mb`. Per
method: `rss_bytes_per_input_byte`, the growth of peak memory between the
smallest and the largest input divided by the growth of the input (the aim:
under 0.5; a pipeline that holds the corpus in memory shows several bytes per
byte), and `bytes_per_s_vs_read`, the pipeline's bytes/s over the bytes/s of
reading the same files with the corpus reader in this process (the baseline).
"""
import argparse
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from compressor import corpus
from training import shards
from webtext import DEFAULT_DATA  # benchmarks/webtext.py

DEFAULT_METHODS = "bytes,equal_info_ac[b=16,v=65k]"
MB = 10**6


def source_files(data: pathlib.Path) -> list[pathlib.Path]:
  """The shared JSON-lines files, train then validation, in name order."""
  return [f for split in ("train", "validation") for f in sorted((data / split).glob("*.jsonl.gz"))]


def text_bytes(path: pathlib.Path) -> int:
  """Bytes of a file's documents plus one EOS each (what stats.json calls bytes in)."""
  return sum(len(d.data) + 1 for d in corpus.read_documents(f"jsonl:{path}")
             if isinstance(d, corpus.Document))


def build_corpus(files: list[pathlib.Path], sizes: dict, target_bytes: int,
                 directory: pathlib.Path) -> int:
  """Symlinks `files` into `directory`, one at a time and round after round under new
  names, until their text reaches `target_bytes`.

  Returns:
    The text bytes linked.
  """
  directory.mkdir(parents=True)
  total, linked = 0, 0
  while total < target_bytes:
    f = files[linked % len(files)]
    (directory / f"copy{linked // len(files):04d}-{f.name}").symlink_to(f.resolve())
    total += sizes[f]
    linked += 1
  return total


def read_bytes_per_s(directory: pathlib.Path) -> float:
  """Bytes/s of reading every document of a corpus with the corpus reader (the baseline)."""
  start, total = time.perf_counter(), 0
  for doc in corpus.read_documents(f"jsonl:{directory}/*.jsonl.gz"):
    if isinstance(doc, corpus.Document):
      total += len(doc.data) + 1
  return total / (time.perf_counter() - start)


def tree_rss(process: psutil.Process) -> int:
  """Resident bytes of a process and all its descendants."""
  total = 0
  for p in [process] + process.children(recursive=True):
    try:
      total += p.memory_info().rss
    except psutil.Error:
      continue
  return total


def run_sampled(argv: list[str]) -> tuple[float, int]:
  """Runs a command; returns (wall seconds, peak RSS of its process tree in bytes).

  Raises:
    RuntimeError: the command failed.
  """
  start = time.perf_counter()
  child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  process, peak, done = psutil.Process(child.pid), 0, threading.Event()

  def sample():
    nonlocal peak
    while not done.is_set():
      peak = max(peak, tree_rss(process))
      done.wait(0.1)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  _, stderr = child.communicate()
  done.set()
  sampler.join()
  if child.returncode != 0:
    raise RuntimeError(f"{shlex.join(argv)} exited with {child.returncode}: "
                       f"{stderr.decode()[-2000:]}")
  return time.perf_counter() - start, peak


def compress_argv(input_glob: str, method: str, m1: str, output: str) -> list[str]:
  argv = [sys.executable, "-m", "pipelines.cli", "compress", "--input", input_glob,
          "--method", method, "--output", output, "--overwrite"]
  return argv + (["--m1", m1] if method != "bytes" else [])


def run_one(directory: pathlib.Path, method: str, m1: str, output: str) -> dict:
  argv = compress_argv(f"{directory}/*.jsonl.gz", method, m1, output)
  wall, peak = run_sampled(argv)
  stats = json.loads(pathlib.Path(output, shards.STATS).read_text())
  return {"command": "eqinfo " + shlex.join(argv[3:]), "bytes_in": stats["bytes_in"],
          "shards": len(stats["shards"]), "wall_s": round(wall, 1),
          "bytes_per_s": round(stats["bytes_in"] / wall), "peak_rss_mb": round(peak / MB, 1)}


def slope(runs: list[dict]) -> float:
  """Peak-memory growth per input byte between the smallest and the largest run."""
  small, large = runs[0], runs[-1]
  return round((large["peak_rss_mb"] - small["peak_rss_mb"]) * MB
               / max(large["bytes_in"] - small["bytes_in"], 1), 4)


def benchmark(data: pathlib.Path, sizes_mb: list[int], methods: list[str],
              workdir: pathlib.Path) -> dict:
  files = source_files(data)
  sizes = {f: text_bytes(f) for f in files}
  m1 = f"context[order=3,fit={files[0]}]"
  corpora = {mb: workdir / f"corpus_{mb}mb" for mb in sizes_mb}
  for mb, directory in corpora.items():
    build_corpus(files, sizes, mb * MB, directory)
  baseline = read_bytes_per_s(corpora[sizes_mb[0]])
  out = {"cpu_count": os.cpu_count(), "m1": f"context[order=3,fit=train/{files[0].name}]",
         "read_bytes_per_s": round(baseline), "methods": {}}
  for method in methods:
    runs = []
    for mb in sizes_mb:
      runs.append(run_one(corpora[mb], method, m1, str(workdir / "out")))
      print(json.dumps({method: runs[-1]}), file=sys.stderr, flush=True)
    out["methods"][method] = {
        "runs": runs, "rss_bytes_per_input_byte": slope(runs),
        "bytes_per_s_vs_read": [round(r["bytes_per_s"] / baseline, 4) for r in runs]}
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--sizes_mb", default="50,200,500",
                      help="input sizes in MB of text (default: %(default)s)")
  parser.add_argument("--methods", default=DEFAULT_METHODS,
                      help="comma-separated method specs (default: %(default)s)")
  parser.add_argument("--out", type=pathlib.Path, help="also write the JSON here")
  args = parser.parse_args(argv)
  methods = re.split(r",(?![^\[]*\])", args.methods)  # commas outside [...]
  with tempfile.TemporaryDirectory(prefix="eqinfo-memory-bench-") as workdir:
    result = benchmark(args.data, [int(s) for s in args.sizes_mb.split(",")], methods,
                       pathlib.Path(workdir))
  result["bench_command"] = ("python benchmarks/pipeline_memory_bench.py "
                             + shlex.join(argv if argv is not None else sys.argv[1:]))
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    args.out.write_text(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
