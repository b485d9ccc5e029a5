"""The `--m1` flag: which probability model drives a method, loaded once per process.

Forms:

- a trained M1 directory (local or gs://): `training.m1.float_m1.load(path)`;
- `context[order=K,fit=SRC]` (optionally `min_count=N`, `docs=N`): an order-K
  `ContextModel` fitted on the documents of input spec SRC (any `--input` form);
- `unigram[fit=SRC]` (optionally `docs=N`): a byte `UnigramModel` for static_ac;
- with a `tfds:` SRC, `tfds_data_dir=DIR` says where its build is (the spec
  travels to every worker whole, so the directory goes inside it);
- None / "none": no model (bytes, gzip, sentencepiece).

Fitting is deterministic, so every Beam worker that fits the same spec gets the
same tables; the fingerprint in stats.json lets a reader check it.

Verification can decode on another device than the one that coded
(`verifying_method`): with the integer-exact M1 on a GPU or TPU worker, a copy
of M1 on the worker's CPU decodes the sampled records, which shows that a
machine without an accelerator decodes what the accelerator wrote.
"""
import hashlib
import itertools
import os
import re
import threading

from compressor.methods import registry

MODEL_METHODS = ("ac", "static_ac", "equal_info_ac")
CODERS = ("auto", "vocabulary", "arithmetic")  # --coder
VERIFY_DEVICES = ("cpu", "worker")  # --verify_device: the host CPU, or the device that coded
_FIT_SPEC = re.compile(r"^(?P<name>context|unigram)\[(?P<args>.*)\]$", re.DOTALL)
_FIT_KEYS = {"context": ("order", "fit", "min_count", "docs", "tfds_data_dir"),
             "unigram": ("fit", "docs", "tfds_data_dir")}
_LOCK = threading.Lock()
_METHODS = {}


def needs_model(method_spec: str) -> bool:
  """Whether the method named by `method_spec` codes with a probability model."""
  return registry.parse_spec(method_spec)[0] in MODEL_METHODS


def _parse_fit_args(spec: str, name: str, args: str) -> dict[str, str]:
  """Splits "k=v,k=v" where the value of `fit` may itself hold commas."""
  out, key = {}, None
  for part in args.split(","):
    k, sep, v = part.partition("=")
    if sep and re.fullmatch(r"[a-z_]+", k):
      if k not in _FIT_KEYS[name] or k in out:
        raise ValueError(f"bad --m1 {spec!r}: argument {part!r}; expected keys "
                         f"{_FIT_KEYS[name]}, each once")
      key, out[k] = k, v
    elif key == "fit":  # a comma inside the fit glob
      out["fit"] += "," + part
    else:
      raise ValueError(f"bad --m1 {spec!r}: argument {part!r}; expected key=value")
  if not out.get("fit"):
    raise ValueError(f"bad --m1 {spec!r}: needs fit=SRC, e.g. {name}[order=3,fit=builtin:pydoc]"
                     if name == "context" else f"bad --m1 {spec!r}: needs fit=SRC")
  return out


def _fit_documents(src: str, max_docs: int | None, tfds_data_dir: str | None) -> list[bytes]:
  from compressor import corpus  # pylint: disable=import-outside-toplevel
  docs = corpus.read_documents(src, tfds_data_dir)
  return [d.data for d in itertools.islice(docs, max_docs)]


def _fit_model(spec: str, name: str, args: dict[str, str]):
  """Fits a ContextModel / UnigramModel on the documents of `fit=SRC`."""
  try:
    docs = int(args["docs"]) if "docs" in args else None
    if name == "context":
      from compressor.models.context import ContextModel  # pylint: disable=import-outside-toplevel
      model = ContextModel(order=int(args.get("order", 3)),
                           min_count=int(args.get("min_count", 2)))
  except ValueError as e:
    raise ValueError(f"bad --m1 {spec!r}: {e}") from None
  data = _fit_documents(args["fit"], docs, args.get("tfds_data_dir"))
  if name == "context":
    model = model.fit(data)
  else:
    from compressor.models.unigram import UnigramModel  # pylint: disable=import-outside-toplevel
    model = UnigramModel.fit(data)
  if not getattr(model, "fingerprint", ""):
    model.fingerprint = hashlib.sha256(spec.encode()).hexdigest()[:16]
  return model


