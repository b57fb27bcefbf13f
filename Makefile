# The front door. `make run` = the local demo, `make test` = the whole suite (what CI runs).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export PYTHON := $(abspath $(PY))

.PHONY: run test test-cluster test-unit lint bench stack-up stack-down emulators-up emulators-down install lock schema clean

# The versions come from requirements-dev.lock (constraints: pyproject.toml still says what is needed,
# the lock says which versions), so a fresh clone installs what CI and the image were tested with.
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements-dev.lock -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# Renew both lock files from pyproject.toml (newest versions its bounds allow; Python 3.11, any platform).
# requirements.lock (runtime, with hashes) is what the image installs; requirements-dev.lock adds the
# dev tools (the runtime pins kept: tests run what the image runs) and constrains `make install`.
# `make lock LOCK_UPGRADE=--upgrade` moves every pin to the newest allowed; review, `make test`, commit both.
LOCK_ARGS := --universal --python-version 3.11 --custom-compile-command "make lock" --quiet $(LOCK_UPGRADE)
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_ARGS) --generate-hashes -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_ARGS) --extra dev -c requirements.lock -o requirements-dev.lock

lint: install
	$(VENV)/bin/ruff check schemas worker adapters tests
	$(VENV)/bin/mypy --strict schemas worker adapters tests

# The tests that run a second time with the tests' Redis on a 6-node Redis Cluster (ILOG_TEST_REDIS=cluster):
# the store's behaviour, the fold stage as a process, the sync state and budget, one end-to-end sync.
# A subset, so the whole suite stays under 15 minutes on 2 cores; tests/fault runs its cluster test always.
CLUSTER_TESTS ?= tests/integration/test_store.py tests/integration/test_fold_stage.py \
  tests/e2e/test_sync_budget.py tests/e2e/test_sync_zendesk.py

# The whole suite. Session fixtures start deploy/local/stack (Kafka + Redis) and the CRM
# emulators when a test needs them, and stop what they started. Exit code 5 (no tests) fails.
# The tests mostly wait on brokers, timers and windows: TEST_WORKERS pytest-xdist workers, each with a
# stack of its own (tests/conftest.py), keep the suite inside CI's 15 minutes on 2 cores.
TEST_WORKERS ?= 2
test: lint
	@rm -rf .test-results
	$(PY) -m pytest -m 'not bench' -p no:cacheprovider -n $(TEST_WORKERS) --junitxml=.test-results/all.xml $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi; [ $$rc -eq 0 ] || exit $$rc
	$(MAKE) --no-print-directory test-cluster CLUSTER_JUNIT=--junitxml=.test-results/cluster.xml
	@$(PY) -m tests.junit_total .test-results/all.xml .test-results/cluster.xml

# The cluster pass alone (see CLUSTER_TESTS).
test-cluster: install
	ILOG_TEST_REDIS=cluster $(PY) -m pytest -m 'not bench' -p no:cacheprovider $(CLUSTER_JUNIT) $(PYTEST_ARGS) $(CLUSTER_TESTS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi; exit $$rc

test-unit: install
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

# Benchmarks: JSON results in bench-results/, a summary on stdout.
bench: install
	mkdir -p bench-results
	$(PY) -m tests.bench.run --out bench-results

run: install
	$(VENV)/bin/ilog demo $(DEMO_ARGS)

schema: install
	$(VENV)/bin/ilog schema export schemas/jsonschema

stack-up: install
	deploy/local/stack up

stack-down:
	deploy/local/stack down

emulators-up: install
	deploy/local/emulators up

emulators-down:
	deploy/local/emulators down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
