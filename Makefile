# The two commands of the README: `make demo` and `make test`.
# Each builds .venv from the project's own files first, so a fresh clone needs only
# Python 3.11+, Java 17+ and Maven (the Kafka broker itself comes from Maven Central).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-pythons lint typecheck unit bench bench-latency bench-shipper kafka clean

# The other CPythons the package supports, where installed (on PATH, or under pyenv, whose
# shims for a version that is not selected fail): `make test-pythons` runs the broker-free
# tests on each, in a venv of its own.
OTHER_VERSIONS := 3.12 3.13
OTHER_PYTHONS = $(shell for v in $(OTHER_VERSIONS); do \
	for p in "$$(command -v python$$v)" $(HOME)/.pyenv/versions/$$v.*/bin/python$$v; do \
	  [ -x "$$p" ] && "$$p" -c '' 2>/dev/null && { echo "$$p"; break; }; \
	done; done)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start a local Kafka, log through the handler and send_log, read the events back.
demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

## Everything CI runs: lint, strict types, the whole test suite against real Kafka, then the
## tests that need no broker on every other supported Python that is installed.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-pythons

## The tests that need no broker, on every other supported Python that is installed.
test-pythons:
	@for py in $(OTHER_PYTHONS); do \
	  v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  echo "== Python $$v ($$py): the tests that need no broker"; \
	  if [ ! .venv-$$v/.installed -nt pyproject.toml ]; then \
	    $$py -m venv .venv-$$v && .venv-$$v/bin/python -m pip install --quiet -e '.[dev]' \
	      && touch .venv-$$v/.installed || exit 1; \
	  fi; \
	  .venv-$$v/bin/python -m pytest -q -m 'not kafka' || exit 1; \
	done; [ -n "$(OTHER_PYTHONS)" ] || echo "== no other supported Python installed"

## Only the tests that need no broker.
unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not kafka'

## The throughput benchmark against a real local broker (not part of `make test`).
bench: $(STAMP)
	$(BIN)/python bench/bench_producer.py

## App-thread latency per backpressure policy, broker up and down; RSS during an outage.
bench-latency: $(STAMP)
	$(BIN)/python bench/bench_latency.py

## Shipper throughput from Kafka into a local LogTide-compatible server.
bench-shipper: $(STAMP)
	$(BIN)/python bench/bench_shipper.py

## Run a local broker until Ctrl-C.
kafka: $(STAMP)
	$(BIN)/python -m logtide_kafka.testing

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache *.egg-info
