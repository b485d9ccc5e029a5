"""equal_info_ac[b=16] by its window vocabulary against the arithmetic coder, as JSON.

Usage:
  python benchmarks/window_vocab_bench.py [--data ../shared/data/webtext] [--m1 DIR]
      [--m1_size 3m] [--m1_steps 300] [--sp_docs N] [--arith_lanes 256] [--arith_symbols 256] [--sp_vocab 8000]
      [--out FILE]

With no `--m1`, trains an M1 of `--m1_size` for `--m1_steps` steps on the
train split and converts it to the integer-exact M1 (`eqinfo train-m1`'s
default). Then, in one
process:

- `build_s`: the window vocabulary's build (the node tree walked with the exact
  M1 on this machine's JAX backend), its tree nodes and distinct strings;
- `vocab_symbols_per_s`: longest-match encoding of the whole validation split
  in examples of 10,240 symbols, TensorFlow held to one thread;
- `arith_symbols_per_s`: the arithmetic encoder with the same exact M1 on
  `--arith_lanes` examples of `--arith_symbols` symbols of that text, coded in
  as many lanes (M1's steps batched as in `exact_m1_bench`); `vocab_over_arith`
  is the ratio, and `identical` says the two gave the same tokens there;
- `sentencepiece_symbols_per_s`: a unigram SentencePiece model of
  `--sp_vocab` pieces (trained on the train split) encoding the same documents
  on one thread; `vocab_over_sentencepiece` is the ratio;
- `decode_symbols_per_s`: lookup decoding of the vocabulary's tokens.
"""
import argparse
import gzip
import json
import os
import pathlib
import tempfile
import time

import numpy as np
from webtext import DEFAULT_DATA  # benchmarks/webtext.py

SPEC = "equal_info_ac[b=16,v=65k]"


def read_texts(split_dir: pathlib.Path, limit: int | None = None) -> list[str]:
  """Documents of a split, files in name order."""
  texts = []
  for path in sorted(split_dir.glob("*.jsonl.gz")):
    with gzip.open(path, "rt", encoding="utf-8") as f:
      texts += [json.loads(line)["text"] for line in f]
  return texts[:limit]


def trained_m1(data: pathlib.Path, size: str, steps: int, out: pathlib.Path):
  """An M1 of `size` trained `steps` steps on the train split, as its integer-exact M1."""
  from training import train_m1  # pylint: disable=import-outside-toplevel
  from training.m1 import float_m1 as m1_lib  # pylint: disable=import-outside-toplevel
  train_m1.run(["--train", str(data / "train" / "*.jsonl.gz"), "--size", size,
                "--steps", str(steps), "--batch_size", "16", "--seq_len", "256",
                "--warmup", str(max(steps // 3, 1)), "--shuffle_buffer", "512",
                "--checkpoint_every", str(steps), "--log_every", str(steps),
                "--peak_flops", "1e12", "--no_progress", "--out", str(out)])
  return m1_lib.load(str(out))


def sentencepiece_rate(data: pathlib.Path, vocab_size: int, max_docs: int | None,
                       texts: list[str], tmp: str) -> float:
  """Symbols/s of a unigram SentencePiece model encoding `texts` on one thread."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  from compressor import sentencepiece_train  # pylint: disable=import-outside-toplevel
  prefix = os.path.join(tmp, "sp")
  sentencepiece_train.train_sentencepiece(str(data / "train" / "*.jsonl.gz"), prefix, vocab_size,
                                          max_docs)
  sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
  start = time.perf_counter()
  sp.encode(texts, num_threads=1)
  return sum(len(t.encode()) + 1 for t in texts) / (time.perf_counter() - start)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--m1", help="an M1 directory (default: train a 3m M1 here)")
  parser.add_argument("--m1_size", default="3m")
  parser.add_argument("--m1_steps", type=int, default=300)
  parser.add_argument("--sp_docs", type=int, default=None,
                      help="train SentencePiece on the first N train documents (default: all)")
  parser.add_argument("--arith_lanes", type=int, default=256)
  parser.add_argument("--arith_symbols", type=int, default=256, help="symbols per lane")
  parser.add_argument("--sp_vocab", type=int, default=8000)
  parser.add_argument("--out", type=pathlib.Path, help="also write the JSON here")
  args = parser.parse_args(argv)
  import jax  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from compressor import get_method, symbols_from_text, window_vocab  # pylint: disable=import-outside-toplevel
  from training.m1 import float_m1 as m1_lib  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    m1 = (m1_lib.load(args.m1) if args.m1 else
          trained_m1(args.data, args.m1_size, args.m1_steps, pathlib.Path(tmp) / "m1"))
    start = time.perf_counter()
    vocab = window_vocab.build(m1)
    build_s = time.perf_counter() - start
    texts = read_texts(args.data / "validation")
    stream = np.concatenate([symbols_from_text(t) for t in texts])
    examples = [stream[i:i + 10_240] for i in range(0, stream.size, 10_240)]
    by_vocab = get_method(SPEC, None, vocabulary=vocab)
    by_vocab.encode_batch(examples[:2])  # builds the tokenizer's graph
    start = time.perf_counter()
    encoded = by_vocab.encode_batch(examples)
    vocab_rate = stream.size / (time.perf_counter() - start)
    start = time.perf_counter()
    by_vocab.decode_batch([e.tokens for e in encoded])
    decode_rate = stream.size / (time.perf_counter() - start)
    length = args.arith_symbols
    sample = stream[:args.arith_lanes * length]
    sample_examples = [sample[i:i + length] for i in range(0, sample.size, length)]
    by_arith = get_method(SPEC, m1)
    by_arith.num_lanes = len(sample_examples)
    by_arith.encode_batch([x[:48] for x in sample_examples])  # compiles the steps
    start = time.perf_counter()
    arith = by_arith.encode_batch(sample_examples)
    arith_rate = sample.size / (time.perf_counter() - start)
    again = by_vocab.encode_batch(sample_examples)
    identical = all(np.array_equal(a.tokens, b.tokens) for a, b in zip(arith, again))
    sp_rate = sentencepiece_rate(args.data, args.sp_vocab, args.sp_docs, texts, tmp)
  tokens = sum(e.tokens.size for e in encoded)
  report = {
      "method": SPEC, "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
      "m1_fingerprint": vocab.m1_fingerprint,
      "m1": args.m1 or f"{args.m1_size} trained {args.m1_steps} steps here, integer-exact",
      "build_s": round(build_s, 2), "tree_nodes": vocab.meta["tree_nodes"],
      "nodes_per_s": round(vocab.meta["tree_nodes"] / build_s, 1),
      "distinct_strings": vocab.distinct_strings(), "entries": int(len(vocab.entries)),
      "symbols": int(stream.size), "bytes_per_token": round(stream.size / tokens, 3),
      "vocab_symbols_per_s": round(vocab_rate, 1),
      "decode_symbols_per_s": round(decode_rate, 1),
      "arith_lanes": len(sample_examples), "arith_symbols": int(sample.size),
      "arith_symbols_per_s": round(arith_rate, 1),
      "vocab_over_arith": round(vocab_rate / arith_rate, 1), "identical": bool(identical),
      "sentencepiece_vocab": args.sp_vocab,
      "sentencepiece_symbols_per_s": round(sp_rate, 1),
      "vocab_over_sentencepiece": round(vocab_rate / sp_rate, 3),
  }
  text = json.dumps(report, indent=2)
  print(text)
  if args.out:
    args.out.write_text(text + "\n")
  return report


if __name__ == "__main__":
  main()
