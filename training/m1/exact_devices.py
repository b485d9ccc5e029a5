"""The exact M1 on several devices: every table of many contexts, compared.

Records written on one machine must decode on another, so the exact M1's
tables must be the same integers on CPU, GPU and TPU. `compare_devices`
computes the tables of N sequences of T symbols (N * T contexts: every prefix
of every sequence) on each device in two ways, a full causal recompute
(`ExactM1Model.sequence_freqs`) and KV-cached lanes (`ExactM1Model.lanes`,
one lane per sequence), and reports a digest of each and whether they all
agree. `integer_drawn_model` gives a model that needs no training or
conversion, so its digest can be pinned once and checked on any machine;
`converted_random_model` has the large attention sums of a real conversion.

Command line (prints JSON; on a GPU or TPU machine it compares against the
host CPU):

  eqinfo check-devices --sequences 200 --seq_len 512 \\
      --text '../shared/data/webtext/validation/*.jsonl.gz'
"""
import argparse
import hashlib
import json
import os
import sys
import time
from typing import Iterable, Sequence

import jax
import numpy as np

from compressor import constants, help_format
from compressor import corpus
from training import accelerator
from training import configs
from training.m1 import exact as exact_lib
from training.m1 import exact_params
from training.m1 import float_m1 as m1_lib
from training.m1 import quantize as quantize_m1

_DRAWN_SHIFTS = {"qkv": 24, "out": 16, "wi": 20, "gate": 29, "wo": 18, "logits": 20, "softmax": 21}


def integer_drawn_model(config: configs.ModelConfig, seed: int = 0) -> exact_lib.ExactM1Model:
  """An exact M1 whose weights are drawn as integers (seeded), activations kept in range."""
  rng = np.random.default_rng(seed)
  params = {}
  for name, (shape, dtype) in exact_params.param_specs(config).items():
    shape = tuple(0 if s is None else s for s in shape)
    kind = name.split("/")[-2] if "/" in name else name
    if name.endswith("/kernel"):
      value = rng.integers(-127, 128, shape)
    elif name.endswith("norm/mult"):
      value = rng.integers(1 << 15, 1 << 16, shape)
    elif name.endswith("norm/shift"):
      value = np.array(8)
    elif name.endswith("/mult"):
      value = rng.integers(1 << 14, 1 << 15, shape)
    elif name.endswith("/shift"):
      value = np.full(shape, _DRAWN_SHIFTS[kind])
    elif name.endswith("rel_bias"):
      value = rng.integers(-5000, 5001, shape)
    elif name == "embed":
      value = rng.integers(-(1 << 12), 1 << 12, shape)
    elif name == "buckets":
      value = np.minimum(np.arange(config.max_len), config.rel_pos_buckets - 1)
    elif name == "att_exp":
      value = exact_params.exp_table(exact_params.ATT_FRAC_BITS, exact_params.ATT_ONE)
    else:
      value = exact_params.exp_table(exact_params.OUT_FRAC_BITS, exact_params.OUT_ONE)
    params[name] = np.asarray(value).astype(dtype)
  return exact_lib.ExactM1Model(config, params)


def text_symbols(texts: Iterable[str | bytes], num_sequences: int, seq_len: int) -> np.ndarray:
  """[num_sequences, seq_len] symbols: documents (bytes + EOS) concatenated and cut."""
  symbols = quantize_m1.eval_sequences(texts, seq_len, num_sequences)
  if symbols.shape[0] < num_sequences:
    raise ValueError(f"text holds {symbols.shape[0]} sequences of {seq_len} symbols, "
                     f"{num_sequences} asked; pass more text or fewer --sequences")
  return symbols


def full_tables(model: exact_lib.ExactM1Model, symbols: np.ndarray,
                batch_size: int = 16) -> np.ndarray:
  """[N, T] symbols -> [N, T, 257] tables by full recompute; [n, t] follows symbols[n, :t]."""
  inputs = quantize_m1.bos_inputs(symbols)
  return np.concatenate([model.sequence_freqs(inputs[i:i + batch_size])
                         for i in range(0, inputs.shape[0], batch_size)])


