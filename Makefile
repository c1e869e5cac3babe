# creditrisk — every target is a one-liner into the CLI. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := creditrisk

SIZE    ?= small
DATA    ?=
RUN_ID  ?=
FORCE   ?=
FROM    ?=
TO      ?=
PARAMS  ?=
INPUT   ?= data/raw
OUTPUT  ?= reports/scores.parquet
MODEL_URI ?=
WORKERS ?= 1
HOST    ?= 127.0.0.1
PORT    ?= 8888
CURRENT ?=
LABELS  ?=
AUTO_RETRAIN ?=
SOURCE  ?=
MAX_AGE_HOURS ?= 48
IMAGE   ?= creditrisk-api
TAG     ?=
URL     ?= http://127.0.0.1:8000
VERSION ?=
REASON  ?=

RUN_FLAGS = --size $(SIZE) $(if $(DATA),--data '$(DATA)') $(if $(RUN_ID),--run-id $(RUN_ID)) $(if $(FORCE),--force) $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO)) $(foreach p,$(PARAMS),-p '$(p)')

.PHONY: help install install-spark lock pipeline score serve monitor freshness data lab mlflow-ui lint format test test-unit test-spark test-notebooks test-e2e bench manifest image smoke promote rollback clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "; printf "usage: make <target> [ENGINE=duckdb|spark] [SIZE=tiny|small|full|N] [DATA=dir|s3://bucket/prefix] [RUN_ID=id] [FORCE=1] [FROM=stage] [TO=stage] [PARAMS=\"stage.name=value …\"]\n\n"} \
	/^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The venv holds exactly requirements-dev.lock (hash-checked, installed by uv) and the project,
# editable, without dependencies; the kernel is registered inside it. It is re-synced when
# pyproject.toml or the lock changes. uv comes from the lock too: its pinned, hashed entry is the
# one thing pip installs. `uv pip check` fails when the lock no longer satisfies pyproject.toml's
# dependencies: run `make lock`.
UV_FROM_LOCK = $(BIN)/python -m pip install --quiet --require-hashes --no-deps -r <(sed -n '/^uv==/,/[^\\]$$/p' requirements-dev.lock)

$(STAMP): pyproject.toml requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(UV_FROM_LOCK)
	$(BIN)/uv pip sync --quiet --require-hashes --python $(BIN)/python requirements-dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/uv pip check --quiet --python $(BIN)/python
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "creditrisk (.venv)" >/dev/null
	@touch $@

install: $(STAMP) ## Create .venv with the package, dev tools and the Jupyter kernel

# The Spark engine's extra (pyspark, its Connect client): installed on top of the synced venv
# from its own hashed lock, which pins everything else as requirements-dev.lock does. A re-sync
# of the venv (a newer $(STAMP)) removes it, and the next ENGINE=spark target puts it back.
SPARK_STAMP := $(VENV)/.installed-spark
$(SPARK_STAMP): $(STAMP) requirements-spark.lock
	$(BIN)/uv pip install --quiet --require-hashes --python $(BIN)/python -r requirements-spark.lock
	$(BIN)/uv pip check --quiet --python $(BIN)/python
	@touch $@

install-spark: $(SPARK_STAMP) ## Add the Spark engine (pyspark) to .venv; ENGINE=spark targets do it themselves

# What a target needs: the venv, plus the Spark extra when it runs with ENGINE=spark.
ENGINE ?=
NEEDS = $(STAMP) $(if $(filter spark,$(ENGINE)),$(SPARK_STAMP))
ENGINE_FLAG = $(if $(ENGINE),--engine $(ENGINE))

# One resolution for Linux, macOS and Windows on Python 3.11 (--universal; --fork-strategy fewest
# keeps one version of each package rather than newer ones for Python 3.12), from PyPI alone.
# uv keeps a lock's pins while they still satisfy pyproject.toml; UPGRADE=1 takes the newest.
# The dev lock is constrained by the runtime lock, so the packages they share agree. Only uv is
# needed (the venv's, installed from the lock if missing), not an up-to-date venv.
LOCK_FLAGS = --quiet --universal --fork-strategy fewest --python-version 3.11 --generate-hashes \
	--default-index https://pypi.org/simple --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

lock: ## Re-resolve the lock files (runtime, dev, spark) from pyproject.toml with uv (UPGRADE=1: newest versions)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(UV_FROM_LOCK)
	$(BIN)/uv pip compile $(LOCK_FLAGS) pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile $(LOCK_FLAGS) pyproject.toml --extra dev -c requirements.lock -o requirements-dev.lock
	$(BIN)/uv pip compile $(LOCK_FLAGS) pyproject.toml --extra dev --extra spark -c requirements-dev.lock -o requirements-spark.lock

pipeline: $(NEEDS) ## Run the notebook pipeline end to end into runs/<run_id>/
	$(BIN)/creditrisk run $(RUN_FLAGS) $(ENGINE_FLAG)

score: $(NEEDS) ## Batch-score raw tables with the champion (INPUT=dir|s3://… OUTPUT=file.parquet|.csv [MODEL_URI=])
	$(BIN)/creditrisk score $(ENGINE_FLAG) --input '$(INPUT)' --output '$(OUTPUT)' $(if $(MODEL_URI),--model-uri '$(MODEL_URI)')

serve: $(STAMP) ## REST API on the champion (HOST=127.0.0.1 PORT=8000 WORKERS=1)
	$(BIN)/creditrisk serve --host $(HOST) --port $(if $(filter 8888,$(PORT)),8000,$(PORT)) --workers $(WORKERS)

monitor: $(NEEDS) ## Drift, stability, back-test, retrain decision (CURRENT=dir|s3://… [LABELS=] [AUTO_RETRAIN=1]; empty: test split)
	$(BIN)/creditrisk monitor $(ENGINE_FLAG) $(if $(CURRENT),--current '$(CURRENT)') $(if $(LABELS),--labels '$(LABELS)') $(if $(AUTO_RETRAIN),--auto-retrain) $(foreach p,$(PARAMS),-p '$(p)')

freshness: $(STAMP) ## Fail when a source table is older than MAX_AGE_HOURS (SOURCE=dir|s3://…; default data/raw)
	$(BIN)/creditrisk freshness --fail-on-stale --max-age-hours $(MAX_AGE_HOURS) $(if $(SOURCE),--source '$(SOURCE)')

data: $(STAMP) ## Generate synthetic Home Credit CSVs into data/raw (SIZE=)
	$(BIN)/creditrisk generate --size $(SIZE) $(if $(FORCE),--force)

lab: $(STAMP) ## Open JupyterLab on notebooks/ with the project kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=$(HOST) --port=$(PORT)

mlflow-ui: $(STAMP) ## MLflow UI on the workspace's tracking store and registry (PORT=5000)
	$(BIN)/mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$${CREDITRISK_HOME:-$(CURDIR)}/mlflow.db}" --host $(HOST) --port $(if $(filter 8888,$(PORT)),5000,$(PORT))

