"""Typed application flags of `eqinfo compress`; Beam's own flags pass through untouched."""
import argparse
import dataclasses
import difflib
import json
from typing import Sequence

from compressor import constants, corpus, help_format
from compressor.packing import PACKING_POLICIES
from pipelines.m1_loader import CODERS, VERIFY_DEVICES
from training import accelerator


SPREAD_CHOICES = ("auto", "on", "off")
# Flags that eqinfo compress no longer takes -> what to pass instead.
REMOVED_FLAGS = {"--num_shards": "a shard holds --groups_per_shard groups of one input file; "
                                 "pass --groups_per_shard (default 64) instead"}


@dataclasses.dataclass(frozen=True)
class CompressConfig:
  """Everything that decides what `eqinfo compress` writes (saved as config.json)."""

  # Corpus: builtin:pydoc | tfds:c4/en:3.1.0 | JSON-lines glob (*.json.gz, *.jsonl[.gz]) |
  # text:GLOB (one document per file); local paths or gs://.
  input: str
  # Method spec in the paper's names, e.g. "equal_info_ac[b=16,v=65k]".
  method: str
  # Output directory (local or gs://) for shards, stats.json, config.json, errors/, COMPLETED.
  output: str
  # M1 for model-based methods: a trained M1 directory, context[order=K,fit=SRC] or
  # unigram[fit=SRC]; None for methods that need no model.
  m1: str | None = None
  # "continue": code every symbol into consecutive M2 examples; "truncate": the paper's
  # first max_tokens tokens per example, the rest dropped and counted.
  packing: str = "continue"
  # M2 sequence length in tokens.
  max_tokens: int = constants.MAX_TOKENS
  # Groups of docs_per_group documents per shard: shard s of an input file holds its
  # groups [G s, G (s + 1)), coded and written by one worker, which holds one shard at a
  # time (64 groups of C4: about 18 MB of text, 44 shards per train file).
  groups_per_shard: int = 64
  # "on": shuffle the shard inputs after reading, so that many workers code the shards
  # of one file (Dataflow); "off": a worker codes the shards of the files it reads, one
  # at a time (a local runner, whose shuffles hold all their data in memory); "auto":
  # on for DataflowRunner, else off. The shards are the same either way.
  spread_shards: str = "auto"
  # Split name used in shard file names (and the TFDS split read unless tfds_split is set).
  split: str = "train"
  # Decode every record and compare it with its symbols; failures are dropped and counted.
  verify: bool = True
  # With verify: the share of records decoded, picked by a hash of the record key (the
  # same records on every run). Decoding runs M1 again, so 1.0 doubles M1's work; with
  # the integer-exact M1, whose tables are the same on every device, a sample suffices.
  verify_fraction: float = 1.0
  # With verify: where records are decoded. "cpu": by M1 on the host CPU, also where M1
  # coded on a GPU/TPU, which shows that machines without one decode the shards (the
  # integer-exact M1 only); "worker": on the device that coded them.
  verify_device: str = "cpu"
  accelerator: str = "auto"       # gpu/tpu: coding workers must see one (training.accelerator)
  # How M1's windows are coded: "vocabulary" (b=16: the window vocabulary is built once
  # per job with M1, then workers code by longest match and verify by lookup, with no
  # M1), "arithmetic" (M1 runs for every symbol), "auto" (vocabulary wherever b=16).
  # Both give the same tokens; config.json records the resolved one.
  coder: str = "auto"
  # With the vocabulary coder: a window vocabulary file (eqinfo build-vocab) to use
  # instead of building one; it must be --m1's.
  vocab: str | None = None
  # Replace an existing output directory's shards and metadata.
  overwrite: bool = False
  # Consecutive documents concatenated before cutting into examples (paper: 128).
  docs_per_group: int = constants.DOCS_PER_GROUP
  # Symbols per M1-side example (paper: 10,240).
  example_symbols: int = constants.EXAMPLE_SYMBOLS
  # Examples per method.encode_batch call (lanes of the batched coder; raise it
  # for an M1 on an accelerator, e.g. 1024).
  batch_size: int = 128
  # Read only the first N documents of each input file (TFDS chunk); None reads all.
  max_docs_per_file: int | None = None
  # Documents with more bytes go to errors/ as "too_large"; None codes every document.
  max_doc_bytes: int | None = None
  # Field holding the document in JSON lines (C4: "text").
  text_field: str = "text"
  # TFDS data directory for tfds: inputs (None: TFDS's default).
  tfds_data_dir: str | None = None
  # TFDS split to read; None reads `split`.
  tfds_split: str | None = None
  # Documents per TFDS read task (a multiple of docs_per_group keeps groups whole).
  tfds_chunk_docs: int = 128 * 1024

  def __post_init__(self):
    if self.packing not in PACKING_POLICIES:
      raise ValueError(f"--packing must be one of {PACKING_POLICIES}, got {self.packing!r}")
    if self.spread_shards not in SPREAD_CHOICES:
      raise ValueError(f"--spread_shards must be one of {SPREAD_CHOICES}, "
                       f"got {self.spread_shards!r}")
    for name in ("max_tokens", "groups_per_shard", "docs_per_group", "example_symbols", "batch_size",
                 "tfds_chunk_docs"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"--{name} must be an integer >= 1, got {value!r}")
    for name in ("max_docs_per_file", "max_doc_bytes"):
      value = getattr(self, name)
      if value is not None and (not isinstance(value, int) or value < 0):
        raise ValueError(f"--{name} must be an integer >= 0, got {value!r}")
    if not 0 < self.verify_fraction <= 1:
      raise ValueError(f"--verify_fraction must lie in (0, 1], got {self.verify_fraction!r}")
    if self.accelerator not in accelerator.CHOICES:
      raise ValueError(f"--accelerator must be one of {accelerator.CHOICES}, "
                       f"got {self.accelerator!r}")
    if self.verify_device not in VERIFY_DEVICES:
      raise ValueError(f"--verify_device must be one of {VERIFY_DEVICES}, "
                       f"got {self.verify_device!r}")
    if self.coder is not None and self.coder not in CODERS:  # None: resolved, no M1
      raise ValueError(f"--coder must be one of {CODERS}, got {self.coder!r}")
    if not self.split or any(c in self.split for c in "/-"):
      raise ValueError(f"--split must be a non-empty name without '/' or '-', got {self.split!r}")
    for name in ("input", "method", "output"):
      if not getattr(self, name):
        raise ValueError(f"--{name} is required")

  def to_json(self) -> str:
    """The resolved config as sorted, indented JSON."""
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: dict) -> "CompressConfig":
    """Builds a config from a dict, rejecting unknown keys.

    Raises:
      ValueError: on keys that are not fields.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(f"unknown config keys {unknown}; known: {sorted(names)}")
    return cls(**values)


def _optional_int(text: str) -> int | None:
  return None if text.lower() in ("", "none") else int(text)


def parser() -> argparse.ArgumentParser:
  """The flags of `eqinfo compress`; defaults come from `CompressConfig`."""
  d = CompressConfig(input="-", method="-", output="-")
  p = argparse.ArgumentParser(
      prog="eqinfo compress", allow_abbrev=False,  # --verify_frac is a typo
      description="Beam pipeline: corpus -> M1 -> method -> ArrayRecord shards of M2 examples. "
                  "Flags not listed here are passed to Beam (e.g. --runner DataflowRunner); "
                  "a flag that Beam does not know either is an error.",
      formatter_class=help_format.HelpFormatter)
  p.add_argument("--input", required=True,
                 help=f"corpus spec: {corpus.SPEC_FORMS}")
  p.add_argument("--method", required=True, help="e.g. equal_info_ac[b=16,v=65k], gzip[v=256]")
  p.add_argument("--output", required=True, help="output directory (local or gs://)")
  p.add_argument("--m1", default=d.m1,
                 help="trained M1 directory, context[order=K,fit=SRC] or unigram[fit=SRC]")
  p.add_argument("--packing", default=d.packing, choices=PACKING_POLICIES,
                 help="continue: the next record starts where the last one ended (no text lost); "
                 "truncate: the paper's first max_tokens tokens of each example")
  p.add_argument("--max_tokens", type=int, default=d.max_tokens,
                 help="tokens per record at most (paper: 512); train-m2's --seq_len must be at "
                 "least this")
  p.add_argument("--groups_per_shard", type=int, default=d.groups_per_shard,
                 help="groups per shard: shard s of an input file holds its groups "
                 "[G s, G (s + 1)), so shards follow the input; one worker codes and writes "
                 "a shard and holds one at a time (64 groups of C4: ~18 MB of text)")
  p.add_argument("--spread_shards", default=d.spread_shards, choices=SPREAD_CHOICES,
                 help="on: shuffle shard inputs after reading so many workers code one file's "
                 "shards (Dataflow); off: each worker codes the files it reads, in bounded "
                 "memory (local runners); auto: on for DataflowRunner only. Same shards")
  p.add_argument("--split", default=d.split,
                 help="split name in the shard names (and the TFDS split unless --tfds_split)")
  p.add_argument("--verify", dest="verify", action="store_true", default=d.verify,
                 help="decode records and compare them with their text")
  p.add_argument("--noverify", "--no-verify", dest="verify", action="store_false",
                 help="write records without decoding them")
  p.add_argument("--verify_fraction", type=float, default=d.verify_fraction,
                 help="share of records verified, picked by key hash (1: all)")
  p.add_argument("--accelerator", default=d.accelerator, choices=accelerator.CHOICES,
                 help="gpu or tpu: every coding worker (and, on a local runner, this machine) "
                 "must see one, or the job stops before coding; cpu: code on CPUs")
  p.add_argument("--verify_device", default=d.verify_device, choices=VERIFY_DEVICES,
                 help="decode with M1 on the host CPU (also where M1 codes on a GPU/TPU) "
                      "or on the device that coded")
  p.add_argument("--coder", default=d.coder, choices=CODERS,
                 help="vocabulary: code b=16 windows by the window vocabulary built once per job "
                 "(no M1 on the workers); arithmetic: M1 for every symbol; auto: vocabulary "
                 "wherever b=16 (same tokens either way)")
  p.add_argument("--vocab", default=d.vocab,
                 help="a window vocabulary file (eqinfo build-vocab) instead of building one")
  p.add_argument("--overwrite", action="store_true", default=d.overwrite,
                 help="replace the shards of an earlier run in --output")
  p.add_argument("--docs_per_group", type=int, default=d.docs_per_group,
                 help="documents concatenated per group (paper §3.1: 128)")
  p.add_argument("--example_symbols", type=int, default=d.example_symbols,
                 help="symbols per example, each coded on its own (paper §3.1: 10,240)")
  p.add_argument("--batch_size", type=int, default=d.batch_size,
                 help="examples coded at once by one worker (lanes of M1)")
  p.add_argument("--max_docs_per_file", type=_optional_int, default=d.max_docs_per_file,
                 help="read only the first N lines of each JSON-lines file (blank and "
                      "malformed lines count), or N examples of each TFDS chunk; for trials")
  p.add_argument("--max_doc_bytes", type=_optional_int, default=d.max_doc_bytes,
                 help="documents larger than this are dropped and counted (too_large)")
  p.add_argument("--text_field", default=d.text_field,
                 help="the JSON (or TFDS) field that holds the text")
  p.add_argument("--tfds_data_dir", default=d.tfds_data_dir,
                 help="TFDS data_dir of tfds: inputs (prepared there; never downloaded)")
  p.add_argument("--tfds_split", default=d.tfds_split,
                 help="the TFDS split to read, where it differs from --split")
  p.add_argument("--tfds_chunk_docs", type=int, default=d.tfds_chunk_docs,
                 help="TFDS examples per read task")
  return p


def _beam_parser() -> argparse.ArgumentParser:
  """A parser that knows every flag of Beam's registered PipelineOptions."""
  from apache_beam.options import pipeline_options  # pylint: disable=import-outside-toplevel
  beam_parser = pipeline_options._BeamArgumentParser(  # pylint: disable=protected-access
      allow_abbrev=False)
  pending, seen = [pipeline_options.PipelineOptions], set()
  while pending:
    cls = pending.pop()
    for sub in cls.__subclasses__():
      if sub not in seen:
        seen.add(sub)
        pending.append(sub)
        try:
          sub._add_argparse_args(beam_parser)  # pylint: disable=protected-access
        except argparse.ArgumentError:  # a flag two option classes both declare
          pass
  return beam_parser


