#!/usr/bin/env bash
# Submits `eqinfo compress` to Dataflow: CPU workers where the window vocabulary codes
# (equal_info_ac[b=16,...]: M1 runs once, on one worker), one accelerator per worker
# where M1 codes symbol by symbol.
#
# Usage:
#   deploy/dataflow/submit.sh PROJECT BUCKET METHOD M1 [extra eqinfo/Beam flags...]
# e.g.
#   IMAGE=us-central1-docker.pkg.dev/my-proj/eqinfo/worker@sha256:... \
#   deploy/dataflow/submit.sh my-proj my-bucket 'equal_info_ac[b=16,v=65k]' gs://my-bucket/m1/3m \
#       --input 'gs://my-bucket/c4/en/c4-train.*.json.gz' --split train
#
# Environment: ACCELERATOR (cpu, nvidia-l4, tpu-v5e or tpu-v6e; default cpu for b=16 methods,
# else nvidia-l4), REGION (us-central1), IMAGE (the worker image built from
# deploy/dataflow/Dockerfile, by digest: REPO/worker@sha256:...; without it, gcloud looks up
# the digest of :latest), MACHINE_TYPE (from ACCELERATOR), MAX_WORKERS (64),
# OUTPUT (gs://BUCKET/shards/<method>/train), PYTHON (python3).
# The workers run the image's copy of eqinfo alone (no --setup_file), so the launcher's
# Python and Beam must be the image's (IMAGE_PYTHON, IMAGE_BEAM below): checked first.
# PRINT_ARGS=1 prints the eqinfo arguments, one per line, instead of submitting.
# Run from the repository root.
set -euo pipefail

if [[ $# -lt 4 ]]; then
  sed -n '2,22p' "$0"
  exit 2
fi
PROJECT="$1"; BUCKET="$2"; METHOD="$3"; M1="$4"; shift 4

# The versions deploy/dataflow/Dockerfile builds the worker image with.
IMAGE_PYTHON="3.11"
IMAGE_BEAM="2.77.0"
PYTHON="${PYTHON:-python3}"
read -r LOCAL_PYTHON LOCAL_BEAM < <("${PYTHON}" -c \
  'import sys, apache_beam; print("%d.%d" % sys.version_info[:2], apache_beam.__version__)')
if [[ "${LOCAL_PYTHON}" != "${IMAGE_PYTHON}" || "${LOCAL_BEAM}" != "${IMAGE_BEAM}" ]]; then
  echo "submit.sh: this machine has Python ${LOCAL_PYTHON} and Beam ${LOCAL_BEAM}, the worker" \
    "image Python ${IMAGE_PYTHON} and Beam ${IMAGE_BEAM}; launch from a matching environment" >&2
  exit 2
fi

# b=16 windows are coded by the window vocabulary: no M1 on the coding workers.
case "${METHOD}" in
  equal_info_ac\[b=16,*) DEFAULT_ACCELERATOR="cpu" ;;
  *) DEFAULT_ACCELERATOR="nvidia-l4" ;;
esac
# Per worker VM: Dataflow's accelerator option, the machine type it needs, eqinfo's check.
ACCELERATOR="${ACCELERATOR:-${DEFAULT_ACCELERATOR}}"
case "${ACCELERATOR}" in
  cpu)
    SERVICE_OPTIONS=""; EQINFO_ACCELERATOR="cpu"
    DEFAULT_MACHINE_TYPE="n2-standard-8"; IMAGE_NAME="worker" ;;
  nvidia-l4)
    SERVICE_OPTIONS="worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
    EQINFO_ACCELERATOR="gpu"; DEFAULT_MACHINE_TYPE="g2-standard-8"; IMAGE_NAME="worker" ;;
  tpu-v5e)
    SERVICE_OPTIONS="worker_accelerator=type:tpu-v5-lite-podslice;topology:1x1"
    EQINFO_ACCELERATOR="tpu"; DEFAULT_MACHINE_TYPE="ct5lp-hightpu-1t"; IMAGE_NAME="worker-tpu" ;;
  tpu-v6e)
    SERVICE_OPTIONS="worker_accelerator=type:tpu-v6e-slice;topology:1x1"
    EQINFO_ACCELERATOR="tpu"; DEFAULT_MACHINE_TYPE="ct6e-standard-1t"; IMAGE_NAME="worker-tpu" ;;
  *)
    echo "submit.sh: ACCELERATOR must be cpu, nvidia-l4, tpu-v5e or tpu-v6e," \
      "got '${ACCELERATOR}'" >&2
    exit 2 ;;
esac

REGION="${REGION:-us-central1}"
REPOSITORY="${REGION}-docker.pkg.dev/${PROJECT}/eqinfo/${IMAGE_NAME}"
if [[ -z "${IMAGE:-}" ]]; then
  IMAGE="$(gcloud artifacts docker images describe "${REPOSITORY}:latest" \
    --format='value(image_summary.fully_qualified_digest)')" || {
    echo "submit.sh: cannot look up the digest of ${REPOSITORY}:latest; set IMAGE to" \
      "${REPOSITORY}@sha256:..." >&2
    exit 2
  }
fi
if [[ "${IMAGE}" != *@sha256:* ]]; then
  echo "submit.sh: IMAGE must name the worker image by digest (...@sha256:...)," \
    "got '${IMAGE}'" >&2
  exit 2
fi
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
  --sdk_container_image "${IMAGE}"
  --sdk_location container
  --experiments use_runner_v2
  --machine_type "${MACHINE_TYPE}"
  --disk_size_gb 100
  --accelerator "${EQINFO_ACCELERATOR}"
  --max_num_workers "${MAX_WORKERS}"
  "$@"
)
if [[ -n "${SERVICE_OPTIONS}" ]]; then
  # One SDK process and one harness thread per VM, so one process owns the accelerator;
  # CPU workers keep Dataflow's default of one SDK process per vCPU.
  ARGS+=(--dataflow_service_options "${SERVICE_OPTIONS}"
         --experiments no_use_multiple_sdk_containers --number_of_worker_harness_threads 1)
fi
if [[ -n "${PRINT_ARGS:-}" ]]; then
  printf '%s\n' "${ARGS[@]}"
  exit 0
fi
cd "$(dirname "$0")/../.."
exec "${PYTHON}" -m pipelines.cli "${ARGS[@]}"
