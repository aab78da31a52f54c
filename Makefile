# Latxa-Instruct MLOps. The README's two commands:
#   make demo   set up on a fresh machine and run the main job (the study pipeline on the embedded default)
#   make test   set up on a fresh machine (Python env, Debian packages) and run the whole test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel from local disk here. GPU users: make venv TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= all,test
comma := ,
STAMP := $(VENV)/.installed-$(shell md5sum < pyproject.toml | cut -c1-12)-$(subst $(comma),_,$(EXTRAS))
PYTEST_ARGS ?=
export REFLEX_TELEMETRY_ENABLED=false
export REFLEX_CHECK_LATEST_VERSION=0
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export RAY_USAGE_STATS_ENABLED=0
# Local Ray clusters (demo, tests) stay on loopback; see latxa/cli.py.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false
export PATH := $(CURDIR)/.tools/node_modules/.bin:$(PATH)

.PHONY: help venv sysdeps demo test test-fast lint k8s-check slurm-up slurm-down arena arena-tools clean

help:
	@echo "make demo       - install and run the study pipeline on the embedded default (tiny model, sample data)"
	@echo "make test       - install everything the tests need and run the whole suite"
	@echo "make test-fast  - the suite without tests marked slow"
	@echo "make lint       - ruff and the layer contracts (also part of make test)"
	@echo "make venv       - create/update the virtual environment ($(VENV))"
	@echo "make clean      - remove local state (.latxa) and caches"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, so nothing later pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# Debian packages the tests use; installed only when missing.
sysdeps:
	@bash scripts/sysdeps.sh

demo: venv
	$(BIN)/latxa demo

# Two pytest sessions side by side: the jobs lane (SLURM tests, mostly waiting on the scheduler and job start-up, and
# the pipeline tests) and the rest (scripts/test_lanes.py; LATXA_TEST_LANES=1 for one session). Each lane prints
# its 25 slowest tests.
test: venv sysdeps arena-tools lint
	$(BIN)/python scripts/test_lanes.py --durations=25 $(PYTEST_ARGS)

# ruff on the whole tree; the layer rules (pyproject.toml [tool.importlinter]) on the installed layout: the
# wheel's own tree, where components/ really is latxa.components (import-linter reads packages from disk).
LINT_DIR := build/lint
lint: venv
	$(BIN)/ruff check .
	@rm -rf $(LINT_DIR) && mkdir -p $(LINT_DIR)
	@$(BIN)/python -m pip wheel --no-deps --quiet --wheel-dir $(LINT_DIR) . 2>&1 | grep -v "^WARNING: Location" || true
	@cd $(LINT_DIR) && $(abspath $(BIN))/python -m zipfile -e latxa_mlops-*.whl layout
	cd $(LINT_DIR)/layout && PYTHONPATH=. $(abspath $(BIN))/lint-imports $(CURDIR)/pyproject.toml

test-fast: venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Arena UI (#9). bun for Reflex's frontend build, from the npm registry into the project-local .tools/ (Node 20 here
# is too old for Reflex 0.10; bun >= 1.4.4 is enough). Installed only when missing.
BUN_VERSION ?= 1.4.4
arena-tools: .tools/node_modules/.bin/bun arena_ui/.web/node_modules

.tools/node_modules/.bin/bun:
	@mkdir -p .tools
	cd .tools && npm install --no-audit --no-fund --prefix . bun@$(BUN_VERSION)
	@.tools/node_modules/.bin/bun --version >/dev/null

# The frontend's npm packages (pinned in arena_ui/reflex.lock/), fetched once here so tests and `make arena` build
# without the network.
arena_ui/.web/node_modules: .tools/node_modules/.bin/bun | venv
	cd arena_ui && REFLEX_USE_SYSTEM_BUN=1 $(abspath $(BIN))/reflex compile

# Ray Serve with the local models + the arena API (latxa serve) + the Reflex UI on 127.0.0.1; prints the URL.
arena: venv arena-tools
	$(BIN)/python -m latxa.arena_ui.launch $(ARENA_ARGS)

# Kubernetes manifests and Dockerfiles, offline: kustomize build of every overlay, kubernetes-validate --strict,
# KubeRay CRD schemas (../shared/schemas/kuberay), policy (docs/k8s.md). Also run by tests/k8s in make test.
k8s-check: venv
	$(BIN)/python k8s/check.py

# The single-node SLURM test cluster on localhost (state under $LATXA_SLURM_DIR, default /tmp/latxa-slurm).
# `make test` needs neither: tests/slurm/conftest.py starts it for the SLURM tests and stops it afterwards.
slurm-up:
	@bash slurm/local/up.sh

slurm-down:
	@bash slurm/local/down.sh

clean:
	rm -rf .latxa .pytest_cache
