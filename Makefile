# Two commands from a fresh clone: `make app` runs the explorer on the shipped checkpoints, `make test` runs the
# tests. Both create .venv and install the pinned requirements on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
PYTEST_ARGS ?=

.PHONY: app test install bench results

$(STAMP): requirements.txt requirements-test.txt requirements-bench.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . -r requirements-test.txt -r requirements-bench.txt  # bench: the peer tool's tests
	touch $(STAMP)

install: $(STAMP)

app: $(STAMP)
	$(PY) -m app.serve --server.port $(PORT)

# pytest exits 5 when it collects nothing; that means the suite is broken, so say so and fail
test: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing or every test was deselected" >&2; exit 1; fi; \
	exit $$rc

bench: $(STAMP)
	$(PY) -m recmodels bench

results: $(STAMP)
	$(PY) -m recmodels results --write-readme README.md