def _absolute_path(path: str) -> str:
  """A local relative path made absolute; URLs, `builtin:` and `tfds:` inputs as they are."""
  if "://" in path or path.startswith(("builtin:", "tfds:", "/")):
    return path
  kind, sep, rest = path.partition(":")
  if sep and kind == "text":
    return f"text:{_absolute_path(rest)}"
  return os.path.abspath(path)


def portable_spec(spec: str | None) -> str | None:
  """--m1 as stats.json records it: local paths, also a fit=SRC inside, made absolute, so
  the shards find their M1 from any working directory."""
  if spec is None or spec.strip().lower() in ("", "none"):
    return spec
  match = _FIT_SPEC.match(spec.strip())
  if not match:
    return _absolute_path(spec.strip())
  args = _parse_fit_args(spec, match.group("name"), match.group("args"))
  args["fit"] = _absolute_path(args["fit"])
  return f"{match.group('name')}[{','.join(f'{k}={v}' for k, v in args.items())}]"


def load_model(spec: str | None, device: str | None = None):
  """Loads the probability model named by `spec`.

  Args:
    spec: see the module docstring.
    device: for an M1 directory, the JAX platform that computes its tables
      ("cpu": the host CPU); None: JAX's default device. Fitted models are
      numpy and ignore it.

  Returns:
    A `compressor.models.ProbabilityModel`, or None.

  Raises:
    ValueError: on a malformed spec.
    FileNotFoundError: if the M1 directory or the fit corpus does not exist.
  """
  if spec is None or spec.strip().lower() in ("", "none"):
    return None
  match = _FIT_SPEC.match(spec.strip())
  if match:
    name = match.group("name")
    return _fit_model(spec, name, _parse_fit_args(spec, name, match.group("args")))
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  if not FileSystems.exists(spec):
    raise FileNotFoundError(
        f"--m1 {spec!r} does not exist; pass a trained M1 directory (eqinfo train-m1) or "
        f"context[order=3,fit=SRC]")
  from training.m1 import float_m1 as m1  # pylint: disable=import-outside-toplevel
  return m1.load(spec, device=jax_device(device) if device else None)


def jax_device(platform: str):
  """The first JAX device of `platform` ("cpu": the host CPU).

  Raises:
    ValueError: JAX was started without that platform (JAX_PLATFORMS).
  """
  import jax  # pylint: disable=import-outside-toplevel
  try:
    return jax.devices(platform)[0]
  except RuntimeError as e:
    reason = str(e).splitlines()[0]
    raise ValueError(f"JAX has no {platform} backend here ({reason}); add it to JAX_PLATFORMS "
                     f"(e.g. cuda,{platform}) or pass --verify_device worker") from None


def build_method(method_spec: str, m1_spec: str | None, device: str | None = None):
  """Builds a method and its model (on `device`, see `load_model`), checking that they go together.

  Raises:
    ValueError: on a bad method spec, or a model-based method without --m1.
    FileNotFoundError: if the M1 does not exist.
  """
  uses_model = needs_model(method_spec)
  if uses_model and not m1_spec:
    raise ValueError(f"method {method_spec!r} needs a probability model: pass --m1 "
                     f"(a trained M1 directory or context[order=3,fit=SRC])")
  from compressor.methods import get_method  # pylint: disable=import-outside-toplevel
  return get_method(method_spec, load_model(m1_spec, device) if uses_model else None)


def shared_method(method_spec: str, m1_spec: str | None, device: str | None = None):
  """`build_method`, cached per process: DoFns of one worker share one M1 per device."""
  uses_model = needs_model(method_spec)
  key = (method_spec, m1_spec if uses_model else None, device if uses_model else None)
  with _LOCK:
    if key not in _METHODS:
      _METHODS[key] = build_method(*key)
    return _METHODS[key]


