"""The `eqinfo` console script: one subcommand per job, each a thin shell over `run(argv)`."""
import importlib
import sys

# subcommand -> (module with run(argv), one-line help)
COMMANDS = {
    "demo": ("pipelines.demo", "compress Python's own docs text end to end (no download)"),
    "codec": ("compressor.codec", "code a corpus with a method, decode it back, print the ratio"),
    "compress": ("pipelines.compress", "Beam pipeline: corpus -> M1 -> method -> ArrayRecord shards"),
    "inspect": ("pipelines.inspect_shards",
                "totals, histogram and decoded records of a shard directory"),
    "build-vocab": ("pipelines.build_vocab", "the b=16 window vocabulary of an M1, as a file"),
    "train-sentencepiece": ("compressor.sentencepiece_train",
                            "train the unigram SentencePiece model of sentencepiece[path=...]"),
    "train-m1": ("training.train_m1", "train the byte-level M1"),
    "quantize-m1": ("training.m1.quantize",
                    "convert a float M1 to the integer-exact M1 (optionally after QAT)"),
    "check-devices": ("training.m1.exact_devices",
                      "exact M1 tables of 102,400 contexts on the accelerator vs the CPU"),
    "train-m2": ("training.train_m2", "train M2 on ArrayRecord shards"),
    "eval": ("training.evaluate", "bits/byte of a checkpoint, with Table 3 baselines"),
    "generate": ("pipelines.generate", "sample M2 tokens and decode them through M1"),
    "report": ("pipelines.report", "compression and bits/byte of runs beside the paper's"),
    "reproduce": ("pipelines.reproduce",
                  "the paper's grid end to end (--scale smoke|cpu|gpu|FILE): report, figures"),
}


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = ["usage: eqinfo COMMAND [ARGS...]   (eqinfo COMMAND --help for its flags)", ""]
  lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
  return "\n".join(lines)


def main(argv=None) -> int:
  """Dispatches `eqinfo COMMAND ARGS` to COMMAND's module `run(ARGS)`."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f"eqinfo: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
    return 2
  module = importlib.import_module(COMMANDS[name][0])
  try:
    return int(module.run(rest) or 0)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    print(f"eqinfo {name}: error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
