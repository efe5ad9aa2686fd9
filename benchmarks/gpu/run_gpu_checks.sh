#!/usr/bin/env bash
# The gsplat checks on the GPU machine (after install.sh; start_gsplat_checks.sh runs them in the background):
#   1. JIT-compile gsplat's CUDA kernels (timed);
#   2. every gpu-marked test: the CPU backend against gsplat, the model and the trainer on CUDA, the pose
#      corrections' gradients through gsplat;
#   3. the pose_opt tests, whose trainers run on CUDA there;
#   4. the render benchmark on gsplat CUDA (10k/50k/100k Gaussians at 128/256/512);
#   5. splat_speed --quick: the default densification against the paper's method, trained on gsplat;
#   6. the CPU backend's render benchmark with 2 threads (the 2-core target).
# Logs, JUnit XML and JSON land in $OUT (default out/gpu), then a file DONE. Every step has its own time
# limit, cut to what is left of BUDGET seconds (default 560), and a failed step does not stop the next.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
rm -f "$OUT/DONE"
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

export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 HF_HUB_DISABLE_XET=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
    | tee "$OUT/environment.txt"
python3 -m pip list 2>/dev/null >> "$OUT/environment.txt"

step gsplat_build 330 python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA kernels loaded:', _C)"
pytest=(env OMP_NUM_THREADS=4 python3 -m pytest -q -rA -p no:cacheprovider)
# the gpu-marked tests are the splat ones (collecting all of tests/ there fails on trl, which it lacks)
step pytest_gpu 120 "${pytest[@]}" tests/splat -m gpu --junitxml "$OUT/pytest_gpu.xml"
step pytest_pose_cuda 120 "${pytest[@]}" tests/splat/test_pose_optimization.py -m "not gpu" --junitxml "$OUT/pytest_pose_cuda.xml"
step render_speed_gsplat 60 python3 benchmarks/render_speed.py --backends gsplat --repeats 5 \
    --output "$OUT/render_speed_gsplat.json"
step splat_speed_quick 150 python3 benchmarks/splat_speed.py --quick --output_dir "$OUT/splat_speed"
step render_speed_cpu_2threads 50 env OMP_NUM_THREADS=2 python3 benchmarks/render_speed.py --backends cpu \
    --num_gaussians 10000 100000 --resolutions 128 256 --repeats 5 --output "$OUT/render_speed_cpu_2threads.json"
echo "exit $status" > "$OUT/DONE"
exit $status
