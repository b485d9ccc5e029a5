"""`eqinfo report`: shard and training rows from their files, beside the paper's figures."""
import json
import shutil

import numpy as np
import pytest

from pipelines import cli, paper, report
from training import shards as shards_lib


def test_paper_table2_ratios():
  assert paper.bytes_per_token("ac[v=256]") == 5.49
  assert paper.bytes_per_token("static_ac[v=65k]") == 3.46
  assert paper.bytes_per_token("equal_info_ac[b=16,v=256]") == 2.66
  assert paper.bytes_per_token("equal_info_ac[b=16,v=65k]") == 5.32
  assert paper.bytes_per_token("equal_info_ac[b=128,v=256]") == 4.61
  assert paper.bytes_per_token("bytes") == 1.0
  assert paper.bytes_per_token("equal_info_ac[b=24,v=256]") is None  # not in Table 2
  assert paper.bytes_per_token("gzip[v=256]") is None
  assert paper.m1_bits_per_byte("3m") == 1.457 and paper.m1_bits_per_byte("tiny") is None
  with pytest.raises(ValueError, match="bad method spec"):
    paper.bytes_per_token("equal_info_ac[b=16")


def test_size_names():
  assert report.size_name({"d_model": 256, "num_heads": 4, "num_layers": 3, "mlp_dim": 1024,
                           "head_dim": 64, "vocab_size": 258}) == "3m"
  assert report.size_name({"d_model": 512, "num_heads": 8, "num_layers": 6, "mlp_dim": 2048,
                           "head_dim": 64}) == "25m"
  assert report.size_name({"d_model": 512, "num_heads": 8, "num_layers": 5, "mlp_dim": 2048,
                           "head_dim": 64}) == "custom"


def test_report_of_shards_and_m2_run(m2_run, tmp_path, capsys):
  shards, run = m2_run
  out = tmp_path / "report.json"
  capsys.readouterr()
  assert cli.main(["report", str(shards), str(run), "--json", str(out)]) == 0
  text = capsys.readouterr().out
  result = json.loads(out.read_text())
  assert result["inputs"] == [str(shards), str(run)]
  stats = json.loads((shards / "stats.json").read_text())
  records = [r for p in shards_lib.shard_paths(str(shards))
             for r in shards_lib.read_shard(p)]
  tokens = sum(r["targets"].size for r in records)
  num_bytes = sum(int(r["num_bytes"][0]) for r in records)

  (row,) = result["compression"]
  assert row["method"] == "equal_info_ac[b=16,v=256]" and row["completed"] is True
  assert (row["examples"], row["tokens"], row["bytes"]) == (len(records), tokens, num_bytes)
  assert row["compression_ratio"] == num_bytes / tokens  # bytes/token, as in Table 2
  assert row["raw_bits_per_coded_bit"] == num_bytes / tokens  # the same for 8-bit tokens
  assert row["paper_compression_ratio"] == 2.66
  assert row["uniform_bits_per_byte"] == pytest.approx(8 * tokens / num_bytes, rel=1e-12)
  counts = np.bincount(np.concatenate([r["targets"] for r in records]), minlength=256)
  p = counts[counts > 0] / tokens
  assert row["unigram_bits_per_byte"] == pytest.approx(-(p * np.log2(p)).sum() * tokens
                                                       / num_bytes, rel=1e-12)
  assert row["records_verified"] == len(records) and row["bytes_dropped"] == 0
  assert stats["tokens"] == tokens

  (train_row,) = result["training"]
  lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  validation = [m for m in lines if m["split"] == "validation"][-1]
  assert train_row["kind"] == "m2" and train_row["method"] == "equal_info_ac[b=16,v=256]"
  assert (train_row["size"], train_row["step"], train_row["steps"]) == ("tiny", 4, 4)
  assert train_row["packed"] is True  # train-m2's default
  assert train_row["non_embedding_params"] == 106_944
  assert train_row["validation_bits_per_byte"] == validation["bits_per_byte"]
  assert train_row["flops_per_byte"] == validation["flops_per_byte"]
  assert validation["flops_per_byte"] == pytest.approx(  # §3.8; the context model adds none
      2 * 106_944 * validation["tokens"] / validation["bytes"], rel=1e-12)
  assert train_row["paper_bits_per_byte"] is None
  last_train = [m for m in lines if m["split"] == "train"][-1]
  assert train_row["bytes_per_step"] == last_train["bytes_per_step"] > 0

  assert f"| {shards} | equal_info_ac[b=16,v=256] |" in text
  assert f"| {num_bytes / tokens:.3f} | 2.66 |" in text
  assert f"| {run} | m2 | equal_info_ac[b=16,v=256] | tiny | 106944 | True | 4 | " \
         f"{validation['bits_per_byte']:.3f} | - |" in text


