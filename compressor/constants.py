"""Wire-format constants of eqinfo.

Every value here changes what a shard means; each is stamped into the
`stats.json` of every output directory (see `wire_format()`).
"""

# Symbols: the 256 byte values plus an end-of-document symbol.
EOS = 256
ALPHABET_SIZE = 257

# Quantised CDFs (paper §2.4, §3.3): every table sums to 2**PRECISION and
# gives every symbol at least one count.
PRECISION = 14
TOTAL_FREQ = 1 << PRECISION

# Guard bits of the Equal-Info rule (docs/DESIGN.md): G = PRECISION + 2.
GUARD_BITS = PRECISION + 2

# Data layout (paper §3.1).
DOCS_PER_GROUP = 128
EXAMPLE_SYMBOLS = 10_240
MAX_TOKENS = 512

# Equal-Info window sizes in bits and token widths that the registry accepts.
WINDOW_BITS = (16, 24, 32, 48, 64, 128)
TOKEN_BITS = {"256": 8, "65k": 16}
V_NAME = {bits: name for name, bits in TOKEN_BITS.items()}  # 8 -> "256", 16 -> "65k"

# Literal escape of Equal-Info windows: the top LITERAL_CELLS / 2**16 of [0, 1)
# is split into ALPHABET_SIZE equal parts, one per symbol (EOS included).
LITERAL_CELLS = ALPHABET_SIZE

# Version of the coder's arithmetic; bump on any change that alters tokens.
CODER_VERSION = "eqinfo-rc56-v1"


def wire_format() -> dict:
  """Returns the constants that `stats.json` records, as a JSON-able dict."""
  return {
      "eos": EOS,
      "alphabet_size": ALPHABET_SIZE,
      "precision": PRECISION,
      "guard_bits": GUARD_BITS,
      "literal_cells": LITERAL_CELLS,
      "coder_version": CODER_VERSION,
  }
