"""The one corpus reader: spec grammar, documents, dropped lines, positions, TFDS."""
import collections
import gzip
import json
import logging

import pytest

from compressor import corpus
from compressor.symbols import symbols_from_text


def _names(docs) -> list[tuple[str, bytes]]:
  return [(d.source.rsplit("/", 1)[-1], d.data) for d in docs]


def test_parse_json_line_keeps_bytes_exactly():
  assert corpus.parse_json_line(b'{"text": "caf\\u00e9 \\u0000"}') == "café \x00".encode()
  assert corpus.parse_json_line(b'{"text": "bad \xff\xc3("}') == b"bad \xff\xc3("
  assert corpus.parse_json_line(b'{"text": "\\ud800"}') == b"\xed\xa0\x80"
  # Invalid bytes stay themselves beside an escaped lone surrogate, as symbols_from_text keeps
  # them: one rule from str to bytes.
  assert corpus.parse_json_line(b'{"text": "a\x80b \\ud800"}') == b"a\x80b \xed\xa0\x80"
  assert symbols_from_text("a\udc80b \ud800", eos=False).tolist() == list(
      b"a\x80b \xed\xa0\x80")
  deep = b"[" * 100_000 + b"]" * 100_000  # too deep for the JSON parser: a malformed line
  for line, reason in [(b"{", "malformed_json"), (b"  \r", "blank_line"), (deep, "malformed_json"),
                       (b'{"body": "x"}', "missing_text_field"), (b"[1]", "missing_text_field"),
                       (b'{"text": 3}', "missing_text_field")]:
    with pytest.raises(corpus.BadInput) as e:
      corpus.parse_json_line(line)
    assert e.value.reason == reason


def test_resolve_errors_and_kinds(tmp_path):
  with pytest.raises(FileNotFoundError, match="matches no files.*builtin:pydoc"):
    corpus.resolve(str(tmp_path / "missing-*.json.gz"))
  with pytest.raises(ValueError, match="builtin:pydoc"):
    corpus.resolve("builtin:nope")
  for name in ("b.jsonl", "a.json.gz", "c.txt"):
    (tmp_path / name).write_text("{}")
  spec = corpus.resolve(str(tmp_path / "*.js*"))
  assert spec.kind == "jsonl" and [t[1].rsplit("/", 1)[1] for t in spec.tasks] == [
      "a.json.gz", "b.jsonl"]
  assert corpus.resolve("text:" + str(tmp_path / "*.txt")).kind == "text"
  assert corpus.resolve(str(tmp_path / "*")).kind == "text"  # not every name is JSON lines
  assert corpus.resolve("jsonl:" + str(tmp_path / "*.txt")).kind == "jsonl"


def test_tfds_spec_grammar():
  assert corpus.parse_tfds_spec("c4/en:3.1.0:validation") == ("c4/en:3.1.0", "validation")
  assert corpus.parse_tfds_spec("c4/en:3.1.0") == ("c4/en:3.1.0", "train")
  assert corpus.parse_tfds_spec("c4/en:3.1.0", "validation") == ("c4/en:3.1.0", "validation")
  assert corpus.parse_tfds_spec("c4/en") == ("c4/en", "train")
  assert corpus.parse_tfds_spec("c4/en:validation") == ("c4/en", "validation")
  with pytest.raises(ValueError, match="tfds:NAME"):
    corpus.parse_tfds_spec("c4/en:3.1.0:validation:extra")


def test_bad_lines_are_dropped_counted_and_logged(tmp_path, caplog):
  path = tmp_path / "docs.jsonl.gz"
  lines = [json.dumps({"text": "first"}).encode(), b"{not json", b"[1, 2]",
           json.dumps({"url": "no text"}).encode(), b"\xff\xfe{\"text\": 1}", b"",
           json.dumps({"text": "last", "url": "u"}).encode()]
  path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
  counts = collections.Counter()
  with caplog.at_level(logging.WARNING):
    docs = list(corpus.read_documents(str(tmp_path / "*.jsonl.gz"), counts=counts))
  assert [(d.source, d.data) for d in docs] == [(f"{path}:1", b"first"), (f"{path}:7", b"last")]
  assert counts == {"documents": 2, "malformed_json": 2, "missing_text_field": 2,
                    "blank_line": 1, "dropped_bytes": sum(map(len, lines[1:6]))}
  assert f"{path}:2" in caplog.text and f"{path}:5" in caplog.text


def test_files_are_read_in_sorted_order(tmp_path):
  (tmp_path / "b.txt").write_text("plain document\nline two")
  (tmp_path / "a.jsonl").write_text('{"text": "x"}\n{"text": "y"}\n')
  (tmp_path / "c.json.gz").write_bytes(gzip.compress(b'{"text": "z"}\n'))
  got = _names(corpus.read_documents("jsonl:" + str(tmp_path / "*.js*")))
  assert got == [("a.jsonl:1", b"x"), ("a.jsonl:2", b"y"), ("c.json.gz:1", b"z")]
  got = _names(corpus.read_documents(str(tmp_path / "*")))  # mixed names: a file per document
  assert [name for name, _ in got] == ["a.jsonl", "b.txt", "c.json.gz"]
  assert got[1][1] == b"plain document\nline two"


