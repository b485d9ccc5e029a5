"""`eqinfo reproduce --scale smoke|cpu|gpu|FILE.toml --out DIR`: the paper's grid, end to end.

Every stage is one of the project's own commands, run in this process:

  sentencepiece   train-sentencepiece on --train (for the `sentencepiece` method)
  m1              train-m1 on --train, validated on --validation
  compress        for each method and split: compress --method M [--m1 DIR/m1]
  m2              for each method and M2 size: train-m2 on the method's shards
  eval            for each M2: eval on the method's validation shards (--out)
  report          eqinfo report of all of them, with the figures (pipelines/figures.py)
                  and the paper's five findings checked (pipelines/claims.py)

A scale is a TOML file: the corpora, the methods, the M2 sizes and the flags of
each command (`pipelines/scales/` holds smoke, cpu and gpu; write your own and
pass its path). DIR gets:

  reproduce.json   the resolved scale and every stage's command line
  stages/NAME.json each finished stage: its command line and seconds
  sentencepiece/, m1/, shards/METHOD/{train,validation}/, m2/METHOD-SIZE/,
  eval/METHOD-SIZE.json, report.md, report.json, figures/

The report adds the paper's tokenization study (`pipelines/stability.py`): Fig. 8's
edit distances under one-word prefixes and Table 7's segmentation of one sentence.

A stage is skipped when stages/NAME.json records the same command line, run after
the runs of its inputs that are recorded now, so a killed run picks up where it
stopped. A stage whose flags changed runs again, and so does every stage that
reads its output; such a stage starts from an empty output (an M2 retrains on
the new shards), while a stage that was killed with the same command and inputs
resumes (train-m1 and train-m2 from their checkpoints).
"""
import argparse
import dataclasses
import importlib
import json
import os
import pathlib
import platform
import shlex
import shutil
import sys
import time
import uuid
import tomllib
from typing import Callable

import tqdm

from compressor import help_format
from pipelines import claims, figures, m1_loader, report, stability
from pipelines.cli import COMMANDS
from training import shards

SCALES_DIR = pathlib.Path(__file__).parent / "scales"
SCALES = tuple(sorted(p.stem for p in SCALES_DIR.glob("*.toml")))
SENTENCEPIECE = "sentencepiece"
SPLITS = ("train", "validation")
_FLAG_GROUPS = ("train_m1", "compress", "train_m2", "eval")


@dataclasses.dataclass(frozen=True)
class Scale:
  """A resolved scale file (see the module doc and pipelines/scales/*.toml)."""
  name: str
  description: str
  train: str
  validation: str
  methods: tuple[str, ...]
  m2_sizes: tuple[str, ...]
  sentencepiece_vocab_size: int
  flags: dict  # {"train_m1" | "compress" | "train_m2" | "eval": [flag, ...]}


