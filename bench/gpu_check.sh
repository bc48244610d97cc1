#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py) on a CUDA machine without network: installs the wheels carried
# in .whl/ (fill it beforehand with bench/gpu_wheels.sh where PyPI is reachable), then runs every
# section and prints one table. Budget: under 8 minutes on one GPU.
#   bash bench/gpu_check.sh [--device cuda:0] [--repeats 3] [--only upscale,api]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=(${PYTHON:-python3})  # may carry options, e.g. PYTHON="python3 -S"
SITE=${SITE:-/tmp/site}
if ls .whl/*.whl >/dev/null 2>&1; then
  "${PYTHON[@]}" -m pip install -q --no-index --no-deps --target "$SITE" .whl/*.whl
else
  echo "no wheels in .whl/ (run bench/gpu_wheels.sh where PyPI is reachable): using what is installed" >&2
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 470 "${PYTHON[@]}" bench/gpu_check.py "$@"
