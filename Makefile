# fluxlora developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: help venv tools engine images lint typecheck unit test test-cluster test-engine crd examples cluster-up cluster-down cluster-status test-floor bench bench-takeover bench-s3 bench-validate demo clean

help:
	@echo "make demo         the example run on a local control plane, trained by the real engine (tiny FLUX, CPU)"
	@echo "make test         ruff + mypy + every test (unit, real control plane, real engine)"
	@echo "make test-floor   the unit, operator and e2e tests on the lowest dependency versions we allow"
	@echo "make tools        build the test control plane binaries (cached under ~/.cache/fluxlora)"
	@echo "make engine       build the real engine's environment (sd-scripts + torch; cached under ~/.cache/fluxlora)"
	@echo "make images       build the operator and trainer images (buildah, cached under ~/.cache/fluxlora/images)"
	@echo "make cluster-up   start a local control plane with fake GPU nodes; prints export KUBECONFIG=..."
	@echo "                  REAL_NODE=1: also a real node (kubelet, containerd) running the images"
	@echo "make cluster-down stop it"
	@echo "make crd          regenerate crds/ from the API models"

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml trainer-image/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,operator]' -e ./trainer-image
	touch $@

tools:
	bash tests/cluster/build-tools.sh >/dev/null

# The operator and trainer images from their Dockerfiles (buildah; cached under ~/.cache/fluxlora/images).
images: venv engine
	@$(PY) tests/cluster/images.py

# Last line: export FLUXLORA_ENGINE_CMD='<JSON argv>' (what `fluxlora-trainer run --engine-cmd` takes).
engine: venv
	@$(PY) tests/engine/engine_env.py

lint: venv
	ruff check .
	ruff format --check operator trainer-image tests benchmarks hack || { echo "run: ruff format"; exit 1; }

typecheck: venv
	mypy

unit: venv
	pytest -q tests/unit

test: lint typecheck tools engine images
	pytest -q

# The lowest versions pyproject.toml allows (constraints/floor.txt), installed once in their own
# venv: the unit tests, the operator against the real control plane and the end-to-end test.
FLOOR_VENV ?= .venv-floor
test-floor: tools
	python3 -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install -q -c constraints/floor.txt -e '.[dev,operator]' -e ./trainer-image
	$(FLOOR_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(kopf|kubernetes|pydantic|pyyaml|click|aiohttp|prometheus.client|tomli.w) '
	$(FLOOR_VENV)/bin/python -m pytest -q tests/unit tests/operator tests/e2e/test_e2e.py

crd: venv  ## regenerate crds/, the chart CRD and docs/reference.md
	fluxlora crd > crds/fluxlora.dev_fluxloraruns.yaml
	fluxlora crd --kind FluxLoraSampleSet > crds/fluxlora.dev_fluxlorasamplesets.yaml
	cp crds/fluxlora.dev_fluxloraruns.yaml crds/fluxlora.dev_fluxlorasamplesets.yaml charts/fluxlora/crds/
	fluxlora reference > docs/reference.md

examples: venv
	python tests/cases.py

cluster-up: venv tools
	@$(PY) tests/cluster/controlplane.py up

cluster-down: venv
	@$(PY) tests/cluster/controlplane.py down

cluster-status: venv
	@$(PY) tests/cluster/controlplane.py status

bench: venv tools  ## operator latency, API writes per run, memory (prints numbers)
	$(PY) benchmarks/operator_latency.py

bench-takeover: venv tools  ## two operator replicas, the active one dies mid-batch: takeover time (prints numbers)
	$(PY) benchmarks/operator_takeover.py

bench-s3: venv tools  ## fetch and publish throughput against the tests' S3 server (prints numbers)
	$(PY) benchmarks/s3_transfer.py

bench-validate: venv  ## fluxlora validate on every corpus document: counts, worst time and memory (prints numbers)
	$(PY) benchmarks/validate_corpus.py

test-cluster: venv tools
	pytest -q -m cluster

test-engine: venv tools engine
	pytest -q -m engine

demo: venv tools engine  ## the product path on a local control plane, the real engine on the tiny FLUX (simulated GPU node)
	@echo "== fluxlora demo: validate and render examples/run-final.yaml (offline)"
	fluxlora validate examples/run-final.yaml
	fluxlora render examples/run-final.yaml -o command 2>/dev/null
	$(PY) hack/demo.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