def load_scale(name_or_path: str, train: str | None = None,
               validation: str | None = None) -> Scale:
  """Reads a scale by name (pipelines/scales/NAME.toml) or path; --train/--validation win.

  Raises:
    FileNotFoundError: no such scale.
    ValueError: a key missing or unknown, naming it.
  """
  path = pathlib.Path(name_or_path)
  if name_or_path in SCALES:
    path = SCALES_DIR / f"{name_or_path}.toml"
  if not path.is_file():
    raise FileNotFoundError(f"--scale {name_or_path}: no such scale; pass one of {SCALES} or "
                            "the path of a .toml file like pipelines/scales/smoke.toml")
  with path.open("rb") as f:
    raw = tomllib.load(f)
  fields = {f.name for f in dataclasses.fields(Scale)} - {"name"}
  if set(raw) != fields:
    raise ValueError(f"scale {path}: keys {sorted(raw)} must be {sorted(fields)} "
                     f"(missing {sorted(fields - set(raw))}, unknown {sorted(set(raw) - fields)})")
  flags = {group: list(raw["flags"].get(group, [])) for group in _FLAG_GROUPS}
  unknown = sorted(set(raw["flags"]) - set(_FLAG_GROUPS))
  if unknown:
    raise ValueError(f"scale {path}: [flags] {unknown} are not among {list(_FLAG_GROUPS)}")
  return Scale(name=path.stem, description=raw["description"],
               train=train or raw["train"], validation=validation or raw["validation"],
               methods=tuple(raw["methods"]), m2_sizes=tuple(raw["m2_sizes"]),
               sentencepiece_vocab_size=int(raw["sentencepiece_vocab_size"]), flags=flags)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One command of the grid.

  Attributes:
    name: unique, e.g. "compress-equal_info_ac_b_16_v_256-train".
    command: the eqinfo subcommand (pipelines/cli.py).
    argv: its arguments.
    output: what it writes (a directory or file under DIR).
    inputs: the names of the stages whose outputs it reads.
  """
  name: str
  command: str
  argv: tuple[str, ...]
  output: str
  inputs: tuple[str, ...] = ()

  def command_line(self) -> str:
    return "eqinfo " + shlex.join((self.command, *self.argv))


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where each output of a reproduction lives under DIR."""
  out: pathlib.Path

  def sentencepiece_model(self) -> str:
    return str(self.out / "sentencepiece" / "sp.model")

  def m1(self) -> str:
    return str(self.out / "m1")

  def shards(self, method: str, split: str) -> str:
    return str(self.out / "shards" / shards.sanitize_spec(method) / split)

  def m2(self, method: str, size: str) -> str:
    return str(self.out / "m2" / f"{shards.sanitize_spec(method)}-{size}")

  def eval_file(self, method: str, size: str) -> str:
    return str(self.out / "eval" / f"{shards.sanitize_spec(method)}-{size}.json")


def method_spec(method: str, layout: Layout) -> str:
  """A scale's method name as a compress --method spec (sentencepiece: the model trained here)."""
  if method == SENTENCEPIECE:
    return f"sentencepiece[path={layout.sentencepiece_model()}]"
  return method


def uses_m1(method: str) -> bool:
  """Whether the method codes with the M1 trained here (static_ac: a unigram fit instead)."""
  return method.startswith(("ac[", "equal_info_ac["))


def model_flags(method: str, scale: Scale, layout: Layout) -> tuple[str, ...]:
  """compress's --m1 for a method: the M1 trained here, StaticAC's unigram model of the
  train corpus (paper §3.3), or none."""
  if uses_m1(method):
    return ("--m1", layout.m1())
  if method.startswith("static_ac["):
    return ("--m1", f"unigram[fit={scale.train}]")
  return ()


M1_STAGE = "m1"
SENTENCEPIECE_STAGE = "sentencepiece"


def compress_stage(method: str, split: str) -> str:
  """The name of the stage that compresses a split with a method."""
  return f"compress-{shards.sanitize_spec(method)}-{split}"


def plan(scale: Scale, layout: Layout) -> list[Stage]:
  """Every stage of a reproduction, in the order they run."""
  f = scale.flags
  stages = []
  if SENTENCEPIECE in scale.methods:
    prefix = layout.sentencepiece_model().removesuffix(".model")
    stages.append(Stage(SENTENCEPIECE_STAGE, "train-sentencepiece",
                        ("--train", scale.train, "--vocab_size",
                         str(scale.sentencepiece_vocab_size), "--out", prefix),
                        layout.sentencepiece_model()))
  if any(uses_m1(m) for m in scale.methods):
    stages.append(Stage(M1_STAGE, "train-m1", ("--train", scale.train, "--validation",
                                            scale.validation, *f["train_m1"], "--no_progress",
                                            "--out", layout.m1()), layout.m1()))
  for method in scale.methods:
    m1 = model_flags(method, scale, layout)
    reads = ((M1_STAGE,) if uses_m1(method) else
             (SENTENCEPIECE_STAGE,) if method == SENTENCEPIECE else ())
    for split, corpus in zip(SPLITS, (scale.train, scale.validation)):
      stages.append(Stage(
          compress_stage(method, split), "compress",
          ("--input", corpus, "--split", split, "--method", method_spec(method, layout), *m1,
           *f["compress"], "--output", layout.shards(method, split), "--overwrite"),
          layout.shards(method, split), reads))
  for method in scale.methods:
    for size in scale.m2_sizes:
      name = f"{shards.sanitize_spec(method)}-{size}"
      glob = {s: shards.join(layout.shards(method, s), "*" + shards.SHARD_SUFFIX) for s in SPLITS}
      coded = tuple(compress_stage(method, s) for s in SPLITS)
      stages.append(Stage(f"m2-{name}", "train-m2",
                          ("--train", glob["train"], "--validation", glob["validation"],
                           "--size", size, *f["train_m2"], "--no_progress",
                           "--out", layout.m2(method, size)), layout.m2(method, size), coded))
      stages.append(Stage(f"eval-{name}", "eval",
                          ("--checkpoint", layout.m2(method, size), "--data",
                           glob["validation"], *f["eval"], "--out",
                           layout.eval_file(method, size)), layout.eval_file(method, size),
                          (f"m2-{name}", compress_stage(method, "validation"))))
  return stages


