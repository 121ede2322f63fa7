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

# torch==2.14.1 and torchvision==0.29.1 go in first (their wheels, CUDA 13 builds that also run on
# the CPU, and their nvidia-* libraries are on disk: about 2 minutes, 5.5 GB); every later install
# is constrained to them, so that no requirement can move torch.
$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps -e .
	$(BIN)/python -c "import torch, torchvision; v = (torch.__version__.split('+')[0], torchvision.__version__.split('+')[0]); assert v == ('2.14.1', '0.29.1'), f'torch was moved: {v}'"
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
