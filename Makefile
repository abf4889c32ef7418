# The two commands of the README: `make demo` and `make test`.
# Each builds .venv from the project's own files first, so a fresh clone needs only
# Python 3.11+, Java 17+ and Maven (the Kafka broker itself comes from Maven Central).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-latency bench-shipper kafka clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start a local Kafka, log through the handler and send_log, read the events back.
demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

## Everything CI runs: lint, strict types, the whole test suite against real Kafka.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
