# CSAT platform. `make help` lists the targets. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_LINK_MODE := copy

$(UV):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PY)
	@touch $@

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

.PHONY: install
install: $(VENV)/.synced ## Create .venv with the locked dependencies

.PHONY: run
run: install ## Start the whole stack (embedded broker + Postgres unless KAFKA_BOOTSTRAP / DATABASE_URL are set)
	$(BIN)/python -m devstack run

.PHONY: test
test: install ## Lint, type-check, then unit, integration and e2e tests (real broker and Postgres)
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -q -p no:cacheprovider tests/unit tests/integration tests/e2e

.PHONY: test-unit
test-unit: install ## Pure unit tests only (no broker, no database)
	$(BIN)/pytest -q tests/unit

.PHONY: test-integration
test-integration: install ## Integration tests against the real broker and Postgres
	$(BIN)/pytest -q tests/integration

.PHONY: test-e2e
test-e2e: install ## End-to-end tests: the four services as processes
	$(BIN)/pytest -q tests/e2e

.PHONY: test-faults
test-faults: install ## Fault suite: broker frozen/cut, kills, Postgres down 60 s, poison, fuzzing, log scan (~7 min)
	$(BIN)/pytest -q -p no:cacheprovider tests/faults

.PHONY: bench
bench: install ## Benchmarks against same-run baselines; rewrites docs/benchmarks.md (~15 min; BENCH_* to tune)
	$(BIN)/python -m bench

.PHONY: lint
lint: install ## ruff and mypy --strict (never edits files)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services devstack tests bench

.PHONY: format
format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: lock
lock: $(UV) ## Re-resolve uv.lock after changing pyproject.toml
	$(UV) lock --python $(PY)

.PHONY: clean
clean: ## Remove local data (var/) and caches; keeps .venv
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
