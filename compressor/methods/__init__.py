"""Compression methods of the paper, addressed by name (see `registry`)."""
from compressor.methods.base import CodingError, Encoded, Method
from compressor.methods.registry import SPEC_FORMS, get_method, parse_spec
