# Two commands from a fresh clone: `make app` runs the explorer on the shipped checkpoints, `make test` runs the
# tests. Both create .venv and install the lock (requirements.txt, the exact versions this project is tested with)
# and the package with every extra, on first use. While working, `make test-fast` runs the
# fast tier (unit tests, reference formulas, the contract on the small models, error paths) in under a minute.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
PYTEST_ARGS ?=
WORKERS ?= 2

.PHONY: app test test-fast lint docs docs-build install bench results lock

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# movielens: ml-100k's files; test, bench (the peer tool's tests), dev (style and layers), docs (the site)
	$(PY) -m pip install --quiet -r requirements.txt -e ".[movielens,test,bench,dev,docs]"
	touch $(STAMP)

install: $(STAMP)

# the explorer on the shipped checkpoints: `recmodels explore` in the repository's folder
app: $(STAMP)
	$(PY) -m recmodels explore --port $(PORT)

# every test, on both cores, with the full Hypothesis budget. pytest exits 5 when it collects nothing; that means the
# suite is broken, so say so and fail
test: $(STAMP)
	@$(PY) -m pytest -n $(WORKERS) --hypothesis-profile=ci $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing or every test was deselected" >&2; exit 1; fi; \
	exit $$rc

test-fast: $(STAMP)
	@$(PY) -m pytest -n $(WORKERS) --hypothesis-profile=dev -m "not slow and not browser" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the fast tier is empty" >&2; exit 1; fi; \
	exit $$rc

# lint, import order and formatting (ruff), and the layers of DESIGN.md (import-linter's contracts in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

docs: $(STAMP)
	$(VENV)/bin/mkdocs serve

docs-build: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) -m recmodels bench

# the results tables: every dataset and split in the docs, the ml-100k per-user one in the README
results: $(STAMP)
	$(PY) -m recmodels results --write-docs docs/results.md
	$(PY) -m recmodels results --dataset ml-100k --split per_user --write-docs README.md

# rewrite the lock from .venv, after changing what it installs
lock: $(STAMP)
	(sed -n '1,3p' requirements.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^recmodels') > requirements.lock.tmp
	mv requirements.lock.tmp requirements.txt
