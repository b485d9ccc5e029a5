"""Real DirectRunner runs of `eqinfo compress`: round trip, accounting, determinism, bad input."""
import collections
import json
import pathlib
import zlib

import pytest

from compressor import symbols
from pipelines import cli, compress, inspect_shards, m1_loader, options, sink, transforms
from training import shards

MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
SINGLE = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _compress(output, beam_args, **flags):
  config = options.CompressConfig(output=str(output), **flags)
  return compress.compress(config, beam_args)


def _shards(output: pathlib.Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(output.glob("*.array_record"))}


def _records(output: pathlib.Path) -> list[dict]:
  return [r for p in shards.shard_paths(str(output)) for r in shards.read_shard(p)]


def _decoded_documents(method, records: list[dict]) -> list[bytes]:
  """Decodes every record and reassembles the documents in id order."""
  pieces = {}
  for r in records:
    f, g, e, p = (int(x[1:]) for x in r["key"].decode().split("-"))
    pieces[(f, g, e, p)] = method.decode(r["targets"])
    assert pieces[(f, g, e, p)].size == int(r["num_bytes"][0])
  stream = symbols.concat(pieces[k] for k in sorted(pieces))
  docs = symbols.split_documents(stream)
  assert docs[-1] == b""  # the stream ends with an EOS
  return docs[:-1]


@pytest.fixture(scope="module")
def context_runs(two_jsonl, small_jsonl, tmp_path_factory):
  """Two 2-worker runs and one 1-worker run of EqualInfoAC with an order-3 context model,
  on two files of 25 documents: groups of 8 documents, shards of 2 groups (2 per file)."""
  flags = dict(input=two_jsonl, method="equal_info_ac[b=16,v=256]",
               m1=f"context[order=3,fit={small_jsonl}]", docs_per_group=8, groups_per_shard=2,
               batch_size=8)
  outs, stats = [], []
  for name, args in (("multi_a", MULTI), ("multi_b", MULTI), ("single", SINGLE)):
    out = tmp_path_factory.mktemp(name)
    stats.append(_compress(out, args, **flags))
    outs.append(out)
  return flags, outs, stats


def test_every_record_decodes_to_its_text(context_runs, validation_docs):
  flags, (out, _, _), (stats, _, _) = context_runs
  method = m1_loader.build_method(flags["method"], flags["m1"])
  assert m1_loader.fingerprint(method) == stats["m1_fingerprint"]
  records = _records(out)
  assert all(0 < r["targets"].size <= 512 for r in records)
  docs = _decoded_documents(method, records)
  assert docs == [t.encode() for t in validation_docs[:50]]
  sources = [r["source"].decode() for r in records]
  assert all(s.startswith(flags["input"].rsplit("*", 1)[0]) for s in sources)


def test_verify_fraction_decodes_a_fixed_sample(context_runs, tmp_path):
  """A sampled verification by M1 on the coding device writes the same shards as the
  window vocabulary's run; the sample is a hash of the record keys."""
  flags, (full, _, _), (full_stats, _, _) = context_runs
  assert full_stats["coder"] == "vocabulary" and full_stats["verify_device"] == "vocabulary"
  out = tmp_path / "sampled"
  stats = _compress(out, SINGLE, verify_fraction=0.4, verify_device="worker", coder="arithmetic",
                    **flags)
  assert stats["coder"] == "arithmetic" and "window_vocab" not in stats
  assert _shards(out) == _shards(full)
  keys = [r["key"] for r in _records(out)]
  sampled = sum(zlib.crc32(k) < 0.4 * 2**32 for k in keys)
  assert 0 < sampled < len(keys)
  assert stats["records_verified"] == sampled and stats["verify_fraction"] == 0.4
  assert stats["verification_failures"] == 0
  assert stats["verify_device"] == "worker"
  assert f"({sampled} of {len(keys)} records decoded on worker)" in compress.summary(stats)


