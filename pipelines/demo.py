"""`eqinfo demo`: the whole compression pipeline on Python's own docs, no download.

Runs `eqinfo compress` on the DirectRunner over `builtin:pydoc` with
EqualInfoAC[b=16, v=256] and an order-3 context model fitted on the same text
as a stand-in M1, then prints the totals, the compression ratio, the
round-trip verification result and one record split at its windows.
"""
import argparse
import sys
import tempfile

from compressor import help_format
from pipelines import compress, inspect_shards, options

DEMO_METHOD = "equal_info_ac[b=16,v=256]"
DEMO_M1 = "context[order=3,fit=builtin:pydoc]"


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="eqinfo demo", description=__doc__.splitlines()[0],
                              formatter_class=help_format.HelpFormatter)
  p.add_argument("--output", default=None, help="output directory (default: a temp directory)")
  p.add_argument("--max_docs", type=int, default=None,
                 help="use only the first N pydoc topics (default: all, about 460 KB)")
  p.add_argument("--decode", type=int, default=1, help="record to print split at windows")
  return p


def run(argv=None) -> int:
  """`eqinfo demo` (see the module docstring)."""
  app = parser()
  args, beam_args = app.parse_known_args(sys.argv[1:] if argv is None else argv)
  options.check_beam_args(beam_args, app)  # a typo is an error, not Beam's log line
  method, m1 = DEMO_METHOD, DEMO_M1
  with tempfile.TemporaryDirectory(prefix="eqinfo-demo-") as tmp:
    output = args.output or tmp
    config = options.CompressConfig(input="builtin:pydoc", method=method, m1=m1, output=output,
                                    max_docs_per_file=args.max_docs,
                                    overwrite=True, batch_size=64)
    print(f"eqinfo demo: {method} with m1 {m1 or '-'} over builtin:pydoc -> {output}")
    stats = compress.compress(config, beam_args)
    print(compress.summary(stats))
    ok = stats["verification_failures"] == 0
    print(f"round trip: {'every record decodes to its text' if ok else 'FAILURES (see errors/)'}")
    print(inspect_shards.report(output, args.decode).split("\n", 1)[1])
  return 0 if ok else 1
