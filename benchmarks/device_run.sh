#!/usr/bin/env bash
# The single command a machine with an accelerator runs (see the README's GPU section): set up hsiseg with the
# machine's own CUDA build of torch, then run benchmarks/gpu_check.py; results land in ${OUT:-device-results}/.
#
#   OUT=results bash benchmarks/device_run.sh          # full sizes (<= 8 minutes on one H100/H200)
#   QUICK=1 bash benchmarks/device_run.sh              # toy sizes, to check the set-up itself
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device-results}"
mkdir -p "$OUT"
exec > >(tee "$OUT/device_run.log") 2>&1

python3 -m venv --system-site-packages .venv-device   # a CUDA torch the machine already has is kept
. .venv-device/bin/activate
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    pip install --quiet torch        # the CUDA build pip picks for this machine (needs the package index)
fi
pip install --quiet --no-build-isolation -e ".[test]" || pip install --quiet --no-deps -e .
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python benchmarks/gpu_check.py "$OUT" --device cuda ${QUICK:+--quick}
echo "results: $OUT/gpu_check.json and $OUT/gpu_check.md"
