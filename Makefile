# The two commands a newcomer runs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

# `make run PORT=8080 HOST=0.0.0.0`: the port is checked before anything is written.
run: $(VENV)/.installed
	$(BIN)/orgbill serve --check --host $(HOST) --port $(PORT)
	$(BIN)/orgbill migrate
	$(BIN)/orgbill plans sync
	$(BIN)/orgbill demo --base-url http://$(HOST):$(PORT)
	ORGBILL_COOKIE_SECURE=$${ORGBILL_COOKIE_SECURE:-false} $(BIN)/orgbill serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Two workers: each gets its own databases (a SQLite file and a PostgreSQL schema per
# fixture), so they share nothing but the servers. `make test TEST_WORKERS=0` runs serially.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: $(VENV)/.installed-dev
	@command -v wrk >/dev/null || apt-get install -y -q wrk
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache orgbill.db orgbill.db-shm orgbill.db-wal
