"""`eqinfo inspect DIR [--decode N] [--check [F]]`: totals, ratio, histogram, decoded records.

Reads stats.json and every shard of an output directory of `eqinfo compress`,
recounts records, tokens and bytes, and with `--decode N` prints record N (in
shard order) decoded. For Equal-Info methods each window is decoded on its own
and printed in brackets, like the paper's Table 7: `[The th][ree cu]...`.

`--check` decodes every record on this machine (`--check 0.01`: a fixed 1% by
key hash) and compares it with the checksum of its text that the record
carries (`symbols_crc32`), so shards that an accelerator wrote can be checked
on the CPU that will read them; the exit status is 1 if one does not decode.
"""
import argparse
import json
import sys

import numpy as np
import tqdm

from compressor import help_format
from compressor.methods.base import bytes_to_tokens, tokens_to_bytes
from compressor.symbols import render
from pipelines import m1_loader, transforms
from training import shards

CHECK_BATCH = 256  # records decoded at once by --check (lanes of the decoder)


def totals(records: list[dict], vocab_size: int) -> dict:
  """Recounted totals and token histogram of parsed records."""
  tokens = [r["targets"] for r in records]
  hist = np.bincount(np.concatenate(tokens) if tokens else np.zeros(0, np.int64),
                     minlength=vocab_size)
  return {"examples": len(records), "tokens": int(sum(t.size for t in tokens)),
          "bytes": int(sum(int(r["num_bytes"][0]) for r in records)),
          "windows": int(sum(int(r["num_windows"][0]) for r in records)),
          "histogram": hist}


def histogram_summary(hist: np.ndarray, top: int = 10) -> str:
  """Used ids, entropy in bits per token and the most frequent ids."""
  total = hist.sum()
  if not total:
    return "no tokens"
  p = hist[hist > 0] / total
  order = np.argsort(-hist, kind="stable")[:top]
  common = ", ".join(f"{i}:{hist[i] / total:.3%}" for i in order if hist[i])
  return (f"{int((hist > 0).sum())} of {hist.size} ids used; unigram entropy "
          f"{float(-(p * np.log2(p)).sum()):.3f} bits/token; most frequent {common}")


def window_texts(method, tokens: np.ndarray) -> list[np.ndarray] | None:
  """Each Equal-Info window of `tokens` decoded on its own, or None for other methods."""
  window_bits = getattr(method, "window_bits", None)
  token_bits = getattr(method, "token_bits", None)
  if not window_bits or not token_bits or window_bits % 8:
    return None
  data = tokens_to_bytes(tokens, token_bits)
  step = window_bits // 8
  windows = [bytes_to_tokens(data[i:i + step], token_bits)
             for i in range(0, len(data) - step + 1, step)]
  return method.decode_batch(windows)


def describe_record(method, record: dict) -> str:
  """Record text, split at windows for Equal-Info methods (paper Table 7)."""
  tokens = record["targets"]
  full = method.decode(tokens)
  lines = [f"key {record.get('key', b'').decode()}  source {record['source'].decode()}",
           f"{tokens.size} tokens, {int(record['num_bytes'][0])} bytes, "
           f"{int(record['num_windows'][0])} windows; decoded {full.size} symbols"]
  windows = window_texts(method, tokens)
  if windows is not None and np.array_equal(np.concatenate(windows or [full[:0]]), full):
    lines.append("".join(f"[{render(w)}]" for w in windows))
  else:
    lines.append(render(full))
  return "\n".join(lines)


def check_records(method, records: list[dict], fraction: float = 1.0,
                  progress: bool = False) -> dict:
  """Decodes a fixed sample of records and compares each with its text's checksum.

  Args:
    method: the method that coded the records, with its M1.
    records: parsed records (`shards.read_shard`).
    fraction: share of records decoded, picked by a hash of the key (1: all).
    progress: show a progress bar.

  Returns:
    {"checked": records decoded, "failed": [keys of records that do not decode
    to num_bytes symbols with their symbols_crc32]}.

  Raises:
    ValueError: a sampled record carries no symbols_crc32.
  """
  chosen = [r for r in records if transforms.sampled(r["key"].decode(), fraction)]
  bare = [r["key"].decode() for r in chosen if "symbols_crc32" not in r]
  if bare:
    raise ValueError(f"record {bare[0]} carries no symbols_crc32 (written by an older eqinfo); "
                     "re-run eqinfo compress to write records that can be checked")
  failed = []
  with tqdm.tqdm(total=len(chosen), unit="record", disable=not progress) as bar:
    for start in range(0, len(chosen), CHECK_BATCH):
      batch = chosen[start:start + CHECK_BATCH]
      decoded = transforms.decode_each(method, [r["targets"] for r in batch])
      for record, got in zip(batch, decoded):
        if got is None or got.size != int(record["num_bytes"][0]) or (
            transforms.symbols_crc32(got) != int(record["symbols_crc32"][0])):
          failed.append(record["key"].decode())
      bar.update(len(batch))
  return {"checked": len(chosen), "failed": failed}


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="eqinfo inspect", description=__doc__.splitlines()[0],
                              formatter_class=help_format.HelpFormatter)
  p.add_argument("directory", help="output directory of eqinfo compress")
  p.add_argument("--decode", type=int, default=None, metavar="N",
                 help="decode record N (0-based, shards in name order) and print its text")
  p.add_argument("--m1", default=None, help="M1 to decode with, e.g. a local copy of the one "
                 "that coded the shards (default: the m1 of stats.json; shards coded by a window "
                 "vocabulary decode by its file in DIR, and --m1 must then be its M1)")
  p.add_argument("--ignore_m1_fingerprint", action="store_true",
                 help="decode with --m1 even where its fingerprint is not the one stats.json "
                 "records (for someone who knows the tables are the same)")
  p.add_argument("--vocab", type=int, nargs="?", const=20, default=None, metavar="N",
                 help="print the window vocabulary of DIR (or of a window_vocab.json file): its "
                 "effective size, the N most frequent windows with their text, the longest "
                 "windows, and the ids that never occur")
  p.add_argument("--check", type=float, nargs="?", const=1.0, default=None, metavar="F",
                 help="decode every record (or a fixed share F by key hash) on this machine and "
                      "compare it with its text's checksum; exit status 1 if one differs")
  return p


