"""Quantisation-aware fine-tuning: the rounded forward pass, its gradients and the converter."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from compressor.constants import EOS
from compressor.models import base
from training import m1_input
from training.m1 import exact
from training.m1 import exact_params
from training.m1 import exact_reference
from training.m1 import float_m1 as m1
from training.m1 import qat
from training.m1 import quantize as quantize_m1

SEQ_LEN = 64


@pytest.fixture(scope="module")
def float_m1(trained_m1):
  """The tiny M1 trained on the shared train split (float)."""
  return m1.load(trained_m1, exact=False)


@pytest.fixture(scope="module")
def converter(float_m1, train_docs):
  return quantize_m1.calibrate(float_m1, train_docs[:40], seq_len=SEQ_LEN, max_sequences=8)


@pytest.fixture(scope="module")
def symbols(validation_docs):
  """[8, 64] validation symbols."""
  return quantize_m1.eval_sequences(validation_docs[:50], SEQ_LEN, 8)


def _batches(webtext_dir, seed=0):
  return m1_input.M1Batches(m1_input.M1DataConfig(spec=str(webtext_dir / "train" / "*.jsonl.gz"),
                                          seq_len=SEQ_LEN, batch_size=8, seed=seed,
                                          shuffle_buffer=64, docs_per_group=16))


def test_fake_quant_values_and_straight_through_gradient():
  x = jnp.array([0.26, -3.0, 100.0, 0.74, 1.0])
  f = lambda x: qat.fake_quant(x, 0.5, -4, 4)
  np.testing.assert_array_equal(f(x), [0.5, -2.0, 2.0, 0.5, 1.0])
  np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(f(x)))(x), [1, 0, 0, 1, 1])
  w = jnp.array([[0.5, -2.0], [-0.25, 1.0], [0.01, 0.3]])
  q = np.asarray(qat.fake_quant_columns(w))
  steps = np.abs(w).max(axis=0) / 127
  np.testing.assert_allclose(q / steps, np.round(q / steps), atol=1e-4)  # on the int8 grid
  np.testing.assert_allclose(np.abs(q).max(axis=0), [0.5, 2.0])  # column maxima kept
  # the grid of each column is the converter's int8 kernel
  kernel, scale = quantize_m1._quantize_columns(np.asarray(w))
  np.testing.assert_allclose(q, kernel * scale, rtol=1e-6)


def _table_gaps(float_m1, converter, symbols) -> tuple[float, float]:
  """Mean |log2 table difference| to the exact M1: of the float M1, of the rounded pass."""
  inputs = quantize_m1.bos_inputs(symbols)
  exact_m1 = exact.ExactM1Model(float_m1.config, converter.out)
  exact_tables = np.log2(exact_m1.sequence_freqs(inputs))
  float_tables = np.log2(quantize_m1.float_sequence_freqs(float_m1)(inputs))
  logits = qat.fake_quant_logits(float_m1.config, float_m1.params, converter.scales, inputs)
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  rounded = np.log2(base.quantize(probs.reshape(-1, probs.shape[-1])).reshape(probs.shape))
  return np.abs(float_tables - exact_tables).mean(), np.abs(rounded - exact_tables).mean()


def test_rounded_forward_tracks_the_exact_m1(float_m1, converter, symbols):
  """Tables of the rounded float pass are far closer to the exact M1's than the float M1's."""
  float_gap, rounded_gap = _table_gaps(float_m1, converter, symbols)
  assert rounded_gap < float_gap / 2, (float_gap, rounded_gap)


def test_rounded_forward_of_an_ungated_mlp(train_docs, symbols):
  config = m1.m1_config("tiny", max_len=SEQ_LEN, mlp_gated=False)
  params = m1.M1Model.random(config, seed=3).params
  params["params"]["logits_dense"]["kernel"] = params["params"]["logits_dense"]["kernel"] * 8
  ungated = m1.M1Model(config, params)
  converter = quantize_m1.calibrate(ungated, train_docs[:40], seq_len=SEQ_LEN, max_sequences=8)
  assert "layers_0/u" not in converter.scales
  float_gap, rounded_gap = _table_gaps(ungated, converter, symbols)
  assert rounded_gap < float_gap, (float_gap, rounded_gap)


def test_scales_cover_every_site(float_m1, converter):
  c = float_m1.config
  layer = {"attn_norm/act", "attn_norm/smooth", "mlp_norm/act", "mlp_norm/smooth", "q", "k",
           "v", "u", "b", "g"}
  expected = {f"layers_{i}/{n}" for i in range(c.num_layers) for n in layer}
  expected |= {"final_norm/act", "final_norm/smooth", "residual"}
  assert set(converter.scales) == expected
  assert converter.scales["layers_0/q"].shape == (c.num_heads,)
  assert converter.scales["layers_0/v"].shape == (c.attn_dim,)
  assert all(np.all(np.asarray(s) > 0) for s in converter.scales.values())


def test_finetune_fits_a_batch_and_is_seeded(float_m1, converter, webtext_dir):
  config = qat.QATConfig(steps=10, batch_size=8, seq_len=SEQ_LEN, learning_rate=1e-2)
  batch = next(_batches(webtext_dir))
  tuned, history = qat.finetune(float_m1, converter.scales, itertools.repeat(batch), config,
                                progress=False)
  assert len(history) == 10
  assert history[-1] < history[0] - 0.3, history  # straight-through gradients reach the weights
  config = qat.QATConfig(steps=3, batch_size=8, seq_len=SEQ_LEN, learning_rate=1e-3)
  tuned, history = qat.finetune(float_m1, converter.scales, _batches(webtext_dir), config,
                                progress=False)
  again, history_again = qat.finetune(float_m1, converter.scales, _batches(webtext_dir), config,
                                      progress=False)
  assert again.fingerprint == tuned.fingerprint and history_again == history
  other, _ = qat.finetune(float_m1, converter.scales, _batches(webtext_dir, seed=1), config,
                          progress=False)
  assert other.fingerprint != tuned.fingerprint
  assert float_m1.fingerprint != tuned.fingerprint  # the input M1 is left as it was


def test_convert_with_qat(float_m1, train_docs, symbols, webtext_dir):
  config = qat.QATConfig(steps=8, batch_size=8, seq_len=SEQ_LEN, learning_rate=1e-3)
  exact_m1, tuned = quantize_m1.convert_with_qat(float_m1, train_docs[:40], _batches(webtext_dir),
                                                 config, seq_len=SEQ_LEN, max_sequences=8,
                                                 progress=False)
  assert exact_m1.meta["source_fingerprint"] == float_m1.fingerprint
  assert exact_m1.meta["qat"]["tuned_fingerprint"] == tuned.fingerprint
  assert exact_m1.meta["qat"]["steps"] == 8
  contexts = [symbols[0][:n] for n in (0, 7, 63)]
  np.testing.assert_array_equal(exact_m1.freqs(contexts),
                                exact_reference.freqs(exact_m1.config, exact_m1.params, contexts))
  ptq = quantize_m1.convert(float_m1, train_docs[:40], seq_len=SEQ_LEN, max_sequences=8)
  report = quantize_m1.compare(tuned, exact_m1, symbols)
  assert report["exact_bits_per_byte"] < quantize_m1.compare(float_m1, ptq, symbols)[
      "exact_bits_per_byte"]


def test_qat_config_checks():
  with pytest.raises(ValueError, match="steps"):
    qat.QATConfig(steps=0)
  with pytest.raises(ValueError, match="learning_rate"):
    qat.QATConfig(learning_rate=0.0)


@pytest.mark.slow
def test_cli_with_qat(trained_m1, quantize_cli, tmp_path):
  report, out = quantize_cli("--eval_seq_len", "128", "--qat_steps", "20", "--qat_batch_size",
                             "8", "--qat_seq_len", "128", "--qat_shuffle_buffer", "64",
                             "--no_progress", "--qat_out", str(tmp_path / "tuned"))
  for key in ("float_bits_per_byte", "ptq_exact_bits_per_byte", "qat_float_bits_per_byte",
              "exact_bits_per_byte"):
    assert 1.0 < report[key] < 4.0, report
  assert report["exact_bits_per_byte"] < report["float_bits_per_byte"] * 1.02, report
  assert abs(report["exact_bits_per_byte"] / report["qat_float_bits_per_byte"] - 1) < 0.02, report
  assert report["relative_increase"] == round(
      report["exact_bits_per_byte"] / report["float_bits_per_byte"] - 1, 5)
  loaded = exact.load(out)
  assert loaded.meta["qat"]["steps"] == 20
  assert m1.load(tmp_path / "tuned", exact=False).fingerprint == loaded.meta["qat"][
      "tuned_fingerprint"]
  assert loaded.meta["report"]["exact_bits_per_byte"] == report["exact_bits_per_byte"]
  assert loaded.meta["source_fingerprint"] == m1.load(trained_m1, exact=False).fingerprint


def test_calibration_reads_bytes_as_documents_with_eos():
  """The corpus reader yields bytes; calibration sees them as M1 trains on them: + EOS."""
  inputs = quantize_m1.calibration_inputs([b"ab", "cd", np.array([1, 2], np.int32)], 4, 8)
  assert inputs.tolist() == [[exact_params.BOS, 97, 98, EOS], [exact_params.BOS, 99, 100, EOS]]
