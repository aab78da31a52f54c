# syntax=docker/dockerfile:1.7
# The components image: the `latxa` CLI with data preparation, Ray Train training (FSDP2, DDP or DeepSpeed),
# lm-eval evaluation, KFP components, the SLURM bridge (OpenSSH client) and the MLflow server
# (PostgreSQL + S3 drivers). Used by KFP steps, the training RayJob and the MLflow Deployment.
#   docker build -f k8s/images/components.Dockerfile -t ghcr.io/latxa-mlops/components:0.1.0 .
#   GPU: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t ...:0.1.0-cuda
ARG PYTHON_IMAGE=docker.io/library/python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG RAY_VERSION=2.60.0
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the chosen index, so nothing later pulls another build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY latxa latxa
COPY components components
COPY pipelines pipelines
COPY slurm slurm
COPY serving serving
COPY arena_ui arena_ui
COPY data data
COPY mlflow mlflow
# The wheel (one import root, `latxa`; sample data, configs and templates as package data), then the wheel itself
# installed, as a user would: nothing at run time reads /src.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install "$(ls /wheels/latxa_mlops-*.whl)[pipelines]" "ray[train]==${RAY_VERSION}" "psycopg2-binary==2.9.10" "boto3==1.35.36"

FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 latxa \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /bin/bash latxa
COPY --from=build /opt/venv /opt/venv
# HOME on /tmp: Kubernetes mounts an emptyDir there and keeps the root filesystem read-only.
# The SLURM bridge reads ~/.ssh/leonardo(-cert.pub) and ~/.ssh/known_hosts (Secret latxa-slurm-ssh at /tmp/.ssh).
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    RAY_USAGE_STATS_ENABLED=0 MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
CMD ["latxa", "--help"]
