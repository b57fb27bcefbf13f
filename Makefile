# The front door. `make run` = the local demo, `make test` = the whole suite (what CI runs).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export PYTHON := $(abspath $(PY))

.PHONY: run test test-cluster test-unit lint native-test bench stack-up stack-down emulators-up emulators-down install lock schema clean

# The versions come from requirements-dev.lock (constraints: pyproject.toml still says what is needed,
# the lock says which versions), so a fresh clone installs what CI and the image were tested with.
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements-dev.lock -e '.[dev]'
	@touch $@

# The compiled core (native/: Rust with PyO3, crates from crates.io; `worker/core/native.py`), built with
# maturin into the virtualenv. Rust comes from rustup (`cargo` on PATH or in ~/.cargo/bin). Its crates are
# pinned by native/Cargo.lock; the build cache stays in native/target, so a change rebuilds in seconds.
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
$(VENV)/.native: $(VENV)/.installed $(NATIVE_SOURCES)
	@PATH="$$PATH:$$HOME/.cargo/bin" command -v cargo >/dev/null || { \
	  echo "make install: the compiled core (native/) needs Rust's cargo: install it with rustup (https://rustup.rs)"; exit 1; }
	PATH="$(abspath $(VENV))/bin:$$PATH:$$HOME/.cargo/bin" CARGO_TARGET_DIR=$(abspath native/target) \
	  $(PY) -m pip install -q --no-build-isolation --no-deps ./native
	@touch $@

install: $(VENV)/.installed $(VENV)/.native

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

# The compiled core's own unit tests (native/src: the calendar arithmetic of the event time, and the like).
# Its differential tests against the Python specification are pytest's (tests/unit/test_native_*.py).
native-test: install
	PATH="$$PATH:$$HOME/.cargo/bin" CARGO_TARGET_DIR=$(abspath native/target) \
	  cargo test --release --quiet --manifest-path native/Cargo.toml

# The tests that run a second time with the tests' Redis on a 6-node Redis Cluster (ILOG_TEST_REDIS=cluster):
# every integration and e2e test file that touches Redis (store and budget suites, the fold stage as a
# process, poison messages, replays, sync state and epoch, each target end to end). Left out: the demo
# and the stack's own tests (they drive deploy/local/stack), the emulator, adapter and DLQ tests (no
# Redis). tests/fault runs its cluster tests (a master SIGKILLed mid-stream, a shard restarted empty) in the main pass.
CLUSTER_TESTS ?= tests/integration/test_store.py tests/integration/test_budget_port.py \
  tests/integration/test_sync_epoch_store.py tests/integration/test_inspect.py tests/integration/test_health.py \
  tests/integration/test_fold_stage.py tests/integration/test_poison.py tests/integration/test_replay.py \
  tests/e2e/test_sync_budget.py tests/e2e/test_sync_zendesk.py tests/e2e/test_sync_salesforce.py \
  tests/e2e/test_sync_webhook.py tests/e2e/test_target_refusals.py tests/e2e/test_lookup_replay_e2e.py \
  tests/e2e/test_replay_e2e.py tests/e2e/test_no_leaks.py

# The whole suite. Session fixtures start deploy/local/stack (Kafka + Redis) and the CRM
# emulators when a test needs them, and stop what they started. Exit code 5 (no tests) fails.
# The tests mostly wait (on brokers, timers, windows), so they run side by side: TEST_WORKERS
# pytest-xdist workers (worksteal: a worker with nothing left takes over half of another's queue),
# each with a stack of its own (.stack-gw0 … .stack-gw3; tests/conftest.py), and beside them the
# cluster pass (CLUSTER_TESTS on the 6-node cluster, in .stack and .stack-cluster), whose output is
# printed when the main pass is done. TEST_WORKERS=0 runs the main pass in one process. Four workers
# on two cores: the main pass took 9m55s against 11m55s with three (`make test` 11m10s against about
# 14m50s from a fresh clone), and 12m43s with two; the fault tests wait on stopped brokers and closing
# windows most of their time. Each test's own time grows by about 5 % with the fourth worker.
TEST_WORKERS ?= 4
test: lint native-test
	@rm -rf .test-results && mkdir -p .test-results
	@ILOG_TEST_REDIS=cluster $(PY) -m pytest -m 'not bench' -p no:cacheprovider \
	  --junitxml=.test-results/cluster.xml $(PYTEST_ARGS) $(CLUSTER_TESTS) >.test-results/cluster.log 2>&1 & \
	  cluster=$$!; \
	  $(PY) -m pytest -m 'not bench' -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal \
	    --junitxml=.test-results/all.xml $(PYTEST_ARGS); rc=$$?; \
	  wait $$cluster; cluster_rc=$$?; \
	  echo "=== cluster pass (ILOG_TEST_REDIS=cluster: $(CLUSTER_TESTS))"; cat .test-results/cluster.log; \
	  for code in $$rc $$cluster_rc; do \
	    if [ $$code -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi; [ $$code -eq 0 ] || exit $$code; \
	  done
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
