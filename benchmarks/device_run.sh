#!/usr/bin/env bash
# The single command a machine with an accelerator runs (see docs/gpu.md): hsiseg next to the machine's own CUDA
# build of torch, then benchmarks/gpu_check.py; results land in ${OUT:-device-results}/.
#
#   OUT=results bash benchmarks/device_run.sh          # full sizes (<= 8 minutes on one H100/H200)
#   QUICK=1 bash benchmarks/device_run.sh              # toy sizes, to check the set-up itself
#   BUDGET=480 bash benchmarks/device_run.sh           # seconds for gpu_check; later work is skipped past it
#   SECTIONS="cuda_tests losses" bash benchmarks/device_run.sh   # some of gpu_check's sections only
#
# Nothing is installed over the machine's packages: the few dependencies its image may lack go to a private
# folder on PYTHONPATH (from .whl/ when present, made by benchmarks/device_wheels.sh for an offline machine;
# else from the package index), and hsiseg runs from this source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device-results}"
mkdir -p "$OUT"
exec > >(tee "$OUT/device_run.log") 2>&1

python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "no CUDA device visible to this python3's torch: nothing to measure"; exit 1; }
site="$(mktemp -d)/site"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
else
    python3 -m pip install -q --no-deps --no-compile --target "$site" -r benchmarks/device_requirements.txt
fi
ln -sfn "$PWD/cli" "$site/hsiseg_cli"   # the command line's package, as pyproject.toml maps it
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch, hsiseg, hsiseg_cli.main; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 benchmarks/gpu_check.py "$OUT" --device cuda ${QUICK:+--quick} ${BUDGET:+--budget "$BUDGET"} ${SECTIONS:+--sections $SECTIONS}
echo "results: $OUT/gpu_check.json and $OUT/gpu_check.md"
