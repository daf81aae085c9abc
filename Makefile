# The two commands of the README: `make serve` and `make test`. Each does its
# own set-up on a fresh Debian machine with Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config.example.toml

# Test processes (pytest-xdist). Most tests wait on daemons and mail servers, not
# on a core: more workers than the machine's two cores keep both busy.
TEST_WORKERS ?= 4

.PHONY: serve test test-steps lint typecheck unit bench system-deps clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "cocmail needs Python 3.11 or newer"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && \
	    $(PYTHON) -m venv $(VENV); \
	  else echo "make: $(PYTHON) cannot create a venv: install python3-venv" >&2; exit 1; fi; }
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/cocmail db upgrade --config $(CONFIG)
	exec $(BIN)/cocmail serve --config $(CONFIG)

# Debian packages the integration tests drive as real peers: swaks (an outside
# SMTP client), postfix (in front of the LMTP listener), dovecot (IMAP).
system-deps:
	@sh tests/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check cocmail tests bench migrations
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold warning Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

# The last line says how it ended and how long it took, set-up included.
test:
	@start=$$(date +%s); $(MAKE) --no-print-directory test-steps; status=$$?; \
	  took=$$(( $$(date +%s) - start )); \
	  echo "make test: $$([ $$status = 0 ] && echo passed || echo FAILED), wall time $$((took / 60)) min $$((took % 60)) s"; \
	  exit $$status

# Lint and type check run beside the suite (a core's worth of work the suite
# leaves while its first daemons start); their output follows the suite's, and
# either failing fails the run. The suite names its 20 slowest tests (where the
# 10 minutes go).
# The suite starts about a thousand Python processes (daemons, their helpers,
# CLI calls). Where PYTHONDONTWRITEBYTECODE is set (as on these machines) none
# of them writes the compiled modules, and each compiled all of cocmail again
# (0.7 s of CPU a process): compileall writes them once, up front.
test-steps: $(STAMP) system-deps
	@$(BIN)/python -m compileall -q cocmail tests migrations > /dev/null
	@$(MAKE) --no-print-directory lint typecheck > .checks.log 2>&1 & checks=$$!; \
	  $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=20 $(PYTEST_ARGS); suite=$$?; \
	  wait $$checks; checked=$$?; cat .checks.log; rm -f .checks.log; \
	  [ $$checked = 0 ] || echo "make test: lint or type check failed (above)"; \
	  [ $$suite = 0 ] && [ $$checked = 0 ]

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/paging.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
