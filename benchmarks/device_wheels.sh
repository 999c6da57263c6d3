#!/usr/bin/env bash
# For an accelerator machine that cannot reach a package index: download the wheels of
# benchmarks/device_requirements.txt (CPython 3.12, x86-64 Linux) into .whl/, which device_run.sh installs from.
#   bash benchmarks/device_wheels.sh [PYTHON_VERSION]      # default 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "${1:-3.12}" --implementation cp \
    "${platforms[@]}" -d .whl -r benchmarks/device_requirements.txt
ls .whl