def default_backend() -> str:
  """JAX's default platform on this worker: "cpu", "gpu" or "tpu"."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.default_backend()


def verifying_method(method_spec: str, m1_spec: str | None, verify_device: str):
  """The method that decodes records for verification.

  Args:
    method_spec, m1_spec: what coded the records (`shared_method`).
    verify_device: "worker": the coding method itself; "cpu": the same M1 on
      the host CPU where the coder runs on an accelerator (elsewhere the two
      are the same, and so is the returned method).

  Raises:
    ValueError: "cpu" with a float M1 on an accelerator, whose tables are the
      same integers on one backend only.
  """
  if verify_device not in VERIFY_DEVICES:
    raise ValueError(f"--verify_device must be one of {VERIFY_DEVICES}, got {verify_device!r}")
  coder = shared_method(method_spec, m1_spec)
  kind = inference(coder)
  if verify_device == "worker" or kind not in ("exact", "float"):
    return coder
  backend = default_backend()
  if backend == "cpu":
    return coder
  if kind == "float":
    raise ValueError(
        f"--verify_device cpu with a float M1 on {backend}: its tables differ across devices, so "
        f"its records would not decode on a CPU; convert it (eqinfo quantize-m1 --m1 {m1_spec} "
        f"--calibration GLOB) or pass --verify_device worker")
  return shared_method(method_spec, m1_spec, device="cpu")


def model_of(method):
  """The probability model a method codes with, or None."""
  return getattr(method, "model", None)


def resolve_coder(method_spec: str, coder: str) -> str | None:
  """--coder for a method: "vocabulary" or "arithmetic" (None for methods without M1).

  "auto" is "vocabulary" wherever the window vocabulary exists (equal_info_ac
  with b=16), else "arithmetic".

  Raises:
    ValueError: an unknown coder, or "vocabulary" for a method without one.
  """
  if coder not in CODERS:
    raise ValueError(f"--coder must be one of {CODERS}, got {coder!r}")
  name, args = registry.parse_spec(method_spec)
  has_vocabulary = name == "equal_info_ac" and args.get("b") == "16"
  if coder == "vocabulary" and not has_vocabulary:
    raise ValueError(f"--coder vocabulary needs equal_info_ac with b=16, not {method_spec}; "
                     f"pass --coder arithmetic")
  if name not in MODEL_METHODS:
    return None
  if coder == "auto":
    return "vocabulary" if has_vocabulary else "arithmetic"
  return coder


def build_vocabulary(method_spec: str, m1_spec: str, vocab_path: str | None = None):
  """The window vocabulary of --m1: read from `vocab_path`, or built with M1 here.

  Raises:
    ValueError: a vocabulary file of another M1, or a corrupt one.
  """
  from compressor import window_vocab  # pylint: disable=import-outside-toplevel
  if vocab_path:
    vocab = read_vocabulary(vocab_path)
    model = model_of(shared_method(method_spec, m1_spec))
    if model is not None and vocab.m1_fingerprint != model.fingerprint:
      raise ValueError(f"--vocab {vocab_path} was built from M1 {vocab.m1_fingerprint}, not from "
                       f"--m1 {m1_spec} ({model.fingerprint}); rebuild it (eqinfo build-vocab)")
    return vocab
  return window_vocab.build(model_of(shared_method(method_spec, m1_spec)))


def read_vocabulary(path: str):
  """A `WindowVocabulary` file, local or gs://.

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a vocabulary, or corrupt.
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  from compressor import window_vocab  # pylint: disable=import-outside-toplevel
  if not FileSystems.exists(path):
    raise FileNotFoundError(f"window vocabulary {path} does not exist; build one with "
                            f"eqinfo build-vocab --m1 DIR --out FILE")
  with FileSystems.open(path) as f:
    return window_vocab.WindowVocabulary.from_bytes(f.read(), path)


def vocabulary_method(method_spec: str, vocab_bytes: bytes):
  """The method that codes by a vocabulary file's bytes, cached per process (no M1)."""
  key = (method_spec, "vocabulary", hashlib.sha256(vocab_bytes).hexdigest())
  with _LOCK:
    if key not in _METHODS:
      from compressor import window_vocab  # pylint: disable=import-outside-toplevel
      from compressor.methods import get_method  # pylint: disable=import-outside-toplevel
      vocab = window_vocab.WindowVocabulary.from_bytes(vocab_bytes)
      _METHODS[key] = get_method(method_spec, None, vocabulary=vocab)
    return _METHODS[key]


