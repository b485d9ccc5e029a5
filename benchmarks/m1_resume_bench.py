"""How long M1 training's input takes to resume, from its saved position and by replay, as JSON.

Usage:
  python benchmarks/m1_resume_bench.py [--data ../shared/data/webtext] [--out m1_resume.json]

One process's M1 batches (`training.m1_input.M1Batches`) over all of the shared
web text (train and validation), taken to `--fraction` of an epoch; its state
is then restored twice in this process:

  * `restore`: `set_state` of the full state, which reads the corpus again
    only from the group of the oldest sequence in the shuffle buffer
    (`training.m1_epoch`), about buffer x ln(buffer) sequences back;
  * `replay`: `set_state` of the same (epoch, sequences) without the
    position, which replays the epoch from its first document (older
    checkpoints).

Each reports seconds (best of `--repeats`) and the documents turned into
symbols; `replay_over_restore` is the ratio of their seconds. Both resumed
iterators are checked to hand out the same next batch. A replay's cost grows
with the position in the epoch (C4 holds some 150 million M1 sequences of
1024), a restore's does not.
"""
import argparse
import json
import pathlib
import time

from compressor import symbols as symbols_lib
from training import m1_input
from webtext import DEFAULT_DATA  # benchmarks/webtext.py



class ConversionCounter:
  """Counts documents turned into symbols while installed (`with`)."""

  def __init__(self):
    self.count, self._inner = 0, None

  def __enter__(self):
    self._inner = symbols_lib.symbols_from_text

    def counted(text):
      self.count += 1
      return self._inner(text)
    symbols_lib.symbols_from_text = counted
    return self

  def __exit__(self, *exc):
    symbols_lib.symbols_from_text = self._inner


def time_resume(config: m1_input.M1DataConfig, state: dict, repeats: int) -> tuple[dict, dict]:
  """(figures, next batch) of `repeats` fresh M1Batches resumed at `state`."""
  best, documents = float("inf"), 0
  for _ in range(repeats):
    batches = m1_input.M1Batches(config)
    with ConversionCounter() as counter:
      start = time.perf_counter()
      batches.set_state(state)
      best = min(best, time.perf_counter() - start)
    documents = counter.count
  return {"seconds": round(best, 3), "documents_read": documents}, next(batches)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--seq_len", type=int, default=256)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--shuffle_buffer", type=int, default=512)
  parser.add_argument("--fraction", type=float, default=0.9, help="of an epoch, at the resume")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", type=pathlib.Path)
  args = parser.parse_args(argv)

  config = m1_input.M1DataConfig(str(args.data / "*" / "*.jsonl.gz"), seq_len=args.seq_len,
                             batch_size=args.batch_size, shuffle_buffer=args.shuffle_buffer)
  sequences = sum(1 for _ in m1_input.m1_sequences(config))
  steps = int(sequences * args.fraction) // args.batch_size
  batches = m1_input.M1Batches(config)
  for _ in range(steps):
    next(batches)
  state = json.loads(json.dumps(batches.get_state()))
  expected = next(batches)

  restore, restored = time_resume(config, state, args.repeats)
  replay, replayed = time_resume(config, {k: state[k] for k in ("epoch", "sequences")},
                                 args.repeats)
  same = all((restored[k] == expected[k]).all() and (replayed[k] == expected[k]).all()
             for k in expected)
  restart = state["position"]["restart"]
  result = {
      "corpus": config.spec, "seq_len": args.seq_len, "batch_size": args.batch_size,
      "shuffle_buffer": args.shuffle_buffer, "epoch_sequences": sequences,
      "resumed_at_sequence": state["sequences"],
      "sequences_cut_again": state["position"]["next"] - restart["k"],
      "state_bytes": len(json.dumps(state)),
      "restore": restore, "replay": replay,
      "replay_over_restore": round(replay["seconds"] / restore["seconds"], 2),
      "same_next_batch": bool(same)}
  text = json.dumps(result, indent=2)
  print(text)
  if args.out:
    args.out.write_text(text + "\n")
  return result


if __name__ == "__main__":
  main()
