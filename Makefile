# rnnlab: every target sets up .venv itself (Python 3.10+; torch is pinned to the CPU wheel, see README for CUDA).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Local copies of the datasets (laid out as <dataset>/<official file>); a sibling shared/data is used when present.
export RNNLAB_LOCAL_DATA ?= $(abspath $(wildcard ../shared/data))
export WANDB_MODE ?= offline

.PHONY: help venv train test lint docs check-install bench-imdb bench-cells bench-names tables clean
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed  ## create .venv with rnnlab, every extra and the tested versions (constraints.txt)

train: venv  ## train the default IMDB model (BiLSTM) on the CPU
	$(BIN)/python main.py fit --config configs/imdb_lstm.yaml

test: venv  ## the whole test suite, end-to-end CLI runs included (tiny official-format fixtures; plain `pytest`: the fast half)
	$(BIN)/python -m pytest -q -m "slow or not slow"

docs: venv  ## build the documentation site (mkdocs-material, warnings are errors) into site/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

check-install:  ## pip install . into a venv with another Lightning 2.x keeps it (and torch): ranges, not pins
	bash scripts/check_install.sh

lint: venv  ## ruff (lint + format check) and the import layering check (import-linter, pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench-imdb: venv  ## IMDB accuracy/throughput benchmarks -> benchmarks/results/*.json and a table
	$(BIN)/python benchmarks/imdb.py

bench-cells: venv  ## recurrent layer throughput: padded vs packed vs handwritten
	$(BIN)/python benchmarks/cells.py

bench-names: venv  ## names benchmarks: namesex 10 folds + baselines, names -> language
	$(BIN)/python benchmarks/names.py gender
	$(BIN)/python benchmarks/names.py language

tables: venv  ## rewrite the result tables of README.md and docs/ from benchmarks/results/*.json
	$(BIN)/python benchmarks/readme_tables.py

clean:  ## remove runs/ and the encoded-data cache (keeps downloads)
	rm -rf runs data/*/cache
