"""Probability models: the protocol, plus models that need no training run."""
from compressor.models.base import (CDF_WIDTH, ContextListLanes, Lanes, ProbabilityModel,
                                    cdf_from_freqs, check_freqs, quantize)
from compressor.models.context import ContextModel
from compressor.models.unigram import UnigramModel
