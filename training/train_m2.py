"""`eqinfo train-m2`: train M2 on ArrayRecord shards of compressed text (paper §3.5).

Example (the paper's M2 on EqualInfoAC[b=16, v=65k] shards, 25m size):

  eqinfo train-m2 --train 'shards/train-*.array_record' \\
      --validation 'shards/validation-*.array_record' \\
      --size 25m --steps 200000 --batch_size 256 --out runs/m2-eqinfo16-65k

Rows hold several records by default (`--pack_records`), so no position is
spent on padding; `--no-pack_records` gives each record its own row, as the
paper does.

The token vocabulary comes from the shard directory's stats.json
("vocab_size") unless --vocab_size is given; the model's vocabulary is one
larger (BOS, see training.batch_layout).
"""
import argparse
import logging

from compressor import constants, help_format
from training import batch_layout
from training import m2_input
from training import m2_records
from training import metrics as metrics_lib
from training import preemption
from training import shards
from training import train
from training import train_flags
from training import window_accuracy


def parse_flags(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="eqinfo train-m2", description=__doc__,
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--train", required=True, help="glob of training ArrayRecord shards")
  parser.add_argument("--validation", help="glob of validation ArrayRecord shards")
  parser.add_argument("--vocab_size", type=int, default=None,
                      help="M2 token vocabulary (default: stats.json 'vocab_size')")
  parser.add_argument("--m1_flops_per_byte", type=float, default=None,
                      help="M1's FLOPs/byte added to FLOPs/byte (default: from stats.json: "
                           "'m1_flops_per_byte' or 2 * params of its 'm1' checkpoint)")
  parser.add_argument("--pack_records", action=argparse.BooleanOptionalAction, default=True,
                      help="pack several records into each row of --seq_len positions, each "
                           "attending only to itself, instead of padding every short record "
                           "(training/row_packing.py); --no-pack_records: one record per row, "
                           "as in the paper")
  train_flags.add_train_flags(parser, batch_size=256, seq_len=constants.MAX_TOKENS)
  return parser.parse_args(argv)


def token_vocab(args, stats: dict) -> int:
  """The M2 token vocabulary from the flag or stats.json.

  Raises:
    ValueError: if neither gives one.
  """
  vocab = args.vocab_size or stats.get("vocab_size", 0)
  if not vocab:
    raise ValueError(f"no vocab_size in the stats.json next to {args.train!r}; "
                     "pass --vocab_size (256 or 65536)")
  return int(vocab)


def check_seq_len(args, stats: dict) -> None:
  """Refuses a --seq_len shorter than the records that `eqinfo compress --max_tokens` wrote
  (M2 sees a whole record per row, or several packed).

  Raises:
    ValueError: naming both flags.
  """
  max_tokens = stats.get("max_tokens")
  if max_tokens and args.seq_len < max_tokens:
    raise ValueError(f"--seq_len {args.seq_len} is shorter than the records of {args.train!r} "
                     f"(compress --max_tokens {max_tokens}, in its stats.json); pass --seq_len "
                     f"{max_tokens} or more, or compress with --max_tokens {args.seq_len}")


def build_task(args) -> tuple[train.Task, train.TrainConfig]:
  """The M2 Task and TrainConfig of parsed flags."""
  try:
    stats = shards.stats_of_glob(args.train)  # lists the shards: none is an error
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--train: {e}") from None
  vocab = token_vocab(args, stats)
  check_seq_len(args, stats)
  model_config = train_flags.model_config_from_flags(args, batch_layout.model_vocab_size(vocab))
  train_data = m2_records.M2DataConfig(args.train, vocab, seq_len=args.seq_len,
                                 batch_size=args.batch_size, seed=args.seed,
                                 pack=args.pack_records)
  validation = None
  if args.validation:
    val_data = m2_records.M2DataConfig(args.validation, vocab, seq_len=args.seq_len,
                                 batch_size=args.batch_size, shuffle=False, repeat=False)
    validation = lambda: m2_input.m2_batches(val_data)
  extra = args.m1_flops_per_byte
  if extra is None:
    extra = metrics_lib.m1_flops_per_byte(stats)
  task = train.Task(
      kind="m2", model_config=model_config, train_batches=m2_input.m2_batches(train_data),
      validation=validation, extra_flops_per_byte=extra,
      tokens_per_window=window_accuracy.tokens_per_window(stats),
      run_config={"data": {"train": args.train, "validation": args.validation,
                           "token_vocab": vocab, "seq_len": args.seq_len,
                           "batch_size": args.batch_size, "seed": args.seed,
                           # absent for one record per row, as in runs saved before packing
                           **({"pack_records": True} if args.pack_records else {})},
                  "method": stats.get("method")})
  return task, train_flags.train_config_from_flags(args)


def run(argv=None) -> int:
  """Entry point of `eqinfo train-m2`."""
  _, task, config = train.prepare(argv, parse_flags, build_task)
  try:
    train.train(task, config)
  except preemption.Preempted as e:
    logging.warning("%s", e)
    return preemption.EXIT_CODE
  return 0
