#!/usr/bin/env bash
# The projection benchmark (bench/projection.py) on a CUDA GPU: the same sentences, the
# same table, the same last line
#   RESULT constrained_f1=F marker_f1=F alignment_f1=F speed_ratio=R agreement=A
# with the model on the GPU (device=cuda) for the raw translate_batch and every method.
#
#   bench/projection_gpu.sh [more bench/projection.py options]
#
# Environment: N (sentences, 1000), COMPUTE_TYPE (float32: the exactness check compares
# pruned with exhaustive scores, and half precision rounds log-probs by ~0.01; float16 or
# int8_float16 for speed), BATCH_TOKENS (constrained scoring batch, 4096: a GPU wants
# larger batches than a CPU), MAX_BATCH_TOKENS (translation batch, 8192), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" - <<'PYEOF'
import sys

import ctranslate2

n = ctranslate2.get_cuda_device_count()
if n == 0:
    sys.exit("projection_gpu.sh: CTranslate2 finds no CUDA device (it needs an NVIDIA GPU and a driver "
             "at least as new as the CUDA runtime of the ctranslate2 wheel)")
print(f"ctranslate2 {ctranslate2.__version__}: {n} CUDA device(s), compute types "
      f"{', '.join(sorted(ctranslate2.get_supported_compute_types('cuda')))}", flush=True)
PYEOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec "$PY" bench/projection.py --device cuda --compute-type "${COMPUTE_TYPE:-float32}" --n "${N:-1000}" \
    --threads 1 --batch-tokens "${BATCH_TOKENS:-4096}" --max-batch-tokens "${MAX_BATCH_TOKENS:-8192}" "$@"