def report(directory: str, decode: int | None = None, check: float | None = None,
           progress: bool = False, m1: str | None = None) -> str:
  """The text `eqinfo inspect` prints (see `inspect_directory`)."""
  return inspect_directory(directory, decode, check, progress, m1)[0]


def inspect_directory(directory: str, decode: int | None = None, check: float | None = None,
                      progress: bool = False, m1: str | None = None,
                      check_fingerprint: bool = True) -> tuple[str, bool]:
  """The text `eqinfo inspect` prints, and False if a checked record failed.

  Args:
    directory: output directory of `eqinfo compress`.
    decode: index of a record to print decoded.
    check: share of records to decode and compare with their checksums
      (`check_records`).
    progress: show a progress bar while checking.
    m1: the M1 to decode with (default: stats.json's m1).
    check_fingerprint: refuse an M1 whose fingerprint is not stats.json's.

  Raises:
    FileNotFoundError: for a directory without stats.json or shards.
    shards.CorruptShardError: naming the corrupt shard and record.
    ValueError: if --decode is out of range, --check is outside (0, 1], or the
      records carry no checksums.
  """
  if check is not None and not 0 < check <= 1:
    raise ValueError(f"--check must lie in (0, 1], got {check}")
  stats = shards.load_stats(directory)
  records = [r for path in shards.shard_paths(directory) for r in shards.read_shard(path)]
  got = totals(records, stats["vocab_size"])
  token_bits = stats.get("token_bits") or 8
  lines = [
      f"{directory}: method {stats['method']}, m1 {stats.get('m1') or '-'}"
      f"{' on ' + ', '.join(stats['m1_devices']) if stats.get('m1_devices') else ''}, "
      f"packing {stats['packing']}, {len(stats['shards'])} shards",
      f"records {got['examples']}  tokens {got['tokens']}  bytes {got['bytes']}  "
      f"windows {got['windows']}",
      shards.ratio_line({**got, "token_bits": token_bits}),
      f"tokens/record mean {got['tokens'] / max(1, got['examples']):.1f} "
      f"(max {stats['max_tokens']})",
      f"histogram: {histogram_summary(got['histogram'])}",
      f"bytes in {stats['bytes_in']}, dropped {stats['bytes_dropped']} "
      f"{json.dumps({r: e['inputs'] for r, e in stats['dropped'].items()})}; "
      f"verification failures {stats['verification_failures']} "
      f"({stats.get('records_verified', '?')} of {stats['examples']} records decoded"
      f"{shards.verified_where(stats)})",
  ]
  for name in ("examples", "tokens", "bytes", "windows"):
    if got[name] != stats[name]:
      lines.append(f"MISMATCH: shards hold {name}={got[name]}, stats.json says {stats[name]}")
  if decode is not None and not 0 <= decode < len(records):
    raise ValueError(f"--decode {decode} is out of range: there are {len(records)} records")
  if decode is None and check is None:
    return "\n".join(lines), True
  method = m1_loader.shards_method(directory, stats, m1, check_fingerprint)
  if decode is not None:
    lines += [f"record {decode}:", describe_record(method, records[decode])]
  ok = True
  if check is not None:
    result = check_records(method, records, check, progress)
    lines.append(check_summary(result, len(records)))
    ok = not result["failed"]
  return "\n".join(lines), ok


def check_summary(result: dict, total: int) -> str:
  """One line on a `check_records` result; "CHECK FAILED" names the first failures."""
  if result["failed"]:
    return (f"CHECK FAILED: {len(result['failed'])} of {result['checked']} records checked do "
            f"not decode to their text on this machine, e.g. {', '.join(result['failed'][:3])}")
  return f"check: {result['checked']} of {total} records decode to their text on this machine"


def run(argv=None) -> int:
  """`eqinfo inspect` (see the module docstring). Exit status 1 if --check found a record."""
  args = parser().parse_args(sys.argv[1:] if argv is None else argv)
  if args.vocab is not None:
    from pipelines import vocab_view  # pylint: disable=import-outside-toplevel
    print(vocab_view.view(args.directory, args.vocab))
    return 0
  text, ok = inspect_directory(args.directory, args.decode, args.check,
                               progress=sys.stderr.isatty(), m1=args.m1,
                               check_fingerprint=not args.ignore_m1_fingerprint)
  print(text)
  return 0 if ok else 1
