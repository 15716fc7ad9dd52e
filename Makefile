# Two commands do the whole setup on a fresh clone:
#   make run    create .venv/, install everything, run the main job
#   make test   create .venv/ if needed, install everything, run the checks and tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The shipped default model arrives with the default-models work; until then the demo runs on
# explicitly untrained weights so that the whole pipeline can be seen working.
DEMO_CHECKPOINT ?= random:vit_small/16

.PHONY: run test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[cpu,gui,dev]'
	@touch $@

run: $(STAMP)
	$(BIN)/highlighter attention assets --checkpoint $(DEMO_CHECKPOINT) --out outputs/demo

test: $(STAMP)
	$(BIN)/ruff check highlighter tests benchmarks
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
