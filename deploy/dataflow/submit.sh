#!/usr/bin/env bash
# Submits `eqinfo compress` to Dataflow with one accelerator per worker.
#
# Usage:
#   deploy/dataflow/submit.sh PROJECT BUCKET METHOD M1 [extra eqinfo/Beam flags...]
# e.g.
#   deploy/dataflow/submit.sh my-proj my-bucket 'equal_info_ac[b=16,v=65k]' gs://my-bucket/m1/3m \
#       --input 'gs://my-bucket/c4/en/c4-train.*.json.gz' --split train --num_shards 4096
#
# Environment: ACCELERATOR (nvidia-l4, tpu-v5e or tpu-v6e; default nvidia-l4),
# REGION (us-central1), IMAGE (the worker image built from deploy/dataflow/Dockerfile,
# with --build-arg ACCELERATOR=tpu for TPUs), MACHINE_TYPE (from ACCELERATOR),
# MAX_WORKERS (64), OUTPUT (gs://BUCKET/shards/<method>/<split>).
# PRINT_ARGS=1 prints the eqinfo arguments, one per line, instead of submitting.
# Run from the repository root.
set -euo pipefail

if [[ $# -lt 4 ]]; then
  sed -n '2,16p' "$0"
  exit 2
fi
PROJECT="$1"; BUCKET="$2"; METHOD="$3"; M1="$4"; shift 4

# One accelerator per worker VM: Dataflow's accelerator option and the machine type it needs.
ACCELERATOR="${ACCELERATOR:-nvidia-l4}"
case "${ACCELERATOR}" in
  nvidia-l4)
    SERVICE_OPTIONS="worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
    DEFAULT_MACHINE_TYPE="g2-standard-8"; IMAGE_NAME="worker" ;;
  tpu-v5e)
    SERVICE_OPTIONS="worker_accelerator=type:tpu-v5-lite-podslice;topology:1x1"
    DEFAULT_MACHINE_TYPE="ct5lp-hightpu-1t"; IMAGE_NAME="worker-tpu" ;;
  tpu-v6e)
    SERVICE_OPTIONS="worker_accelerator=type:tpu-v6e-slice;topology:1x1"
    DEFAULT_MACHINE_TYPE="ct6e-standard-1t"; IMAGE_NAME="worker-tpu" ;;
  *)
    echo "submit.sh: ACCELERATOR must be nvidia-l4, tpu-v5e or tpu-v6e, got '${ACCELERATOR}'" >&2
    exit 2 ;;
esac

REGION="${REGION:-us-central1}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/eqinfo/${IMAGE_NAME}:latest}"
MACHINE_TYPE="${MACHINE_TYPE:-${DEFAULT_MACHINE_TYPE}}"
MAX_WORKERS="${MAX_WORKERS:-64}"
SAFE_METHOD="$(echo "${METHOD}" | tr -c 'a-z0-9\n' '-' | sed 's/-\+/-/g; s/-$//')"
OUTPUT="${OUTPUT:-gs://${BUCKET}/shards/${SAFE_METHOD}/train}"
JOB_NAME="${JOB_NAME:-eqinfo-compress-${SAFE_METHOD}-$(date -u +%Y%m%d-%H%M%S)}"

ARGS=(
  compress
  --method "${METHOD}"
  --m1 "${M1}"
  --output "${OUTPUT}"
  --packing continue --max_tokens 512 --batch_size 1024
  --verify_fraction 0.01 --verify_device cpu
  --runner DataflowRunner
  --project "${PROJECT}"
  --region "${REGION}"
  --job_name "${JOB_NAME}"
  --temp_location "gs://${BUCKET}/tmp"
  --staging_location "gs://${BUCKET}/staging"
  --setup_file ./setup.py
  --sdk_container_image "${IMAGE}"
  --sdk_location container
  --experiments use_runner_v2
  --experiments no_use_multiple_sdk_containers
  --machine_type "${MACHINE_TYPE}"
  --disk_size_gb 100
  --dataflow_service_options "${SERVICE_OPTIONS}"
  --number_of_worker_harness_threads 1
  --max_num_workers "${MAX_WORKERS}"
  "$@"
)
if [[ -n "${PRINT_ARGS:-}" ]]; then
  printf '%s\n' "${ARGS[@]}"
  exit 0
fi
cd "$(dirname "$0")/../.."
exec python -m pipelines.cli "${ARGS[@]}"
