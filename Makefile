# Two commands do all the set-up on a fresh machine:  `make book`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv data test test-fast lint format book bench ship clean-book

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

data: $(STAMP)
	@bash scripts/get-fashion-mnist.sh $(PY)

# Everything: unit tests, every notebook (nbval, smoke profile) and the smoke book in Chromium.
test: venv data
	$(PY) -m pytest -q

# Unit tests only (no notebooks, no book): under two minutes.
test-fast: venv data
	$(PY) -m pytest -q -o addopts="" -m "not book" tests

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

book: venv data
	$(PY) -m encsteal.book --profile $${PROFILE:-quick}

bench: venv data
	$(PY) bench/bench_victim.py

clean-book:
	rm -rf _build book/chapters

ship: venv data
	$(PY) -m encsteal.ship --retrain
