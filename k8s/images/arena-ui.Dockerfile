# syntax=docker/dockerfile:1.7
# The Reflex arena UI (arena_ui/), two images from one file:
#   frontend (default): the static export behind unprivileged nginx on :8080
#     docker build -f k8s/images/arena-ui.Dockerfile --build-arg REFLEX_API_URL=https://arena.example.org \
#       -t ghcr.io/latxa-mlops/arena-ui:0.1.0 .
#   backend: `reflex run --env prod --backend-only` (state in Redis, several replicas)
#     docker build -f k8s/images/arena-ui.Dockerfile --target backend -t ghcr.io/latxa-mlops/arena-ui-backend:0.1.0 .
# REFLEX_API_URL is where browsers reach the backend (the arena Ingress host): it is baked into the export.
ARG PYTHON_IMAGE=docker.io/library/python:3.11.10-slim-bookworm
ARG NGINX_IMAGE=docker.io/nginxinc/nginx-unprivileged:1.27.2-alpine3.20

FROM ${PYTHON_IMAGE} AS build-deps
ARG REFLEX_VERSION=0.10.1
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "reflex==${REFLEX_VERSION}" "httpx==0.27.2" "redis==5.2.0"

FROM build-deps AS build-frontend
ARG REFLEX_API_URL=https://arena.latxa.example.org
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl unzip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY arena_ui /app/arena_ui
WORKDIR /app/arena_ui
ENV REFLEX_TELEMETRY_ENABLED=false REFLEX_API_URL=${REFLEX_API_URL}
RUN reflex export --frontend-only --no-zip --env prod \
 && test -f .web/build/client/index.html

FROM ${PYTHON_IMAGE} AS backend
RUN groupadd --gid 10001 latxa \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /bin/bash latxa
COPY --from=build-deps /opt/venv /opt/venv
COPY --chown=10001:10001 arena_ui /app/arena_ui
ENV PATH=/opt/venv/bin:$PATH HOME=/tmp REFLEX_TELEMETRY_ENABLED=false PYTHONUNBUFFERED=1
WORKDIR /app/arena_ui
USER 10001:10001
EXPOSE 8000
CMD ["reflex", "run", "--env", "prod", "--backend-only", "--backend-host", "0.0.0.0", "--backend-port", "8000"]

FROM ${NGINX_IMAGE} AS frontend
COPY k8s/images/arena-ui.nginx.conf /etc/nginx/conf.d/default.conf
COPY --from=build-frontend /app/arena_ui/.web/build/client /usr/share/nginx/html
USER 101
EXPOSE 8080
