"""Trains the SentencePiece unigram tokenizer of the paper's SentencePiece baseline (§3.3).

The model is trained so that `methods.sentencepiece_method` can round-trip any
symbol stream: no normalisation, no dummy prefix, whitespace kept as is, and
byte fallback so that unseen characters become <0xNN> byte pieces.

  python -m compressor.sentencepiece_train \\
      --train '../shared/data/webtext/train/*.jsonl.gz' --vocab_size 32000 --out /tmp/sp32k
"""
import argparse
import glob
import gzip
import json
import pathlib
from typing import Iterable, Iterator

import sentencepiece as spm

from compressor import help_format

#: Seed of SentencePiece's random generator (training is single-threaded and
#: reads its input in order, so the model is a function of the documents).
SEED = 0
#: Options that make encoding lossless (checked by the round-trip tests).
TRAINER_OPTIONS = dict(
    model_type="unigram",
    byte_fallback=True,
    normalization_rule_name="identity",
    add_dummy_prefix=False,
    remove_extra_whitespaces=False,
    allow_whitespace_only_pieces=True,
    split_digits=True,
    character_coverage=0.9995,
    max_sentence_length=1 << 20,
    input_sentence_size=0,
    shuffle_input_sentence=False,
    hard_vocab_limit=False,
    num_threads=1,
    minloglevel=2,
)


def iter_jsonl_texts(pattern: str) -> Iterator[str]:
  """Yields the "text" of every line of the JSON-lines files (gzip or plain) matching `pattern`.

  Raises:
    ValueError: if no file matches.
  """
  paths = sorted(glob.glob(pattern))
  if not paths:
    raise ValueError(f"no files match {pattern!r}: pass a glob of .jsonl or .jsonl.gz files")
  for path in paths:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
      for line in f:
        if line.strip():
          yield json.loads(line)["text"]


def _documents(input_glob_or_docs: str | Iterable[str], max_docs: int | None) -> Iterator[str]:
  docs = (iter_jsonl_texts(input_glob_or_docs) if isinstance(input_glob_or_docs, str)
          else iter(input_glob_or_docs))
  count = 0
  for doc in docs:
    if max_docs is not None and count >= max_docs:
      return
    if doc:
      count += 1
      yield doc


def train_sentencepiece(input_glob_or_docs: str | Iterable[str], model_prefix: str,
                        vocab_size: int, max_docs: int | None = None) -> str:
  """Trains a unigram SentencePiece model on whole documents.

  Args:
    input_glob_or_docs: a glob of JSON-lines files (key "text"), or the documents.
    model_prefix: output path without extension; PREFIX.model and PREFIX.vocab are written.
    vocab_size: target vocabulary, 256 byte pieces and <unk>, <s>, </s> included
      (a corpus too small for it gives a smaller one).
    max_docs: use only the first `max_docs` documents.

  Returns:
    The path of the .model file.

  Raises:
    ValueError: on a vocab_size below 300, no documents or no matching files.
  """
  if not isinstance(vocab_size, int) or vocab_size < 300:
    raise ValueError(f"vocab_size must be an int >= 300 (256 byte pieces are included), "
                     f"got {vocab_size!r}")
  if max_docs is not None and max_docs < 1:
    raise ValueError(f"max_docs must be >= 1 or None, got {max_docs}")
  docs = list(_documents(input_glob_or_docs, max_docs))
  if not docs:
    raise ValueError("no non-empty documents to train SentencePiece on")
  pathlib.Path(model_prefix).parent.mkdir(parents=True, exist_ok=True)
  spm.set_random_generator_seed(SEED)
  spm.SentencePieceTrainer.train(sentence_iterator=iter(docs), model_prefix=str(model_prefix),
                                 vocab_size=vocab_size, **TRAINER_OPTIONS)
  return f"{model_prefix}.model"


def run(argv: list[str] | None = None) -> int:
  """Command line: trains a model and prints its path."""
  parser = argparse.ArgumentParser(prog="eqinfo-sentencepiece",
                                   description="Train the SentencePiece baseline's tokenizer.",
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--train", required=True, help="glob of .jsonl(.gz) files with a 'text' key")
  parser.add_argument("--vocab_size", type=int, required=True, help="vocabulary size, e.g. 32000")
  parser.add_argument("--out", required=True, help="output prefix (writes PREFIX.model)")
  parser.add_argument("--max_docs", type=int, default=None, help="use only the first N documents")
  args = parser.parse_args(argv)
  try:
    path = train_sentencepiece(args.train, args.out, args.vocab_size, args.max_docs)
  except ValueError as e:
    parser.error(str(e))
  print(path)
  return 0


if __name__ == "__main__":
  raise SystemExit(run())
