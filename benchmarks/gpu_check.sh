#!/usr/bin/env bash
# The first GPU run's checks (issue #34): bash benchmarks/gpu_check.sh, from the repository root,
# with the dev environment installed (make install). About 2 minutes on one GPU.
set -u
PY=${PY:-.venv/bin/python}
status=0
"$PY" benchmarks/gpu_check.py || status=1
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  echo "torchrun on 2 GPUs: the DDP test's two ranks end with identical weights"
  "$PY" -m pytest -q tests/integration/test_ddp.py -k faster_rcnn -p no:cacheprovider || status=1
else
  echo "SKIP torchrun on 2 GPUs: $gpus GPU(s) here"
fi
exit $status