def _record_path(out: pathlib.Path, name: str) -> pathlib.Path:
  return out / "stages" / f"{name}.json"


def _record(out: pathlib.Path, name: str) -> dict:
  """The record of a stage's last finished run ({} if none)."""
  path = _record_path(out, name)
  return json.loads(path.read_text()) if path.is_file() else {}


def finished(out: pathlib.Path, stage: Stage) -> bool:
  """Whether the stage ran to the end with the same command line, after the runs of its
  inputs that are recorded now (a stage whose input ran again must run again)."""
  record = _record(out, stage.name)
  if record.get("command_line") != stage.command_line():
    return False
  if "inputs" not in record:  # written before inputs were recorded: trusted as it stands
    return True
  return record["inputs"] == _inputs_now(out, stage)


def _inputs_now(out: pathlib.Path, stage: Stage) -> dict[str, str | None]:
  """{input stage: the id of its recorded run} as they stand."""
  return {name: _record(out, name).get("run") for name in stage.inputs}


def _clear_stale_output(out: pathlib.Path, stage: Stage) -> None:
  """Makes way for a stage: keeps its output where a run with the same command and inputs was
  killed (it resumes), else removes it, so that a train stage does not resume an M1 or
  M2 of other flags or data. Only an output inside the reproduction's directory is removed."""
  attempt = {"command_line": stage.command_line(), "inputs": _inputs_now(out, stage)}
  started = _record_path(out, stage.name + ".started")
  output = pathlib.Path(stage.output).resolve()
  mine = stage.output and output != out.resolve() and output.is_relative_to(out.resolve())
  if mine and output.exists() and not (started.is_file()
                                       and json.loads(started.read_text()) == attempt):
    if output.is_dir():
      shutil.rmtree(output)
    else:
      output.unlink()
  started.parent.mkdir(parents=True, exist_ok=True)
  started.write_text(json.dumps(attempt, indent=1) + "\n")


def unfinished(stages: list[Stage], out: pathlib.Path) -> list[Stage]:
  """The stages to run, in plan order: those not finished, and every stage that reads an
  output of one of them."""
  todo: set[str] = set()
  for stage in stages:  # plan order: a stage's inputs come before it
    if not finished(out, stage) or todo.intersection(stage.inputs):
      todo.add(stage.name)
  return [s for s in stages if s.name in todo]


class StageFailed(ValueError):
  """A stage's command failed; the message names the stage and its command line."""


def run_stage(stage: Stage, out: pathlib.Path, run_command: Callable[[list[str]], int]) -> float:
  """Runs one stage and records it; returns its seconds.

  Raises:
    StageFailed: the command exited with a non-zero status or a one-line error.
  """
  _clear_stale_output(out, stage)
  start = time.perf_counter()
  hint = (f"({stage.command_line()}); fix it and run eqinfo reproduce again, which resumes "
          "at this stage")
  try:
    status = run_command([stage.command, *stage.argv])
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    raise StageFailed(f"stage {stage.name}: {e} {hint}") from e
  seconds = time.perf_counter() - start
  if status != 0:
    raise StageFailed(f"stage {stage.name} exited with status {status} {hint}")
  path = _record_path(out, stage.name)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"command_line": stage.command_line(),
                              "seconds": round(seconds, 1), "run": uuid.uuid4().hex[:16],
                              "inputs": _inputs_now(out, stage)}, indent=1) + "\n")
  _record_path(out, stage.name + ".started").unlink()
  return seconds


