# Two commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export HF_HUB_OFFLINE := 1

.PHONY: install demo test test-fast bench bench-quick postgres browser lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch only ever as 2.13.0: the CPU wheel on local disk (any other spec pulls CUDA builds).
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@pg_isready -h 127.0.0.1 -p 5432

browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null)

demo: install
	$(BIN)/python example_project/demo.py

test: install postgres browser
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install postgres
	$(BIN)/python benchmarks/run.py

bench-quick: install postgres
	$(BIN)/python benchmarks/run.py --quick

lint: install
	$(BIN)/ruff check lacuna_orchestration tests benchmarks example_project
	$(BIN)/mypy lacuna_orchestration

clean:
	rm -rf $(VENV) .lacuna .pytest_cache build *.egg-info
