#!/usr/bin/env bash
# Downloads the wheels the GPU machine lacks into .whl/ (repo root) for run_gpu_checks.sh.
# The GPU machine has no internet; it has python 3.12 with torch, numpy, jaxtyping, rich,
# ninja, transformers, peft, accelerate, huggingface_hub, safetensors, torch_geometric,
# matplotlib, pytest, scipy and scikit-learn, but not gsplat, plyfile, pytorch-msssim or
# datasets. Each wheel is installed there with --no-deps, so its own missing requirements
# are listed here too (checked with: unzip -p .whl/X.whl '*/METADATA' | grep Requires-Dist).
#
#   bash benchmarks/gpu/fetch_wheels.sh                  # gsplat, plyfile, pytorch-msssim (~7 MB)
#   bash benchmarks/gpu/fetch_wheels.sh --with-datasets  # + datasets and pyarrow (~63 MB in all)
#
# .whl/ is git-ignored: pass it to the device run as carry=[".whl"] (64 MiB at most, hence
# datasets being optional; pandas, which datasets also imports, is left out for the same
# reason and must already be on the machine for test modules that load scenes).
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
DEST=.whl
mkdir -p "$DEST"

wheels=(
    gsplat==1.5.3          # requires ninja, numpy, jaxtyping, rich, torch: all on the device
    plyfile==1.1.5         # requires numpy
    pytorch-msssim==1.0.0  # requires torch
)
if [[ "${1:-}" == "--with-datasets" ]]; then
    wheels+=(
        datasets==5.2.0        # requires the four below, plus pandas and the hub stack
        pyarrow==26.0.1
        dill==0.4.1
        multiprocess==0.70.19
        xxhash==4.1.0
    )
fi

python3 -m pip download --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "${wheels[@]}"
du -sh "$DEST"
ls -l "$DEST"