def _run_command(argv: list[str]) -> int:
  """Runs `eqinfo argv[0] argv[1:]` in this process (its module's run(argv))."""
  module = importlib.import_module(COMMANDS[argv[0]][0])
  return int(module.run(argv[1:]) or 0)


# The methods of the paper's Fig. 8 (stability) and Table 7 (segmentation), where in the grid.
STABILITY_METHODS = (SENTENCEPIECE, "ac[v=256]", "equal_info_ac[b=16,v=256]")
SEGMENTATION_METHODS = (SENTENCEPIECE, "equal_info_ac[b=16,v=65k]")


def tokenization_study(scale: Scale, layout: Layout) -> dict:
  """Fig. 8's edit distances and Table 7's segments (`pipelines/stability.py`) of the
  grid's methods, coded with the M1 and SentencePiece model trained here."""
  def method(name):
    m1 = layout.m1() if uses_m1(name) else None
    return m1_loader.build_method(method_spec(name, layout), m1)

  words = stability.prefix_words()
  return {
      "sentence": stability.SENTENCE, "prefixes": words,
      "edit_distances": {m: stability.edit_distances(method(m), stability.SENTENCE, words)
                         for m in STABILITY_METHODS if m in scale.methods},
      "segments": {m: stability.segments(method(m)) for m in SEGMENTATION_METHODS
                   if m in scale.methods},
  }


def run_markdown(run: dict) -> str:
  """The run's command, machine and time, for report.md (`run` as in run.json)."""
  by_command = ", ".join(f"{command} {seconds / 60:.1f} min"
                         for command, seconds in run["seconds_by_command"].items())
  m = run["machine"]
  return "\n".join([
      f"- command: `{run['command_line']}` (from the repository root)",
      f"- machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, "
      f"JAX devices {', '.join(m['jax_devices'])}",
      f"- time of all stages: {run['seconds_of_stages'] / 60:.1f} min ({by_command}); "
      "each stage's seconds are in run.json"])


def write_report(scale: Scale, layout: Layout, run: dict) -> dict:
  """report.md, report.json and the figures of a finished grid, with `run` (run.json's
  content: command, machine, time); returns report.json's content."""
  inputs = ([layout.shards(m, s) for m in scale.methods for s in SPLITS]
            + ([layout.m1()] if any(uses_m1(m) for m in scale.methods) else [])
            + [layout.m2(m, size) for m in scale.methods for size in scale.m2_sizes]
            + [layout.eval_file(m, size) for m in scale.methods for size in scale.m2_sizes])
  result = {"inputs": inputs, **report.build(inputs)}
  result["tokenization"] = tokenization_study(scale, layout)
  drawn = figures.draw_all(result, layout.out / "figures")
  result["figures"] = drawn
  result["claims"] = claims.check(result)
  (layout.out / "report.json").write_text(json.dumps(result, indent=1) + "\n")
  (layout.out / "report.md").write_text("\n\n".join([
      f"# eqinfo reproduce --scale {scale.name}", scale.description, run_markdown(run),
      "## The paper's findings here (pipelines/claims.py)", claims.markdown(result["claims"]),
      "## Tables", report.render(result), "## Figures",
      figures.markdown(drawn, layout.out),
      figures.segmentation_markdown(result["tokenization"])]) + "\n")
  return result


def machine() -> dict:
  """The machine a reproduction ran on."""
  import jax  # pylint: disable=import-outside-toplevel
  return {"platform": platform.platform(), "python": platform.python_version(),
          "cpu_count": os.cpu_count(), "jax_devices": [str(d) for d in jax.devices()]}


