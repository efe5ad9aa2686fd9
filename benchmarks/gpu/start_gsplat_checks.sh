#!/usr/bin/env bash
# First device call (see pack.sh): installs the carried wheels, then starts run_gpu_checks.sh in its own
# process session, so that it outlives this call, on CPU cores 0-7 (run_halora_gpu.sh takes 8-15), writing
# to /tmp/gpu_checks; run_halora_gpu.sh waits for it and brings its files back.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash benchmarks/gpu/install.sh
echo "CPU cores: $(nproc)"  # the core split below needs 16
rm -rf /tmp/gpu_checks
mkdir -p /tmp/gpu_checks
affinity=()
(( $(nproc) >= 16 )) && command -v taskset > /dev/null && affinity=(taskset -c 0-7)
OUT=/tmp/gpu_checks MAX_JOBS=8 BUDGET=${BUDGET:-500} setsid nohup "${affinity[@]}" bash benchmarks/gpu/run_gpu_checks.sh \
    > /tmp/gpu_checks/run.log 2>&1 < /dev/null &
echo $! > /tmp/gpu_checks.session  # setsid made it a session leader: its pid is the session id
sleep 5
cat /tmp/gpu_checks/run.log
