# fedgate — two commands: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run config-doc install dev-install test-deps ui-test-deps test lint typecheck check bench clean mutation test-fast

$(BIN)/python:
	@$(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -U pip

# The editable install is redone only when pyproject.toml is newer than this stamp, so a
# second `make run` starts the gateway at once, without pip.
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	@echo "fedgate: installing into $(VENV) (again only when pyproject.toml changes)"
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[all]'
	@touch $@

install: $(VENV)/.installed-all

dev-install: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

# The embedded default: ./data mounted as `local`, state in ./.fedgate (SQLite).
# Start-up lines are JSON on stderr; a first start's admin key is printed last.
run: $(VENV)/.installed-all
	@$(BIN)/fedgate serve --host $(HOST) --port $(PORT)

# docs/configuration.md from the declarations in gateway/config.py and adapters/options.py
# (tests/gateway/test_config_strict.py fails while it is stale).
config-doc:
	@$(BIN)/python scripts/gen-config-doc.py

# System packages and servers the tests run against (idempotent; needs root or sudo).
test-deps: dev-install
	bash scripts/install-system-deps.sh
	bash scripts/gfal2-venv.sh $(VENV)
	@for s in scripts/testbeds/*.sh; do echo "== install $$s"; bash $$s install || exit 1; done
	$(MAKE) ui-test-deps

# axe-core for the browser tests (tests/ui), pinned by tests/ui/package-lock.json.
ui-test-deps:
	cd tests/ui && npm ci --no-audit --no-fund --loglevel=error

lint:
	$(BIN)/ruff check gateway adapters tokens tests bench
	$(BIN)/ruff format --check gateway adapters tokens tests bench

typecheck:
	$(BIN)/mypy

# Each backend's test fixture starts its real server through scripts/testbeds/<name>.sh
# and stops it at the end of the session.
test: test-deps
	$(BIN)/ruff check gateway adapters tokens tests bench
	$(BIN)/mypy
	$(BIN)/pytest -p no:cacheprovider

# The server-free subset (well under 90 s): tokens on SQLite, the gateway in-process on a
# local folder, the checks on the suite itself.
FAST_TESTS := tests/test_hygiene.py tests/tokens tests/adapters/test_posix.py \
	tests/adapters/test_posix_md5_cache.py tests/gateway/test_data_api.py \
	tests/gateway/test_safety.py tests/gateway/test_delegation.py tests/gateway/test_paths_unit.py \
	tests/adapters/test_posix_writer.py tests/gateway/test_archive_unit.py tests/test_mutation_rules.py
test-fast:
	$(BIN)/pytest -p no:cacheprovider -q -k "not postgres" $(FAST_TESTS)

# Mutation testing of the security- and data-critical modules (mutmut; not in CI: it takes
# tens of minutes). Writes docs/mutation-report.md; fails on a survivor that is neither
# killed nor listed in docs/mutation-equivalents.md. MUTATION_ARGS="--only tokens/scopes.py".
mutation: dev-install
	$(BIN)/python -m tests.mutation $(MUTATION_ARGS)

bench: dev-install
	$(BIN)/python bench/stream.py

clean:
	rm -rf .testbeds .pytest_cache .mypy_cache .ruff_cache
