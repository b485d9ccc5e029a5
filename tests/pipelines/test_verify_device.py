"""--verify_device: records coded by M1 on an accelerator are decoded by M1 on the host CPU."""
import logging

import numpy as np
import pytest

from compressor.symbols import symbols_from_text
from pipelines import m1_loader, options, sources, transforms

SPEC = "equal_info_ac[b=16,v=256]"


@pytest.fixture(scope="module")
def m1_dirs(tmp_path_factory, validation_docs):
  """{"float": a random tiny M1 directory, "exact": the same M1 converted (DIR/exact)}."""
  from training.m1 import float_m1 as m1  # pylint: disable=import-outside-toplevel
  from training.m1 import quantize as quantize_m1  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp("m1_dirs")
  config = m1.m1_config("tiny", max_len=64)
  float_m1 = m1.M1Model.random(config, seed=3)
  for name in ("float", "exact"):
    m1.save(root / name, config, float_m1.params)
  quantize_m1.convert(float_m1, validation_docs[:8], seq_len=64, max_sequences=4).save(
      root / "exact" / "exact")
  return {name: str(root / name) for name in ("float", "exact")}


@pytest.fixture()
def on_gpu(monkeypatch):
  """Workers whose JAX default backend is a GPU (this machine has none)."""
  monkeypatch.setattr(m1_loader, "default_backend", lambda: "gpu")


def test_cpu_worker_verifies_with_its_coder(m1_dirs, monkeypatch):
  """Where M1 codes on the CPU, "cpu" and "worker" are one method: one M1 per process."""
  monkeypatch.setattr(m1_loader, "default_backend", lambda: "cpu")
  coder = m1_loader.shared_method(SPEC, m1_dirs["exact"])
  for device in m1_loader.VERIFY_DEVICES:
    assert m1_loader.verifying_method(SPEC, m1_dirs["exact"], device) is coder
  fitted = "context[order=2,fit=builtin:pydoc,docs=5]"
  assert m1_loader.verifying_method(SPEC, fitted, "cpu") is m1_loader.shared_method(SPEC, fitted)
  assert m1_loader.verifying_method("gzip[v=256]", None, "cpu").spec == "gzip[v=256]"


def test_accelerator_worker_verifies_on_the_host_cpu(m1_dirs, on_gpu, validation_docs):
  coder = m1_loader.shared_method(SPEC, m1_dirs["exact"])
  verifier = m1_loader.verifying_method(SPEC, m1_dirs["exact"], "cpu")
  assert verifier is not coder and verifier.model.device.platform == "cpu"
  assert verifier.model.fingerprint == coder.model.fingerprint
  assert m1_loader.verifying_method(SPEC, m1_dirs["exact"], "worker") is coder
  symbols = [symbols_from_text(t)[:300] for t in validation_docs[:3]]
  tokens = [e.tokens for e in coder.encode_batch(symbols)]
  for got, want in zip(verifier.decode_batch(tokens), symbols):
    np.testing.assert_array_equal(got, want)


def test_float_m1_on_an_accelerator_cannot_promise_cpu_decoding(m1_dirs, on_gpu):
  with pytest.raises(ValueError, match="--verify_device worker") as error:
    m1_loader.verifying_method(SPEC, m1_dirs["float"], "cpu")
  assert "quantize-m1" in str(error.value) and len(str(error.value).splitlines()) == 1
  coder = m1_loader.shared_method(SPEC, m1_dirs["float"])
  assert m1_loader.verifying_method(SPEC, m1_dirs["float"], "worker") is coder


def test_verify_device_flag():
  base = ["--input", "a", "--method", "b", "--output", "c"]
  assert options.parse(base)[0].verify_device == "cpu"
  assert options.parse(base + ["--verify_device", "worker"])[0].verify_device == "worker"
  with pytest.raises(SystemExit):
    options.parse(base + ["--verify_device", "gpu"])
  with pytest.raises(ValueError, match="--verify_device"):
    options.CompressConfig(input="a", method="b", output="c", verify_device="tpu")
  with pytest.raises(ValueError, match="verify_device"):
    transforms.CodeShards("bytes", None, 10, "continue", 100, 1, True, verify_device="gpu")
  with pytest.raises(ValueError, match="--verify_device"):
    m1_loader.verifying_method("bytes", None, "gpu")


def test_cpu_verification_failures_say_where_they_decoded(m1_dirs, on_gpu, validation_docs,
                                                          caplog):
  """VerifyFn on a (GPU) worker: the CPU passes a good record; a bad one fails on both devices."""
  symbols = symbols_from_text(validation_docs[0])[:200]
  coded = m1_loader.shared_method(SPEC, m1_dirs["exact"]).encode_batch([symbols])[0]
  good = transforms.Record((0, 0, 0, 0), coded.tokens, 200, coded.num_windows, 0, "doc", 0,
                           symbols)
  bad = good._replace(key=(0, 0, 1, 0), symbols=np.roll(symbols, 1))
  fn = transforms.VerifyFn(SPEC, m1_dirs["exact"], 1.0, "cpu")
  with caplog.at_level(logging.WARNING):
    fn.setup()
  assert "--verify_fraction 0.01" in caplog.text  # the CPU cannot keep up with a GPU
  passed, failed = [], []
  for out in fn.process([bad, good]):
    (failed if hasattr(out, "tag") else passed).append(out)
  assert [(r.key, r.verified) for r in passed] == [((0, 0, 0, 0), True)]
  assert [f.value.reason for f in failed] == ["verification_failed"]
  assert "fails on the host CPU and the coding device alike" in failed[0].value.detail
  fn = transforms.VerifyFn(SPEC, m1_dirs["exact"], 1.0, "worker")
  fn.setup()
  failed = [out for out in fn.process([bad]) if hasattr(out, "tag")]
  assert "host CPU" not in failed[0].value.detail


