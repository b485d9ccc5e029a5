"""The paper's published figures that `eqinfo report` sets beside a run's own.

Lester et al., "Training LLMs over Neurally Compressed Text" (TMLR 2024):

* Table 2: compression ratio of each method on C4, in bytes of text per
  token. The table's v=256 rows are kept here; a v=65k token is two 8-bit
  tokens of the same bitstream, so its ratio is twice the v=256 one.
* §3.2: the 3m M1 reaches 1.457 bits/byte on C4 validation.
"""
from compressor.methods import registry

# Table 2, v=256 (8-bit tokens): method name, or "equal_info_ac[b=B]", -> bytes/token.
TABLE2_BYTES_PER_TOKEN_V256 = {
    "bytes": 1.0,
    "ac": 5.49,
    "static_ac": 1.73,
    "equal_info_ac[b=16]": 2.66,
    "equal_info_ac[b=32]": 3.49,
    "equal_info_ac[b=64]": 4.16,
    "equal_info_ac[b=128]": 4.61,
}

M1_SIZE = "3m"  # the paper's M1 (Table 4)
M1_BITS_PER_BYTE = 1.457  # §3.2, C4 validation


def bytes_per_token(spec: str) -> float | None:
  """The paper's compression ratio (bytes/token) of a method spec, or None if it has none.

  >>> bytes_per_token("equal_info_ac[b=16,v=65k]")
  5.32
  """
  name, args = registry.parse_spec(spec)
  key = f"{name}[b={args['b']}]" if name == "equal_info_ac" else name
  ratio = TABLE2_BYTES_PER_TOKEN_V256.get(key)
  if ratio is None:
    return None
  return round(ratio * (2 if args.get("v") == "65k" else 1), 4)


def m1_bits_per_byte(size: str) -> float | None:
  """The paper's M1 bits/byte for a model of Table 4 size `size`, or None."""
  return M1_BITS_PER_BYTE if size == M1_SIZE else None
