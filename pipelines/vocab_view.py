"""`eqinfo inspect DIR --vocab [N]`: a window vocabulary as people read one (the paper's Table 7,
for every window at once).

Prints the vocabulary's effective size (distinct window texts, the codes the
encoder ever writes, tree nodes), and, where DIR holds shards coded with it,
the N most frequent windows with their text and share, how much of the 65,536
ids never occur there, and the longest windows.
"""
import json

import numpy as np

from compressor import window_vocab
from compressor.symbols import render
from pipelines import m1_loader
from training import shards


def _vocabulary_path(path: str) -> tuple[str, str | None]:
  """(the vocabulary file, its shard directory or None) of a directory or file argument."""
  if path.endswith(".json") and not path.endswith(shards.STATS):
    return path, None
  return shards.join(path, window_vocab.FILENAME), path


def window_counts(directory: str, stats: dict) -> np.ndarray:
  """[2**16] how often each window code occurs in a directory's shards."""
  if stats.get("token_bits") == 16:  # a token is a window
    from training import evaluate  # pylint: disable=import-outside-toplevel
    return evaluate.stats_histogram(stats, 1 << 16).astype(np.int64)
  method = m1_loader.shards_method(directory, stats)
  codes = [c for path in shards.shard_paths(directory)
           for record in shards.read_shard(path) for c in method.windows(record["targets"])]
  return np.bincount(np.asarray(codes, np.int64), minlength=1 << 16)


def _text(vocab: window_vocab.WindowVocabulary, code: int) -> str:
  return json.dumps(render(np.array(vocab.strings[vocab.decode[code]], np.int32)),
                    ensure_ascii=False)


def view(path: str, top: int = 20) -> str:
  """The text `eqinfo inspect --vocab` prints for a shard directory or a vocabulary file.

  Raises:
    FileNotFoundError: no window vocabulary there.
  """
  vocab_path, directory = _vocabulary_path(path)
  vocab = m1_loader.read_vocabulary(vocab_path)
  codes = vocab.entries[:, 1]
  sizes = np.array([len(vocab.strings[s]) for s in vocab.entries[:, 0]])
  lines = [
      f"{vocab_path}: window vocabulary {vocab.digest} of M1 {vocab.m1_fingerprint}, "
      f"b={vocab.window_bits}, coder {vocab.meta['coder_version']}",
      f"effective size: {vocab.distinct_strings()} distinct window texts among "
      f"{1 << vocab.window_bits} codes; the encoder writes {codes.size} codes "
      f"({1 - codes.size / (1 << vocab.window_bits):.1%} of ids never written); "
      f"{vocab.meta['tree_nodes']} tree nodes",
      f"window text length: mean {sizes.mean():.2f}, max {sizes.max()} symbols",
  ]
  if directory and shards.has_stats(directory):
    stats = shards.load_stats(directory)
    counts = window_counts(directory, stats)
    total = int(counts.sum())
    seen = int(np.count_nonzero(counts))
    mean = float((counts * sizes_of_codes(vocab)).sum() / max(total, 1))
    lines.append(f"in {directory}: {total} windows, {seen} distinct codes "
                 f"({1 - seen / counts.size:.1%} of the {counts.size} ids never occur), "
                 f"{mean:.2f} symbols per window")
    lines.append("most frequent windows:")
    for code in np.argsort(-counts, kind="stable")[:top]:
      if counts[code]:
        lines.append(f"  {int(code):>5d}  {counts[code] / total:7.3%}  {_text(vocab, int(code))}")
  lines.append("longest windows:")
  for i in np.argsort(-sizes, kind="stable")[:min(top, 10)]:
    lines.append(f"  {int(codes[i]):>5d}  {sizes[i]:>4d} symbols  {_text(vocab, int(codes[i]))}")
  return "\n".join(lines)


def sizes_of_codes(vocab: window_vocab.WindowVocabulary) -> np.ndarray:
  """[2**16] symbols each code decodes to."""
  sizes = np.array([len(s) for s in vocab.strings], np.int64)
  return sizes[vocab.decode]
