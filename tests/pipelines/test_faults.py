"""Faults a long compress job meets: each ends in a whole, accounted result or a clean failure."""
import dataclasses
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from compressor import corpus
from pipelines import compress, options
from training import shards

SINGLE = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _run(output, **flags) -> dict:
  config = options.CompressConfig(output=str(output), **flags)
  return compress.compress(config, SINGLE)


def _decoded(output) -> list[bytes]:
  """Every record's symbols, decoded with the `bytes` method, in key order."""
  from compressor import get_method  # pylint: disable=import-outside-toplevel
  records = [r for p in shards.shard_paths(str(output)) for r in shards.read_shard(p)]
  records.sort(key=lambda r: r["key"])
  method = get_method("bytes", None)
  return [method.decode(r["targets"]).astype("uint16").tobytes() for r in records]


def test_a_binary_file_given_as_text_round_trips(tmp_path):
  """Random bytes (NULs, invalid UTF-8) as one `text:` document: coded, decoded, exact."""
  data = random.Random(0).randbytes(30_000) + b"\x00" * 500
  (tmp_path / "blob.bin").write_bytes(data)
  stats = _run(tmp_path / "out", input="text:" + str(tmp_path / "*.bin"),
               method="equal_info_ac[b=16,v=256]", m1="context[order=2,fit=builtin:pydoc]")
  assert stats["verification_failures"] == 0 and stats["records_verified"] == stats["examples"]
  assert stats["bytes"] == stats["bytes_in"] == len(data) + 1  # + EOS
  assert stats["windows"] > len(data) / 4  # random bytes cost about 8 bits: 2 per window


def test_one_large_document_is_coded_whole(tmp_path):
  """A single 10 MB document becomes about a thousand examples, every byte in a record."""
  text = ("eqinfo " * (10 * 1024 * 1024 // 7 + 1))[:10 * 1024 * 1024]
  path = tmp_path / "big.jsonl.gz"
  path.write_bytes(gzip.compress(json.dumps({"text": text}).encode() + b"\n", compresslevel=1))
  stats = _run(tmp_path / "out", input=str(path), method="bytes")
  assert stats["bytes"] == stats["bytes_in"] == len(text) + 1 and stats["bytes_dropped"] == 0
  assert stats["m1_examples"] == -(-(len(text) + 1) // 10_240)
  assert stats["verification_failures"] == 0


def test_a_hundred_thousand_one_byte_documents(tmp_path):
  path = tmp_path / "tiny.jsonl"
  path.write_text("".join(json.dumps({"text": chr(97 + i % 26)}) + "\n" for i in range(100_000)))
  stats = _run(tmp_path / "out", input=str(path), method="bytes")
  assert stats["bytes"] == stats["bytes_in"] == 200_000  # a byte and an EOS each
  assert stats["examples"] == stats["records_verified"] and stats["bytes_dropped"] == 0
  symbols = b"".join(_decoded(tmp_path / "out"))
  assert symbols.count(b"\x00\x01") == 100_000  # EOS (256) as little-endian uint16


def test_an_input_file_that_disappears_after_planning_is_accounted(tmp_path):
  """The job lists its files, one is deleted before it is read: the job finishes, and
  errors/ and stats.json name the missing file; every byte read is in a record."""
  for name in ("a", "b"):
    (tmp_path / f"{name}.jsonl").write_text(
        "".join(json.dumps({"text": f"{name} document {i}"}) + "\n" for i in range(50)))
  config = options.CompressConfig(input=str(tmp_path / "*.jsonl"), method="bytes",
                                  output=str(tmp_path / "out"))
  pipeline = compress.make_pipeline(config, SINGLE)
  (tmp_path / "b.jsonl").unlink()
  pipeline.run().wait_until_finish()
  assert shards.is_completed(str(tmp_path / "out"))
  stats = shards.load_stats(str(tmp_path / "out"))
  assert stats["dropped"]["missing_file"]["inputs"] == 1
  a_bytes = sum(len(d.data) + 1 for d in corpus.read_documents(str(tmp_path / "a.jsonl")))
  assert stats["bytes"] == a_bytes and stats["bytes_in"] == a_bytes
  errors = (tmp_path / "out" / shards.ERRORS_DIR / shards.ERRORS_FILE).read_text()
  assert "b.jsonl" in errors and "missing_file" in errors


def test_a_second_job_on_the_same_output(tmp_path):
  """A second job is refused an output another holds; with --overwrite it takes the output
  over, and the first stops without COMPLETED instead of mixing its shards in."""
  path = tmp_path / "docs.jsonl"
  path.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(300)))
  config = options.CompressConfig(input=str(path), method="bytes", output=str(tmp_path / "out"))
  first = compress.make_pipeline(config, SINGLE)
  with pytest.raises(FileExistsError, match="already exists and is not empty"):
    compress.make_pipeline(config, SINGLE)
  second = compress.make_pipeline(dataclasses.replace(config, overwrite=True), SINGLE)
  with pytest.raises(Exception, match="another eqinfo compress job took over"):
    first.run().wait_until_finish()
  assert not shards.is_completed(str(tmp_path / "out"))
  second.run().wait_until_finish()
  assert shards.is_completed(str(tmp_path / "out"))
  fresh = _run(tmp_path / "fresh", input=str(path), method="bytes")
  for name in sorted(p.name for p in (tmp_path / "fresh").glob("*.array_record")):
    assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()
  assert shards.load_stats(str(tmp_path / "out"))["examples"] == fresh["examples"]


def test_an_input_file_that_changes_after_planning_gives_the_run_of_what_was_read(tmp_path):
  """A file rewritten between planning and reading: the job codes what it read, whole and
  accounted, and its shards are those of an undisturbed run on the new text."""
  path = tmp_path / "docs.jsonl"
  path.write_text("".join(json.dumps({"text": f"old {i}"}) + "\n" for i in range(40)))
  config = options.CompressConfig(input=str(path), method="bytes", output=str(tmp_path / "out"))
  pipeline = compress.make_pipeline(config, SINGLE)
  path.write_text("".join(json.dumps({"text": f"new document {i}"}) + "\n" for i in range(70)))
  pipeline.run().wait_until_finish()
  stats = shards.load_stats(str(tmp_path / "out"))
  fresh = _run(tmp_path / "fresh", input=str(path), method="bytes")
  assert stats["bytes"] == stats["bytes_in"] == fresh["bytes"]
  for name in sorted(p.name for p in (tmp_path / "fresh").glob("*.array_record")):
    assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()


def _wait_for(predicate, what: str, timeout_s: float = 300.0) -> None:
  deadline = time.monotonic() + timeout_s
  while not predicate():
    if time.monotonic() > deadline:
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.02)