def test_stats_add_up(context_runs, validation_docs):
  _, (out, _, _), (stats, _, _) = context_runs
  records = _records(out)
  total = sum(len(t.encode()) + 1 for t in validation_docs[:50])
  assert stats["bytes_in"] == stats["bytes"] == total and stats["bytes_dropped"] == 0
  assert stats["examples"] == len(records) == sum(s["records"] for s in stats["shards"])
  assert stats["m1_examples"] == len({r["key"][:-5] for r in records}) < stats["examples"]
  assert stats["tokens"] == sum(r["targets"].size for r in records)
  assert stats["windows"] == sum(int(r["num_windows"][0]) for r in records)
  assert stats["windows"] * 2 == stats["tokens"]  # b=16 bits = two 8-bit tokens
  assert sum(stats["token_histogram"]) == stats["tokens"]
  assert len(stats["token_histogram"]) == stats["vocab_size"] == 256
  assert stats["verification_failures"] == 0 and stats["dropped"] == {}
  assert stats["records_verified"] == stats["examples"] and stats["verify_fraction"] == 1.0
  assert stats["coder"] == "vocabulary" and stats["verify_device"] == "vocabulary"
  assert stats["m1_devices"] == {"cpu:numpy": stats["examples"]}  # the vocabulary's M1
  assert "m1 context[order=3," in compress.summary(stats) and " on cpu:numpy " in (
      compress.summary(stats))
  assert f"({stats['examples']} of {stats['examples']} records decoded by the window " \
      "vocabulary)" in compress.summary(stats)
  vocab = stats["window_vocab"]
  assert vocab["built_on"] == "cpu:numpy" and vocab["m1_fingerprint"] == stats["m1_fingerprint"]
  assert vocab["token_ids_seen"] == sum(1 for c in stats["token_histogram"] if c)
  assert vocab["token_ids_seen"] + vocab["token_ids_never_seen"] == 256
  assert 0 < vocab["distinct_strings"] <= vocab["tree_nodes"]
  assert stats["wire_format"]["coder_version"] == stats["coder_version"]
  assert (out / shards.COMPLETED).exists()
  assert json.loads((out / shards.CONFIG).read_text())["method"] == "equal_info_ac[b=16,v=256]"
  assert [s["name"] for s in stats["shards"]] == [
      f"train-equal_info_ac_b_16_v_256-f{f:05d}-{s:05d}.array_record"
      for f in range(2) for s in range(2)]
  # Shard s of file f holds groups [2 s, 2 s + 2) of it, sorted by key: in name order, the
  # shards are the input in order.
  for path in shards.shard_paths(str(out)):
    keys = [r["key"].decode() for r in shards.read_shard(path)]
    f, s = (int(x) for x in path.rsplit("-f", 1)[1].split(".")[0].split("-"))
    assert keys == sorted(keys) and {k[:14] for k in keys} == {
        f"f{f:05d}-g{g:06d}" for g in (2 * s, 2 * s + 1)}


def test_shards_are_byte_identical_across_runs_and_workers(context_runs):
  _, (multi_a, multi_b, single), _ = context_runs
  assert _shards(multi_a) and _shards(multi_a) == _shards(multi_b) == _shards(single)
  for name in (shards.STATS, f"{shards.ERRORS_DIR}/{shards.ERRORS_FILE}"):
    assert (multi_a / name).read_bytes() == (single / name).read_bytes()
  configs = [json.loads((d / shards.CONFIG).read_text()) for d in (multi_a, single)]
  assert configs[0].pop("output") != configs[1].pop("output") and configs[0] == configs[1]


def test_inspect_reports_and_decodes_windows(context_runs, capsys):
  _, (out, _, _), (stats, _, _) = context_runs
  assert cli.main(["inspect", str(out), "--decode", "0"]) == 0
  text = capsys.readouterr().out
  assert f"records {stats['examples']}" in text and "compression ratio" in text
  assert "MISMATCH" not in text
  record = text.split("record 0:\n", 1)[1]
  assert record.count("][") > 10  # windows shown as [..][..]