def check_beam_args(beam_args: list[str], app: argparse.ArgumentParser) -> None:
  """Refuses a flag that neither eqinfo nor Beam's pipeline options know, before any work.

  Beam passes unknown flags through, so a typo (--batch for --batch_size)
  would otherwise run a whole job with the default.

  Raises:
    ValueError: naming the flag and the closest known one.
  """
  beam_parser = _beam_parser()
  _, unknown = beam_parser.parse_known_args(beam_args)
  flags = [a.split("=", 1)[0] for a in unknown if a.startswith("--")]
  if not flags:
    return
  if flags[0] in REMOVED_FLAGS:
    raise ValueError(f"{flags[0]} is no longer a flag of eqinfo compress: "
                     f"{REMOVED_FLAGS[flags[0]]}")
  known = [o for p in (app, beam_parser) for a in p._actions  # pylint: disable=protected-access
           for o in a.option_strings if o.startswith("--")]
  close = difflib.get_close_matches(flags[0], known, n=1, cutoff=0.6)
  hint = f"did you mean {close[0]}? " if close else ""
  raise ValueError(f"unknown flag {flags[0]}; {hint}{app.prog} --help lists eqinfo's flags, "
                   f"and Beam's pipeline options take the rest")


def parse(argv: Sequence[str] | None) -> tuple[CompressConfig, list[str]]:
  """Splits argv into the app config and the remaining Beam flags.

  Raises:
    ValueError: on invalid values or an unknown flag, naming the flag.
  """
  app = parser()
  known, beam_args = app.parse_known_args(list(argv or []))
  check_beam_args(beam_args, app)
  return CompressConfig.from_dict(vars(known)), beam_args
