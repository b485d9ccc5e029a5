"""`eqinfo codec`: code a corpus with a method outside Beam, decode it back, print the ratio.

  eqinfo codec --input notes.txt --method "equal_info_ac[b=16,v=65k]"
  eqinfo codec --input builtin:pydoc --method "ac[v=256]" --order 3

Arithmetic methods use a `ContextModel` (or, for static_ac, a `UnigramModel`)
fitted on `--fit` (default: the input itself), as a stand-in for a trained M1.
`--input` and `--fit` are corpus specs (`compressor/corpus.py`, as compress's
`--input`); their documents (bytes + EOS each) are concatenated and cut into
examples of `--example_symbols`; every example is decoded again and compared.
"""
import argparse
import json
import sys

import numpy as np

from compressor import constants, corpus, help_format
from compressor import symbols as symbols_lib
from compressor.methods import SPEC_FORMS, get_method
from compressor.models import ContextModel, UnigramModel


def read_symbols(spec: str, flag: str, tfds_data_dir: str | None = None) -> np.ndarray:
  """[n] symbols: every document of a corpus spec, bytes + EOS each, concatenated.

  Raises:
    FileNotFoundError: naming `flag`, if the spec matches nothing.
  """
  try:
    return symbols_lib.concat(symbols_lib.symbols_from_text(doc.data)
                              for doc in corpus.read_documents(spec, tfds_data_dir))
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{flag}: {e}") from None


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
  bits = method.token_bits or 8  # Bytes: a token counts as a byte (Method.token_bits)
  return {
      "method": method.spec,
      "symbols": int(symbols.size),
      "examples": len(examples),
      "tokens": int(tokens),
      "windows": int(sum(e.num_windows for e in encoded)),
      "literal_windows": int(sum(e.num_literal_windows for e in encoded)),
      "compression_ratio": round(symbols.size / max(tokens, 1), 4),  # bytes/token (Table 2)
      "raw_bits_per_coded_bit": round(symbols.size * 8 / max(tokens * bits, 1), 4),
      "round_trip_exact": bool(exact),
      "first_tokens": [int(t) for t in encoded[0].tokens[:16]] if encoded else [],
  }


def run(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="eqinfo codec", description=__doc__.splitlines()[0],
                                   epilog="methods: " + "; ".join(SPEC_FORMS),
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--input", required=True,
                      help=f"corpus spec: {corpus.SPEC_FORMS}")
  parser.add_argument("--method", required=True, help='e.g. "equal_info_ac[b=16,v=65k]"')
  parser.add_argument("--fit", default=None, help="text to fit the model on (default: the input)")
  parser.add_argument("--tfds_data_dir", help="TFDS data_dir for tfds: specs (never downloaded)")
  parser.add_argument("--order", type=int, default=3, help="ContextModel order")
  parser.add_argument("--example_symbols", type=int, default=constants.EXAMPLE_SYMBOLS,
                      help="symbols per example, each coded on its own")
  args = parser.parse_args(argv)
  symbols = read_symbols(args.input, "--input", args.tfds_data_dir)
  fit = symbols if args.fit is None else read_symbols(args.fit, "--fit", args.tfds_data_dir)
  method = get_method(args.method, build_model(args.method, fit, args.order))
  result = code(method, symbols, args.example_symbols)
  print(json.dumps(result, indent=2))
  return 0 if result["round_trip_exact"] else 1


if __name__ == "__main__":
  sys.exit(run())
