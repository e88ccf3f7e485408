#!/usr/bin/env bash
# GPU figures (issue #32), from the repository root with the dev environment installed (make install):
#   bash benchmarks/gpu.sh [DEEPFOREST_DATA_DIR]
# About 8 minutes on one GPU. Writes benchmarks/results/*_cuda.json; without a CUDA device it stops and says so.
# DEEPFOREST_DATA_DIR: the deepforest wheel's deepforest/data (pip download --no-deps deepforest==2.1.0), for the
# loader's real-texture images; without it the loader figures are skipped.
set -eu
PY=${PY:-.venv/bin/python}
OUT=benchmarks/results
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device here: nothing measured')"
"$PY" -c "import torch; print(torch.cuda.get_device_name(0), torch.__version__)"
for amp in "" "--amp"; do  # the spine's overhead at 800 px, batch 8, with and without mixed precision
  "$PY" benchmarks/train_step.py --arch fasterrcnn_resnet50_fpn --size 800 --batch-size 8 --rounds 6 --steps 5 \
    --device cuda $amp --out "$OUT/train_step_fasterrcnn_resnet50_fpn_800_b8${amp:+_amp}_cuda.json"
done
if [ -n "${1:-}" ]; then  # the loader's images/s beside the step's (the step's images/s: 8 / s per step above)
  "$PY" benchmarks/loader.py --deepforest "$1" --out "$OUT/loader_cuda_machine.json"
else
  echo "SKIP loader: pass the deepforest data folder"
fi
"$PY" benchmarks/sliced_inference.py --sizes --scenes 10000 --device cuda --work /tmp/sliced_bench_cuda \
  --e2e-out "$OUT/sliced_inference_cuda.json"  # tiles/s on one GPU
echo "done: $OUT/*_cuda*.json"
