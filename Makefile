# DeeperFour: `make repro` (install, sample data, dvc repro) and `make test` (install, tests).
# Everything runs inside .venv; torch==2.14.1 / torchvision==0.29.1 install from this machine's disk.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg

.PHONY: help install data data-extended repro test test-slow lint lab clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements.txt requirements-nodeps.txt pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "DeeperFour (.venv)" >/dev/null
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

data: $(STAMP)  ## write the embedded sample data into data/ when absent (byte-identical: data.dvc stays clean)
	@if [ ! -d data/samples ]; then $(BIN)/deeperfour data samples; else echo "data/ present"; fi

data-extended: $(STAMP)  ## optional: Debian wallpapers + openclipart into data/extended (changes data.dvc)
	apt-get update -qq && apt-get install -y -qq lomiri-wallpapers-16.04 mate-backgrounds plasma-workspace-wallpapers openclipart-svg >/dev/null
	$(BIN)/pip install --quiet cairosvg==2.9.1  # renders the clip-art style (prepare_datasets)
	$(BIN)/deeperfour data extended
	$(BIN)/dvc add data

repro: data  ## run the whole pipeline (dvc repro); PROFILE=gpu for paper scale on a GPU
ifeq ($(PROFILE),gpu)
	$(BIN)/dvc exp run $$($(BIN)/deeperfour profile gpu --dvc-args)
else
	$(BIN)/dvc repro
endif

test: data  ## run the test suite (fast tests; `make test-slow` adds the slow ones)
	$(BIN)/python -m pytest -q

test-slow: data
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check deeperfour tests

lab: data  ## JupyterLab with the notebooks' kernel (this .venv)
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)

.PHONY: bench
bench: data  ## benchmarks: fps, peak memory, % of machine peak per stage vs the reference nets -> reports/benchmarks.json
	env -u OMP_NUM_THREADS $(BIN)/python benchmarks/run.py --out reports/benchmarks.json $(BENCH_ARGS)
