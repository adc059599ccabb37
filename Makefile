# The two commands of the quick start are `make demo` and `make test`; everything else is a convenience.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, or bootstrapped from PyPI into .tools/ on a machine that has only Python 3.11+.
UV ?= $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
# The instance is configured by this folder's dagster.yaml (its storage is in PostgreSQL; Dagster keeps compute logs
# under storage/ here).
export DAGSTER_HOME ?= $(CURDIR)
export UV_PYTHON_DOWNLOADS ?= never
# Bytecode compiled once at install: where PYTHONDONTWRITEBYTECODE is set, every process would compile Dagster and
# dbt again, seconds per process.
export UV_COMPILE_BYTECODE ?= 1
DBT_MANIFEST := dbt_project/target/manifest.json
DBT_FILES := $(shell find dbt_project \( -path dbt_project/target -o -path dbt_project/logs \) -prune -o -type f -print)
DEMO_ROWS ?= 1000000
BENCH_ROWS ?= 20370000
BENCH_PRINCIPALS ?= 1000000,5000000,20000000
REFRESH_ROWS ?= 1000000,5000000
RELEASE_ROWS ?= 1000000,5000000,20370000
BENCH_DBT_ROWS ?= 5000000
DEV_PORT ?= 3000
API_PORT ?= 8000
# The suite runs in this many processes (more than the 2 cores: much of it waits on servers and subprocesses); each
# test module, and its shared setup, stays in one of them.
TEST_WORKERS ?= 3
BENCH_API_ROWS ?= 20370000

.PHONY: help sync install prepare psql demo test lint dev api db-stop clean bench bench-refresh bench-release bench-rss bench-dbt bench-api

help:
	@echo "make demo     generate an IMDb-format mirror and load it all into the embedded PostgreSQL"
	@echo "make test     lint and run the whole test suite"
	@echo "make dev      the Dagster UI (webserver + daemon) on the same instance"
	@echo "make api      the REST API on 127.0.0.1:$(API_PORT), with a new reader key printed as a curl line"
	@echo "make psql     psql on the platform's database (embedded or DATABASE_URL)"
	@echo "make prepare  parse the dbt project again (make install does it when dbt_project/ changed)"
	@echo "make db-stop  stop the embedded PostgreSQL"
	@echo "make bench    load benchmark against COPY text and batch inserts (BENCH_ROWS=$(BENCH_ROWS), 1/10 of IMDb)"
	@echo "make bench-refresh  imdb_refresh end to end, then with nothing changed (REFRESH_ROWS=$(REFRESH_ROWS))"
	@echo "make bench-release  a first load and three daily releases, by diff and whole (RELEASE_ROWS=$(RELEASE_ROWS))"
	@echo "make bench-rss  peak memory by size of title.principals ($(BENCH_PRINCIPALS) rows)"
	@echo "make bench-dbt  dbt build, per model and test, on freshly loaded data (BENCH_DBT_ROWS=$(BENCH_DBT_ROWS))"
	@echo "make bench-api  requests/s and latency per API route with wrk, beside pgbench on its SQL (BENCH_API_ROWS=$(BENCH_API_ROWS))"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet uv

sync: $(UV)
	$(UV) sync --frozen

install: sync $(DBT_MANIFEST)

# dagster-dbt's own preparation (`dbt parse` into dbt_project/target), whenever a file of the project changed; the
# definitions refuse a manifest older than the project's files.
$(DBT_MANIFEST): $(DBT_FILES) | sync
	$(UV) run imdb prepare

prepare: sync
	$(UV) run imdb prepare

psql: install
	$(UV) run imdb psql

demo: install
	$(UV) run python -m imdb_dev.demo --rows $(DEMO_ROWS)

# sqlfluff runs through imdb_dev.lint_sql, which gives the dbt templater a throwaway PostgreSQL to connect to. `dg check
# defs` loads the definitions with the project's dagster.yaml, on the platform's database as `make dev` does.
lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run python -m imdb_dev.lint_sql lint dbt_project
	$(UV) run dg check defs

test: lint
	$(UV) run pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

dev: install
	@echo "Dagster UI: http://127.0.0.1:$(DEV_PORT)  (webserver and daemon on the same instance; Ctrl-C stops both)"
	$(UV) run dg dev -h 127.0.0.1 -p $(DEV_PORT)

api: install
	$(UV) run python -m imdb_api --port $(API_PORT) --new-reader-key "make api $$(date +%FT%T)"

bench: install
	$(UV) run python -m bench.run --rows $(BENCH_ROWS)

bench-refresh: install
	$(UV) run python -m bench.refresh --rows $(REFRESH_ROWS)

bench-release: install
	$(UV) run python -m bench.release --rows $(RELEASE_ROWS)

bench-rss: install
	$(UV) run python -m bench.run --principals $(BENCH_PRINCIPALS)

bench-dbt: install
	$(UV) run python -m bench.dbt --rows $(BENCH_DBT_ROWS)

bench-api: install
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(UV) run python -m bench.api --rows $(BENCH_API_ROWS)

db-stop: install
	$(UV) run imdb db-stop

clean: db-stop
	rm -rf data storage .nux
