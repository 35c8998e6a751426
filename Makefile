# Quick start: `make demo` (embedded defaults, no servers) and `make test` (real services).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
export UV_CACHE_DIR := $(CURDIR)/$(CACHE)/uv

.PHONY: install system-deps demo demo-cluster test test-unit test-integration lint services-up services-down services-status bench clean

$(BIN)/python:
	@command -v $(PY) >/dev/null || { echo "Python 3.11 is needed (python3.11 not found)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip uv

# The environment is pinned in requirements.lock (regenerate: make lock).
$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/uv pip install --python $(BIN)/python -q -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -e .
	touch $@

# The hdfs-replay Flink source (backfill/java), built with Maven when missing or stale.
BACKFILL_JAR := backfill/java/target/featurestore-replay.jar
$(BACKFILL_JAR): backfill/java/pom.xml $(shell find backfill/java/src -type f 2>/dev/null) | $(VENV)/.installed
	$(BIN)/python -m featurestore.services.replay_jar

install: $(VENV)/.installed $(BACKFILL_JAR)

lock: $(BIN)/python
	$(BIN)/uv pip compile pyproject.toml --extra dev -p 3.11 -o requirements.lock

# Debian packages the real services need (Redis); idempotent, root only.
system-deps:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; \
	  else echo "redis-server is missing: sudo apt-get install redis-server"; exit 1; fi; }

demo: install
	$(BIN)/featurestore demo

# The same flow on the real services (started here; `make services-down` stops them): history on
# HDFS, versions in HBase, latest values in Redis, the run's data under a prefix of its own.
demo-cluster: install system-deps
	$(BIN)/featurestore services up
	$(BIN)/featurestore demo --profile cluster --output demo-output-cluster

# Lint, then every test; the integration tests start the real services once per session
# (tests/conftest.py) and stop them afterwards. pytest's "no tests collected" (5) is a failure.
test: install system-deps lint
	$(BIN)/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "make test: no test was collected"; exit 1; fi; exit $$rc

test-unit: install
	$(BIN)/pytest -m "not integration" -q; rc=$$?; [ $$rc -ne 5 ] || { echo "no test was collected"; exit 1; }; exit $$rc

test-integration: install system-deps
	$(BIN)/pytest -m integration -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

services-up: install system-deps
	$(BIN)/featurestore services up

services-down: install
	$(BIN)/featurestore services down

services-status: install
	$(BIN)/featurestore services status

# Every benchmark, full size, on the real services (each prints a JSON line and saves it under
# bench/results/), then bench/REPORT.md with plots built from those files. The services stay up:
# `make services-down` stops them.
bench: install system-deps
	$(BIN)/featurestore services up
	@for f in bench/*.py; do [ "$$f" = bench/report.py ] && continue; echo "== $$f"; $(BIN)/python $$f || exit 1; done
	$(BIN)/python bench/report.py

clean:
	rm -rf $(VENV) .featurestore .services