def _copy_with_records(src: pathlib.Path, dst: pathlib.Path, change) -> None:
  """Copies an output directory, passing each record of its second shard through `change`."""
  dst.mkdir()
  for path in src.iterdir():
    if path.is_file():
      (dst / path.name).write_bytes(path.read_bytes())
  name = sorted(_shards(src))[1]
  records = [change(r) for r in shards.read_shard(str(src / name))]
  sink.write_array_record(str(dst / name), [
      sink.serialize_record(transforms.Record(
          tuple(int(part[1:]) for part in r["key"].decode().split("-")), r["targets"],
          int(r["num_bytes"][0]), int(r["num_windows"][0]), int(r["num_literal_windows"][0]),
          r["source"].decode(), 0, symbols_crc32=r.get("symbols_crc32", [None])[0]))
      for r in records])


def test_inspect_check_decodes_records_on_this_machine(context_runs, tmp_path, capsys):
  """--check: every record decodes to the text its checksum names; a changed token is caught."""
  flags, (out, _, _), (stats, _, _) = context_runs
  assert cli.main(["inspect", str(out), "--check"]) == 0
  n = stats["examples"]
  assert f"check: {n} of {n} records decode to their text on this machine" in (
      capsys.readouterr().out)
  records = [r for p in shards.shard_paths(str(out)) for r in shards.read_shard(p)]
  sample = sum(transforms.sampled(r["key"].decode(), 0.3) for r in records)
  assert 0 < sample < n
  assert cli.main(["inspect", str(out), "--check", "0.3"]) == 0
  assert f"check: {sample} of {n} records" in capsys.readouterr().out
  # The shards decode by their window vocabulary, so another M1 (an order-2 model of the
  # same text) is refused in one line naming both fingerprints.
  other = flags["m1"].replace("order=3", "order=2")
  assert cli.main(["inspect", str(out), "--check", "0.3", "--m1", other]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and stats["m1_fingerprint"] in err
  assert f"--m1 {other} (fingerprint " in err and "leave out --m1" in err
  assert cli.main(["inspect", str(out), "--check", "0.3", "--m1", flags["m1"]]) == 0  # its own
  capsys.readouterr()
  changed = []

  def flip_one_token(record):
    if not changed:  # the first record: its second window decodes to other text
      changed.append(record["key"].decode())
      record["targets"][2] ^= 1
    return record

  _copy_with_records(out, tmp_path / "flipped", flip_one_token)
  assert cli.main(["inspect", str(tmp_path / "flipped"), "--check"]) == 1
  text = capsys.readouterr().out
  assert f"CHECK FAILED: 1 of {n} records checked" in text and changed[0] in text
  with pytest.raises(ValueError, match="--check must lie in"):
    inspect_shards.report(str(out), check=1.5)
  _copy_with_records(out, tmp_path / "bare", lambda r: {
      k: v for k, v in r.items() if k != "symbols_crc32"})
  with pytest.raises(ValueError, match="carries no symbols_crc32"):
    inspect_shards.report(str(tmp_path / "bare"), check=1.0)


def test_inspect_names_a_corrupt_shard(context_runs, tmp_path, capsys):
  _, (out, _, _), _ = context_runs
  broken = tmp_path / "broken"
  broken.mkdir()
  for f in (shards.STATS, shards.COMPLETED):
    (broken / f).write_bytes((out / f).read_bytes())
  name = sorted(_shards(out))[1]
  data = bytearray((out / name).read_bytes())
  (broken / name).write_bytes(bytes(data[:len(data) // 3]))
  assert cli.main(["inspect", str(broken)]) == 1
  err = capsys.readouterr().err
  assert name in err and len(err.strip().splitlines()) == 1


def test_inspect_tells_a_missing_directory_from_an_unfinished_job(tmp_path, capsys):
  assert cli.main(["inspect", str(tmp_path / "absent")]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "no shard directory" in err and "--output" in err
  assert cli.main(["inspect", str(tmp_path)]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "did not finish" in err


def test_bad_input_is_accounted_for(bad_jsonl, large_doc_bytes, tmp_path):
  out = tmp_path / "out"
  stats = _compress(out, MULTI, input=str(bad_jsonl), method="gzip[v=256]")
  assert stats["bytes_in"] == stats["bytes"] + stats["bytes_dropped"]
  assert {r: e["inputs"] for r, e in stats["dropped"].items()} == {
      "blank_line": 1, "empty_document": 1, "malformed_json": 1, "missing_text_field": 1}
  assert stats["verification_failures"] == 0
  errors = [json.loads(l) for l in (out / "errors" / "errors.jsonl").read_text().splitlines()]
  assert sorted(e["source"].rsplit(":", 1)[1] for e in errors) == ["2", "3", "6", "7"]
  assert all(e["source"].startswith(str(bad_jsonl)) for e in errors)
  docs = _decoded_documents(m1_loader.build_method("gzip[v=256]", None), _records(out))
  assert len(docs) == 6 and b"\x00" in docs[1] and b"\xff\xfe" in docs[2]
  assert docs[4] == b"x" * large_doc_bytes


def test_metrics_counters_match_stats(bad_jsonl, tmp_path):
  from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=import-outside-toplevel
  config = options.CompressConfig(input=str(bad_jsonl), method="bytes", output=str(tmp_path),
                                  overwrite=True, max_doc_bytes=1000)
  result = compress.make_pipeline(config, SINGLE).run()
  result.wait_until_finish()
  stats = json.loads((tmp_path / shards.STATS).read_text())
  counters = collections.Counter()
  for c in result.metrics().query(MetricsFilter())["counters"]:
    counters[c.key.metric.name] += c.committed  # summed over steps
  assert counters["bytes_in"] == stats["bytes_in"]
  assert counters["bytes_in_records"] == stats["bytes"]
  assert counters["m2_examples"] == stats["examples"]
  assert counters["tokens"] == stats["tokens"]
  assert counters["dropped_too_large"] == stats["dropped"]["too_large"]["inputs"] == 1
  assert counters["dropped_malformed_json"] == 1 and counters["dropped_empty_document"] == 1
  assert counters["verification_failures"] == 0 < counters["records_verified"]


def test_truncate_counts_what_it_drops(small_jsonl, validation_docs, tmp_path):
  from compressor import examples  # pylint: disable=import-outside-toplevel
  stats = _compress(tmp_path / "out", SINGLE, input=str(small_jsonl), method="bytes",
                    packing="truncate")
  sizes = [x.size for x in examples.make_examples(t.encode() for t in validation_docs[:50])]
  assert stats["examples"] == stats["m1_examples"] == len(sizes)
  assert stats["tokens"] == stats["bytes"] == sum(min(s, 512) for s in sizes)
  assert stats["dropped"]["truncated"]["bytes"] == stats["bytes_in"] - stats["bytes"] > 0
  assert (tmp_path / "out" / "errors" / "errors.jsonl").read_text() == ""


def test_cli_errors_are_one_line(small_jsonl, tmp_path, capsys):
  out = tmp_path / "exists"
  out.mkdir()
  (out / "something").write_text("x")
  base = ["compress", "--input", str(small_jsonl), "--output", str(out)]
  cases = [
      (base + ["--method", "gzip[v=256]"], "--overwrite"),
      (base + ["--method", "zip[v=3]"], "valid forms"),
      (base + ["--method", "equal_info_ac[b=16,v=256]"], "pass --m1"),
      (base + ["--method", "ac[v=256]", "--m1", str(tmp_path / "no-m1")], "does not exist"),
      (["compress", "--input", str(tmp_path / "none-*.json.gz"), "--output", str(tmp_path / "o"),
        "--method", "bytes"], "matches no files"),
  ]
  for argv, expected in cases:
    assert cli.main(argv) == 1, argv
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
  assert (out / "something").exists()  # nothing was deleted


def test_trained_m1_directory_drives_equal_info(small_jsonl, webtext_dir, validation_docs,
                                                tmp_path):
  """--m1 DIR: a tiny M1 trained here codes real text on 2 workers, losslessly."""
  import jax  # pylint: disable=import-outside-toplevel
  from training import train_m1  # pylint: disable=import-outside-toplevel
  from training.m1 import float_m1 as m1  # pylint: disable=import-outside-toplevel
  assert train_m1.run(["--train", str(webtext_dir / "train" / "*.jsonl.gz"), "--size", "tiny",
                       "--steps", "60", "--batch_size", "8", "--seq_len", "128",
                       "--warmup", "20", "--log_every", "30", "--checkpoint_every", "60",
                       "--no_progress", "--out", str(tmp_path / "m1")]) == 0
  model = m1.load(tmp_path / "m1")
  stats = _compress(tmp_path / "out", MULTI, input=str(small_jsonl), m1=str(tmp_path / "m1"),
                    method="equal_info_ac[b=16,v=256]", batch_size=8)
  assert stats["m1_fingerprint"] == model.fingerprint and stats["m1"] == str(tmp_path / "m1")
  assert stats["m1_inference"] == "exact"  # train-m1 wrote DIR/exact; load prefers it
  device = jax.devices()[0]  # the exact M1 runs on JAX's default device
  assert stats["m1_devices"] == {f"{device.platform}:{device.device_kind}": stats["examples"]}
  assert stats["verification_failures"] == 0
  assert stats["bytes"] == stats["bytes_in"]
  assert stats["bytes"] / stats["tokens"] > 1.0  # a trained M1 compresses
  assert stats["coder"] == "vocabulary"
  method = m1_loader.build_method(stats["method"], stats["m1"])
  documents = _decoded_documents(method, _records(tmp_path / "out"))
  assert documents == [t.encode() for t in validation_docs[:50]]
  # M1 symbol by symbol writes the window vocabulary's shards, bit for bit.
  by_m1 = _compress(tmp_path / "by_m1", SINGLE, input=str(small_jsonl), m1=str(tmp_path / "m1"),
                    method="equal_info_ac[b=16,v=256]", batch_size=8,
                    coder="arithmetic")
  assert by_m1["coder"] == "arithmetic" and by_m1["verification_failures"] == 0
  assert _shards(tmp_path / "by_m1") == _shards(tmp_path / "out")


def test_shards_name_their_m1_from_any_directory(small_jsonl, tmp_path, monkeypatch, capsys):
  """A relative --m1 (here the fit corpus of a context model) is recorded as an absolute
  path, so `inspect --check` decodes from another working directory; where it is gone, the
  error says that stats.json named it."""
  work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
  (work / "data").mkdir(parents=True)
  elsewhere.mkdir()
  (work / "data" / "c4.jsonl.gz").write_bytes(small_jsonl.read_bytes())
  monkeypatch.chdir(work)
  assert cli.main(["compress", "--input", "data/c4.jsonl.gz", "--method",
                   "equal_info_ac[b=32,v=256]", "--m1", "context[order=2,fit=data/c4.jsonl.gz]",
                   "--output", "out", "--max_docs_per_file", "12"]) == 0
  stats = json.loads((work / "out" / shards.STATS).read_text())
  assert stats["coder"] == "arithmetic"  # b=32: decoding needs M1
  assert stats["m1"] == f"context[order=2,fit={work / 'data' / 'c4.jsonl.gz'}]"
  monkeypatch.chdir(elsewhere)
  capsys.readouterr()
  assert cli.main(["inspect", str(work / "out"), "--check"]) == 0
  assert f"check: {stats['examples']} of {stats['examples']} records" in capsys.readouterr().out
  # Another M1 would decode other text: refused, naming both fingerprints, unless overridden.
  other = f"context[order=1,fit={work / 'data' / 'c4.jsonl.gz'}]"
  theirs = m1_loader.fingerprint(m1_loader.build_method(stats["method"], other))
  for command in (["inspect", str(work / "out"), "--decode", "0"],
                  ["generate", "--checkpoint", str(work / "no-m2"), "--shards", str(work / "out")]):
    assert cli.main([*command, "--m1", other]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and theirs in err and stats["m1_fingerprint"] in err, err
    assert "--ignore_m1_fingerprint" in err
  assert cli.main(["inspect", str(work / "out"), "--decode", "0", "--m1", other,
                   "--ignore_m1_fingerprint"]) == 0
  capsys.readouterr()
  (work / "data" / "c4.jsonl.gz").unlink()
  assert cli.main(["inspect", str(work / "out"), "--decode", "0"]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and f"stats.json of {work / 'out'}" in err and "--m1" in err
