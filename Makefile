# The two commands (see README.md):
#   make run    provision the local platform, run the conformance suites, write the report
#   make test   the harness's own tests, the smoke, metrics, logs and security suites
#               against a real local platform, then the durability and load suites on others
#   make upgrade the release gate (pytest suites/upgrade): the two newest releases
#
# Both set everything up themselves: nginx (apt-get), a virtualenv in .venv,
# and the component binaries, built from their Go modules into
# $(STACKPROOF_CACHE) (default ~/.cache/stackproof) on first use.

SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
export STACKPROOF_CACHE ?= $(HOME)/.cache/stackproof
RESULTS ?= results
# pytest's exit code 5 means "no tests ran": that is a failure, never a pass
PYTEST_NO_EMPTY = rc=$$?; if [ $$rc -eq 5 ]; then echo "stackproof: pytest collected no tests" >&2; exit 1; fi; exit $$rc

.PHONY: run test upgrade setup build doctor clean
run: setup build
	$(BIN)/stackproof run --results $(RESULTS)

# the test steps live in .ci/run, so CI and `make test` are one command
test:
	bash .ci/run

# the release gate: upgrade the second newest release to the newest, then roll back
upgrade: setup
	$(BIN)/stackproof build --release $$($(BIN)/python -c "from harness.releases import Catalog; print(Catalog.load().newest(2)[0].name)")
	$(BIN)/python -m pytest suites/upgrade --no-skips --timeout=1800 --stackproof-results $(RESULTS) \
	  --junitxml=$(RESULTS)/upgrade-junit.xml; $(PYTEST_NO_EMPTY)

setup: $(VENV)/.installed
	@scripts/system-deps.sh
	@# the developer tools the tests use, pinned in harness/tools.py (actionlint), built into the binary cache
	@# here, never inside a test: the tests run behind a network guard (tests/netguard/)
	@$(BIN)/python -c 'from harness.tools import TOOLS, resolve_tool; \
	  [print(f"[stackproof] {n} {v}: {resolve_tool(n).path}") for n, (_, v) in TOOLS.items()]'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# build (or find in the cache) the newest release's binaries, with progress
build: setup
	$(BIN)/stackproof build

doctor: setup
	$(BIN)/stackproof doctor

clean:
	rm -rf $(VENV) $(RESULTS)
