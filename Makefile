# Two commands for a fresh machine (Debian/Ubuntu, Python 3.11):
#   make book   venv, install, data, embedded benchmark, execute every chapter, build the HTML
#   make test   unit tests, nbval over every chapter, the offline book build with zero warnings, and its pages in chromium
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export OMP_NUM_THREADS ?= 1
export PYTHONHASHSEED := 0

.PHONY: install data browser benchmark chapters html book test unit nbval mutation clean

install: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist (or set GCSCOOP_FASHION_DIR).
data:
	@if [ -n "$$GCSCOOP_FASHION_DIR" ] || [ -f $(FASHION) ]; then echo "Fashion-MNIST present"; \
	else $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; fi

# Debian's chromium, for the browser test of the built book (tests/test_pages.py).
browser:
	@if command -v chromium >/dev/null; then echo "chromium present"; \
	else $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

benchmark: install data
	@[ -f results/tuning.json ] || $(BIN)/python -m gcscoop_lib tune
	$(BIN)/python -m gcscoop_lib benchmark

chapters: install data
	$(BIN)/python scripts/run_book.py
	$(BIN)/python -m gcscoop_lib prune

html: install
	rm -rf _build/static && mkdir -p _build/static
	cp -r "$$($(BIN)/python -c 'import mathjax, os; print(os.path.dirname(mathjax.__file__))')/static/mathjax/es5" _build/static/mathjax
	$(BIN)/jupyter-book build . -W -n --keep-going

book: benchmark chapters html

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

clean:
	rm -rf _build mutants