def cached_tables(model: exact_lib.ExactM1Model, symbols: np.ndarray) -> np.ndarray:
  """[N, T] symbols -> [N, T, 257] tables from N cached lanes fed one symbol per step."""
  n, t = symbols.shape
  lanes = model.lanes(n)
  out = np.empty((n, t, constants.ALPHABET_SIZE), np.int32)
  push, reset = np.ones(n, bool), np.zeros(n, bool)
  for i in range(t):
    cdf, rows = lanes.tables()
    out[:, i] = np.diff(cdf[rows], axis=-1)
    lanes.update(symbols[:, i], push, reset)
  return out


def digest(tables: np.ndarray) -> str:
  """First 16 hex digits of the SHA-256 of the tables as little-endian int32."""
  return hashlib.sha256(np.ascontiguousarray(tables, "<i4").tobytes()).hexdigest()[:16]


def on_device(model: exact_lib.ExactM1Model, device: jax.Device) -> exact_lib.ExactM1Model:
  """The same exact M1 with its weights committed to `device`, which then computes its tables."""
  return exact_lib.ExactM1Model(model.config, model.params, model.meta, device=device)


def first_intermediate_difference(model: exact_lib.ExactM1Model, symbols: np.ndarray,
                                  devices: Sequence[jax.Device]) -> dict | None:
  """Where devices part on one [T] sequence: the first intermediate that differs.

  Returns:
    None when every intermediate agrees, else {"intermediate": name,
    "devices": [a, b], "entries": count differing, "at": index,
    "values": [a's, b's]}.
  """
  inputs = quantize_m1.bos_inputs(np.asarray(symbols)[None])
  return diff_traces([(_name(d), on_device(model, d).trace(inputs)) for d in devices])


def diff_traces(traces: Sequence[tuple[str, dict[str, np.ndarray]]]) -> dict | None:
  """The first intermediate (in computation order) where a trace differs from the first one."""
  first_name, first = traces[0]
  for name, other in traces[1:]:
    for key, value in first.items():
      where = np.argwhere(value != other[key])
      if where.size:
        at = tuple(int(i) for i in where[0])
        return {"intermediate": key, "devices": [first_name, name],
                "entries": int(where.shape[0]), "at": list(at),
                "values": [int(value[at]), int(other[key][at])]}
  return None


def _name(device: jax.Device) -> str:
  return f"{device.platform}:{device.device_kind}"


def _first_difference(a: np.ndarray, b: np.ndarray) -> list[int] | None:
  where = np.argwhere(a != b)
  return None if where.size == 0 else [int(v) for v in where[0][:2]]


def compare_devices(model: exact_lib.ExactM1Model, symbols: np.ndarray,
                    devices: Sequence[jax.Device]) -> dict:
  """Tables of every prefix of `symbols` on each device, both ways, compared.

  Returns:
    {"contexts": N * T, "equal": bool, "digest": of the first device's full
     tables, "devices": [{"device", "full", "cached", "seconds"}...],
     "first_difference": [sequence, position] or None}; where tables differ,
    also "first_intermediate_difference" (`first_intermediate_difference` of
    that sequence up to that position).
  """
  reference, rows = None, []
  first = None
  for device in devices:
    start = time.perf_counter()
    model_here = on_device(model, device)
    with jax.default_device(device):  # caches and inputs are made there too
      results = {"full": full_tables(model_here, symbols),
                 "cached": cached_tables(model_here, symbols)}
    rows.append({"device": _name(device),
                 **{k: digest(v) for k, v in results.items()},
                 "seconds": round(time.perf_counter() - start, 2)})
    if reference is None:
      reference = results["full"]
    for tables in results.values():
      first = first or _first_difference(reference, tables)
  report = {"contexts": int(symbols.size), "equal": first is None, "digest": rows[0]["full"],
            "devices": rows, "first_difference": first}
  if first is not None:
    report["first_intermediate_difference"] = first_intermediate_difference(
        model, symbols[first[0], :first[1] + 1], devices)
  return report


def write_programs(directory: str, name: str, model: exact_lib.ExactM1Model,
                   symbols: np.ndarray, devices: Sequence[jax.Device]) -> list[str]:
  """Writes each device's optimised programs of `model` as DIR/NAME.PLATFORM.PROGRAM.txt.

  Returns the paths written.
  """
  os.makedirs(directory, exist_ok=True)
  inputs = quantize_m1.bos_inputs(symbols)
  paths = []
  for device in devices:
    with jax.default_device(device):
      programs = on_device(model, device).compiled_text(inputs)
    for program, text in programs.items():
      paths.append(os.path.join(directory, f"{name}.{device.platform}.{program}.txt"))
      with open(paths[-1], "w", encoding="utf-8") as f:
        f.write(text)
  return paths


