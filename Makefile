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
# pytest's default temp root (/tmp/pytest-of-$USER) keeps only the last 3 runs of *any* checkout on the
# machine: a parallel run elsewhere could delete the embedded PostgreSQL's data under a running suite.
# One base directory per checkout instead (pytest empties it at the start of each run).
PYTEST_BASETEMP := /tmp/csat-pytest-$(shell echo "$(CURDIR)" | md5sum | cut -c1-10)
PYTEST := $(BIN)/pytest --basetemp=$(PYTEST_BASETEMP)
# make test runs its files in this many pytest-xdist workers (each its own broker and PostgreSQL;
# one file stays in one worker, so module fixtures start once). Most of the suite waits on the
# broker, PostgreSQL, browsers and subprocesses, so two workers keep two cores busier; 0 runs the suite in one process.
TEST_WORKERS ?= 2

$(UV):
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PY)
	@touch $@

# Operations tooling (make ops-tools): promtool/prometheus from Debian, kubectl's kustomize, the
# manifest checkers in their own venv, and the AsyncAPI parser from npm. Cached under .tools/.
OPS_VENV := $(TOOLS)/ops
NODE_TOOLS := $(TOOLS)/node
ASYNCAPI_LOCK := deploy/tools/asyncapi/package-lock.json

# uv rather than pip: checkov's ~90 dependencies took 45 s with pip and take ~3 s with uv's cache.
$(OPS_VENV)/.installed: deploy/tools/requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PY) $(OPS_VENV)
	$(UV) pip install --quiet --python $(OPS_VENV)/bin/python -r deploy/tools/requirements.txt
	@touch $@

# The contract is validated with @asyncapi/parser, the parser and ruleset `asyncapi validate` runs
# (deploy/tools/asyncapi/validate.cjs): 168 locked packages, ~7 s, where @asyncapi/cli took ~57 s of
# every clean CI run for 1,268. --prefer-offline: npm's own cache (~/.npm) answers before the registry.
$(NODE_TOOLS)/.installed-parser: $(ASYNCAPI_LOCK) deploy/tools/asyncapi/package.json
	rm -rf $(NODE_TOOLS) && mkdir -p $(NODE_TOOLS)
	cp deploy/tools/asyncapi/package.json $(ASYNCAPI_LOCK) $(NODE_TOOLS)/
	cd $(NODE_TOOLS) && npm ci --no-audit --no-fund --loglevel=error --prefer-offline
	@touch $@

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

.PHONY: install
install: $(VENV)/.synced ## Create .venv with the locked dependencies

.PHONY: run
run: install ## Start the whole stack (embedded broker + Postgres unless KAFKA_BOOTSTRAP / DATABASE_URL are set)
	CSAT_ENVIRONMENT=$${CSAT_ENVIRONMENT:-dev} $(BIN)/python -m devstack run

.PHONY: chromium
chromium: ## Install Debian's chromium for the widget's browser test, unless it is there
	@test -x /usr/bin/chromium || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

.PHONY: test
test: install ops-tools chromium ## Lint, type-check, then unit, integration, e2e and operations tests (real broker and Postgres)
	$(MAKE) --no-print-directory lint
	$(PYTEST) -q -p no:cacheprovider --durations=25 -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests/unit tests/integration tests/e2e tests/ops

.PHONY: test-slow
test-slow: install ## The long end-to-end scenarios kept out of make test: surveys from interactions to response rate (~80 s of real waits), make run's launcher under Ctrl-C/SIGTERM/SIGKILL (~50 s)
	$(PYTEST) -q -p no:cacheprovider --durations=10 -m slow tests/e2e

.PHONY: ops-tools
ops-tools: $(OPS_VENV)/.installed $(NODE_TOOLS)/.installed-parser ## Install promtool/prometheus, kustomize check, kubernetes-validate, checkov, AsyncAPI parser
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@command -v kubectl >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null; }

.PHONY: test-ops
test-ops: install ops-tools ## Contracts, metrics, alerts, dashboards, manifests and tracing checks
	$(PYTEST) -q tests/ops

.PHONY: contracts
contracts: install ## Regenerate contracts/ (JSON Schemas + AsyncAPI) from shared/events.py
	$(BIN)/python -m services.cli contracts

.PHONY: test-unit
test-unit: install ## Pure unit tests only (no broker, no database)
	$(PYTEST) -q tests/unit

.PHONY: test-integration
test-integration: install chromium ## Integration tests against the real broker and Postgres
	$(PYTEST) -q tests/integration

.PHONY: test-e2e
test-e2e: install ## End-to-end tests: the four services as processes
	$(PYTEST) -q tests/e2e

.PHONY: test-faults
test-faults: install ## Fault suite: broker frozen/cut, kills (also while sending survey invitations), Postgres down 60 s, poison, fuzzing, auth fuzzing, log scan (~20 min)
	CSAT_FAULT_REPORT=docs/faults.md $(BIN)/pytest -q -p no:cacheprovider tests/faults

.PHONY: bench
bench: install ## Benchmarks against same-run baselines; rewrites docs/benchmarks.md (~40 min; BENCH_* to tune)
	$(BIN)/python -m bench

.PHONY: stats
stats: install ## Drift alerts on simulated segments, before/after; rewrites the table in docs/scores.md (~5 CPU-min: ~3 min on 2 idle cores)
	nice -n 10 $(BIN)/python -m bench.stats --write-docs

.PHONY: health-sim
health-sim: install ## Account health on simulated accounts: churn ranking vs CSAT and usage alone; rewrites the table in docs/health.md (~1 CPU-min)
	nice -n 10 $(BIN)/python -m bench.health_sim --write-docs

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