def time_left(stages: list[Stage], out: pathlib.Path) -> tuple[float, list[str]]:
  """An estimate of what the unfinished stages will take.

  Returns:
    (seconds, untimed): the seconds of the unfinished stages whose command has a finished
    stage, each at the mean of those; and the commands of the others, none of whose
    stages has finished yet (their time is unknown), in plan order.
  """
  todo = unfinished(stages, out)
  seconds: dict[str, list[float]] = {}
  for stage in stages:
    if stage not in todo:
      seconds.setdefault(stage.command, []).append(_record(out, stage.name)["seconds"])
  left, untimed = 0.0, []
  for stage in todo:
    if stage.command in seconds:
      left += sum(seconds[stage.command]) / len(seconds[stage.command])
    elif stage.command not in untimed:
      untimed.append(stage.command)
  return left, untimed


def _progress_text(stage: Stage, left: tuple[float, list[str]]) -> str:
  seconds, untimed = left
  text = f"{stage.name}; {'at least' if untimed else 'about'} {seconds / 60:.0f} min left"
  return text + (f" (+ {', '.join(untimed)}: not timed yet)" if untimed else "")


def run_stages(stages: list[Stage], out: pathlib.Path,
               run_command: Callable[[list[str]], int] = _run_command) -> list[str]:
  """Runs the stages not yet finished, in order, with a progress bar and an estimate of the
  time left (`time_left`); returns their names."""
  todo = unfinished(stages, out)
  with tqdm.tqdm(total=len(stages), initial=len(stages) - len(todo), unit="stage",
                 desc="reproduce", file=sys.stderr, dynamic_ncols=True,
                 bar_format="{desc}: {n_fmt}/{total_fmt} stages [{elapsed}] {postfix}") as bar:
    for stage in todo:
      bar.set_postfix_str(_progress_text(stage, time_left(stages, out)))
      tqdm.tqdm.write(f"reproduce: {stage.command_line()}", file=sys.stderr)
      run_stage(stage, out, run_command)
      bar.update(1)
  return [s.name for s in todo]


def reproduce(scale: Scale, out: pathlib.Path, argv: list[str],
              run_command: Callable[[list[str]], int] = _run_command) -> dict:
  """Runs every stage not yet finished, then the report; returns report.json's content."""
  layout = Layout(out)
  stages = plan(scale, layout)
  out.mkdir(parents=True, exist_ok=True)
  (out / "reproduce.json").write_text(json.dumps({
      "command_line": "eqinfo " + shlex.join(["reproduce", *argv]),
      "scale": dataclasses.asdict(scale),
      "stages": [{"name": s.name, "command_line": s.command_line()} for s in stages],
  }, indent=1) + "\n")
  start = time.perf_counter()
  run_stages(stages, out, run_command)
  seconds = {s.name: _record(out, s.name)["seconds"] for s in stages}
  by_command: dict[str, float] = {}
  for stage in stages:
    by_command[stage.command] = round(by_command.get(stage.command, 0) + seconds[stage.name], 1)
  run = {"command_line": "eqinfo " + shlex.join(["reproduce", *argv]), "machine": machine(),
         "seconds_of_stages": round(sum(seconds.values()), 1),
         "seconds_by_command": by_command, "stages": seconds}
  result = write_report(scale, layout, run)
  run["seconds_this_run"] = round(time.perf_counter() - start, 1)  # with the report
  (out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
  return result


def parse_flags(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="eqinfo reproduce", description=__doc__,
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--scale", required=True,
                      help=f"one of {', '.join(SCALES)}, or the path of a scale .toml file")
  parser.add_argument("--out", required=True, help="directory of the whole reproduction")
  parser.add_argument("--train", default=None, help="train corpus spec instead of the scale's")
  parser.add_argument("--validation", default=None,
                      help="validation corpus spec instead of the scale's")
  return parser.parse_args(argv)


def run(argv=None) -> int:
  """Entry point of `eqinfo reproduce`."""
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_flags(argv)
  scale = load_scale(args.scale, args.train, args.validation)
  reproduce(scale, pathlib.Path(args.out), argv)
  print(f"wrote {pathlib.Path(args.out) / 'report.md'}")
  return 0
