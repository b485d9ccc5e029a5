"""Command-line flags shared by `eqinfo train-m1` and `eqinfo train-m2`: `TrainConfig`'s,
the model size and `--model KEY=VALUE` overrides.
"""
from training import accelerator
from training import configs
from training.train import TrainConfig


def add_train_flags(parser, batch_size: int, seq_len: int) -> None:
  """Adds the flags of `TrainConfig`, the model size and overrides to an argparse parser."""
  d = TrainConfig(out="", steps=1)
  parser.add_argument("--out", required=True, help="run directory (resumed if it has checkpoints)")
  parser.add_argument("--steps", type=int, required=True, help="total optimiser steps")
  parser.add_argument("--size", default="3m", choices=list(configs.SIZES), help="Table 4 size")
  parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                      help="ModelConfig override, e.g. --model dtype=bfloat16 (repeatable)")
  parser.add_argument("--batch_size", type=int, default=batch_size, help="global batch size")
  parser.add_argument("--seq_len", type=int, default=seq_len, help="tokens per sequence")
  parser.add_argument("--warmup", type=int, default=d.warmup, help="rsqrt warm-up steps")
  parser.add_argument("--z_loss", type=float, default=d.z_loss, help="z-loss weight")
  parser.add_argument("--seed", type=int, default=d.seed, help="init and data-order seed")
  parser.add_argument("--log_every", type=int, default=d.log_every,
                      help="steps between metrics records")
  parser.add_argument("--checkpoint_every", type=int, default=d.checkpoint_every,
                      help="steps between checkpoints")
  parser.add_argument("--checkpoint_minutes", type=float, default=d.checkpoint_minutes,
                      help="also checkpoint when this many minutes have passed since the last "
                      "one (0: only by steps), so a killed run loses at most that much")
  parser.add_argument("--keep_checkpoints", type=int, default=d.keep_checkpoints,
                      help="checkpoints kept (the latest ones)")
  parser.add_argument("--sync_checkpoint", action="store_true", help="save checkpoints in-line")
  parser.add_argument("--eval_every", type=int, default=d.eval_every, help="0: only at the end")
  parser.add_argument("--eval_batches", type=int, default=d.eval_batches,
                      help="validation batches scored each time")
  parser.add_argument("--peak_flops", type=float, default=d.peak_flops,
                      help="peak FLOP/s of all devices for MFU (0: measure a matmul)")
  parser.add_argument("--stop_after", type=int, default=0, help="testing: exit hard after step N")
  parser.add_argument("--sigterm_after", type=int, default=0,
                      help="testing: send this process SIGTERM after step N (a preemption)")
  parser.add_argument("--log_example_ids", action="store_true",
                      help="write every batch's example ids to example_ids.jsonl")
  parser.add_argument("--no_progress", action="store_true", help="no tqdm bar")
  parser.add_argument("--profile", default="", metavar="FIRST:LAST",
                      help="JAX profiler trace of these steps into OUT/tensorboard")
  parser.add_argument("--multihost", action="store_true", help="call jax.distributed.initialize()")
  accelerator.add_flag(parser)


def parse_profile(value: str) -> tuple[int, int]:
  """(first, last) of --profile FIRST:LAST; (0, 0) for none."""
  if not value:
    return 0, 0
  first, sep, last = value.partition(":")
  try:
    return int(first), int(last if sep else first)
  except ValueError:
    raise ValueError(f"--profile {value}: expected FIRST:LAST steps, e.g. --profile 100:110"
                     ) from None


def train_config_from_flags(args) -> TrainConfig:
  """Builds the TrainConfig of parsed `add_train_flags` flags."""
  profile_first, profile_last = parse_profile(args.profile)
  return TrainConfig(
      out=args.out, steps=args.steps, warmup=args.warmup, z_loss=args.z_loss, seed=args.seed,
      log_every=args.log_every, checkpoint_every=args.checkpoint_every,
      checkpoint_minutes=args.checkpoint_minutes,
      keep_checkpoints=args.keep_checkpoints, async_checkpoint=not args.sync_checkpoint,
      eval_every=args.eval_every, eval_batches=args.eval_batches, peak_flops=args.peak_flops,
      stop_after=args.stop_after, sigterm_after=args.sigterm_after,
      log_example_ids=args.log_example_ids,
      progress=not args.no_progress, profile_first=profile_first, profile_last=profile_last)


def model_config_from_flags(args, vocab_size: int) -> configs.ModelConfig:
  """The model of `--size` with `--model KEY=VALUE` overrides (strict)."""
  overrides = {}
  for item in args.model:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--model expects KEY=VALUE, got {item!r}")
    overrides[key] = configs.parse_override(key, value)
  return configs.model_config(args.size, vocab_size=vocab_size, max_len=args.seq_len, **overrides)
