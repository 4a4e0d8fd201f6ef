# The two commands: `make run` (daemon on the embedded database) and `make test` (the whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test lint peers demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/sms-bridge serve

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The third-party SIP peers the interop tests talk to (Debian's sip-tester and sipsak), installed
# when missing and the machine can; without them those tests skip and say why.
PEERS = sipp:sip-tester sipsak:sipsak
peers:
	@missing=""; for p in $(PEERS); do command -v $${p%%:*} >/dev/null || missing="$$missing $${p#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			echo "installing$$missing (Debian packages)"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null \
			|| { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; } \
			|| echo "could not install$$missing: the SIP interop tests will skip"; \
		else echo "not installed:$$missing (apt-get install$$missing): the SIP interop tests will skip"; fi; \
	fi

# Two test processes (pytest-xdist): most of a test's time is waiting on sockets and
# PostgreSQL, so two of them share two cores well. The fault suite stays on one of them, in
# turn (tests/faults/conftest.py): its tests load the machine on purpose.
TEST_JOBS ?= 2
test: lint peers
	$(BIN)/python -m pytest --numprocesses $(TEST_JOBS) --dist loadgroup $(PYTEST_ARGS)

# A tenant admin's first day, on loopback: daemon, fake Twilio and a PBX sink.
demo: $(VENV)/.installed
	$(BIN)/python -m tests.demo

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

# Not part of `make test`: minutes of load on every core. Needs wrk (Debian package).
bench: PEERS += wrk:wrk
bench: $(VENV)/.installed-bench peers
	@command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
