"""Sources, transforms and the record schema on tiny fixtures (TestPipeline + assert_that)."""
import zlib

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from compressor import EOS, corpus, get_method
from compressor.corpus import Document, Dropped
from compressor.methods import CodingError
from pipelines import accounting, sink, sources, transforms
from training import shards as shards_lib


def _docs_of(shard_input):
  return [(src, data) for g in shard_input.groups for src, data in zip(g.sources, g.docs)]


def test_read_shard_inputs_routes_bad_lines(bad_jsonl, large_doc_bytes):
  spec = corpus.resolve(str(bad_jsonl))
  with BeamTestPipeline() as p:
    out = p | sources.ReadShardInputs(spec, docs_per_group=128, groups_per_shard=64)
    docs = out["shards"] | beam.FlatMap(
        lambda s: [(int(src.rsplit(":", 1)[1]) - 1, len(data)) for src, data in _docs_of(s)])
    errors = out["errors"] | beam.Map(lambda e: (e.source.rsplit(":", 1)[1], e.reason, e.stage))
    sizes = [(0, 38), (3, len(b"NUL \x00 inside")),
             (4, len(b"invalid UTF-8: \xff\xfe and \xc3(")),
             (7, len(b"lone surrogate \xed\xa0\x80 escape")), (8, large_doc_bytes), (9, 18)]
    assert_that(docs, equal_to(sizes), label="docs")
    assert_that(errors, equal_to([("2", "malformed_json", "read"),
                                  ("3", "empty_document", "screen"),
                                  ("6", "blank_line", "read"),
                                  ("7", "missing_text_field", "read")]), label="errors")


def test_train_m1_and_compress_read_the_same_documents(bad_jsonl):
  """The reader outside Beam (train-m1, codec) and the pipeline's give the same documents
  (the pipeline drops the empty one as empty_document)."""
  spec = corpus.resolve(str(bad_jsonl))
  outside = [(d.source, d.data) for d in corpus.read_documents(str(bad_jsonl))]
  assert len(outside) == 7 and sum(not data for _, data in outside) == 1
  with BeamTestPipeline() as p:
    out = p | sources.ReadShardInputs(spec, docs_per_group=2, groups_per_shard=2)
    assert_that(out["shards"] | beam.FlatMap(_docs_of),
                equal_to([d for d in outside if d[1]]), label="docs")
    assert_that(out["errors"] | beam.Filter(lambda e: e.reason == "empty_document")
                | beam.Map(lambda e: e.source), equal_to([s for s, d in outside if not d]),
                label="empty")


def test_screen():
  assert sources.screen(Document(0, 0, "a:1", b"ok"), 10) is None
  assert sources.screen(Document(0, 1, "a:2", b""), 10) == Dropped(
      "a:2", "empty_document", 1, "screen", "no bytes")
  dropped = sources.screen(Document(0, 2, "a:3", b"x" * 11), 10)
  assert (dropped.reason, dropped.num_bytes) == ("too_large", 12)
  assert sources.screen(Document(0, 2, "a:3", b"x" * 11), None) is None


def test_shard_inputs_are_ranges_of_line_indices():
  """Groups of 3 lines, shards of 2 groups: lines [0, 6) then [6, 12); a dropped line or a
  screened document leaves a hole, and an empty shard still brings its bytes in."""
  lines = [Document(4, i, f"f:{i}", b"d%d" % i) for i in range(14)]
  lines[4] = Dropped("f:4", "malformed_json", 9)       # a line that is not a document
  lines[7] = Document(4, 7, "f:7", b"")               # screened: empty
  items = [x for i, x in enumerate(lines) if i not in (12, 13)] + [
      Document(4, 13, "f:13", b"")]                     # shard 2 holds only a screened doc
  out = list(sources.shard_inputs(items, 4, docs_per_group=3, groups_per_shard=2))
  shards = [o for o in out if isinstance(o, sources.ShardInput)]
  assert [(s.file_index, s.shard_index) for s in shards] == [(4, 0), (4, 1), (4, 2)]
  assert [[(g.group_index, g.docs) for g in s.groups] for s in shards] == [
      [(0, (b"d0", b"d1", b"d2")), (1, (b"d3", b"d5"))],
      [(2, (b"d6", b"d8")), (3, (b"d9", b"d10", b"d11"))],
      []]
  assert [s.document_symbols for s in shards] == [5 * 3, 3 + 1 + 3 + 3 + 4 + 4, 1]
  assert [(o.source, o.reason) for o in out if isinstance(o, Dropped)] == [
      ("f:4", "malformed_json"), ("f:7", "empty_document"), ("f:13", "empty_document")]
  assert list(sources.shard_inputs([], 0, 3, 2)) == []


def _shard_input(docs, docs_per_group=128, groups_per_shard=64):
  (shard,) = sources.shard_inputs(docs, 0, docs_per_group, groups_per_shard)
  return shard