def shards_method(directory: str, stats: dict, m1_spec: str | None = None,
                  check_fingerprint: bool = True):
  """The method that decodes a shard directory's records.

  Shards coded by a window vocabulary decode by its file in the directory, with
  no M1; an `m1_spec` given then must be the vocabulary's M1. Other shards
  decode with `m1_spec`, or stats.json's m1, whose fingerprint must be
  stats.json's `m1_fingerprint` (another M1's tables decode other text).

  Raises:
    ValueError: the M1 is not the one that coded the shards (and `check_fingerprint`),
      or --m1 is not the M1 that the vocabulary was built from.
  """
  if stats.get("coder") != "vocabulary":
    method = _stats_m1_method(directory, stats, m1_spec)
    want, mine = stats.get("m1_fingerprint"), fingerprint(method)
    if check_fingerprint and want and mine != want:
      raise ValueError(f"M1 {m1_spec or stats.get('m1')} (fingerprint {mine}) is not the M1 that "
                       f"coded {directory} (stats.json: {want}), so it would decode other text; "
                       "pass that M1 with --m1, or --ignore_m1_fingerprint to decode anyway")
    return method
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  from compressor import window_vocab  # pylint: disable=import-outside-toplevel
  from compressor.methods import get_method  # pylint: disable=import-outside-toplevel
  vocab = read_vocabulary(FileSystems.join(directory, window_vocab.FILENAME))
  if m1_spec:
    mine = fingerprint(build_method(stats["method"], m1_spec))
    if mine != vocab.m1_fingerprint:
      raise ValueError(f"--m1 {m1_spec} (fingerprint {mine}) is not the M1 of {directory}'s "
                       f"window vocabulary ({vocab.m1_fingerprint}); leave out --m1 to decode by "
                       f"the vocabulary")
  return get_method(stats["method"], None, vocabulary=vocab)


def _stats_m1_method(directory: str, stats: dict, m1_spec: str | None):
  """The shards' method with `m1_spec`, else with the M1 that stats.json names."""
  if m1_spec:
    return build_method(stats["method"], m1_spec)
  try:
    return build_method(stats["method"], stats.get("m1"))
  except FileNotFoundError as e:
    raise FileNotFoundError(f"the M1 that stats.json of {directory} names is not here ({e}); "
                            f"pass --m1 with a copy of it") from None


def model_device(method) -> str | None:
  """Where the method's model computes its tables: "PLATFORM:KIND" (e.g. "gpu:NVIDIA L4").

  "cpu:numpy" for fitted table models; None for model-free methods.
  """
  model = model_of(method)
  if model is None:
    return None
  if not hasattr(model, "exact"):
    return "cpu:numpy"
  import jax  # pylint: disable=import-outside-toplevel
  device = getattr(model, "device", None) or jax.devices()[0]
  return f"{device.platform}:{device.device_kind}"


def fingerprint(method) -> str:
  """The M1 fingerprint of a method's model or window vocabulary ("" for model-free methods)."""
  model = model_of(method)
  if model is None and getattr(method, "vocabulary", None) is not None:
    return method.vocabulary.m1_fingerprint
  return str(getattr(model, "fingerprint", "") or "")


def inference(method) -> str | None:
  """How the method's model computes its tables, for stats.json.

  "exact" (integer-exact M1: the same integers on every device), "float" (float
  M1: identical on one machine and backend), "table" (a fitted ContextModel or
  UnigramModel), or None for model-free methods.
  """
  model = model_of(method)
  if model is None:
    return None
  if hasattr(model, "exact"):
    return "exact" if model.exact else "float"
  return "table"


def flops_per_byte(method) -> float:
  """M1's FLOPs per coded symbol, 2 x its non-embedding parameters (paper §3.8).

  0 for model-free methods and for table models (ContextModel, UnigramModel).
  """
  model = model_of(method)
  config = getattr(model, "config", None)
  if config is None:
    return 0.0
  from training import model as model_lib  # pylint: disable=import-outside-toplevel
  return model_lib.m1_flops_per_byte(config)
