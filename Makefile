# The two commands of the README: `make run` and `make test`.
# Both create .venv when it is missing and install the pinned dependencies first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cellar-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: install browser run test migrate clean

install: $(STAMP)

# torch==2.13.0 goes in first (its CPU wheel is on disk); every later install is constrained to it
# so that no requirement can pull a newer, CUDA, torch.
$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps -e .
	$(BIN)/python -c "import torch; assert torch.version.cuda is None, 'a CUDA torch was installed'"
	$(BIN)/python -m pip check
	touch $(STAMP)

migrate: install
	$(BIN)/cellar migrate

run: migrate
	$(BIN)/cellar serve --host $(HOST) --port $(PORT)

# The browser tests drive Debian's chromium through Playwright (Playwright's own browser download is
# not used); it is installed here when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
