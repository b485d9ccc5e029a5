"""compressor.examples (docs -> groups -> examples) and compressor.packing (continue / truncate)."""
import numpy as np
import pytest

from compressor import EOS, get_method
from compressor import examples as examples_lib
from compressor import packing
from compressor.methods.base import Encoded, Method


def _docs(n, size=7):
  return [bytes([65 + i % 26]) * (size + i % 5) for i in range(n)]


def test_make_examples_cuts_each_group_of_128_docs():
  docs = _docs(300, size=100)  # ~100 bytes each
  out = list(examples_lib.make_examples(docs, docs_per_group=128, example_symbols=1000))
  groups = list(examples_lib.group_documents(docs, 128))
  assert [len(g) for g in groups] == [128, 128, 44]
  expected = []
  for g in groups:
    stream = np.concatenate([np.append(np.frombuffer(d, np.uint8), EOS) for d in g])
    expected += [stream[i:i + 1000] for i in range(0, stream.size, 1000)]
  assert len(out) == len(expected)
  for got, want in zip(out, expected):
    np.testing.assert_array_equal(got, want)
  # Only the last example of each group may be short, and no example spans two groups.
  sizes = [x.size for x in out]
  assert sum(sizes) == sum(len(d) + 1 for d in docs)
  assert sum(s < 1000 for s in sizes) == 3


def test_paper_sizes_and_eos_per_document():
  docs = [b"x" * 500] * 128
  out = list(examples_lib.make_examples(docs))
  assert [x.size for x in out] == [10240] * 6 + [128 * 501 - 6 * 10240]
  assert sum(int((x == EOS).sum()) for x in out) == 128


def test_split_group_tracks_documents():
  docs = [b"aaaa", b"", b"bb", b"cccccccc"]
  spans = examples_lib.split_group(docs, example_symbols=6)
  stream = np.concatenate([x.symbols for x in spans])
  assert stream.size == 5 + 1 + 3 + 9
  # Stream: aaaa⏎ ⏎ bb⏎ cccccccc⏎ (⏎ = EOS); symbol 5 is the empty document 1.
  assert spans[0].symbols[5] == EOS and spans[0].doc_at(5) == 1
  assert spans[1].doc_at(0) == 2 and spans[1].doc_at(3) == 3 and spans[2].doc_at(0) == 3
  assert spans[0].doc_starts[0] == 0 and spans[2].doc_starts.tolist() == [-3]


@pytest.mark.parametrize("bad", [dict(docs_per_group=0), dict(example_symbols=0)])
def test_make_examples_rejects_bad_sizes(bad):
  with pytest.raises(ValueError):
    list(examples_lib.make_examples([b"x"], **bad))


def _examples(validation_docs, n=3):
  docs = [d.encode() for d in validation_docs[:12]]
  return list(examples_lib.make_examples(docs, example_symbols=4000))[:n]


@pytest.mark.parametrize("spec", ["bytes", "gzip[v=256]", "gzip[v=65k]"])
def test_continue_covers_every_symbol_and_round_trips(spec, validation_docs):
  method = get_method(spec)
  examples = _examples(validation_docs)
  records = packing.pack(method, examples, max_tokens=256, packing="continue")
  assert packing.dropped_symbols(examples, records) == [0] * len(examples)
  for i, x in enumerate(examples):
    mine = [r for r in records if r.example_index == i]
    assert [r.piece for r in mine] == list(range(len(mine)))
    offsets = np.cumsum([0] + [r.num_bytes for r in mine])
    assert [r.offset for r in mine] == offsets[:-1].tolist() and offsets[-1] == x.size
    for r in mine:
      assert 0 < r.tokens.size <= 256
      np.testing.assert_array_equal(method.decode(r.tokens), x[r.offset:r.offset + r.num_bytes])


def test_truncate_keeps_one_record_per_example(validation_docs):
  method = get_method("gzip[v=256]")
  examples = _examples(validation_docs)
  records = packing.pack(method, examples, max_tokens=256, packing="truncate")
  assert [r.example_index for r in records] == list(range(len(examples)))
  assert all(r.offset == 0 and r.piece == 0 for r in records)
  dropped = packing.dropped_symbols(examples, records)
  assert all(d > 0 for d in dropped)
  assert sum(dropped) + sum(r.num_bytes for r in records) == sum(x.size for x in examples)


class _CountingBytes(Method):
  """Bytes-like method that records the batch sizes it was called with."""
  spec, vocab_size = "counting", 257

  def __init__(self, stall=False):
    self.calls, self.stall = [], stall

  def encode_batch(self, examples, max_tokens=None):
    self.calls.append(len(examples))
    n = 0 if self.stall else max_tokens
    return [Encoded(np.asarray(x[:n], np.int32), int(min(n, len(x)))) for x in examples]


def test_continue_runs_remainders_together_in_lanes():
  method = _CountingBytes()
  examples = [np.arange(n) % 256 for n in (10, 25, 3)]
  records = packing.pack(method, examples, max_tokens=10)
  assert method.calls == [3, 1, 1]  # round 1: all three; then only the long one remains
  assert [(r.example_index, r.piece, r.offset, r.num_bytes) for r in records] == [
      (0, 0, 0, 10), (1, 0, 0, 10), (1, 1, 10, 10), (1, 2, 20, 5), (2, 0, 0, 3)]


def test_pack_errors_are_clear():
  with pytest.raises(ValueError, match="packing"):
    packing.pack(_CountingBytes(), [np.arange(3)], packing="drop")
  with pytest.raises(ValueError, match="max_tokens"):
    packing.pack(_CountingBytes(), [np.arange(3)], max_tokens=0)
  with pytest.raises(RuntimeError, match="raise --max_tokens"):
    packing.pack(_CountingBytes(stall=True), [np.arange(3)], max_tokens=4)
