"""Before coding: the accelerator's M1 tables against the host CPU's, once per worker process.

Where an integer-exact M1 codes on a GPU or TPU, `CompressFn.setup` calls
`check_coding_device`: the tables of `LANES x SEQ_LEN` contexts (built-in
text, Python's own documentation, no download, and every symbol of M1's
alphabet in a seeded order) are computed on that device and on the host CPU,
in lanes as the coder and a decoder compute them, and a single integer that
differs stops the worker with DeviceMismatchError
before it codes a record whose shards no other machine could decode.
Verification (`--verify_fraction`) goes on checking records as they are
written; `eqinfo check-devices` checks 102,400 contexts.
"""
import itertools
import threading

import numpy as np

from pipelines import m1_loader

SEQUENCES = 8  # lanes of built-in text
SYMBOL_LANES = 3  # lanes of every symbol: two seeded orders of the 257, cut to fit
LANES = SEQUENCES + SYMBOL_LANES
SEQ_LEN = 128  # symbols per lane: 1,408 contexts in all
SYMBOL_SEED = 0
NUM_SYMBOLS = 257  # bytes and EOS
_DOCUMENTS = 40  # pydoc topics that hold them
_LOCK = threading.Lock()
_CHECKED: dict[tuple, str] = {}  # (method, m1) -> the device checked, once per process


class DeviceMismatchError(ValueError):
  """M1 on the host CPU computes other tables than M1 on the device that codes."""


def every_symbol_lanes() -> np.ndarray:
  """[SYMBOL_LANES, SEQ_LEN] symbols: two seeded permutations of all 257, cut into lanes.

  Text rarely holds control bytes, and a device fault can be tied to one
  token's value (an H100 once normed one embedding row wrongly), so the check
  also meets every symbol, each in some context.
  """
  rng = np.random.default_rng(SYMBOL_SEED)
  stream = np.concatenate([rng.permutation(NUM_SYMBOLS), rng.permutation(NUM_SYMBOLS)])
  return stream[:SYMBOL_LANES * SEQ_LEN].reshape(SYMBOL_LANES, SEQ_LEN).astype(np.int32)


def check_symbols() -> np.ndarray:
  """[LANES, SEQ_LEN] symbols: Python's documentation (bytes + EOS, concatenated), then
  `every_symbol_lanes`."""
  from compressor import corpus  # pylint: disable=import-outside-toplevel
  from training.m1 import exact_devices  # pylint: disable=import-outside-toplevel
  documents = itertools.islice(corpus.read_documents(corpus.BUILTIN_PYDOC), _DOCUMENTS)
  text = exact_devices.text_symbols((doc.data for doc in documents), SEQUENCES, SEQ_LEN)
  return np.concatenate([text, every_symbol_lanes()])


def first_difference(coder_model, cpu_model, symbols: np.ndarray) -> tuple[int, int] | None:
  """(lane, position) of the first context whose tables differ between two models, or None."""
  from training.m1 import exact_devices  # pylint: disable=import-outside-toplevel
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
  coder = m1_loader.shared_method(method_spec, m1_spec)
  if m1_loader.inference(coder) != "exact" or m1_loader.default_backend() == "cpu":
    return None
  key = (method_spec, m1_spec)
  with _LOCK:
    if key not in _CHECKED:
      cpu = m1_loader.shared_method(method_spec, m1_spec, device="cpu")
      device = m1_loader.model_device(coder)
      first = first_difference(m1_loader.model_of(coder), m1_loader.model_of(cpu), check_symbols())
      if first is not None:
        raise DeviceMismatchError(
            f"M1 on {device} computes other tables than on the host CPU (lane {first[0]}, "
            f"position {first[1]} of {LANES * SEQ_LEN} built-in contexts), so its records "
            f"would decode on no other machine; run eqinfo check-devices --m1 {m1_spec} here, "
            f"or code on the CPU")
      _CHECKED[key] = device
    return _CHECKED[key]
