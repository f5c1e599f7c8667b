# Every target that needs Python builds the virtualenv first, so a fresh
# machine with only Python 3.11+ needs nothing but `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_OUT := batchd/v1
PROTOC := $(BIN)/python -m grpc_tools.protoc -Iprotos -Ithird_party/googleapis

# The dev-mode settings `make run` uses; never use them in production.
DEV_TOKEN ?= dev-token
DEV_TENANT ?= dev

BUF := var/buf/node_modules/.bin/buf

.PHONY: install chromium run migrate test lint typecheck proto proto-check buf-lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

proto: $(STAMP)
	$(PROTOC) --python_out=. --pyi_out=. --grpc_python_out=. protos/batchd/v1/batch.proto

# Fails when the committed generated code differs from a fresh generation.
proto-check: $(STAMP)
	rm -rf var/proto-check && mkdir -p var/proto-check
	$(PROTOC) --python_out=var/proto-check --pyi_out=var/proto-check \
		--grpc_python_out=var/proto-check protos/batchd/v1/batch.proto
	diff -r -x __init__.py -x __pycache__ var/proto-check/batchd/v1 $(PROTO_OUT)

# buf comes from the npm registry (@bufbuild/buf), installed under var/.
$(BUF):
	mkdir -p var/buf
	npm install --silent --no-audit --no-fund --prefix var/buf @bufbuild/buf

buf-lint: $(BUF)
	$(BUF) lint

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy batchd allinone batchctl service gateway tests benchmarks migrations

# The console's browser tests drive Debian's Chromium (Playwright downloads no browser).
# A file target: nothing to do, and no apt-get, once it is installed.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium fonts-dejavu-core

chromium: $(CHROMIUM)

# PostgreSQL cases run on 127.0.0.1:5432 as user postgres unless told otherwise:
# make test BATCH_TEST_POSTGRES_URL=postgresql://user:password@host:port/postgres
export BATCH_TEST_POSTGRES_URL
test: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest -q

run: $(STAMP)
	BATCH_DEV_MODE=1 BATCH_API_TOKENS=$${BATCH_API_TOKENS:-$(DEV_TOKEN):$(DEV_TENANT)} \
		$(BIN)/batchd

# Upgrades the schema of BATCH_DATABASE_URL (default: the SQLite file) to the latest revision.
migrate: $(STAMP)
	$(BIN)/python -m service.migrate

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# Full run ~10 minutes; `make bench BENCH_ARGS=--quick` for a smoke run.
# --install lets it apt-get the tools it drives (h2load, wrk, nginx) when root.
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks --install $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