def test_a_missing_jax_backend_says_what_to_do():
  import jax  # pylint: disable=import-outside-toplevel
  assert m1_loader.jax_device("cpu").platform == "cpu"
  here = {device.platform for device in jax.devices()}
  missing = next(p for p in ("tpu", "gpu") if p not in here)  # one machine has not both
  with pytest.raises(ValueError, match="JAX_PLATFORMS") as error:
    m1_loader.jax_device(missing)
  assert "--verify_device worker" in str(error.value)


def test_tables_that_differ_across_devices_stop_the_job(m1_dirs, on_gpu, validation_docs,
                                                        monkeypatch):
  """A record the coder decodes but the CPU does not is a device mismatch, not a bad record.

  The host CPU's M1 is stood in for by one whose tables differ (its logits
  rolled by one symbol): what a device that computes other tables amounts to.
  """
  from compressor import get_method  # pylint: disable=import-outside-toplevel
  from training.m1 import exact  # pylint: disable=import-outside-toplevel
  coder = m1_loader.shared_method(SPEC, m1_dirs["exact"])
  params = dict(coder.model.params)
  for name in ("logits/kernel", "logits/mult", "logits/shift"):
    params[name] = np.roll(params[name], 1, axis=-1)
  other = get_method(SPEC, exact.ExactM1Model(coder.model.config, params))
  monkeypatch.setattr(m1_loader, "verifying_method", lambda *args: other)
  symbols = symbols_from_text(validation_docs[1])[:400]
  coded = coder.encode_batch([symbols])[0]
  assert not np.array_equal(other.decode(coded.tokens), symbols)
  rec = transforms.Record((0, 0, 0, 0), coded.tokens, 400, coded.num_windows, 0, "doc", 0,
                          symbols)
  fn = transforms.VerifyFn(SPEC, m1_dirs["exact"], 1.0, "cpu")
  fn.setup()
  with pytest.raises(transforms.DeviceMismatchError, match="f00000-g000000-e000-p000"):
    list(fn.process([rec]))
  # A record that the coder does not decode either is a bad record: dropped and counted.
  bad = rec._replace(symbols=np.roll(symbols, 1))
  [out] = list(fn.process([bad]))
  assert out.tag == sources.ERRORS and out.value.reason == "verification_failed"


def test_workers_check_their_device_before_coding(m1_dirs, on_gpu, monkeypatch):
  """CompressFn.setup compares the coder's tables with the host CPU's, once per process."""
  from compressor import get_method  # pylint: disable=import-outside-toplevel
  from pipelines import device_check  # pylint: disable=import-outside-toplevel
  from training.m1 import exact  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(device_check, "_CHECKED", {})
  fn = transforms.CompressFn(SPEC, m1_dirs["exact"], 64, "continue", False)
  fn.setup()  # without an accelerator the "GPU" is this CPU; with one, a real check
  coding_device = m1_loader.model_device(m1_loader.shared_method(SPEC, m1_dirs["exact"]))
  assert device_check._CHECKED == {(SPEC, m1_dirs["exact"]): coding_device}
  symbols = device_check.check_symbols()
  assert symbols.shape == (device_check.LANES, device_check.SEQ_LEN) == (11, 128)
  assert set(symbols[device_check.SEQUENCES:].ravel().tolist()) == set(range(257))
  # Nothing to check: a table model, a float M1, a CPU worker.
  fitted = "context[order=2,fit=builtin:pydoc,docs=5]"
  assert device_check.check_coding_device(SPEC, fitted) is None
  assert device_check.check_coding_device(SPEC, m1_dirs["float"]) is None
  monkeypatch.setattr(m1_loader, "default_backend", lambda: "cpu")
  assert device_check.check_coding_device("bytes", None) is None
  monkeypatch.setattr(m1_loader, "default_backend", lambda: "gpu")

  # A host CPU whose tables differ (logits rolled by one symbol) stops the worker at setup.
  coder = m1_loader.shared_method(SPEC, m1_dirs["exact"])
  params = dict(coder.model.params)
  for name in ("logits/kernel", "logits/mult", "logits/shift"):
    params[name] = np.roll(params[name], 1, axis=-1)
  other = get_method(SPEC, exact.ExactM1Model(coder.model.config, params))
  real_shared = m1_loader.shared_method
  monkeypatch.setattr(m1_loader, "shared_method", lambda spec, m1, device=None: (
      other if device == "cpu" else real_shared(spec, m1, device)))
  monkeypatch.setattr(device_check, "_CHECKED", {})
  with pytest.raises(transforms.DeviceMismatchError,
                     match=r"M1 on \S+ computes other tables .* \(lane 0, position 0 of 1408"):
    transforms.CompressFn(SPEC, m1_dirs["exact"], 64, "continue", False).setup()
  assert device_check._CHECKED == {}
