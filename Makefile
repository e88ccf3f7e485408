# The README's two commands: `make demo` and `make test`, each from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install demo demo-seg test test-min dataset benchmark docs clean

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
	$(PY) tools/train.py --config configs/demo/faster_rcnn_shapes.yaml --overwrite

demo-seg: $(STAMP) dataset
	$(PY) tools/train.py --config configs/demo/semantic_seg_shapes.yaml --overwrite

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q tests

# The floors of setup.cfg: a second venv sees the dev venv's packages through a .pth file,
# with requirements-min.txt installed in front of them, and runs the tests that exercise them.
MIN_VENV ?= .venv-min
MIN_STAMP := $(MIN_VENV)/.installed
$(MIN_STAMP): requirements-min.txt | $(STAMP)
	$(PYTHON) -m venv $(MIN_VENV)
	$(PY) -c "import site; print(site.getsitepackages()[0])" > $(MIN_VENV)/dev-site.txt
	cp $(MIN_VENV)/dev-site.txt $$($(MIN_VENV)/bin/python -c "import site; print(site.getsitepackages()[0])")/detimb-dev.pth
	$(MIN_VENV)/bin/python -m pip install --quiet -r requirements-min.txt
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	$(MIN_VENV)/bin/python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider tests/data tests/integration/test_train.py \
		tests/models/test_segmentor.py tests/evaluation/test_coco_eval.py tests/test_config.py

benchmark: $(STAMP)
	$(PY) benchmarks/train_step.py

# docs/config_reference.md is generated from the schema and the registries (a test compares)
docs: $(STAMP)
	$(PY) -m detimb.cli.config_reference --out docs/config_reference.md

clean:
	rm -rf $(VENV) $(MIN_VENV) work_dirs data .pytest_cache
