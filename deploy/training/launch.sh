#!/usr/bin/env bash
# Runs an eqinfo training command in the training image on a GPU VM or a Cloud TPU VM.
#
# Usage:
#   deploy/training/launch.sh gpu-vm VM ZONE -- train-m2 --train ... --out gs://... [flags]
#   deploy/training/launch.sh tpu-vm TPU ZONE -- train-m2 --train ... --out gs://... [flags]
#   deploy/training/launch.sh local -- train-m1 --train ... --out runs/m1 [flags]
#
# gpu-vm: one VM with NVIDIA GPUs and Docker (a Deep Learning VM image); every
#   local GPU is one device of the "data" mesh axis.
# tpu-vm: a TPU VM slice; the command runs on every worker, and train-m1 and
#   train-m2 get --multihost (jax.distributed.initialize() finds the slice by
#   itself), each worker reading its own part of the data.
# local: this machine, with its GPUs where nvidia-smi finds some.
#
# Environment: IMAGE (REGION-docker.pkg.dev/PROJECT/eqinfo/train:latest, built from
# deploy/training/Dockerfile; for TPUs build with --build-arg ACCELERATOR=tpu);
# BUCKET (on VMs: mounted read-only at /gcs in the container with gcsfuse, so
# `--train '/gcs/shards/.../train-*.array_record'` reads the shards from it).
# On VMs the commands that take it get `--accelerator gpu` or `tpu`: a VM whose
# accelerator JAX cannot see stops at once instead of training on its CPUs.
# Write --out to gs:// on VMs: a preempted or failed run restarted with the same
# command resumes from its last checkpoint (params, optimiser and data position);
# a SIGTERM (preemption, maintenance) saves one at the current step first.
set -euo pipefail

usage() { sed -n '2,28p' "$0"; exit 2; }
[[ $# -ge 2 ]] || usage
MODE="$1"; shift
IMAGE="${IMAGE:?set IMAGE to the training image (see deploy/training/Dockerfile)}"

quote() { printf '%q ' "$@"; }

# `--accelerator KIND` after the commands that take it.
with_accelerator() {
  local kind="$1"; shift
  case "$1" in
    train-m1|train-m2|eval|generate|check-devices) quote "$@" --accelerator "${kind}" ;;
    *) quote "$@" ;;
  esac
}

# On a VM: mount BUCKET read-only with gcsfuse and pass it into the container at /gcs.
MOUNT=""; VOLUME=""
if [[ -n "${BUCKET:-}" ]]; then
  MOUNT="mkdir -p \$HOME/gcs && (mountpoint -q \$HOME/gcs || gcsfuse --implicit-dirs -o ro"
  MOUNT+=" ${BUCKET} \$HOME/gcs) && "
  VOLUME="-v \$HOME/gcs:/gcs:ro"
fi

case "${MODE}" in
  local)
    [[ "$1" == "--" ]] || usage; shift
    GPUS=()
    if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
      GPUS=(--gpus all)
    fi
    exec docker run --rm "${GPUS[@]}" --ipc host -v "${PWD}:${PWD}" -w "${PWD}" "${IMAGE}" "$@"
    ;;
  gpu-vm)
    [[ $# -ge 3 && "$3" == "--" ]] || usage
    VM="$1"; ZONE="$2"; shift 3
    CMD="${MOUNT}docker run --rm --gpus all --ipc host ${VOLUME} ${IMAGE}"
    CMD+=" $(with_accelerator gpu "$@")"
    exec gcloud compute ssh "${VM}" --zone "${ZONE}" --command "${CMD}"
    ;;
  tpu-vm)
    [[ $# -ge 3 && "$3" == "--" ]] || usage
    TPU="$1"; ZONE="$2"; shift 3
    CMD="${MOUNT}sudo docker run --rm --privileged --net host ${VOLUME} ${IMAGE}"
    CMD+=" $(with_accelerator tpu "$@")"
    case "$1" in train-m1|train-m2) CMD+=" --multihost" ;; esac
    exec gcloud compute tpus tpu-vm ssh "${TPU}" --zone "${ZONE}" --worker all --command "${CMD}"
    ;;
  *)
    usage
    ;;
esac
