"""eqinfo's compressor: coders, Equal-Info windows, methods and probability models.

A pure library: numpy (and JAX for models only). The names below are the
interface that `training/` and `pipelines/` use.
"""
from compressor.constants import ALPHABET_SIZE, EOS, PRECISION, TOTAL_FREQ
from compressor.methods import SPEC_FORMS, Encoded, Method, get_method
from compressor.symbols import as_symbols, symbols_from_text
