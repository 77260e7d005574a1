# Two commands on a fresh clone: `make demo` and `make test`. Both bootstrap .venv when it is
# missing or older than pyproject.toml or the pins.
# Another Python in its own venv: `make test-only PYTHON=python3.13 VENV=.venv-3.13` (what .ci/run does).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The lint tools and the type information mypy reads, pinned: the same lint verdict on every Python and
# every day (tools/pin_lint.py writes it and says how to move the pins). Dev venvs only, not a requirement.
PINS := constraints/lint.txt

.PHONY: demo test test-only lint fmt lab bench bench-deps venv clean

$(STAMP): pyproject.toml $(PINS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" -c $(PINS)
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m coffee_nb.demo

lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/

NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg
PYTEST := $(PY) -m pytest -rs tests notebooks $(NBVAL)

# Lint, format check and strict typing first: seconds, and they fail before the minutes of pytest.
test: lint
	$(PYTEST)

# The tests without the lint, whose verdict doesn't depend on the Python running it (CI lints once)
test-only: $(STAMP)
	$(PYTEST)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) tools/pin_lint.py --check  # all mypy just read is pinned, at the versions installed
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
	rm -rf $(VENV) .venv-* build *.egg-info
