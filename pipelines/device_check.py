"""Before coding: the accelerator's M1 tables against the host CPU's, once per worker process.

Where an integer-exact M1 codes on a GPU or TPU, `CompressFn.setup` calls
`check_coding_device`: the tables of `SEQUENCES x SEQ_LEN` contexts of
built-in text (Python's own documentation, no download) are computed on that
device and on the host CPU, in lanes as the coder and a decoder compute them,
and a single integer that differs stops the worker with DeviceMismatchError
before it codes a record whose shards no other machine could decode.
Verification (`--verify_fraction`) goes on checking records as they are
written; `eqinfo check-devices` checks 102,400 contexts.
"""
import itertools
import threading

import numpy as np

from pipelines import models

SEQUENCES = 8  # lanes of the check
SEQ_LEN = 128  # symbols per lane: 1,024 contexts in all
_DOCUMENTS = 40  # pydoc topics that hold them
_LOCK = threading.Lock()
_CHECKED: dict[tuple, str] = {}  # (method, m1) -> the device checked, once per process


class DeviceMismatchError(ValueError):
  """M1 on the host CPU computes other tables than M1 on the device that codes."""


def check_symbols() -> np.ndarray:
  """[SEQUENCES, SEQ_LEN] symbols of Python's documentation (bytes + EOS, concatenated)."""
  from training import corpus, exact_devices  # pylint: disable=import-outside-toplevel
  documents = itertools.islice(corpus.read_documents(corpus.BUILTIN_PYDOC), _DOCUMENTS)
  return exact_devices.text_symbols((text for _, text in documents), SEQUENCES, SEQ_LEN)


def first_difference(coder_model, cpu_model, symbols: np.ndarray) -> tuple[int, int] | None:
  """(lane, position) of the first context whose tables differ between two models, or None."""
  from training import exact_devices  # pylint: disable=import-outside-toplevel
  got = exact_devices.cached_tables(coder_model, symbols)
  want = exact_devices.cached_tables(cpu_model, symbols)
  where = np.argwhere((got != want).any(axis=-1))
  return None if where.size == 0 else (int(where[0][0]), int(where[0][1]))


def check_coding_device(method_spec: str, m1_spec: str | None) -> str | None:
  """Checks, once per process, that the coding device's exact M1 tables equal the host CPU's.

  Returns:
    The device checked ("gpu:NVIDIA L4"), or None where there is nothing to
    check: a method without M1, a table model, a float M1 (its tables are
    not promised beyond one device), or M1 coding on the CPU itself.

  Raises:
    DeviceMismatchError: one line, naming the device and what to run.
  """
  coder = models.shared_method(method_spec, m1_spec)
  if models.inference(coder) != "exact" or models.default_backend() == "cpu":
    return None
  key = (method_spec, m1_spec)
  with _LOCK:
    if key not in _CHECKED:
      cpu = models.shared_method(method_spec, m1_spec, device="cpu")
      device = models.model_device(coder)
      first = first_difference(models.model_of(coder), models.model_of(cpu), check_symbols())
      if first is not None:
        raise DeviceMismatchError(
            f"M1 on {device} computes other tables than on the host CPU (lane {first[0]}, "
            f"position {first[1]} of {SEQUENCES * SEQ_LEN} built-in contexts), so its records "
            f"would decode on no other machine; run eqinfo check-devices --m1 {m1_spec} here, "
            f"or code on the CPU")
      _CHECKED[key] = device
    return _CHECKED[key]
