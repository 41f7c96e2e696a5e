# Chronic-absence workspace. `make help` lists every target.

#################################################################################
# GLOBALS                                                                       #
#################################################################################

PYTHON_SYSTEM ?= python3
VENV          := .venv
PY            := $(VENV)/bin/python
STAMP         := $(VENV)/.installed
SAMPLE        := data/raw/sample

# Options for `make reports` (empty = params/settings.yaml decides)
SOURCE   ?=
DATA     ?=
AS_OF    ?=
PROFILE  ?=
AUDIENCE ?=
DISTRICT ?=
SCHOOLS  ?=
LIMIT    ?=
WORKERS  ?=
RERUN_FAILED ?=

# Daily attendance rows for `make bench` (add 1e9 for a state; it takes a long while)
SIZES ?= 1e6 1e7 1e8

# Keep Jupyter, IPython and matplotlib state inside the project (STACK.md section 6).
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export IPYTHONDIR   := $(CURDIR)/.cache/ipython

REPORT_ARGS = $(if $(SOURCE),--source $(SOURCE)) $(if $(DATA),--data $(DATA)) \
	$(if $(AS_OF),--as-of $(AS_OF)) $(if $(PROFILE),--profile $(PROFILE)) \
	$(if $(AUDIENCE),--audience $(AUDIENCE)) $(if $(DISTRICT),--district "$(DISTRICT)") \
	$(if $(SCHOOLS),--schools $(SCHOOLS)) $(if $(LIMIT),--limit $(LIMIT)) \
	$(if $(WORKERS),--workers $(WORKERS)) $(if $(RERUN_FAILED),--rerun-failed)

.DEFAULT_GOAL := help

#################################################################################
# ENVIRONMENT                                                                   #
#################################################################################

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# rfc3987-syntax builds ~35 parsers at import and costs every Jupyter tool
	@# 2-3 s; no Jupyter schema needs it (STACK.md pitfall P1).
	-$(PY) -m pip uninstall --quiet -y rfc3987-syntax
	@touch $(STAMP)

## Create .venv and install the workspace with its test tools
install: $(STAMP)

#################################################################################
# PIPELINE                                                                      #
#################################################################################

$(SAMPLE)/sample_meta.json: | $(STAMP)
	$(PY) -m analysis data --out $(SAMPLE)

## Generate the sample district (seeded; ~12,000 students, 20 schools) into data/raw/sample
data: $(STAMP)
	$(PY) -m analysis data --out $(SAMPLE)

## Write a report pack for every school + the district summary (SOURCE= DATA= AS_OF= PROFILE= AUDIENCE= DISTRICT= SCHOOLS= LIMIT= WORKERS= RERUN_FAILED=1)
reports: $(STAMP) $(if $(or $(SOURCE),$(DATA)),,$(SAMPLE)/sample_meta.json)
	$(PY) -m analysis reports $(REPORT_ARGS)

## Compute the aggregate table only (same options as reports)
prepare: $(STAMP)
	$(PY) -m analysis prepare $(REPORT_ARGS)

## Open JupyterLab on the notebooks
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

#################################################################################
# DASHBOARDS                                                                    #
#################################################################################

PORT ?=

## Serve the public dashboard on loopback: sample + NYC releases, made if missing (PORT=8866)
dashboards: $(STAMP)
	$(PY) -m analysis.dashboard_server public --prepare sample nyc-doe $(if $(PORT),--port $(PORT))

## Serve the staff dashboard on loopback behind a token (.cache/staff-dashboard.token; PORT=8867)
staff-dashboard: $(STAMP)
	$(PY) -m analysis.dashboard_server staff --prepare sample $(if $(PORT),--port $(PORT))

## Write the public dashboard as static HTML + CSV, audited (SOURCE=sample|nyc-doe|ct-edsight)
dashboards-export: $(STAMP)
	$(PY) -m analysis.dashboard_export --source $(or $(SOURCE),sample)

## Load test of the public dashboard: 20 viewers on loopback; figures into bench/README.md
bench-dashboards: $(STAMP)
	$(PY) bench/dashboard_load.py

#################################################################################
# QUALITY                                                                       #
#################################################################################

## Run the whole test suite (unit, real data, notebooks)
test: $(STAMP)
	$(PY) -m pytest

## Run the fast unit tests only (no notebook runs)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not notebooks"

## Benchmark the metrics step vs bare DuckDB and pandas into bench/README.md (SIZES="1e6 1e7 1e8 1e9")
bench: $(STAMP)
	$(PY) bench/run_bench.py --sizes $(SIZES)

## Benchmark smoke run: 1 million daily rows, printed only (bench/README.md untouched)
bench-quick: $(STAMP)
	$(PY) bench/run_bench.py --sizes 1e6 --no-write

## Benchmark the report batch: Papermill floor, warm vs fresh, 1 vs 2 workers, a synthetic state (BENCH_SCHOOLS=1000; ~30 min)
bench-reports: $(STAMP)
	$(PY) bench/report_batch.py --schools $(or $(BENCH_SCHOOLS),1000)

## Strip outputs from committed notebooks and keep kernelspec python3
clean-notebooks: $(STAMP)
	$(PY) -m analysis.notebooks_hygiene notebooks

## Remove generated data, processed runs and reports (keeps .venv)
clean:
	rm -rf data/raw/sample data/interim/* data/processed/* reports/* .cache .pytest_cache

#################################################################################
# Self-documenting help: the line starting with ## above each target           #
#################################################################################

## List every target
help:
	@awk '/^## /{desc=substr($$0,4); next} /^[a-zA-Z_-]+:/{ if (desc) { split($$1,t,":"); \
	printf "  \033[36m%-18s\033[0m %s\n", t[1], desc; desc="" } }' $(MAKEFILE_LIST)

.PHONY: install data reports prepare lab test test-fast bench bench-quick clean-notebooks clean \
	help dashboards staff-dashboard dashboards-export bench-dashboards bench-reports
