"""deploy/training/launch.sh as written: the commands it runs, seen through stand-in tools."""
import os
import pathlib
import subprocess

from tests.conftest import REPO

LAUNCH = REPO / "deploy" / "training" / "launch.sh"


def launch(tmp_path: pathlib.Path, *argv: str, **env: str) -> list[str]:
  """Runs launch.sh with `docker` and `gcloud` that print their arguments; returns them."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  for tool in ("docker", "gcloud"):
    (bin_dir / tool).write_text(f'#!/bin/sh\nprintf "{tool} %s\\n" "$*"\n')
    (bin_dir / tool).chmod(0o755)
  path = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"  # no nvidia-smi: no GPUs here
  done = subprocess.run(["bash", str(LAUNCH), *argv], capture_output=True, text=True,
                        check=True, timeout=60,
                        env={"PATH": path, "HOME": str(tmp_path), "IMAGE": "img", **env})
  return done.stdout.split()


def test_local_runs_without_gpus_where_there_are_none(tmp_path):
  args = launch(tmp_path, "local", "--", "train-m1", "--train", "builtin:pydoc")
  assert args[0] == "docker" and "--gpus" not in args
  assert args[-3:] == ["train-m1", "--train", "builtin:pydoc"]


def test_vms_mount_the_bucket_and_insist_on_their_accelerator(tmp_path):
  args = " ".join(launch(tmp_path, "gpu-vm", "vm", "zone", "--", "train-m2", "--train",
                         "/gcs/shards/train-*.array_record", BUCKET="my-bucket"))
  assert "gcsfuse --implicit-dirs -o ro my-bucket $HOME/gcs" in args
  assert "-v $HOME/gcs:/gcs:ro" in args and "--gpus all" in args
  assert args.endswith("--accelerator gpu")
  args = " ".join(launch(tmp_path, "tpu-vm", "tpu", "zone", "--", "train-m2", "--train", "t"))
  assert "gcsfuse" not in args and args.endswith("--accelerator tpu --multihost")
  args = " ".join(launch(tmp_path, "tpu-vm", "tpu", "zone", "--", "eval", "--checkpoint", "c"))
  assert args.endswith("--accelerator tpu")  # only training runs across the slice's hosts
  args = " ".join(launch(tmp_path, "gpu-vm", "vm", "zone", "--", "quantize-m1", "--m1", "m"))
  assert "--accelerator" not in args  # a command without the flag gets none
