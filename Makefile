# Two commands on a fresh clone: `make demo` and `make test`. Both bootstrap .venv when it is
# missing or older than pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint fmt lab bench bench-deps venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m coffee_nb.demo

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

# Lint, format check and strict typing first: seconds, and they fail before the minutes of pytest.
test: lint
	$(PY) -m pytest -rs tests notebooks $(NBVAL)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports  # the layers (contracts in pyproject.toml)
	$(PY) -m deptry .  # every import declared, every declared package used ([tool.deptry] in pyproject.toml)

# Rewrite in place what the tools can fix; `make lint` shows what is left.
fmt: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/budget.py
	$(PY) benchmarks/metrics.py
	$(PY) benchmarks/throughput.py
	@test -x .venv-bench/bin/python && $(PY) benchmarks/load_ext.py || echo "load_ext benchmark: run 'make bench-deps' first"

# jupyter-ai-magics (the %load_ext comparison) pins LangChain versions that clash with ours: own venv
bench-deps:
	@test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet "jupyter-ai-magics==2.31.7" ipython

clean:
	rm -rf $(VENV) .venv-bench build *.egg-info
