"""`eqinfo reproduce --scale smoke`: every stage through the project's own commands, every
table and figure written, their numbers those of the runs they came from, and a rerun that
skips what finished."""
import json
import math
import pathlib
import shutil
import statistics

import pytest

from pipelines import claims, figures, m1_loader, reproduce, stability
from tests.conftest import REPO
from training import shards


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("reproduce") / "smoke"
  with pytest.MonkeyPatch.context() as mp:
    mp.chdir(REPO)  # the smoke scale validates on pipelines/scales/*.toml
    assert reproduce.run(["--scale", "smoke", "--out", str(out)]) == 0
  return out


def test_every_table_and_figure_is_written(smoke):
  scale = reproduce.load_scale("smoke")
  stages = reproduce.plan(scale, reproduce.Layout(smoke))
  assert len(stages) == 2 + 2 * 9 + 2 * 9  # sentencepiece, m1; compress x 2 splits; m2, eval
  assert sorted(p.stem for p in (smoke / "stages").glob("*.json")) == sorted(
      s.name for s in stages)
  result = json.loads((smoke / "report.json").read_text())
  assert len(result["compression"]) == 18 and len(result["evaluation"]) == 9
  assert len(result["training"]) == 1 + 9  # M1 and one M2 per method
  assert [f["name"] for f in result["figures"]] == [
      "fig3_bits_per_byte_vs_flops", "learning_curves", "fig8_stability",
      "window_position_accuracy"]
  for figure in result["figures"]:
    for fmt in ("png", "svg"):
      assert pathlib.Path(figure["files"][fmt]).stat().st_size > 1000
  report_md = (smoke / "report.md").read_text()
  assert "figures/fig3_bits_per_byte_vs_flops.png" in report_md
  assert "equal_info_ac[b=16,v=65k]" in report_md
  recorded = json.loads((smoke / "reproduce.json").read_text())
  assert recorded["scale"]["methods"] == list(scale.methods)
  assert [s["command_line"] for s in recorded["stages"]] == [s.command_line() for s in stages]
  run = json.loads((smoke / "run.json").read_text())
  assert set(run["stages"]) == {s.name for s in stages} and run["machine"]["cpu_count"] >= 1
  assert sum(run["seconds_by_command"].values()) == pytest.approx(run["seconds_of_stages"],
                                                                  abs=0.5)
  assert f"- command: `eqinfo reproduce --scale smoke --out {smoke}`" in report_md


def test_report_numbers_are_those_of_the_runs(smoke):
  result = json.loads((smoke / "report.json").read_text())
  for row in result["compression"]:
    stats = shards.load_stats(row["directory"])
    assert row["compression_ratio"] == stats["bytes"] / stats["tokens"]
    assert row["completed"] and stats["verification_failures"] == 0 < stats["records_verified"]
    assert stats["bytes_in"] == stats["bytes"] + stats["bytes_dropped"]
  evals = {row["path"]: json.loads(pathlib.Path(row["path"]).read_text())
           for row in result["evaluation"]}
  for row in result["evaluation"]:
    assert row["bits_per_byte"] == evals[row["path"]]["bits_per_byte"]
  (fig3,) = [f for f in result["figures"] if f["name"] == "fig3_bits_per_byte_vs_flops"]
  assert len(fig3["data"]) == 9 and "sentencepiece" in fig3["data"]
  for points in fig3["data"].values():
    for p in points:
      e = evals[p["eval"]]
      assert (p["bits_per_byte"], p["flops_per_byte"], p["uniform"], p["unigram"]) == (
          e["bits_per_byte"], e["flops_per_byte"], e["baselines"]["uniform"],
          e["baselines"]["unigram"])
  for row in result["training"]:  # epochs: text bytes of the steps over the train text
    if row["kind"] == "m1":
      assert row["epochs"] is None
      continue
    train = [json.loads(l) for l in (pathlib.Path(row["directory"]) / "metrics.jsonl")
             .read_text().splitlines() if '"train"' in l]
    config = json.loads((pathlib.Path(row["directory"]) / "config.json").read_text())
    text = shards.load_stats(str(pathlib.Path(config["data"]["train"]).parent))["bytes"]
    steps = [0] + [r["step"] for r in train]
    seen = sum(r["bytes_per_step"] * (b - a) for r, a, b in zip(train, steps, steps[1:]))
    assert row["epochs"] == pytest.approx(seen / text) and row["epochs"] > 0
  (curves,) = [f for f in result["figures"] if f["name"] == "learning_curves"]
  for run, points in curves["data"].items():
    records = [json.loads(l) for l in (pathlib.Path(run) / "metrics.jsonl").read_text()
               .splitlines() if l.strip()]
    validation = [(r["step"], r["bits_per_byte"]) for r in records if r["split"] == "validation"]
    assert [(p["step"], p["bits_per_byte"]) for p in points] == validation and validation
    assert all(p["bytes_seen"] > 0 and math.isfinite(p["bytes_seen"]) for p in points)


