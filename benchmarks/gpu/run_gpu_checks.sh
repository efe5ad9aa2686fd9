#!/usr/bin/env bash
# One prepared run on the GPU machine (repo root, wheels from fetch_wheels.sh in .whl/):
#   1. install the wheels into /tmp/site and JIT-compile gsplat's CUDA kernels (timed);
#   2. run every gpu-marked test of the suite (CPU backend against gsplat, ...);
#   3. benchmark gsplat CUDA (10k/50k/100k Gaussians at 128/256/512) and, on the machine's
#      quiet CPUs, the CPU backend with 2 threads (the 2-core target).
# Logs, JUnit XML and JSON land in $OUT (default out/gpu). Every step has its own time limit,
# cut to what is left of BUDGET seconds (default 560, so that the whole script fits one
# 600-second device call), and the script goes on after a failure, so a partial run still
# returns its files.
#
#   bash benchmarks/gpu/run_gpu_checks.sh    (about 5-8 minutes, most of it gsplat's build)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
status=0
BUDGET=${BUDGET:-560}
step() {  # step NAME SECONDS COMMAND...: runs COMMAND with a time limit, logging to $OUT/NAME.log
    local name=$1 seconds=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    (( seconds > left )) && seconds=$left
    if (( seconds < 10 )); then
        echo "=== $name: skipped, the ${BUDGET}s budget is spent"
        status=1
        return
    fi
    echo "=== $name (limit ${seconds}s): $*"
    local start=$SECONDS
    timeout "$seconds" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start))s"
    tail -n 25 "$OUT/$name.log"
    [[ $rc -eq 0 ]] || status=1
}

python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    | tee "$OUT/environment.txt"

step gsplat_build 330 python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA kernels loaded:', _C)"
step pytest_gpu 120 env OMP_NUM_THREADS=4 python3 -m pytest tests -m gpu -q -rA -p no:cacheprovider \
    --continue-on-collection-errors --junitxml "$OUT/pytest_gpu.xml"
step render_speed_gsplat 60 python3 benchmarks/render_speed.py --backends gsplat --repeats 5 \
    --output "$OUT/render_speed_gsplat.json"
step render_speed_cpu_2threads 50 env OMP_NUM_THREADS=2 python3 benchmarks/render_speed.py --backends cpu \
    --num_gaussians 10000 100000 --resolutions 128 256 --repeats 5 --output "$OUT/render_speed_cpu_2threads.json"
exit $status
