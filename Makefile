# Two commands set up everything from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs serve-docs install clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Everything (the core and every extra); then the wheels of the core alone, from which a test
# installs `pip install pixelforge` into a fresh venv without the network (tests/test_install.py).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e '.[dev,all]'
	$(BIN)/python scripts/core_requirements.py > $(VENV)/core-requirements.txt
	$(BIN)/python -m pip download -q -d $(VENV)/wheelhouse -r $(VENV)/core-requirements.txt
	touch $(STAMP)

install: $(STAMP)

# The browser tests need a Chromium: Debian's, installed here when missing (root and apt-get needed;
# without them the browser tests are skipped with the reason).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "no chromium: browser tests will be skipped"; }

# The layer contracts (pyproject's [tool.importlinter]) and ruff's lint and format check run first.
lint: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

# The documentation site (MkDocs, material theme) into site/; --strict: a broken link or a missing
# page is an error. The command reference is generated from the CLI while building.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

serve-docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# pytest-xdist: one worker per core, a test file's tests on one worker (its fixtures are built once).
test: $(STAMP) browser lint docs
	$(BIN)/python -m pytest -q -n auto --dist loadfile

demo: $(STAMP)
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