def test_train_text_of_a_glob_counts_every_directory_it_takes_whole(m2_run, tmp_path):
  shards, _ = m2_run
  text = json.loads((shards / "stats.json").read_text())["bytes"]
  assert shards_lib.text_bytes_of_glob(str(shards / "train-*.array_record")) == text
  second = tmp_path / "second"
  shutil.copytree(shards, second)
  both = tmp_path / "both"
  both.mkdir()
  shutil.copytree(shards, both / "a")
  shutil.copytree(shards, both / "b")
  assert shards_lib.text_bytes_of_glob(str(both / "*" / "train-*.array_record")) == 2 * text
  # A directory of two shards, of which the glob takes one: its text per shard is not known.
  (name,) = [s["name"] for s in json.loads((second / "stats.json").read_text())["shards"]]
  extra = name.replace("-00000.", "-00001.")
  assert extra != name
  shutil.copy(second / name, second / extra)
  stats = json.loads((second / "stats.json").read_text())
  stats["shards"].append({"name": extra, "records": stats["shards"][0]["records"]})
  (second / "stats.json").write_text(json.dumps(stats))
  assert shards_lib.text_bytes_of_glob(str(second / name)) is None
  assert shards_lib.text_bytes_of_glob(str(second / "train-*.array_record")) == text


def test_report_of_an_eval_result(m2_run, tmp_path, capsys):
  shards, run = m2_run
  result_file = tmp_path / "eval.json"
  assert cli.main(["eval", "--checkpoint", str(run), "--data", str(shards / "train-*"),
                   "--num_batches", "1", "--batch_size", "2", "--out", str(result_file)]) == 0
  printed = json.loads(capsys.readouterr().out)
  assert json.loads(result_file.read_text()) == printed
  (row,) = report.build([str(result_file)])["evaluation"]
  assert (row["checkpoint"], row["kind"], row["step"]) == (str(run), "m2", 4)
  assert (row["tokens"], row["bytes"]) == (printed["tokens"], printed["bytes"])
  assert (printed["batch_size"], printed["seq_len"], printed["num_batches"]) == (2, 512, 1)
  assert row["bits_per_byte"] == printed["bits_per_byte"]
  assert row["uniform_bits_per_byte"] == printed["baselines"]["uniform"]
  assert row["unigram_bits_per_byte"] == printed["baselines"]["unigram"]
  assert cli.main(["report", str(result_file)]) == 0
  assert f"| {printed['bits_per_byte']:.3f} | {printed['baselines']['uniform']:.3f} |" in \
      capsys.readouterr().out
  other = tmp_path / "other.json"
  other.write_text(json.dumps({"loss": 1.0}))
  assert cli.main(["report", str(other)]) == 1
  assert "not a result of eqinfo eval --out" in capsys.readouterr().err


