# The README's two commands: `make demo` and `make test`, each from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install demo demo-seg test dataset benchmark clean

install: $(STAMP)

# torch/torchvision are pinned to the builds on the machine's local disk; the library
# itself (setup.cfg) accepts a range.
$(STAMP): setup.cfg pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

data/shapes/annotations/train.json: | $(STAMP)
	$(PY) tools/make_dataset.py --out data/shapes

dataset: data/shapes/annotations/train.json

demo: $(STAMP) dataset
	$(PY) tools/train.py --config configs/demo/faster_rcnn_shapes.yaml

demo-seg: $(STAMP) dataset
	$(PY) tools/train.py --config configs/demo/semantic_seg_shapes.yaml

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q tests

benchmark: $(STAMP)
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) work_dirs data .pytest_cache