def test_code_shards_round_trip(validation_docs):
  method = get_method("gzip[v=256]")
  docs = [Document(0, i, f"v:{i + 1}", t.encode()) for i, t in enumerate(validation_docs[:20])]

  def check(coded):
    (shard,) = coded
    records = list(shard.records)
    assert records, "no records"
    assert [r.key for r in records] == sorted(r.key for r in records)
    by_example = {}
    for r in records:
      by_example.setdefault(r.key[:3], []).append(r)
      assert r.tokens.size <= 200 and r.symbols is None and r.verified
      assert r.source.startswith("v:")
    assert {k[1] for k in by_example} == {0, 1, 2}  # groups of 8 documents
    for rs in by_example.values():
      assert [r.key[3] for r in rs] == list(range(len(rs)))
    assert sum(r.num_bytes for r in records) == sum(len(d.data) + 1 for d in docs)
    assert shard.document_symbols == sum(len(d.data) + 1 for d in docs)
    np.testing.assert_array_equal(method.decode(records[0].tokens)[:5],
                                  np.frombuffer(docs[0].data[:5], np.uint8))

  with BeamTestPipeline() as p:
    out = (p | beam.Create([_shard_input(docs, docs_per_group=8)])
           | transforms.CodeShards("gzip[v=256]", None, max_tokens=200, packing="continue",
                                   example_symbols=3000, batch_size=4, verify=True))
    assert_that(out["shards"], check, label="records")
    assert_that(out["errors"], equal_to([]), label="no_errors")


def test_truncate_counts_dropped_symbols(validation_docs):
  docs = [Document(0, i, f"v:{i}", t.encode()) for i, t in enumerate(validation_docs[:4])]
  total = sum(len(d.data) + 1 for d in docs)
  with BeamTestPipeline() as p:
    out = (p | beam.Create([_shard_input(docs)])
           | transforms.CodeShards("bytes", None, max_tokens=100, packing="truncate",
                                   example_symbols=2000, batch_size=2, verify=False))
    kept = out["shards"] | "KeptBytes" >> beam.FlatMap(
        lambda s: [r.num_bytes for r in s.records])
    dropped = out["errors"] | "DroppedBytes" >> beam.Map(lambda e: e.num_bytes)
    both = ((kept, dropped) | beam.Flatten() | beam.CombineGlobally(sum))
    assert_that(both, equal_to([total]), label="balance")
    assert_that(out["errors"] | beam.Map(lambda e: e.reason) | beam.Distinct(),
                equal_to(["truncated"]), label="reason")


def test_verify_drops_and_counts_a_corrupt_record():
  method = get_method("bytes")
  good = transforms.Record((0, 0, 0, 0), np.array([104, 105], np.int32), 2, 0, 0, "s", 0,
                           np.array([104, 105], np.int32))
  bad = good._replace(key=(0, 0, 0, 1), symbols=np.array([104, EOS], np.int32))
  with BeamTestPipeline() as p:
    out = (p | beam.Create([[good, bad]])
           | beam.ParDo(transforms.VerifyFn(method.spec, None)).with_outputs(
               sources.ERRORS, main="records"))
    assert_that(out.records | beam.Map(lambda r: (r.key, r.verified, r.symbols)),
                equal_to([((0, 0, 0, 0), True, None)]), label="ok")
    assert_that(out[sources.ERRORS] | beam.Map(lambda e: (e.source, e.reason)),
                equal_to([("f00000-g000000-e000-p001", "verification_failed")]), label="bad")


def test_verify_fraction_decodes_only_the_sampled_records():
  """Every record is corrupt: the sampled ones fail, the others pass unverified."""
  method = get_method("bytes")
  records = [transforms.Record((0, 0, i, 0), np.array([104], np.int32), 1, 0, 0, "s", 0,
                               np.array([105], np.int32)) for i in range(40)]
  sampled = [r.key for r in records if transforms.verify_sampled(r.key, 0.25)]
  assert 0 < len(sampled) < 40
  assert transforms.verify_sampled((0, 0, 0, 0), 1.0)
  with BeamTestPipeline() as p:
    out = (p | beam.Create([records[:25], records[25:]])
           | beam.ParDo(transforms.VerifyFn(method.spec, None, 0.25)).with_outputs(
               sources.ERRORS, main="records"))
    assert_that(out.records | beam.Map(lambda r: (r.key, r.verified)),
                equal_to([(r.key, False) for r in records if r.key not in sampled]),
                label="passed")
    assert_that(out[sources.ERRORS] | beam.Map(lambda e: e.source),
                equal_to([transforms.key_name(k) for k in sampled]), label="failed")
  with pytest.raises(ValueError, match="verify_fraction"):
    transforms.CodeShards("bytes", None, 10, "continue", 100, 1, True, verify_fraction=0.0)