def test_the_papers_findings_are_checked_with_the_runs_numbers(smoke):
  result = json.loads((smoke / "report.json").read_text())
  found = result["claims"]
  assert [c["claim"] for c in found] == [name for name, _, _ in claims.CLAIMS]
  assert all(c["verdict"] in ("held", "did not hold") for c in found)  # all measured
  train = {claims.method_key(r["method"]): r for r in result["compression"]
           if r["directory"].endswith("/train")}
  assert found[0]["ratios"] == {m: train[m]["compression_ratio"] for m in claims.TABLE2_ORDER}
  ratios = list(found[0]["ratios"].values())
  assert found[0]["held"] == (ratios == sorted(set(ratios)))
  share = {m: train[m]["unigram_bits_per_byte"] / train[m]["uniform_bits_per_byte"]
           for m in ("ac[v=256]", "static_ac[v=256]", "bytes", "sentencepiece")}
  assert found[1]["unigram_over_uniform"] == share
  (fig3,) = [f for f in result["figures"] if f["name"] == "fig3_bits_per_byte_vs_flops"]
  for method, ratio in found[2]["bits_per_byte_over_best_baseline"].items():
    e = json.loads(pathlib.Path(fig3["data"][method][-1]["eval"]).read_text())
    assert ratio == e["bits_per_byte"] / min(e["baselines"].values())
  distances = result["tokenization"]["edit_distances"]
  assert found[3]["medians"] == {claims.method_key(m): statistics.median(d)
                                 for m, d in distances.items()}
  b16 = reproduce.Layout(smoke).m2("equal_info_ac[b=16,v=256]", "tiny")
  last = [json.loads(l) for l in (pathlib.Path(b16) / "metrics.jsonl").read_text()
          .splitlines() if '"validation"' in l][-1]
  assert [found[4]["first"], found[4]["second"]] == last["accuracy_by_window_position"]
  assert found[4]["held"] == (found[4]["first"] > found[4]["second"])
  assert "| Window-initial tokens" in (smoke / "report.md").read_text()


def test_m2_counts_accuracy_by_window_position_where_windows_hold_several_tokens(smoke):
  """b=16 with 8-bit tokens: two tokens per window, so M2's validation (train-m2 and eval)
  counts accuracy on each; v=65k (a token is a window) and bytes count none."""
  layout = reproduce.Layout(smoke)
  for method, k in (("equal_info_ac[b=16,v=256]", 2), ("equal_info_ac[b=32,v=256]", 4),
                    ("equal_info_ac[b=16,v=65k]", 0), ("bytes", 0)):
    records = [json.loads(l) for l in (pathlib.Path(layout.m2(method, "tiny")) / "metrics.jsonl")
               .read_text().splitlines() if l.strip()]
    validation = [r for r in records if r["split"] == "validation"]
    result = json.loads(pathlib.Path(layout.eval_file(method, "tiny")).read_text())
    for r in validation + [result]:
      assert len(r.get("accuracy_by_window_position", [])) == k, (method, r)
      if k:
        assert 0 <= min(r["accuracy_by_window_position"]) <= r["accuracy"] <= max(
            r["accuracy_by_window_position"]) <= 1
  report_json = json.loads((smoke / "report.json").read_text())
  (figure,) = [f for f in report_json["figures"] if f["name"] == "window_position_accuracy"]
  assert set(figure["data"]) == {layout.m2(m, "tiny") for m in (
      "equal_info_ac[b=16,v=256]", "equal_info_ac[b=32,v=256]", "equal_info_ac[b=64,v=256]")}


