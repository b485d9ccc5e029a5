"""`eqinfo report DIR [DIR ...] [--json FILE]`: a run's results beside the paper's.

  eqinfo report shards/train-* runs/m1 runs/m2-* --json report.json

Each DIR is an output directory of `eqinfo compress` (it holds stats.json), a
training run of `eqinfo train-m1` / `eqinfo train-m2` (its config.json names
the kind), or a JSON file written by `eqinfo eval --out`. Prints a Markdown
table for each kind given:

* compression, one row per shard directory (paper Table 2): records, text
  bytes, tokens, bytes/token (the paper's compression ratio) and the paper's
  figure for the method, raw bits / coded bits, Table 3's uniform and unigram
  bits/byte baselines from the token histogram, literal windows, records
  decoded and compared before writing, bytes dropped, and whether the job
  finished (COMPLETED).
* training, one row per run (paper Table 3, §3.2): kind, method, Table 4
  size, non-embedding parameters, whether M2's rows held several records
  (train-m2 --pack_records), the last validation bits/byte (and the
  paper's 1.457 for a 3m M1), FLOPs/byte, the last training bits/byte,
  bytes of text per step, how many times an M2 saw its train text (epochs;
  the train glob should name whole shard directories), tokens/s and MFU,
  from the run's metrics.jsonl.
* evaluation, one row per `eqinfo eval --out` file (paper Table 3): the
  checkpoint and its step, the data, bits/byte beside the uniform and
  unigram baselines of the same sample, and FLOPs/byte.

`--json FILE` also writes both tables, unrounded, as one JSON object.
"""
import argparse
import json
import sys

from apache_beam.io.filesystems import FileSystems

from compressor import help_format
from pipelines import paper
from training import checkpoint as checkpoint_lib
from training import configs
from training import evaluate
from training import model as model_lib
from training import shards

SIZE_FIELDS = ("d_model", "num_heads", "num_layers", "mlp_dim", "head_dim")

COMPRESSION_COLUMNS = (  # (key, header, format)
    ("directory", "shards", "{}"), ("method", "method", "{}"), ("m1", "M1", "{}"),
    ("examples", "records", "{}"), ("bytes", "bytes", "{}"), ("tokens", "tokens", "{}"),
    ("compression_ratio", "compression ratio (bytes/token)", "{:.3f}"),
    ("paper_compression_ratio", "paper", "{:.2f}"),
    ("raw_bits_per_coded_bit", "raw bits per coded bit", "{:.3f}"),
    ("uniform_bits_per_byte", "uniform bits/byte", "{:.3f}"),
    ("unigram_bits_per_byte", "unigram bits/byte", "{:.3f}"),
    ("literal_windows", "literal windows", "{}"),
    ("records_verified", "verified", "{}"), ("bytes_dropped", "bytes dropped", "{}"),
    ("completed", "completed", "{}"),
)

TRAINING_COLUMNS = (
    ("directory", "run", "{}"), ("kind", "kind", "{}"), ("method", "method", "{}"),
    ("size", "size", "{}"), ("non_embedding_params", "params", "{}"),
    ("packed", "packed rows", "{}"), ("step", "step", "{}"),
    ("validation_bits_per_byte", "bits/byte", "{:.3f}"),
    ("paper_bits_per_byte", "paper", "{:.3f}"),
    ("flops_per_byte", "FLOPs/byte", "{:.4g}"),
    ("train_bits_per_byte", "train bits/byte", "{:.3f}"),
    ("bytes_per_step", "bytes/step", "{:.0f}"), ("epochs", "epochs", "{:.1f}"),
    ("tokens_per_s", "tokens/s", "{:.0f}"), ("mfu", "MFU", "{:.3f}"),
)


EVALUATION_COLUMNS = (
    ("path", "file", "{}"), ("checkpoint", "checkpoint", "{}"), ("kind", "kind", "{}"),
    ("step", "step", "{}"), ("data", "data", "{}"), ("tokens", "tokens", "{:.0f}"),
    ("bytes", "bytes", "{:.0f}"), ("bits_per_byte", "bits/byte", "{:.3f}"),
    ("uniform_bits_per_byte", "uniform", "{:.3f}"), ("unigram_bits_per_byte", "unigram", "{:.3f}"),
    ("flops_per_byte", "FLOPs/byte", "{:.4g}"),
)


