"""`eqinfo train-m1`: train the byte-level M1 (paper §3.2).

Example (the paper's M1: size 3m, context 1024, batch 128):

  eqinfo train-m1 --train 'c4/en/3.1.0/c4-train.*.json.gz' --validation \\
      'c4/en/3.1.0/c4-validation.00000-*.json.gz' --size 3m --steps 200000 --out runs/m1

Output: `--out DIR` is an M1 directory that `training.m1.float_m1.load(DIR)` reads
(config.json, params.npz, and DIR/exact: the integer-exact M1 converted from
it, calibrated on the first documents of --train; `--no-exact` skips it),
written when training ends; the training run itself (config.json,
checkpoints/, metrics.jsonl, tensorboard/) lives in DIR/train and is resumed
when it holds checkpoints.
"""
import argparse
import dataclasses
import itertools
import logging
import os
import tempfile

import jax
from etils import epath

from compressor import constants, corpus, help_format
from training import m1_input
from training.m1 import float_m1 as m1_lib
from training import preemption
from training import train
from training import train_flags

RUN_SUBDIR = "train"


def parse_flags(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="eqinfo train-m1", description=__doc__,
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--train", required=True,
                      help="corpus spec (as compress's --input): a jsonl[.gz] or text glob, "
                      "tfds:c4/en:3.1.0[:SPLIT], builtin:pydoc")
  parser.add_argument("--validation", help="validation corpus spec (same forms)")
  parser.add_argument("--tfds_data_dir", help="TFDS data_dir for tfds: specs (never downloaded)")
  parser.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True,
                      help="also write the integer-exact M1 to OUT/exact")
  parser.add_argument("--calibration_docs", type=int, default=200,
                      help="documents of --train that calibrate the integer-exact M1")
  parser.add_argument("--docs_per_group", type=int, default=constants.DOCS_PER_GROUP,
                      help="documents per group: the unit that processes share out (paper: 128)")
  parser.add_argument("--shuffle_buffer", type=int, default=8192, help="sequences in the buffer")
  train_flags.add_train_flags(parser, batch_size=128, seq_len=1024)
  return parser.parse_args(argv)


def data_configs(args) -> tuple[m1_input.M1DataConfig, m1_input.M1DataConfig | None]:
  """Training and validation input configs of parsed flags."""
  common = dict(seq_len=args.seq_len, batch_size=args.batch_size,
                docs_per_group=args.docs_per_group, tfds_data_dir=args.tfds_data_dir)
  train_cfg = m1_input.M1DataConfig(args.train, seed=args.seed, shuffle_buffer=args.shuffle_buffer,
                                **common)
  val_cfg = None
  if args.validation:
    val_cfg = m1_input.M1DataConfig(args.validation, shuffle=False, repeat=False, **common)
  return train_cfg, val_cfg


def check_corpus(args) -> None:
  """Fails at once, on every process alike, if --train is missing or leaves a process nothing.

  Process p of P reads groups p, p + P, ... of --docs_per_group documents, so
  the corpus needs more than (P - 1) groups' worth.
  """
  count = jax.process_count()
  why = (f"that {count} processes reading groups of {args.docs_per_group} documents in turn "
         "need; lower --docs_per_group or use fewer processes")
  corpus.check_spec(args.train, "--train", args.tfds_data_dir,
                    min_documents=(count - 1) * args.docs_per_group + 1, why=why)


def build_task(args) -> tuple[train.Task, train.TrainConfig]:
  """The M1 Task and TrainConfig of parsed flags (the run lives in OUT/train)."""
  model_config = train_flags.model_config_from_flags(args, m1_lib.VOCAB_SIZE)
  check_corpus(args)
  train_cfg, val_cfg = data_configs(args)
  validation = (lambda: m1_input.M1Batches(val_cfg)) if val_cfg else None
  task = train.Task(kind="m1", model_config=model_config,
                    train_batches=m1_input.Prefetch(m1_input.M1Batches(train_cfg)),
                    validation=validation,
                    run_config={"data": {
                        "train": dataclasses.asdict(train_cfg),
                        "validation": dataclasses.asdict(val_cfg) if val_cfg else None}})
  config = train_flags.train_config_from_flags(args)
  config = train.override(config, out=os.path.join(args.out, RUN_SUBDIR))
  return task, config


def run(argv=None) -> int:
  """Entry point of `eqinfo train-m1`."""
  args, task, config = train.prepare(argv, parse_flags, build_task)
  try:
    state = train.train(task, config)
  except preemption.Preempted as e:
    logging.warning("%s", e)
    return preemption.EXIT_CODE
  if jax.process_index() == 0:
    params = jax.device_get(state["params"])
    digest = export_m1(args.out, task.model_config, params)
    logging.info("M1 written to %s (fingerprint %s)", args.out, digest)
    if args.exact:
      digest = export_exact(args, task.model_config, params)
      logging.info("integer-exact M1 written to %s/exact (fingerprint %s)", args.out, digest)
  return 0


def export_exact(args, model_config, params) -> str:
  """Converts the trained float M1 into the integer-exact M1 in OUT/exact."""
  from training.m1 import exact  # pylint: disable=import-outside-toplevel
  from training.m1 import quantize as quantize_m1  # pylint: disable=import-outside-toplevel
  docs = corpus.read_documents(args.train, args.tfds_data_dir)
  texts = [doc.data for doc in itertools.islice(docs, args.calibration_docs)]
  float_m1 = m1_lib.M1Model(model_config, {"params": params})
  exact_m1 = quantize_m1.convert(float_m1, texts)
  return exact_m1.save(os.path.join(args.out, exact.SUBDIR))


def export_m1(out: str, model_config, params) -> str:
  """Writes the M1 directory (`float_m1.save`) to a local or gs:// `out`; returns its hash."""
  if "://" not in out:
    return m1_lib.save(out, model_config, {"params": params})
  with tempfile.TemporaryDirectory() as local:
    digest = m1_lib.save(local, model_config, {"params": params})
    for name in (m1_lib.CONFIG_FILE, m1_lib.PARAMS_FILE):
      (epath.Path(out) / name).write_bytes((epath.Path(local) / name).read_bytes())
  return digest
