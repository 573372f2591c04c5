# Two commands matter (README): `make run` starts the demo, `make test` runs every check.
# Both create .venv and install what they need themselves, so a fresh clone just works.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=
PURE_TESTS := tests/test_event.py tests/test_redact.py tests/test_redact_properties.py \
	tests/server/test_ingest.py tests/server/test_payload.py tests/store/test_sqlite_codec.py \
	tests/store/test_sqlite_derived.py tests/test_compiled.py

.PHONY: run test lint format typecheck unit bench clean install-run install-test chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Reinstall only when the dependency list changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[server,langgraph]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[all]'
	touch $@

install-run: $(VENV)/.installed-run $(VENV)/.speedups
install-test: $(VENV)/.installed-test $(VENV)/.speedups chromium

# The hot-path modules compiled with mypyc (logbeacon/_compiled.py HOT_MODULES; a test keeps
# this list equal to it). Rebuilt when one changes; a failed build leaves pure Python.
HOT := src/logbeacon/event.py src/logbeacon/redact.py src/logbeacon/store/_sqlite_codec.py \
	src/logbeacon/server/_prepare.py src/logbeacon/server/payload.py \
	src/logbeacon/store/_sqlite_derived.py
$(VENV)/.speedups: $(HOT) src/logbeacon/_compiled.py tools/build_speedups.py $(VENV)/.installed-run
	$(PIP) install 'mypy>=1.10' setuptools
	$(BIN)/python tools/build_speedups.py
	touch $@

# Browser tests drive Debian's chromium through Playwright (no browser download is possible).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing Debian's chromium for the browser tests"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

run: install-run
	$(BIN)/logbeacon demo

lint: install-test
	$(BIN)/ruff check src tests bench examples tools
	$(BIN)/ruff format --check src tests bench examples tools

typecheck: install-test
	$(BIN)/mypy

unit: install-test
	$(BIN)/pytest $(PYTEST_ARGS)
	# The same modules as plain Python (what an install without a C compiler runs).
	LOGBEACON_PURE_PYTHON=1 $(BIN)/pytest -q $(PURE_TESTS)

test: lint typecheck unit

format: install-test
	$(BIN)/ruff format src tests bench examples tools
	$(BIN)/ruff check --fix src tests bench examples tools

clean:
	-$(BIN)/python tools/build_speedups.py --clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
