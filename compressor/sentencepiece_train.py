"""Trains the SentencePiece unigram tokenizer of the paper's SentencePiece baseline (§3.3).

The model is trained so that `methods.sentencepiece_method` can round-trip any
symbol stream: no normalisation, no dummy prefix, whitespace kept as is, and
byte fallback so that unseen characters become <0xNN> byte pieces.

  eqinfo train-sentencepiece --train 'c4/c4-train.*.json.gz' --vocab_size 32000 --out sp/sp32k

`--train` is a corpus spec, read by `compressor/corpus.py` like every other command's.
"""
import argparse
import pathlib
from typing import Iterable, Iterator

import sentencepiece as spm

from compressor import corpus, help_format

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


def corpus_texts(spec: str, tfds_data_dir: str | None = None) -> Iterator[str]:
  """The documents of a corpus spec (`compressor/corpus.py`) as text; bytes that are not
  UTF-8 become U+FFFD (only the tokenizer's training sees them so; coding keeps every byte).

  Raises:
    FileNotFoundError: if the spec matches no files.
  """
  for doc in corpus.read_documents(spec, tfds_data_dir):
    yield doc.data.decode("utf-8", errors="replace")


def _documents(spec_or_docs: str | Iterable[str], max_docs: int | None,
               tfds_data_dir: str | None = None) -> Iterator[str]:
  docs = (corpus_texts(spec_or_docs, tfds_data_dir) if isinstance(spec_or_docs, str)
          else iter(spec_or_docs))
  count = 0
  for doc in docs:
    if max_docs is not None and count >= max_docs:
      return
    if doc:
      count += 1
      yield doc


def train_sentencepiece(spec_or_docs: str | Iterable[str], model_prefix: str,
                        vocab_size: int, max_docs: int | None = None,
                        tfds_data_dir: str | None = None) -> str:
  """Trains a unigram SentencePiece model on whole documents.

  Args:
    spec_or_docs: a corpus spec (`compressor/corpus.py`: a glob, builtin:pydoc,
      tfds:NAME, ...), or the documents.
    model_prefix: output path without extension; PREFIX.model and PREFIX.vocab are written.
    vocab_size: target vocabulary, 256 byte pieces and <unk>, <s>, </s> included
      (a corpus too small for it gives a smaller one).
    max_docs: use only the first `max_docs` documents.

  Returns:
    The path of the .model file.

  Raises:
    ValueError: on a vocab_size below 300 or no documents.
    FileNotFoundError: if the spec matches no files.
  """
  if not isinstance(vocab_size, int) or vocab_size < 300:
    raise ValueError(f"vocab_size must be an int >= 300 (256 byte pieces are included), "
                     f"got {vocab_size!r}")
  if max_docs is not None and max_docs < 1:
    raise ValueError(f"max_docs must be >= 1 or None, got {max_docs}")
  docs = list(_documents(spec_or_docs, max_docs, tfds_data_dir))
  if not docs:
    raise ValueError("no non-empty documents to train SentencePiece on")
  pathlib.Path(model_prefix).parent.mkdir(parents=True, exist_ok=True)
  spm.set_random_generator_seed(SEED)
  spm.SentencePieceTrainer.train(sentence_iterator=iter(docs), model_prefix=str(model_prefix),
                                 vocab_size=vocab_size, **TRAINER_OPTIONS)
  return f"{model_prefix}.model"


def run(argv: list[str] | None = None) -> int:
  """Command line: trains a model and prints its path."""
  parser = argparse.ArgumentParser(prog="eqinfo train-sentencepiece",
                                   description="Train the SentencePiece baseline's tokenizer.",
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--train", required=True, help=f"corpus spec: {corpus.SPEC_FORMS}")
  parser.add_argument("--vocab_size", type=int, required=True, help="vocabulary size, e.g. 32000")
  parser.add_argument("--out", required=True, help="output prefix (writes PREFIX.model)")
  parser.add_argument("--max_docs", type=int, default=None, help="use only the first N documents")
  parser.add_argument("--tfds_data_dir", default=None, help="TFDS data_dir for tfds: specs")
  args = parser.parse_args(argv)
  try:
    path = train_sentencepiece(args.train, args.out, args.vocab_size, args.max_docs,
                               args.tfds_data_dir)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--train: {e}") from None
  print(path)
  return 0


if __name__ == "__main__":
  raise SystemExit(run())