def test_tokenization_study_is_that_of_the_models_trained(smoke):
  """Fig. 8 and Table 7 come from the grid's own SentencePiece model and M1."""
  result = json.loads((smoke / "report.json").read_text())
  study = result["tokenization"]
  assert len(study["prefixes"]) == stability.NUM_PREFIXES == len(set(study["prefixes"]))
  assert set(study["edit_distances"]) == set(reproduce.STABILITY_METHODS)
  assert all(len(d) == stability.NUM_PREFIXES for d in study["edit_distances"].values())
  layout = reproduce.Layout(smoke)
  sp = m1_loader.build_method(reproduce.method_spec("sentencepiece", layout), None)
  assert study["edit_distances"]["sentencepiece"] == stability.edit_distances(
      sp, study["sentence"], study["prefixes"])
  assert "".join(study["segments"]["sentencepiece"]) == study["sentence"]
  assert "".join(study["segments"]["equal_info_ac[b=16,v=65k]"]) == study["sentence"]
  (fig8,) = [f for f in result["figures"] if f["name"] == "fig8_stability"]
  assert fig8["data"]["medians"] == {m: statistics.median(d)
                                     for m, d in study["edit_distances"].items()}
  assert "Table 7" in (smoke / "report.md").read_text()


def test_a_rerun_skips_finished_stages_and_reruns_changed_ones(smoke, monkeypatch):
  monkeypatch.chdir(REPO)
  scale = reproduce.load_scale("smoke")

  def must_not_run(argv):
    raise AssertionError(f"ran {argv}")

  layout = reproduce.Layout(smoke)
  assert reproduce.run_stages(reproduce.plan(scale, layout), smoke, must_not_run) == []
  ran = []

  def record(argv):
    ran.append(argv[0])
    return reproduce._run_command(argv)  # pylint: disable=protected-access

  fewer = reproduce.dataclasses.replace(scale, flags={**scale.flags, "eval": ["--num_batches",
                                                                             "1"]})
  done = reproduce.run_stages(reproduce.plan(fewer, layout), smoke, record)
  assert ran == ["eval"] * 9 and all(name.startswith("eval-") for name in done)


def test_a_changed_stage_reruns_every_stage_that_reads_its_output(smoke, tmp_path,
                                                                 monkeypatch):
  """New M1 flags: M1, the shards of the methods it codes, their M2s and evals run again;
  SentencePiece, Bytes and StaticAC (a unigram fit) and their M2s do not."""
  monkeypatch.chdir(REPO)
  scale = reproduce.load_scale("smoke")
  shutil.copytree(smoke / "stages", tmp_path / "stages")  # the records, not the outputs
  layout = reproduce.Layout(smoke)
  stages = reproduce.plan(scale, layout)
  reproduce.run_stages(stages, tmp_path, lambda argv: 0)  # whatever another test changed
  assert reproduce.unfinished(stages, tmp_path) == []
  other_m1 = reproduce.dataclasses.replace(
      scale, flags={**scale.flags, "train_m1": [*scale.flags["train_m1"], "--seed", "7"]})
  ran = reproduce.run_stages(reproduce.plan(other_m1, layout), tmp_path, lambda argv: 0)
  coded_by_m1 = [m for m in scale.methods if reproduce.uses_m1(m)]
  assert len(coded_by_m1) == 5  # ac and the four equal_info_ac
  assert sorted(ran) == sorted(
      ["m1"] + [f"{kind}-{reproduce.shards.sanitize_spec(m)}-{part}" for m in coded_by_m1
                for kind, parts in (("compress", reproduce.SPLITS),
                                    ("m2", scale.m2_sizes), ("eval", scale.m2_sizes))
                for part in parts])
  assert reproduce.unfinished(reproduce.plan(other_m1, layout), tmp_path) == []
  # Validation shards coded again: the M2 that validated on them and its eval run again.
  (coded,) = [s for s in stages if s.name == "compress-bytes-validation"]
  reproduce.run_stage(coded, tmp_path, lambda argv: 0)
  assert [s.name for s in reproduce.unfinished(stages, tmp_path) if "bytes" in s.name] == [
      "m2-bytes-tiny", "eval-bytes-tiny"]


