# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint pytest doctest bench bench-distance docs clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[mongo,test,docs,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: lint pytest doctest

lint: $(STAMP)
	$(VENV)/bin/ruff check offload tests examples bench docs/conf.py
	$(VENV)/bin/mypy --ignore-missing-imports offload

pytest: $(STAMP)
	$(PY) -m pytest

doctest: $(STAMP)
	$(PY) -m sphinx -q -b doctest docs docs/_build/doctest

docs: $(STAMP)
	$(PY) -m sphinx -q -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) bench/run.py

# The database benches again with the server 0.2 ms and 1 ms away (a user-space
# delay line: this kernel has no netem).
bench-distance: $(STAMP)
	for rtt in 0.2 1; do OFFLOAD_BENCH_RTT_MS=$$rtt $(PY) bench/bench_dbapi.py; \
		OFFLOAD_BENCH_RTT_MS=$$rtt $(PY) bench/bench_mongo.py; done

clean:
	rm -rf $(VENV) docs/_build build *.egg-info .pytest_cache