def test_accounting_balances():
  records = [transforms.Record((0, 0, 0, 0), np.array([1, 2, 2], np.int32), 4, 1, 0, "a", 0)]
  summaries = [{**accounting.shard_totals(records, 4, document_symbols=4 + 1),
                "shard": ("s-f00000-00000.array_record", 1)},
               {**accounting.shard_totals([], 4, document_symbols=0), "shard": None}]
  drops = [Dropped("b", "empty_document", 1, "screen"), Dropped("c:9", "malformed_json", 17)]
  with BeamTestPipeline() as p:
    acc = ((p | "Summaries" >> beam.Create(summaries),
            p | "Drops" >> beam.Create(drops)) | accounting.Accounting(vocab_size=4))

    def check(out):
      (a,) = out
      assert a["bytes_in"] == 4 + 1 + 17 and a["balanced"]
      assert a["histogram"] == [0, 1, 2, 0] and a["windows"] == 1
      assert a["shards"] == [("s-f00000-00000.array_record", 1)]
      assert a["dropped"] == {"empty_document": {"inputs": 1, "bytes": 1},
                              "malformed_json": {"inputs": 1, "bytes": 17}}

    assert_that(acc, check)


def test_serialized_record_is_a_tf_example():
  tf = pytest.importorskip("tensorflow")
  tokens = np.array([0, 1, 127, 128, 255, 16383, 16384, 65535], np.int32)
  crc = transforms.symbols_crc32(np.array([104, 105, 256]))
  assert crc == zlib.crc32(b"h\x00i\x00\x00\x01")  # little-endian uint16, EOS = 256
  rec = transforms.Record((3, 12, 2, 1), tokens, 1234, 9, 1, "gs://b/c4.json.gz:7", 0,
                          symbols_crc32=crc)
  data = sink.serialize_record(rec)
  ex = tf.train.Example.FromString(data)
  f = ex.features.feature
  assert list(f["targets"].int64_list.value) == tokens.tolist()
  assert f["num_bytes"].int64_list.value[0] == 1234
  assert f["num_windows"].int64_list.value[0] == 9
  assert f["num_literal_windows"].int64_list.value[0] == 1
  assert f["source"].bytes_list.value[0] == b"gs://b/c4.json.gz:7"
  assert f["key"].bytes_list.value[0] == b"f00003-g000012-e002-p001"
  assert f["symbols_crc32"].int64_list.value[0] == crc
  assert data == ex.SerializeToString(deterministic=True)
  parsed = shards_lib.parse(data)
  np.testing.assert_array_equal(parsed["targets"], tokens)
  assert parsed["source"] == b"gs://b/c4.json.gz:7" and int(parsed["num_bytes"][0]) == 1234
  assert int(parsed["symbols_crc32"][0]) == crc
  assert "symbols_crc32" not in shards_lib.parse(sink.serialize_record(
      rec._replace(symbols_crc32=None)))


def test_shard_names_follow_the_input():
  assert shards_lib.sanitize_spec("equal_info_ac[b=16,v=65k]") == "equal_info_ac_b_16_v_65k"
  assert (shards_lib.shard_name("train", "gzip[v=256]", 3, 16)
          == "train-gzip_v_256-f00003-00016.array_record")
  names = [shards_lib.shard_name("train", "bytes", f, s) for f in (0, 1, 10) for s in (0, 2, 11)]
  assert sorted(names) == names  # name order is input order


def test_finalize_refuses_an_unbalanced_run(tmp_path):
  accounting = {"records": 1, "m1_examples": 1, "tokens": 3, "bytes": 4, "windows": 0,
                "literal_windows": 0, "verified": 1, "m1_devices": {}, "histogram": [0, 1, 2, 0],
                "bytes_in": 9, "shards": [("s-f00000-00000.array_record", 1)],
                "bytes_dropped": 1, "dropped": {}, "balanced": False}
  fn = sink.FinalizeFn(str(tmp_path), {"vocab_size": 4}, "{}")
  with pytest.raises(AssertionError, match="bytes in"):
    list(fn.process(accounting, 0))
  assert not (tmp_path / shards_lib.COMPLETED).exists()
  (stats,) = fn.process({**accounting, "bytes_in": 5, "balanced": True}, 0)
  assert stats["m1_examples"] == 1 and (tmp_path / shards_lib.COMPLETED).exists()


class _FragileBytes:
  """The bytes method, except that it raises on any example holding "~"."""
  spec = "fragile"

  def __init__(self):
    self._bytes = get_method("bytes")

  def encode_batch(self, examples, max_tokens=None):
    if any((np.asarray(x) == ord("~")).any() for x in examples):
      raise CodingError("cannot code '~'")
    return self._bytes.encode_batch(examples, max_tokens)


def test_compress_isolates_an_example_that_fails_to_code():
  fn = transforms.CompressFn("bytes", None, max_tokens=4, packing="continue", keep_symbols=False)
  fn._method = _FragileBytes()  # pylint: disable=protected-access
  batch = [transforms.Example((0, 0, i, ), np.frombuffer(t, np.uint8).astype(np.int32),
                              np.array([0]), (f"s:{i}",))
           for i, t in enumerate([b"abcdefg", b"x~y", b"hi"])]
  out = list(fn.process(batch))
  records = [o for o in out if isinstance(o, transforms.Record)]
  drops = [o.value for o in out if not isinstance(o, transforms.Record)]
  assert [r.key for r in records] == [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 2, 0)]
  assert [(d.source, d.reason, d.num_bytes) for d in drops] == [
      ("f00000-g000000-e001", "coding_failed", 3)]
  assert "cannot code" in drops[0].detail and "s:1" in drops[0].detail