def test_a_killed_stage_resumes_and_a_stage_with_new_inputs_starts_afresh(tmp_path):
  out = tmp_path / "repro"
  seen = []

  def stages(version):
    return [reproduce.Stage("data", "compress", ("--v", version), str(out / "data")),
            reproduce.Stage("m2", "train-m2", (), str(out / "m2"), ("data",))]

  def command(argv, kill=False):
    path = out / ("data" if argv[0] == "compress" else "m2")
    seen.append((argv[0], sorted(p.name for p in path.iterdir()) if path.exists() else None))
    path.mkdir(parents=True, exist_ok=True)
    (path / f"checkpoint{len(seen)}").write_text("")
    if kill and argv[0] == "train-m2":
      raise KeyboardInterrupt  # killed mid-way: no record
    return 0

  with pytest.raises(KeyboardInterrupt):
    reproduce.run_stages(stages("1"), out, lambda argv: command(argv, kill=True))
  assert reproduce.run_stages(stages("1"), out, command) == ["m2"]
  assert seen == [("compress", None), ("train-m2", None), ("train-m2", ["checkpoint2"])]
  seen.clear()  # new data: the M2 does not resume the one trained on the old
  assert reproduce.run_stages(stages("2"), out, command) == ["data", "m2"]
  assert seen == [("compress", None), ("train-m2", None)]
  assert reproduce.unfinished(stages("2"), out) == []
  assert sorted(p.name for p in (out / "stages").iterdir()) == ["data.json", "m2.json"]


def test_records_from_before_inputs_were_recorded_are_trusted(tmp_path):
  stage = reproduce.Stage("m2", "train-m2", (), "", ("data",))
  (tmp_path / "stages").mkdir()
  (tmp_path / "stages" / "m2.json").write_text(json.dumps(
      {"command_line": stage.command_line(), "seconds": 1.0}))
  assert reproduce.finished(tmp_path, stage)


def test_time_left_is_the_mean_of_finished_stages_of_each_command(tmp_path):
  stages = [reproduce.Stage(f"s{i}", command, (), "") for i, command in
            enumerate(["train-m1", "compress", "compress", "compress", "train-m2", "eval"])]
  assert reproduce.time_left(stages, tmp_path) == (0, ["train-m1", "compress", "train-m2",
                                                       "eval"])
  seconds = iter([100.0, 2.0, 4.0])
  reproduce.run_stages(stages[:3], tmp_path, lambda argv: 0)
  for stage in stages[:3]:  # the records' seconds, as if the stages took them
    path = tmp_path / "stages" / f"{stage.name}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "seconds": next(seconds)}))
  # one compress left, at the mean of two: 3 s; train-m2 and eval have not been timed
  assert reproduce.time_left(stages, tmp_path) == (3.0, ["train-m2", "eval"])
  text = reproduce._progress_text  # pylint: disable=protected-access
  assert (text(stages[3], (180.0, ["train-m2", "eval"]))
          == "s3; at least 3 min left (+ train-m2, eval: not timed yet)")
  assert text(stages[3], (180.0, [])) == "s3; about 3 min left"


def test_scale_files_are_checked(tmp_path):
  with pytest.raises(FileNotFoundError, match="no such scale"):
    reproduce.load_scale("huge")
  bad = tmp_path / "bad.toml"
  bad.write_text((reproduce.SCALES_DIR / "smoke.toml").read_text().replace(
      "m2_sizes", "m2_size"))
  with pytest.raises(ValueError, match=r"missing \['m2_sizes'\], unknown \['m2_size'\]"):
    reproduce.load_scale(str(bad))
  assert set(reproduce.SCALES) == {"cpu", "gpu", "smoke"}
  for name in reproduce.SCALES:
    scale = reproduce.load_scale(name)
    assert scale.methods[0] == "bytes" and len(scale.methods) == 9
  assert reproduce.load_scale("cpu", train="jsonl:c4/*.json.gz").train == "jsonl:c4/*.json.gz"


def test_claims_say_how_the_numbers_compare_and_fig8_takes_the_median(tmp_path):
  assert claims.ordering([1.69, 2.27, 2.27, 1.0]) == "1.69 < 2.27 = 2.27 > 1.00"
  assert claims.ordering([2, 2, 52], "{:g}") == "2 = 2 < 52"
  drawn = figures.draw_fig8({"sentencepiece": [1] * 50 + [3] * 50, "ac[v=256]": [5, 1, 9]},
                            tmp_path)
  assert drawn["data"]["medians"] == {"sentencepiece": 2, "ac[v=256]": 5}
