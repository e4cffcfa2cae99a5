VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export UV_COMPILE_BYTECODE := 1

SHARED_QUORA ?= ../shared/data/quora
DVC_EXP := PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc exp run

.PHONY: help setup demo full-release subset test test-fast lint bench docs screenshot lock clean

## help: list the targets
help:
	@awk '/^## /{i = index($$0, ": "); printf "  %-10s %s\n", substr($$0, 4, i - 4), substr($$0, i + 2)}' $(MAKEFILE_LIST)

## setup: create .venv and install the pinned stack (uv; falls back to pip)
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	@if $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv; then \
		$(PYTHON) -m uv venv -q --allow-existing --python $(PYTHON) $(VENV) && \
		$(PYTHON) -m uv pip install -q --python $(BIN)/python -r requirements.lock && \
		$(PYTHON) -m uv pip install -q --python $(BIN)/python --no-deps -e . ; \
	else \
		$(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q -r requirements.lock && \
		$(BIN)/pip install -q --no-deps -e . ; \
	fi
	touch $@

## demo: run the whole pipeline on the synthetic demo data and print the model table
demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@cat reports/models.md

## full-release: the pipeline on the full Quora release, standard split, spaCy vectors, two re2 networks
# (text.end_marks=keep: the README's figures for this setting were measured with the marks kept)
full-release: setup
	mkdir -p data/external
	test -f data/external/quora_pairs_full.parquet || \
		cp $(SHARED_QUORA)/quora_pairs_full.parquet data/external/
	$(DVC_EXP) -S data.source=data/external/quora_pairs_full.parquet \
		-S split.strategy=column -S vectors.source=pretrained \
		-S re2.epochs=15 -S re2.seeds=2 -S 'ensemble.members=[logreg,gbdt,re2]' \
		-S text.end_marks=keep
	@cat reports/models.md

## subset: the pipeline on the real 28,984-pair subset, random split
subset: setup
	mkdir -p data/external
	test -f data/external/quora_pairs_subset.tsv || \
		cp $(SHARED_QUORA)/quora_pairs_subset.tsv data/external/
	$(DVC_EXP) -S data.source=data/external/quora_pairs_subset.tsv -S split.strategy=random
	@cat reports/models.md

## test: the whole test suite (about 12 minutes on 2 cores)
test: setup
	$(BIN)/python -m pytest -q

## test-fast: unit tests only, no model training or dvc repro (under a minute)
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not trains"

## lint: ruff check + format check
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## bench: benchmarks on the real Quora subset in ../shared (not tests)
bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/embeddings.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/accuracy.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/pair_features.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/scoring.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/train_speed.py --pairs 6000 --output reports/bench/train_speed_cpu.json
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/accuracy.py --splits random --vectors glove \
		--seeds 42 --models logreg gbdt birnn_cnn esim ensemble --work reports/bench/find_run \
		--output reports/bench/find_run/accuracy.json
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/find.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/full_release.py --models logreg gbdt re2
	# these two use full_release.py's run: its splits and its gbdt
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/find_full_release.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/serve.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/behaviour.py
	# the demo's bundles (make demo), and Java for Spark
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/spark_scoring.py

## docs: regenerate docs/benchmarks.md from reports/bench/*.json
docs: setup
	$(BIN)/python bench/tables.py

## screenshot: docs/serve_page.png, the page of dupq-serve as the browser test sees it
screenshot: setup
	DUPQ_SCREENSHOT=$(CURDIR)/docs/serve_page.png $(BIN)/python -m pytest -q tests/test_serve.py -k browser

## lock: re-resolve requirements.lock from pyproject.toml
lock:
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --extra pretrained --extra spark --python-version 3.11 -q -o requirements.lock

## clean: remove the virtual environment
clean:
	rm -rf $(VENV)
