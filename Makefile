# The two commands of the README (docs/benchmarks.md for bench and bench-gpu):
#   make demo   set everything up, then run the main job
#   make test   set everything up, then lint and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sppnet-installed

.PHONY: demo test lint bench bench-gpu clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	@# torch goes first and pinned: 2.13.0 is the local CPU wheel; an unpinned torch
	@# would pull gigabytes of CUDA packages. A torch already in the venv is kept.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	@# constraints.txt: the exact versions the README's numbers come from (see its header)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sppnet demo --out $(or $(OUT),runs/demo)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	THP_MEM_ALLOC_ENABLE=1 $(BIN)/python benchmarks/spp_speed.py
	THP_MEM_ALLOC_ENABLE=1 $(BIN)/python benchmarks/window_pool_speed.py
	THP_MEM_ALLOC_ENABLE=1 $(BIN)/python benchmarks/trunk_speed.py
	THP_MEM_ALLOC_ENABLE=1 $(BIN)/python benchmarks/detection_speed.py --threads 2
	THP_MEM_ALLOC_ENABLE=1 $(BIN)/python benchmarks/detect_image_speed.py --threads 2
	$(BIN)/python benchmarks/lite_feature_maps.py
	$(BIN)/python benchmarks/lite_trunk_speed.py

# per-image detection at 1 and 5 scales on a CUDA GPU, against the paper's GPU times
# (0.142 s / 0.382 s; our target: <= 0.03 s at 1 scale); refused at once without a GPU
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/detection_speed.py --device cuda --threads 0

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
