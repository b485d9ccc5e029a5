"""`eqinfo generate`: sample M2 tokens and decode them back to text through M1.

  eqinfo generate --checkpoint runs/m2 --shards shards/ --num_samples 4 --max_tokens 128

M2 is the latest checkpoint of `--checkpoint` (an `eqinfo train-m2 --out`
directory). The method and M1 that made M2's training shards are read from
`--shards`/stats.json (`method`, `m1`), so the sampled tokens decode with
exactly the model that coded the data. Decoding never fails: every token
sequence determines some text (for Equal-Info windows, each window on its own).
Prints one JSON object per sample.
"""
import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from compressor import EOS, help_format
from compressor.symbols import as_symbols
from pipelines import m1_loader
from training import accelerator
from training import evaluate
from training import model as model_lib
from training import shards
from training import train


def parse_flags(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="eqinfo generate", description=__doc__.splitlines()[0],
                                   formatter_class=help_format.HelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="an `eqinfo train-m2 --out` directory")
  parser.add_argument("--shards", required=True, help="the shard directory M2 trained on")
  parser.add_argument("--m1", default=None, help="override stats.json's M1 (same spec as compress)")
  parser.add_argument("--ignore_m1_fingerprint", action="store_true",
                      help="decode with --m1 even where its fingerprint is not the one stats.json "
                      "records (for someone who knows the tables are the same)")
  parser.add_argument("--num_samples", type=int, default=4, help="samples drawn")
  parser.add_argument("--max_tokens", type=int, default=128, help="M2 tokens per sample")
  parser.add_argument("--temperature", type=float, default=1.0, help="0 samples greedily")
  parser.add_argument("--seed", type=int, default=0, help="sampling seed")
  accelerator.add_flag(parser)
  return parser.parse_args(argv)


def sample(config, params, batch: int, length: int, token_vocab: int, temperature: float,
           seed: int) -> np.ndarray:
  """Samples [batch, length] M2 tokens (BOS first, never emitted), one KV-cached step each.

  Args:
    config: M2's ModelConfig (vocabulary = token_vocab + BOS).
    params: M2's parameters.
    batch, length: samples and tokens per sample (length <= config.max_len).
    token_vocab: ids below this are tokens; BOS = token_vocab is masked out.
    temperature: softmax temperature; 0 takes the argmax.
    seed: PRNG seed.
  """
  if not 1 <= length <= config.max_len:
    raise ValueError(f"--max_tokens must be in 1..{config.max_len}, got {length}")

  @jax.jit
  def step(params, cache, token, position, key):  # token [B] at position t -> token t + 1
    positions = jnp.full((batch,), position, jnp.int32)
    logits, cache = model_lib.decode_step(config, {"params": params}, cache, token, positions)
    logits = logits[:, :token_vocab]  # [B, V]
    if temperature == 0:
      return jnp.argmax(logits, axis=-1).astype(jnp.int32), cache
    return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32), cache

  cache = model_lib.init_cache(config, batch)
  token = jnp.full((batch,), token_vocab, jnp.int32)  # BOS
  key = jax.random.PRNGKey(seed)
  out = []
  for t in range(length):
    key, sub = jax.random.split(key)
    token, cache = step(params, cache, token, t, sub)
    out.append(token)
  return np.asarray(jnp.stack(out, axis=1))


def describe(method, tokens: np.ndarray) -> dict:
  """Decodes one sample; splits it at window boundaries for Equal-Info methods."""
  symbols = as_symbols(method.decode(tokens))
  out = {"tokens": tokens.tolist(), "num_symbols": int(symbols.size),
         "text": _text(symbols)}
  if hasattr(method, "windows"):
    parts = method.decode_windows(method.windows(tokens))
    out["windows"] = [_text(p) for p in parts]
  return out


def _text(symbols: np.ndarray) -> str:
  pieces = np.split(symbols, np.flatnonzero(symbols == EOS))
  docs = [p[p != EOS].astype(np.uint8).tobytes().decode("utf-8", "replace") for p in pieces]
  return "<EOS>".join(docs)


def run(argv=None) -> int:
  args = parse_flags(argv)
  accelerator.require(args.accelerator)
  stats = shards.load_stats(args.shards)
  method = m1_loader.shards_method(args.shards, stats, args.m1,
                                   check_fingerprint=not args.ignore_m1_fingerprint)
  loaded = evaluate.load(args.checkpoint, train.make_mesh())
  if loaded.kind != "m2":
    raise ValueError(f"--checkpoint {args.checkpoint!r} holds an M1; pass an M2 run directory")
  token_vocab = loaded.model_config.vocab_size - 1
  if token_vocab != method.vocab_size:
    raise ValueError(f"M2's vocabulary ({token_vocab}) does not match {stats['method']} "
                     f"({method.vocab_size}); pass the shards M2 trained on")
  tokens = sample(loaded.model_config, loaded.params, args.num_samples, args.max_tokens,
                  token_vocab, args.temperature, args.seed)
  for row in tokens:
    print(json.dumps(describe(method, row), ensure_ascii=False))
  return 0


if __name__ == "__main__":
  sys.exit(run())
