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
# tpu-vm: a TPU VM slice; the command runs on every worker with --multihost
#   (jax.distributed.initialize() finds the slice by itself), each worker
#   reading its own part of the data.
# local: this machine, with its GPUs if `docker --gpus` works.
#
# Environment: IMAGE (REGION-docker.pkg.dev/PROJECT/eqinfo/train:latest, built from
# deploy/training/Dockerfile; for TPUs build with --build-arg ACCELERATOR=tpu).
# Write --out to gs:// on VMs: a preempted or failed run restarted with the same
# command resumes from its last checkpoint (params, optimiser and data position).
set -euo pipefail

usage() { sed -n '2,21p' "$0"; exit 2; }
[[ $# -ge 2 ]] || usage
MODE="$1"; shift
IMAGE="${IMAGE:?set IMAGE to the training image (see deploy/training/Dockerfile)}"

quote() { printf '%q ' "$@"; }

case "${MODE}" in
  local)
    [[ "$1" == "--" ]] || usage; shift
    exec docker run --rm --gpus all --ipc host -v "${PWD}:${PWD}" -w "${PWD}" "${IMAGE}" "$@"
    ;;
  gpu-vm)
    [[ $# -ge 3 && "$3" == "--" ]] || usage
    VM="$1"; ZONE="$2"; shift 3
    CMD="docker run --rm --gpus all --ipc host ${IMAGE} $(quote "$@")"
    exec gcloud compute ssh "${VM}" --zone "${ZONE}" --command "${CMD}"
    ;;
  tpu-vm)
    [[ $# -ge 3 && "$3" == "--" ]] || usage
    TPU="$1"; ZONE="$2"; shift 3
    CMD="sudo docker run --rm --privileged --net host ${IMAGE} $(quote "$@") --multihost"
    exec gcloud compute tpus tpu-vm ssh "${TPU}" --zone "${ZONE}" --worker all --command "${CMD}"
    ;;
  *)
    usage
    ;;
esac
