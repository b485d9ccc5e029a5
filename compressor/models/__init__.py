"""Probability models: the protocol, plus models that need no training run.

  base.py     the protocol every arithmetic coder is driven by (tables, lanes)
  context.py  an order-k Markov model: a stand-in for M1 that needs no training run
  unigram.py  StaticAC's static byte unigram model
"""
from compressor.models.base import (CDF_WIDTH, ContextListLanes, Lanes, ProbabilityModel,
                                    cdf_from_freqs, check_freqs, quantize)
from compressor.models.context import ContextModel
from compressor.models.unigram import UnigramModel
