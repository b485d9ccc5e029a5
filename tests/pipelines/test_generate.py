"""`eqinfo generate`: M2 samples decode back to text through the M1 that coded the shards."""
import json

import numpy as np

from compressor import symbols_from_text
from pipelines import cli
from pipelines import generate, m1_loader


def test_generate_decodes_m2_samples(m2_run, capsys):
  shards, run = m2_run
  capsys.readouterr()
  assert cli.main(["generate", "--checkpoint", str(run), "--shards", str(shards),
                   "--num_samples", "2", "--max_tokens", "24", "--seed", "1"]) == 0
  samples = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert len(samples) == 2
  stats = json.loads((shards / "stats.json").read_text())
  method = m1_loader.build_method(stats["method"], stats["m1"])
  for sample in samples:
    assert len(sample["tokens"]) == 24
    symbols = method.decode(np.array(sample["tokens"]))
    assert symbols.size == sample["num_symbols"]
    assert "".join(sample["windows"]) == sample["text"]
    assert len(sample["windows"]) == 24 * 8 // 16  # b=16 windows of v=256 tokens


def test_text_marks_document_ends():
  x = np.concatenate([symbols_from_text("ab"), symbols_from_text("c", eos=False)])
  assert generate._text(x) == "ab<EOS>c"


def test_cached_sampling_equals_full_recompute():
  """The KV-cached sampler draws what recomputing the whole prefix at every step draws."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from training import configs, model  # pylint: disable=import-outside-toplevel
  token_vocab, length = 40, 24
  config = configs.model_config("tiny", vocab_size=token_vocab + 1, max_len=32)
  params = model.Transformer(config).init(jax.random.PRNGKey(0),
                                          jnp.zeros((1, 4), jnp.int32))["params"]
  apply = jax.jit(model.Transformer(config).apply)
  for temperature in (0.0, 1.0):
    got = generate.sample(config, params, 3, length, token_vocab, temperature, seed=5)
    tokens = np.zeros((3, length + 1), np.int32)
    tokens[:, 0] = token_vocab
    key = jax.random.PRNGKey(5)
    for t in range(length):
      key, sub = jax.random.split(key)
      logits = apply({"params": params}, jnp.asarray(tokens))[:, t, :token_vocab]
      tokens[:, t + 1] = (jnp.argmax(logits, -1) if temperature == 0 else
                          jax.random.categorical(sub, logits / temperature, axis=-1))
    np.testing.assert_array_equal(got, tokens[:, 1:])
    assert got.shape == (3, length) and got.max() < token_vocab
