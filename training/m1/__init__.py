"""M1 as the coders' probability model (docs/DESIGN.md, "M1 as a probability model").

  float_m1.py         the float M1 (M1Model, M1Lanes) and the M1 directory: save, load
  exact.py            the integer-exact M1 (ExactM1Model, ExactLanes) and its directory
  exact_params.py     the exact M1's weights: shapes, checks, fingerprint, fixed tables
  exact_kernels.py    its integer kernels and forward pass (int32 in, int32 out)
  exact_int.py        int64 numpy primitives with their bounds checked
  exact_reference.py  the exact M1 again in plain int64 numpy: the tests' oracle
  exact_devices.py    `eqinfo check-devices`: the exact M1's tables on every device, compared
  quantize.py         `eqinfo quantize-m1`: the float M1 into the exact M1 (calibration)
  qat.py              quantisation-aware fine-tuning before the conversion
"""
