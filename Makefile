# The two commands of the README: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= $(or $(DASHBOARD_HOST),127.0.0.1)
PORT ?= $(or $(DASHBOARD_PORT),8000)
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint typecheck unit soak bench browser-deps node-deps clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m dashboard serve --host $(HOST) --port $(PORT)

# Debian's Chromium for the browser tests (never `playwright install`: it downloads).
browser-deps:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; \
	fi

# tus-js-client under Node, and Uppy + esbuild for the browser case (tests/js/package.json);
# reinstalled when the lock file is newer than what npm last installed.
node-deps:
	@if [ -f tests/js/package.json ] && { [ ! -f tests/js/node_modules/.package-lock.json ] || \
		[ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; }; then \
		cd tests/js && npm ci --silent --no-audit --no-fund; \
	fi

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy dashboard api dashboard_modal modal_app.py

test: $(VENV)/.dev browser-deps node-deps lint
	$(PY) -m pytest -m "not slow"

# Benchmark scripts (figures in BENCHMARKS.md); each exits non-zero when a target is missed.
BENCHES := upload fanout slow_consumers scale cold_start profile_agent small_files
bench: $(VENV)/.dev
	@status=0; for b in $(BENCHES); do echo "== bench/$$b.py"; $(PY) bench/$$b.py || status=1; done; exit $$status

soak: $(VENV)/.dev
	$(PY) -m pytest tests/soak -m slow -p no:cacheprovider -rP

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
