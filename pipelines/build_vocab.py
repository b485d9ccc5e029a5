"""`eqinfo build-vocab`: the b=16 window vocabulary of an M1, as a file.

  eqinfo build-vocab --m1 runs/m1 --out runs/m1/window_vocab.json

Walks M1's tree of windows once (on JAX's default device: the integer-exact
M1's tables are the same integers on an accelerator) and writes the file that
`eqinfo compress --vocab FILE` codes with and any machine decodes with, no M1
needed. `eqinfo compress` builds it by itself when no `--vocab` is given.
Prints the file's digest, size and build time as JSON.
"""
import argparse
import json
import sys
import time

import tqdm

from compressor import help_format, window_vocab
from pipelines import m1_loader


def run(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="eqinfo build-vocab", description=__doc__.splitlines()[0],
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--m1", required=True,
                      help="a trained M1 directory, or context[order=K,fit=SRC]")
  parser.add_argument("--out", required=True, help="the vocabulary file to write")
  parser.add_argument("--batch", type=int, default=window_vocab.BATCH,
                      help="contexts per M1 call (the file does not depend on it)")
  parser.add_argument("--no_progress", action="store_true", help="no progress bar")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  model = m1_loader.load_model(args.m1)
  if model is None:
    raise ValueError("--m1 none has no windows; pass a trained M1 directory")
  start = time.perf_counter()
  with tqdm.tqdm(desc="window tree nodes", unit=" nodes", disable=args.no_progress) as bar:
    vocab = window_vocab.build(model, args.batch, progress=bar.update)
  seconds = time.perf_counter() - start
  digest = vocab.save(args.out)
  print(json.dumps({"out": args.out, "digest": digest, "m1_fingerprint": vocab.m1_fingerprint,
                    "tree_nodes": vocab.meta["tree_nodes"],
                    "distinct_strings": vocab.distinct_strings(),
                    "codes_emitted": int(vocab.entries.shape[0]),
                    "build_s": round(seconds, 2)}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(run())
