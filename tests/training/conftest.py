"""Fixtures of the training tests: tiny M2 shards, M1 contexts and a trained tiny M1."""
import contextlib
import io
import json
import os
import pathlib
import tempfile

# One persistent XLA compilation cache for these tests and the subprocesses
# they start: the many short runs compile the same tiny programs.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "eqinfo-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position

from compressor.symbols import symbols_from_text  # pylint: disable=wrong-import-position

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

M2_VOCAB = 256  # token vocabulary of the fixture shards (v=256)
M2_SEQ_LEN = 32  # records hold 8..32 tokens


def write_m2_shards(directory: pathlib.Path, num_records: int, num_shards: int = 2,
                    seed: int = 0, split: str = "train") -> list[pathlib.Path]:
  """Writes real ArrayRecord shards of tf.train.Example records and a stats.json.

  Record i has random `targets` (8..32 tokens of 0..255), `num_bytes` of
  about 3 bytes per token, and `source` b"record-i".
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  directory.mkdir(parents=True, exist_ok=True)
  paths, histogram = [], np.zeros(M2_VOCAB, np.int64)
  per_shard = -(-num_records // num_shards)
  for s in range(num_shards):
    path = directory / f"{split}-test-{s:05d}-of-{num_shards:05d}.array_record"
    writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")
    for i in range(s * per_shard, min((s + 1) * per_shard, num_records)):
      tokens = rng.integers(0, M2_VOCAB, rng.integers(8, M2_SEQ_LEN + 1))
      histogram += np.bincount(tokens, minlength=M2_VOCAB)
      feature = {
          "targets": tf.train.Feature(int64_list=tf.train.Int64List(value=tokens.tolist())),
          "num_bytes": tf.train.Feature(int64_list=tf.train.Int64List(
              value=[int(3 * len(tokens) + rng.integers(0, 3))])),
          "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"record-%d" % i])),
      }
      example = tf.train.Example(features=tf.train.Features(feature=feature))
      writer.write(example.SerializeToString())
    writer.close()
    paths.append(path)
  stats = {"vocab_size": M2_VOCAB, "examples": num_records, "max_tokens": M2_SEQ_LEN,
           "token_histogram": histogram.tolist()}
  (directory / "stats.json").write_text(json.dumps(stats))
  return paths


@pytest.fixture(scope="session")
def m2_shards(tmp_path_factory) -> pathlib.Path:
  """A directory with 2 train shards (96 records) and 1 validation shard (32 records)."""
  directory = tmp_path_factory.mktemp("m2_shards")
  write_m2_shards(directory, 96, num_shards=2, seed=0, split="train")
  write_m2_shards(directory / "validation", 32, num_shards=1, seed=1, split="validation")
  return directory


@pytest.fixture(scope="module")
def streams(validation_docs):
  """Symbol streams of real text: document bytes followed by EOS."""
  return [symbols_from_text(d) for d in validation_docs]


@pytest.fixture(scope="module")
def contexts(streams):
  """70 contexts (two 64-lane blocks) of lengths 0..200 from different documents."""
  rng = np.random.default_rng(0)
  out = []
  for i in range(70):
    s = streams[i]
    n = min(int(rng.integers(0, 201)), s.size)
    start = int(rng.integers(0, s.size - n + 1))
    out.append(s[start:start + n])
  out[0], out[1] = out[1][:0], streams[1][:200]  # empty and longest contexts
  return out


@pytest.fixture(scope="session")
def trained_m1(tmp_path_factory, webtext_dir):
  """A tiny M1 trained for a few hundred steps on the shared train split."""
  train_m1 = pytest.importorskip("training.train_m1")
  out = tmp_path_factory.mktemp("m1")
  train_m1.run(["--train", str(webtext_dir / "train" / "*.jsonl.gz"), "--size", "tiny",
                "--steps", "200", "--batch_size", "16", "--seq_len", "128", "--warmup", "100",
                "--docs_per_group", "16", "--shuffle_buffer", "256", "--checkpoint_every",
                "1000", "--log_every", "100", "--peak_flops", "1e12", "--no_progress",
                "--out", str(out)])
  return out


@pytest.fixture()
def quantize_cli(trained_m1, webtext_dir, tmp_path):
  """Runs `python -m training.m1.quantize` on the trained tiny M1; returns (report, out dir)."""
  from training.m1 import quantize as quantize_m1  # pylint: disable=import-outside-toplevel

  def run(*flags: str) -> tuple[dict, pathlib.Path]:
    out = tmp_path / "exact"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
      quantize_m1.run(["--m1", str(trained_m1), "--out", str(out),
                       "--calibration", str(webtext_dir / "train" / "*.jsonl.gz"),
                       "--validation", str(webtext_dir / "validation" / "*.jsonl.gz"),
                       "--calibration_docs", "100", "--calibration_sequences", "16",
                       "--eval_sequences", "16", *flags])
    return json.loads(stdout.getvalue()), out

  return run
