# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
# `make matrix PY=3.12` selects matrix Pythons; PY stays the venv's interpreter for every recipe.
ifeq ($(origin PY),command line)
MATRIX_PY := $(PY)
endif
override PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SPHINX := $(PY) -m sphinx -q -W -n --keep-going -E

# The matrix subset (space-separated lists; empty means all):
#   make matrix PY="3.10 3.13" GEVENT=floor LOOP=libuv-cffi
GEVENT ?=
LOOP ?=
comma_or = $(subst $() $(), or ,$(strip $(1)))

.PHONY: demo test test-slow lint pytest doctest bench docs matrix matrix-report coverage inventories bench-distance clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[mongo,test,docs,dev]'
	@# A C driver: it builds only where libmariadb's headers and pkg-config are (.ci/run installs them).
	$(PY) -m pip install -q mysqlclient >/dev/null 2>&1 \
		|| echo "mysqlclient did not build (it needs libmariadb-dev and pkg-config): its tests skip"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: lint pytest doctest docs

lint: $(STAMP)
	$(VENV)/bin/ruff check offload tests examples bench docs noxfile.py
	$(VENV)/bin/ruff format --check offload tests examples bench docs noxfile.py
	$(VENV)/bin/mypy --ignore-missing-imports --check-untyped-defs offload

# `make test` leaves out the tests marked slow; `make test-slow` runs only those.
pytest: $(STAMP)
	$(PY) -m pytest -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

doctest: $(STAMP)
	$(SPHINX) -b doctest docs docs/_build/doctest

docs: $(STAMP)
	$(SPHINX) -b html docs docs/_build/html

# Regenerate docs/_inv/*.inv, the intersphinx inventories shipped for offline builds.
inventories: $(STAMP)
	$(PY) docs/_inv/make_inventories.py

# Every pyenv Python x gevent {floor, newest} x GEVENT_LOOP, the whole suite each (slow).
matrix: $(STAMP)
	LOOP="$(LOOP)" $(VENV)/bin/nox -s tests $(if $(MATRIX_PY),-p $(MATRIX_PY)) \
		$(if $(GEVENT),-k "$(call comma_or,$(GEVENT))") \
		|| { $(PY) noxfile.py; exit 1; }
	$(PY) noxfile.py

matrix-report: $(STAMP)
	$(PY) noxfile.py

# Line coverage per module on 3.13 (sys.monitoring sees the raw worker threads).
coverage: $(STAMP)
	$(VENV)/bin/nox -s coverage

bench: $(STAMP)
	$(PY) bench/run.py

# The database benches again with the server 0.2 ms and 1 ms away (a user-space
# delay line: this kernel has no netem), printed only: make bench runs them too,
# into bench/README.md.
bench-distance: $(STAMP)
	for rtt in 0.2 1; do OFFLOAD_BENCH_RTT_MS=$$rtt $(PY) bench/bench_dbapi.py; \
		OFFLOAD_BENCH_RTT_MS=$$rtt $(PY) bench/bench_mongo.py; done

clean:
	rm -rf $(VENV) .nox docs/_build build *.egg-info .pytest_cache .coverage .coverage.*
