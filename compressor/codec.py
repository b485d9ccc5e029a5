"""`eqinfo codec`: code one text file with a method, decode it back, print the ratio.

  eqinfo codec --input notes.txt --method "equal_info_ac[b=16,v=65k]"
  eqinfo codec --input builtin:pydoc --method "ac[v=256]" --order 3

Arithmetic methods use a `ContextModel` (or, for static_ac, a `UnigramModel`)
fitted on `--fit` (default: the input itself), as a stand-in for a trained M1.
The input is one document (bytes + EOS) cut into examples of
`--example_symbols`; every example is decoded again and compared.
"""
import argparse
import json
import pathlib
import sys

import numpy as np

from compressor import constants
from compressor.methods import SPEC_FORMS, get_method
from compressor.models import ContextModel, UnigramModel
from compressor.symbols import symbols_from_text


def read_input(spec: str) -> bytes:
  """The bytes of a file, or of Python's own docs for `builtin:pydoc`."""
  if spec == "builtin:pydoc":
    from pydoc_data import topics  # pylint: disable=import-outside-toplevel
    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics)).encode("utf-8")
  path = pathlib.Path(spec)
  if not path.is_file():
    raise FileNotFoundError(f"--input {spec!r} is not a file; pass a text file or builtin:pydoc")
  return path.read_bytes()


def build_model(spec: str, fit_symbols: np.ndarray, order: int):
  """The model a method needs, fitted on `fit_symbols` (None for bytes/gzip/sentencepiece)."""
  if spec.startswith("static_ac"):
    return UnigramModel.fit(fit_symbols)
  if spec.startswith(("ac", "equal_info_ac")):
    return ContextModel(order=order).fit(fit_symbols)
  return None


def code(method, symbols: np.ndarray, example_symbols: int) -> dict:
  """Encodes `symbols` in examples, decodes them, and returns the totals."""
  examples = [symbols[i:i + example_symbols] for i in range(0, symbols.size, example_symbols)]
  encoded = method.encode_batch(examples)
  decoded = method.decode_batch([e.tokens for e in encoded])
  exact = all(np.array_equal(d, x) for d, x in zip(decoded, examples))
  tokens = sum(e.tokens.size for e in encoded)
  bits = method.token_bits or int(np.ceil(np.log2(method.vocab_size)))
  return {
      "method": method.spec,
      "symbols": int(symbols.size),
      "examples": len(examples),
      "tokens": int(tokens),
      "windows": int(sum(e.num_windows for e in encoded)),
      "literal_windows": int(sum(e.num_literal_windows for e in encoded)),
      "compression_ratio": round(symbols.size * 8 / max(tokens * bits, 1), 4),
      "bytes_per_token": round(symbols.size / max(tokens, 1), 4),
      "round_trip_exact": bool(exact),
      "first_tokens": [int(t) for t in encoded[0].tokens[:16]] if encoded else [],
  }


def run(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="eqinfo codec", description=__doc__.splitlines()[0],
                                   epilog="methods: " + "; ".join(SPEC_FORMS))
  parser.add_argument("--input", required=True, help="a text file, or builtin:pydoc")
  parser.add_argument("--method", required=True, help='e.g. "equal_info_ac[b=16,v=65k]"')
  parser.add_argument("--fit", default=None, help="text to fit the model on (default: the input)")
  parser.add_argument("--order", type=int, default=3, help="ContextModel order")
  parser.add_argument("--example_symbols", type=int, default=constants.EXAMPLE_SYMBOLS)
  args = parser.parse_args(argv)
  symbols = symbols_from_text(read_input(args.input))
  fit = symbols if args.fit is None else symbols_from_text(read_input(args.fit))
  method = get_method(args.method, build_model(args.method, fit, args.order))
  result = code(method, symbols, args.example_symbols)
  print(json.dumps(result, indent=2))
  return 0 if result["round_trip_exact"] else 1


if __name__ == "__main__":
  sys.exit(run())