def test_report_of_a_3m_m1_sets_the_paper_beside_it(tmp_path, capsys):
  out = tmp_path / "m1"
  assert cli.main(["train-m1", "--train", "builtin:pydoc", "--validation", "builtin:pydoc",
                   "--size", "3m", "--steps", "1", "--batch_size", "2", "--seq_len", "64",
                   "--warmup", "1", "--eval_batches", "1", "--no-exact", "--no_progress",
                   "--peak_flops", "1e12", "--out", str(out)]) == 0
  capsys.readouterr()
  assert cli.main(["report", str(out)]) == 0
  (row,) = report.build([str(out)])["training"]
  assert (row["kind"], row["size"], row["method"], row["step"]) == ("m1", "3m", None, 1)
  assert row["packed"] is None
  assert row["paper_bits_per_byte"] == 1.457
  assert row["non_embedding_params"] == 3_147_904  # gated MLP, as in Table 4's "3m"
  assert row["validation_bits_per_byte"] > 0
  assert "| 1.457 |" in capsys.readouterr().out


def test_report_marks_an_unfinished_job_and_rejects_other_directories(m2_run, tmp_path, capsys):
  unfinished = tmp_path / "unfinished"
  unfinished.mkdir()
  shutil.copy(m2_run[0] / "stats.json", unfinished / "stats.json")  # no COMPLETED
  (row,) = report.build([str(unfinished)])["compression"]
  assert row["completed"] is False
  assert cli.main(["report", str(tmp_path)]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert "neither a shard directory" in err and "train-m2" in err
  assert cli.main(["report", str(tmp_path / "elsewhere")]) == 1
  assert "elsewhere' does not exist" in capsys.readouterr().err
  (unfinished / "stats.json").write_text('{"method": "bytes", "tok')  # cut short
  (unfinished / "COMPLETED").write_text("")
  for argv in (["report", str(unfinished)],
               ["generate", "--checkpoint", str(m2_run[1]), "--shards", str(unfinished)]):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{unfinished / 'stats.json'} is not valid JSON" in err


def test_sentencepiece_ratio_is_the_same_in_codec_inspect_and_report(train_docs, tmp_path,
                                                                     capsys):
  """One compression ratio everywhere (bytes/token, the paper's Table 2), and SentencePiece
  tokens take ceil(log2 vocab) bits everywhere, not the 8 of a byte."""
  from compressor import sentencepiece_train  # pylint: disable=import-outside-toplevel
  model = sentencepiece_train.train_sentencepiece(train_docs[:300], str(tmp_path / "sp"), 600)
  spec = f"sentencepiece[path={model}]"
  out = tmp_path / "shards"
  assert cli.main(["compress", "--input", "builtin:pydoc", "--method", spec, "--output", str(out),
                   "--max_docs_per_file", "1"]) == 0
  stats = json.loads((out / "stats.json").read_text())
  assert stats["token_bits"] == 10  # about 600 pieces
  ratio = stats["bytes"] / stats["tokens"]
  bits_ratio = 8 * stats["bytes"] / (10 * stats["tokens"])
  text = tmp_path / "topic.txt"  # the one topic the shards hold, without its EOS
  from pydoc_data import topics  # pylint: disable=import-outside-toplevel
  text.write_text(topics.topics[sorted(topics.topics)[0]])
  capsys.readouterr()
  assert cli.main(["codec", "--input", str(text), "--method", spec]) == 0
  by_codec = json.loads(capsys.readouterr().out)
  assert by_codec["compression_ratio"] == round(ratio, 4)
  assert by_codec["raw_bits_per_coded_bit"] == round(bits_ratio, 4)
  assert cli.main(["codec", "--input", str(text), "--method", "bytes"]) == 0
  by_codec = json.loads(capsys.readouterr().out)  # a Bytes token counts as a byte, as in stats
  assert by_codec["compression_ratio"] == by_codec["raw_bits_per_coded_bit"] == 1.0
  assert cli.main(["inspect", str(out)]) == 0
  line = (f"compression ratio {ratio:.3f} bytes/token (paper Table 2); "
          f"{bits_ratio:.3f} raw bits per coded bit (10-bit tokens)")
  assert line in capsys.readouterr().out
  row = report.shard_row(str(out))
  assert row["compression_ratio"] == pytest.approx(ratio)
  assert row["raw_bits_per_coded_bit"] == pytest.approx(bits_ratio)
