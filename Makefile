# The two commands a newcomer needs: `make run` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)
CHROMIUM ?= /usr/bin/chromium

.PHONY: install run test test-fast check lint typecheck browser-deps stop bench

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Serve the portal on http://127.0.0.1:5000 with embedded PostgreSQL + S3 and demo data.
run: $(STAMP)
	$(PY) scripts/run.py

## The whole suite: real PostgreSQL, real S3 (SeaweedFS), real browser (Debian's Chromium).
test: $(STAMP) browser-deps
	$(PY) -m pytest

## Everything but the browser tests (no Chromium needed).
test-fast: $(STAMP)
	$(PY) -m pytest --ignore=tests/browser

check: lint typecheck test

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy governance

## Debian's Chromium for the Playwright tests (never a browser download).
browser-deps:
	@test -x $(CHROMIUM) || scripts/install-chromium.sh

## The scale benchmark (bench/run.py): `make bench SIZE=S|M|L [BENCH_ARGS="--prepared-compare --pages a,b --variant L:N=V"]`.
SIZE ?= S
bench: $(STAMP)
	$(PY) bench/run.py --size $(SIZE) $(BENCH_ARGS)

## Stop embedded services left running by an interrupted command.
stop: $(STAMP)
	$(PY) scripts/run.py --stop
