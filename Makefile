# Two commands for a fresh machine (Debian/Ubuntu, Python 3.11):
#   make book   venv, install, data, embedded benchmark, execute every chapter, build the HTML
#   make test   unit tests, nbval over every chapter, the offline book build with zero warnings, and its pages in chromium
#   make lab    the chapters in JupyterLab, to run and change them with the project's kernel
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export OMP_NUM_THREADS ?= 1
export PYTHONHASHSEED := 0

.PHONY: install data browser tuning benchmarks protocols benchmark chapters html book lab test unit nbval mutation pipeline clean

# The editable install's PYTHONWARNINGS drops the one note setuptools gives every editable install of a
# flat layout, which pip prints as a warning ("Editable installation. Please be careful with folders in your
# working directory with the same name as your package"): here that folder is the package itself.
install: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	PYTHONWARNINGS='ignore:Editable installation.' $(BIN)/pip install -q --no-deps -e .
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist (or set GCSCOOP_FASHION_DIR).
data:
	@if [ -n "$$GCSCOOP_FASHION_DIR" ] || [ -f $(FASHION) ]; then echo "Fashion-MNIST present"; \
	else $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; fi

# Debian's chromium, for the browser test of the built book (tests/test_pages.py).
browser:
	@if command -v chromium >/dev/null; then echo "chromium present"; \
	else $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

# Beyond the papers' protocol (seeds 1-3 on CoOp's partition): ten seeds, and the reversed base/new
# partition, for every method but CoCoOp (a CoCoOp run costs as much as 20-100 others); and the other
# protocols (06_protocols). --jobs 2: populations of single-threaded runs on both cores, records alike.
# The ten seeds train first and tracked (--track): the stopping protocol reads their curves, and the
# papers' three seeds are then loaded from them.
TEN_SEEDS := 1 2 3 4 5 6 7 8 9 10
SEEDED := zeroshot coop prograd kgcoop sam gcscoop

# The stages of `make book`, each a target of its own (benchmarks/pipeline.py times them one by one).
tuning: install data
	$(BIN)/python -m gcscoop_lib tune --results results --if-stale --jobs 2

benchmarks: tuning
	$(BIN)/python -m gcscoop_lib benchmark --results results --jobs 2 --name benchmark_10_seeds --seeds $(TEN_SEEDS) --methods $(SEEDED) --track
	$(BIN)/python -m gcscoop_lib benchmark --results results --jobs 2
	$(BIN)/python -m gcscoop_lib benchmark --results results --jobs 2 --name benchmark_reversed --partition reversed --seeds $(TEN_SEEDS) --methods $(SEEDED)

protocols: benchmarks
	$(BIN)/python -m gcscoop_lib protocol all --jobs 2 --results results

benchmark: protocols

chapters: install data
	$(BIN)/python scripts/run_book.py --jobs 2
	$(BIN)/python -m gcscoop_lib prune --results results

# -q: Sphinx's status lines off (the progress lines and myst's and myst-nb's dumps of their whole
# configuration, which no setting turns off), its warnings still printed, and -W still fails on them.
html: install
	rm -rf _build/static && mkdir -p _build/static
	cp -r "$$($(BIN)/python -c 'import mathjax, os; print(os.path.dirname(mathjax.__file__))')/static/mathjax/es5" _build/static/mathjax
	$(BIN)/jupyter-book build . -W -n --keep-going -q

book: benchmark chapters html

# JupyterLab on book/, its python3 kernel the venv's ipykernel (the venv's kernelspec first, ahead of
# any user-level one), the kernel's sockets CurveZMQ-encrypted; --allow-root only where we are root
# (a container, CI), which Jupyter refuses otherwise. Keep the recipe one line:
# tests/test_lab.py runs it as `make -n -o install -o data lab` prints it.
lab: install data
	JUPYTER_PREFER_ENV_PATH=1 $(BIN)/jupyter lab --ServerApp.root_dir=book --KernelManager.transport_encryption=auto$(if $(SUDO),, --allow-root)

test: install data browser html
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg tests book

# Not part of `make test`: mutants of methods.py and training.py against the unit tests (score in the README).
mutation: install data
	$(BIN)/pip install -q mutmut==3.8.1
	rm -rf mutants
	$(BIN)/mutmut run --max-children 1 || true
	$(BIN)/mutmut results --all true > results/mutation.txt
	$(BIN)/python scripts/mutation_score.py results/mutation.txt

# Every number of the book from nothing, timed stage by stage, and a ten-seed sweep with and
# without populations (results/pipeline_cpu.md): it deletes and regenerates the stored records.
pipeline: install data
	$(BIN)/python benchmarks/pipeline.py --regenerate

clean:
	rm -rf _build mutants