def test_unreadable_files_are_dropped_not_raised(tmp_path):
  path = tmp_path / "broken.json.gz"
  path.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
  items = list(corpus.read_jsonl_file(0, str(path)))
  assert [type(i).__name__ for i in items] == ["Dropped"]
  assert items[0].reason == "corrupt_file"
  (missing,) = corpus.read_jsonl_file(0, str(tmp_path / "gone.jsonl"))
  assert missing.reason == "missing_file" and missing.source.endswith("gone.jsonl:1")


def test_builtin_pydoc():
  docs = list(corpus.read_documents(corpus.BUILTIN_PYDOC))
  assert len(docs) > 50 and docs[0].source.startswith("builtin:pydoc/")
  assert [(d.file_index, d.doc_index) for d in docs] == [(0, i) for i in range(len(docs))]


def test_builtin_pydoc_splits_hold_out_a_tenth_of_the_bytes():
  whole = [d.source for d in corpus.read_documents("builtin:pydoc")]
  train = list(corpus.read_documents("builtin:pydoc:train"))
  validation = list(corpus.read_documents("builtin:pydoc:validation"))
  assert len(validation) >= 3 and validation[0].source == whole[1]  # topic 0 is train's
  assert sorted(d.source for d in train + validation) == sorted(whole)
  share = sum(len(d.data) for d in validation) / sum(len(d.data) for d in train + validation)
  assert 0.1 <= share < 0.12
  assert [d.doc_index for d in validation] == list(range(len(validation)))
  rest = list(corpus.read_documents("builtin:pydoc:validation", start=(0, 3)))
  assert rest == validation[3:]
  with pytest.raises(ValueError, match="builtin:pydoc:train or builtin:pydoc:validation"):
    corpus.resolve("builtin:pydoc:test")


def test_a_read_from_a_position_is_the_rest_of_the_whole_read(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"text": "x"}\n\n{"text": "y"}\nnot json\n{"text": "w"}\n')
  (tmp_path / "c.json.gz").write_bytes(gzip.compress(b'{"text": "z"}\n{"text": "v"}\n'))
  for spec in (str(tmp_path / "*"), "builtin:pydoc"):
    whole = list(corpus.read_documents(spec))
    for i, doc in enumerate(whole):
      assert list(corpus.read_documents(spec, start=(doc.file_index, doc.doc_index))) == whole[i:]
  positions = [(d.file_index, d.doc_index) for d in corpus.read_documents(str(tmp_path / "*"))]
  assert positions == [(0, 0), (0, 2), (0, 4), (1, 0), (1, 1)]


def test_tfds_reads_a_prepared_build_in_chunks_and_never_downloads(tmp_path, tiny_tfds):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  with pytest.raises(FileNotFoundError, match="tfds build"):
    corpus.resolve("tfds:c4/en:3.1.0", "validation", str(tmp_path))
  builder = tfds.builder("eqinfo_tiny_text:1.0.0", data_dir=str(tiny_tfds))
  items = list(corpus.read_tfds_chunk(builder, "eqinfo_tiny_text:1.0.0", "validation", 2,
                                      "16:26"))
  assert [(d.file_index, d.doc_index) for d in items] == [(2, i) for i in range(10)]
  assert items[3].source == "tfds:eqinfo_tiny_text:1.0.0/validation[19]"
  whole = [d.data for d in corpus.read_documents("tfds:eqinfo_tiny_text:1.0.0:validation",
                                                 str(tiny_tfds))]  # the split's own order
  assert sorted(whole) == sorted(f"document {i} ".encode() * (i + 1) for i in range(30))
  assert [d.data for d in items] == whole[16:26]


def test_a_tfds_read_from_a_position_slices_the_split(tiny_tfds):
  tmp_path = tiny_tfds
  spec = corpus.resolve("tfds:eqinfo_tiny_text:1.0.0:validation", tfds_data_dir=str(tmp_path),
                        tfds_chunk_docs=8)
  assert spec.tasks == ((0, "0:8"), (1, "8:16"), (2, "16:24"), (3, "24:30"))
  read = lambda **kw: list(corpus.iter_documents(spec, tfds_data_dir=str(tmp_path), **kw))
  whole = read()
  assert len(whole) == 30 and len({d.data for d in whole}) == 30
  assert [(d.file_index, d.doc_index) for d in whole] == [(n // 8, n % 8) for n in range(30)]
  assert read(start=(1, 3)) == whole[11:]
  got = corpus.read_documents("tfds:eqinfo_tiny_text:1.0.0:validation", str(tmp_path))
  assert [d.data for d in got] == [d.data for d in whole]


def test_real_webtext_reads_every_line(webtext_dir):
  counts = collections.Counter()
  docs = list(corpus.read_documents(str(webtext_dir / "validation" / "*.jsonl.gz"),
                                    counts=counts))
  lines = sum(1 for path in (webtext_dir / "validation").glob("*.jsonl.gz")
              for line in gzip.open(path, "rt", encoding="utf-8") if line.strip())
  assert len(docs) == counts["documents"] == lines > 200 and set(counts) == {"documents"}