def converted_random_model(config: configs.ModelConfig, texts: Sequence[str],
                           seed: int = 0) -> exact_lib.ExactM1Model:
  """A random float M1 (logits scaled up 8x, so tables are far from uniform), converted.

  Its attention is nearly flat, so its weighted sums are large: the case where
  an H100 once parted from the CPU while integer-drawn weights did not.
  """
  float_m1 = m1_lib.M1Model.random(config, seed)
  params = jax.tree_util.tree_map(lambda a: a, float_m1.params)
  params["params"]["logits_dense"]["kernel"] = params["params"]["logits_dense"]["kernel"] * 8
  return quantize_m1.convert(m1_lib.M1Model(config, params), texts, seq_len=64, max_sequences=8)


def parse_flags(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="eqinfo check-devices", description=__doc__,
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--text", default="builtin:pydoc", help="corpus spec of the contexts "
                      "(compressor.corpus): jsonl[.gz] glob, builtin:pydoc (default), tfds:...")
  parser.add_argument("--tfds_data_dir", help="TFDS data_dir for tfds: specs (never downloaded)")
  parser.add_argument("--m1", help="M1 directory (its exact M1); default: an integer-drawn "
                      "model and a converted random model of --size")
  parser.add_argument("--size", default="tiny", help="config of the default models")
  parser.add_argument("--max_len", type=int, default=96, help="their context length")
  parser.add_argument("--seed", type=int, default=0, help="their weights' seed")
  parser.add_argument("--sequences", type=int, default=200, help="sequences of contexts")
  parser.add_argument("--seq_len", type=int, default=512,
                      help="symbols per sequence: every prefix is a context")
  parser.add_argument("--hlo", help="directory for the optimised programs of each model and "
                      "device (MODEL.DEVICE.PROGRAM.txt), to compare where tables differ")
  parser.add_argument("--save", help="directory for each model's exact weights (DIR/MODEL, "
                      "loadable with --m1), so tables that differ can be recomputed elsewhere")
  accelerator.add_flag(parser)
  return parser.parse_args(argv)


def run(argv=None) -> int:
  """Entry point: prints the comparison as JSON; exit status 1 when tables differ."""
  args = parse_flags(argv)
  accelerator.require(args.accelerator)
  documents = [doc.data for doc in corpus.read_documents(args.text, args.tfds_data_dir)]
  symbols = text_symbols(iter(documents), args.sequences, args.seq_len)
  if args.m1:
    models = {"m1": m1_lib.load(args.m1, exact=True)}
  else:
    config = m1_lib.m1_config(args.size, max_len=args.max_len)
    models = {"integer_drawn": integer_drawn_model(config, args.seed),
              "converted_random": converted_random_model(config, documents[:50], args.seed)}
  devices = [jax.devices("cpu")[0]]
  if jax.default_backend() != "cpu":
    devices.insert(0, jax.devices()[0])
  reports = [{"model": name, "fingerprint": model.fingerprint,
              **compare_devices(model, symbols, devices)} for name, model in models.items()]
  if args.hlo:
    for name, model in models.items():
      write_programs(args.hlo, name, model, symbols[:1], devices)
  if args.save:
    for name, model in models.items():
      model.save(os.path.join(args.save, name))
  report = {"equal": all(r["equal"] for r in reports), "devices_compared": len(devices),
            "models": reports}
  if len(devices) == 1:
    report["note"] = one_device_note(devices[0])
    print(f"eqinfo check-devices: {report['note']}", file=sys.stderr)
  print(json.dumps(report, indent=2))
  return 0 if report["equal"] else 1


def one_device_note(device: jax.Device) -> str:
  """What a run with no accelerator checked, and what it did not."""
  return (f"only {_name(device)} is here, so no two devices were compared: \"equal\" means "
          "its full recompute and KV-cache tables agree; run this on the GPU/TPU machine that "
          "will code to compare it with the CPU")


if __name__ == "__main__":
  sys.exit(run())