def parse_flags(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="eqinfo report", description=__doc__,
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("directories", nargs="+", metavar="DIR",
                      help="shard directories (eqinfo compress), training runs and "
                           "eqinfo eval --out files")
  parser.add_argument("--json", help="also write the report as JSON to this file")
  return parser.parse_args(argv)


def shard_row(directory: str) -> dict:
  """The compression row of a shard directory, from its stats.json."""
  stats = shards.read_json(shards.join(directory, shards.STATS))
  tokens, num_bytes = stats["tokens"], stats["bytes"]
  row = {
      "directory": directory, "method": stats["method"], "m1": stats.get("m1"),
      "m1_inference": stats.get("m1_inference"), "examples": stats["examples"],
      "bytes": num_bytes, "tokens": tokens,
      "compression_ratio": shards.compression_ratio(stats),
      "paper_compression_ratio": paper.bytes_per_token(stats["method"]),
      "raw_bits_per_coded_bit": shards.raw_bits_per_coded_bit(stats),
      "uniform_bits_per_byte": None, "unigram_bits_per_byte": None,
      "windows": stats.get("windows"), "literal_windows": stats.get("literal_windows"),
      "records_verified": stats.get("records_verified"),
      "verification_failures": stats.get("verification_failures"),
      "bytes_in": stats.get("bytes_in"), "bytes_dropped": stats.get("bytes_dropped"),
      "completed": shards.is_completed(directory),
  }
  histogram = evaluate.stats_histogram(stats, stats["vocab_size"])
  if tokens and num_bytes and histogram is not None:
    base = evaluate.baselines(stats["vocab_size"], tokens, num_bytes, histogram)
    row["uniform_bits_per_byte"], row["unigram_bits_per_byte"] = base["uniform"], base["unigram"]
  return row


def metric_records(run: str) -> list[dict]:
  """Every record of a run's metrics.jsonl ({"split", "step", ...}), in order; [] if none."""
  path = checkpoint_lib.as_path(run) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bytes_seen(records: list[dict], step: int) -> float | None:
  """Bytes of text in an M2's first `step` steps: each train record's bytes/step times the
  steps of the interval it closes (the last one's carried on past it); None without any.

  >>> bytes_seen([{"split": "train", "step": 10, "bytes_per_step": 50.0},
  ...             {"split": "train", "step": 30, "bytes_per_step": 25.0}], 20)
  750.0
  """
  train = sorted((r for r in records if r["split"] == "train" and "bytes_per_step" in r),
                 key=lambda r: r["step"])
  if not train:
    return None
  seen, last = 0.0, 0
  for record in train:
    if record["step"] >= step:
      return seen + record["bytes_per_step"] * (step - last)
    seen += record["bytes_per_step"] * (record["step"] - last)
    last = record["step"]
  return seen + train[-1]["bytes_per_step"] * (step - last)


def epochs(records: list[dict], train_bytes: int | None) -> float | None:
  """How many times an M2 saw its train text: `bytes_seen` at its last train record over the
  train shards' text bytes; None if either is unknown.

  >>> epochs([{"split": "train", "step": 10, "bytes_per_step": 50.0},
  ...         {"split": "train", "step": 30, "bytes_per_step": 25.0}], 1000)
  1.0
  """
  steps = [r["step"] for r in records if r["split"] == "train" and "bytes_per_step" in r]
  if not train_bytes or not steps:
    return None
  return bytes_seen(records, max(steps)) / train_bytes


def size_name(model: dict) -> str:
  """The Table 4 size whose dimensions a run's model config has, else "custom"."""
  for name, size in configs.SIZES.items():
    if all(model.get(f) == getattr(size, f) for f in SIZE_FIELDS):
      return name
  return "custom"


def run_row(directory: str) -> dict:
  """The training row of a train-m1 / train-m2 run directory.

  Raises:
    FileNotFoundError: if `directory` does not exist.
    ValueError: if `directory` is not a training run, saying what to pass.
  """
  if not FileSystems.exists(directory):
    raise FileNotFoundError(f"{directory!r} does not exist; pass shard directories and "
                            "training runs that do")
  run = evaluate.run_directory(directory)
  if run is None:
    raise ValueError(f"{directory!r} is neither a shard directory (stats.json) nor a training "
                     "run (config.json with a kind); pass directories written by eqinfo "
                     "compress, train-m1 or train-m2")
  config = checkpoint_lib.load_config(run)
  model = configs.from_dict(config["model"])
  size = size_name(config["model"])
  records = metric_records(run)
  metrics = {record["split"]: record for record in records}
  train, validation = metrics.get("train", {}), metrics.get("validation", {})
  train_bytes = (shards.text_bytes_of_glob(config["data"]["train"])
                 if config["kind"] == "m2" else None)
  return {
      "directory": directory, "kind": config["kind"], "method": config.get("method"),
      "size": size,
      "non_embedding_params": model_lib.count_params(model_lib.param_shapes(model)),
      "packed": (bool(config.get("data", {}).get("pack_records", False))
                 if config["kind"] == "m2" else None),
      "steps": config.get("train", {}).get("steps"),
      "step": max(train.get("step", 0), validation.get("step", 0)) or None,
      "validation_step": validation.get("step"),
      "validation_bits_per_byte": validation.get("bits_per_byte"),
      "paper_bits_per_byte": paper.m1_bits_per_byte(size) if config["kind"] == "m1" else None,
      "flops_per_byte": validation.get("flops_per_byte", train.get("flops_per_byte")),
      "train_bits_per_byte": train.get("bits_per_byte"),
      "bytes_per_step": train.get("bytes_per_step"),
      "epochs": epochs(records, train_bytes),
      "tokens_per_s": train.get("tokens_per_s"), "mfu": train.get("mfu"),
  }


def evaluation_row(path: str) -> dict:
  """The row of an `eqinfo eval --out` file.

  Raises:
    FileNotFoundError: if there is no such file.
    ValueError: if the file is not such a result.
  """
  if not FileSystems.exists(path):
    raise FileNotFoundError(f"{path!r} does not exist; pass the file eqinfo eval --out wrote")
  try:
    result = shards.read_json(path)
  except ValueError:
    result = None
  if not isinstance(result, dict) or "bits_per_byte" not in result or "baselines" not in result:
    raise ValueError(f"{path!r} is not a result of eqinfo eval --out; pass the file it wrote")
  row = {key: result.get(key) for key, _, _ in EVALUATION_COLUMNS}
  row.update(path=path, uniform_bits_per_byte=result["baselines"].get("uniform"),
             unigram_bits_per_byte=result["baselines"].get("unigram"))
  return row


def build(paths: list[str]) -> dict:
  """{"compression": [...], "training": [...], "evaluation": [...]} rows, in the order given."""
  result = {"compression": [], "training": [], "evaluation": []}
  for path in paths:
    if path.endswith(".json"):
      result["evaluation"].append(evaluation_row(path))
    elif shards.has_stats(path):
      result["compression"].append(shard_row(path))
    else:
      result["training"].append(run_row(path))
  return result


def markdown(rows: list[dict], columns) -> str:
  """A Markdown table of `rows`; a missing value prints as "-"."""
  lines = ["| " + " | ".join(header for _, header, _ in columns) + " |",
           "|" + "---|" * len(columns)]
  for row in rows:
    cells = ["-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def render(result: dict) -> str:
  """The text `eqinfo report` prints."""
  parts = []
  if result["compression"]:
    parts += ["compression (compression ratio = bytes/token, as in the paper's Table 2; "
              "uniform/unigram are Table 3's baselines)",
              markdown(result["compression"], COMPRESSION_COLUMNS)]
  if result["training"]:
    parts += ["training (last validation bits/byte; paper §3.2 for a 3m M1)",
              markdown(result["training"], TRAINING_COLUMNS)]
  if result["evaluation"]:
    parts += ["evaluation (eqinfo eval: bits/byte beside Table 3's baselines on the same sample)",
              markdown(result["evaluation"], EVALUATION_COLUMNS)]
  return "\n\n".join(parts)


def run(argv=None) -> int:
  """Entry point of `eqinfo report`."""
  args = parse_flags(argv)
  result = build(args.directories)
  print(render(result))
  if args.json:
    with FileSystems.create(args.json) as f:
      f.write((json.dumps({"inputs": args.directories, **result}, indent=2) + "\n").encode())
    print(f"wrote {args.json}", file=sys.stderr)
  return 0
