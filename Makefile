# Two commands do the whole setup on a fresh clone:
#   make run    create .venv/, install everything, open the app on the default model and the bundled clip
#   make test   create .venv/ if needed, install everything, run the checks and tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The DINO model shipped in models/ (see models/README.md); any checkpoint path works too.
DEMO_CHECKPOINT ?= default

# Qt needs these Debian libraries even offscreen (without fonts, text renders as boxes); the xcb ones
# are for a real window.
DEBS := libgl1 libegl1 libfontconfig1 libxkbcommon0 libdbus-1-3 fonts-dejavu-core \
        libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1

.PHONY: run demo test setup deps clean

setup: deps $(STAMP)

deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else echo "please install: $$missing (sudo apt-get install $$missing)"; fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[cpu,gui,dev]'
	@touch $@

# The app on the default model (models/) and the bundled clip.
run: deps $(STAMP)
	$(BIN)/highlighter gui

# Headless: the attention maps of the demo photos.
demo: $(STAMP)
	$(BIN)/highlighter attention assets --checkpoint $(DEMO_CHECKPOINT) --out outputs/demo

test: deps $(STAMP)
	$(BIN)/ruff check highlighter tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
