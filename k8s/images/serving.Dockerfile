# syntax=docker/dockerfile:1.7
# The serving image: Ray Serve with the arena models and the arena API (`latxa serve`, and the
# RayService application builder `latxa.serving.rayservice:build_app`). No DeepSpeed, no lm-eval.
#   docker build -f k8s/images/serving.Dockerfile -t ghcr.io/latxa-mlops/serving:0.1.0 .
#   GPU + vLLM (Ray Serve LLM): --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 \
#        --build-arg WITH_VLLM=1 -t ghcr.io/latxa-mlops/serving:0.1.0-cuda .
ARG PYTHON_IMAGE=docker.io/library/python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG RAY_VERSION=2.60.0
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG WITH_VLLM=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY latxa latxa
COPY components components
COPY serving serving
COPY pipelines pipelines
COPY slurm slurm
COPY arena_ui arena_ui
COPY data data
COPY mlflow mlflow
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install "$(ls /wheels/latxa_mlops-*.whl)[serve]" "ray[serve]==${RAY_VERSION}" "psycopg[binary]==3.2.3" \
 && if [ "${WITH_VLLM}" = "1" ]; then pip install "ray[llm]==${RAY_VERSION}"; fi

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 latxa \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /bin/bash latxa
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
CMD ["latxa", "serve", "--config", "/etc/latxa/serve.yaml", "--host", "0.0.0.0"]