def test_overwrite_clears_what_a_killed_shard_writer_left(tmp_path):
  """A writer killed mid-write leaves its temp directory (with or without the file in it)."""
  from pipelines import compress, sink  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  (out / f"{sink.TEMP_PREFIX}half").mkdir(parents=True)
  (out / f"{sink.TEMP_PREFIX}half" / "shard.array_record").write_bytes(b"cut short")
  (out / f"{sink.TEMP_PREFIX}empty").mkdir()
  (out / "train-bytes-f00000-00000.array_record").write_bytes(b"old")
  compress.prepare_output(str(out), overwrite=True)
  assert sorted(p.name for p in out.iterdir()) == [shards.JOB]


def test_a_job_killed_mid_run_leaves_whole_shards_and_the_rerun_completes(tmp_path):
  """SIGKILL of a local job (the runner and its two SDK worker processes) once shards have
  landed: no COMPLETED and no stats.json, every shard left is whole (each is renamed into
  place), and the same command with --overwrite gives a complete run whose shards include
  those, byte for byte.

  One input is a named pipe that nobody writes, so the job cannot finish before the kill
  (the worker reading it blocks); the rerun finds a regular file there.
  """
  corpus_dir, out = tmp_path / "corpus", tmp_path / "out"
  corpus_dir.mkdir()
  def text(f, i):
    return f"file {f} document {i} " * 20

  for f in range(4):
    (corpus_dir / f"part-{f}.jsonl").write_text("".join(
        json.dumps({"text": text(f, i)}) + "\n" for i in range(300)))
  os.mkfifo(corpus_dir / "part-9.jsonl")
  argv = [sys.executable, "-m", "pipelines.cli", "compress", "--input",
          str(corpus_dir / "*.jsonl"), "--method", "bytes", "--output", str(out),
          "--groups_per_shard", "1", "--direct_num_workers=2",
          "--direct_running_mode=multi_processing"]
  job = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
  try:
    _wait_for(lambda: len(list(out.glob("*.array_record"))) >= 2, "shards of the first job")
  finally:
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
  left = {p.name: p.read_bytes() for p in out.glob("*.array_record")}
  assert not shards.is_completed(str(out)) and not (out / shards.STATS).exists()
  for name in left:  # whole: the records of one group of 128 documents
    f, g = (int(x) for x in name.split("-f", 1)[1].split(".")[0].split("-"))
    expected = sum(len(text(f, i)) + 1 for i in range(128 * g, min(128 * (g + 1), 300)))
    assert sum(int(r["num_bytes"][0]) for r in shards.read_shard(str(out / name))) == expected

  (corpus_dir / "part-9.jsonl").unlink()
  (corpus_dir / "part-9.jsonl").write_text(json.dumps({"text": "the last file"}) + "\n")
  rerun = subprocess.run(argv + ["--overwrite"], capture_output=True, text=True, check=False)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  stats = shards.load_stats(str(out))
  assert stats["bytes_in"] == stats["bytes"] and len(stats["shards"]) == 4 * 3 + 1
  for name, data in left.items():
    assert (out / name).read_bytes() == data
  assert sorted(p.name for p in out.iterdir() if p.name.startswith(".shard-")) == []