lint: $(STAMP) ## ruff lint + format check, mypy on the library
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

test: lint test-unit test-spark test-notebooks test-e2e ## Lint, unit tests, Spark engine, notebooks (nbmake), end-to-end pipeline

test-unit: $(STAMP) ## Unit, data, runner and S3 tests
	$(BIN)/pytest -m "not e2e and not spark" -n 2 --dist loadgroup

test-spark: $(SPARK_STAMP) ## The Spark engine against DuckDB (one local Spark session; installs the spark extra)
	$(BIN)/pytest -m spark -p no:xdist

# As an analyst opens them: a pipeline run builds a workspace with a champion, then every
# notebook runs top to bottom with its defaults, interactively. Interactive runs write only to
# their own scratch/<notebook>/, so the seven are independent and run two at a time, and the
# workspace's reports/, data/, MLflow store and registry must be byte-identical afterwards.
PRODUCTION_FILES = find reports data mlartifacts mlflow.db -type f -print0 | sort -z | xargs -0 sha256sum

test-notebooks: $(STAMP) ## Every notebook with its defaults (nbmake), interactively, on a fresh pipeline run's workspace; production unchanged
	ws=$$(mktemp -d); rc=0; CREDITRISK_HOME=$$ws $(BIN)/creditrisk run --size small --to register || rc=$$?; \
	[ $$rc -ne 0 ] || (cd $$ws && $(PRODUCTION_FILES)) > $$ws/production.sha256; \
	[ $$rc -ne 0 ] || CREDITRISK_HOME=$$ws $(BIN)/pytest -n 2 --nbmake --nbmake-kernel=$(KERNEL) --nbmake-timeout=900 notebooks/ || rc=$$?; \
	[ $$rc -ne 0 ] || (cd $$ws && $(PRODUCTION_FILES)) | diff $$ws/production.sha256 - || { rc=1; echo "interactive notebook runs changed the files above"; }; \
	rm -rf $$ws; exit $$rc

test-e2e: $(STAMP) ## make pipeline in temporary workspaces (tiny: champion, re-run, strict gates, new cut-off; real-format and broken input)
	$(BIN)/pytest -m e2e -n 2

bench: $(STAMP) ## Benchmarks at SIZE=full, then serving (REST vs mlflow serve, batch, 1M applicants); bench/RESULTS.md
	$(BIN)/python bench/run.py
	$(BIN)/python bench/serving_bench.py --million

manifest: $(STAMP) ## Deploy manifest of the champion → reports/deploy_manifest.json (IMAGE=creditrisk-api TAG=<its version>)
	$(BIN)/creditrisk manifest --image '$(IMAGE)' $(if $(TAG),--tag '$(TAG)')

image: ## Build the REST API image from serving/Dockerfile (IMAGE=creditrisk-api TAG=latest; CD passes the manifest's)
	docker build -f serving/Dockerfile -t '$(IMAGE):$(or $(TAG),latest)' --build-arg GIT_COMMIT="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" .

smoke: $(STAMP) ## Smoke-test a running API: /ready, then /predict on the example (URL=http://127.0.0.1:8000)
	$(BIN)/creditrisk smoke --url '$(URL)'

promote: $(STAMP) ## Make a registered version the champion (VERSION=N [REASON=…]); refused unless it passed validation
	$(BIN)/creditrisk promote $(if $(VERSION),--version '$(VERSION)') $(if $(REASON),--reason '$(REASON)')

rollback: $(STAMP) ## Move champion back to the previous champion, per the promotion ledger ([REASON=…])
	$(BIN)/creditrisk rollback $(if $(REASON),--reason '$(REASON)')

clean: ## Remove generated data, runs, reports, scratch and caches (keeps .venv)
	rm -rf data scratch runs/*/ runs/latest runs/LATEST runs/.state.json runs/.hash-cache.json reports/* mlflow.db mlartifacts .pytest_cache .ruff_cache
	@touch runs/.gitkeep reports/.gitkeep
