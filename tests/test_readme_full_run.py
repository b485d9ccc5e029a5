"""README.md's "A full run", run as written at its tiny scale, so the two cannot drift."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

from tests.conftest import REPO

SECTION = "## A full run"


def full_run_blocks(readme: str) -> list[str]:
  """The bash blocks of README's "A full run": [paper scale, tiny scale, the commands]."""
  section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_full_run_has_its_three_blocks():
  paper, tiny, commands = full_run_blocks((REPO / "README.md").read_text(encoding="utf-8"))
  for scale in (paper, tiny):
    assert {"TRAIN", "VALIDATION", "M1_FLAGS", "M2_FLAGS", "COMPRESS_FLAGS"} <= set(
        re.findall(r"\b([A-Z0-9_]+)=", scale))
  assert "--steps 200000" in paper and "--size 3m" in paper and "--size 25m" in paper
  for command in ("train-m1", "compress", "train-m2", "eval", "generate", "report"):
    assert f"eqinfo {command} " in commands


def test_the_tiny_full_run_runs_as_written(tmp_path):
  _, tiny, commands = full_run_blocks((REPO / "README.md").read_text(encoding="utf-8"))
  (tmp_path / "docs").mkdir()
  shutil.copy(REPO / "docs" / "DESIGN.md", tmp_path / "docs" / "DESIGN.md")  # the tiny VALIDATION
  env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}"
                               f"{os.environ.get('PATH', '')}", "TF_CPP_MIN_LOG_LEVEL": "3"}
  script = "set -euo pipefail\n" + tiny + commands
  proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                        text=True, check=False, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for split in ("train", "validation"):
    stats = json.loads((tmp_path / "shards" / split / "stats.json").read_text())
    assert (tmp_path / "shards" / split / "COMPLETED").exists()
    assert stats["verification_failures"] == 0 and stats["bytes_dropped"] == 0
    assert stats["method"] == "equal_info_ac[b=16,v=65k]" and stats["coder"] == "vocabulary"
  evaluation = json.loads((tmp_path / "runs" / "m2" / "eval-validation.json").read_text())
  validation = json.loads((tmp_path / "shards" / "validation" / "stats.json").read_text())
  assert evaluation["bytes"] == validation["bytes"]  # every validation record scored
  report = json.loads((tmp_path / "report.json").read_text())
  assert [row["method"] for row in report["compression"]] == ["equal_info_ac[b=16,v=65k]"] * 2
  assert {row["kind"] for row in report["training"]} == {"m1", "m2"}
  samples = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"tokens"')]
  assert len(samples) == 4 and all("text" in sample for sample in samples)
  # The shards name their M1 (`--m1 runs/m1`, relative) so that another directory finds it.
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  again = subprocess.run(
      ["bash", "-c", f"set -euo pipefail\neqinfo inspect {tmp_path}/shards/train --decode 0\n"
                     f"eqinfo generate --checkpoint {tmp_path}/runs/m2 --shards "
                     f"{tmp_path}/shards/train --num_samples 1"],
      cwd=elsewhere, env=env, capture_output=True, text=True, check=False, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "record 0:" in again.stdout and '"text"' in again.stdout
