"""One LoRA-or-HaLoRA fine-tuning run on a multiple-choice task, shared by the example script,
the demo section and the benchmark: build the adapter, train, evaluate under noise, and measure
training step time and peak memory (accelerator memory on a GPU, resident memory on a Linux CPU);
or evaluate an existing adapter (or a bare base model) under the same noise, with no training."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import check_target_module_exists
from peft.utils import CONFIG_NAME as ADAPTER_CONFIG_NAME
from peft.utils import SAFETENSORS_WEIGHTS_NAME as ADAPTER_SAFETENSORS
from peft.utils import WEIGHTS_NAME as ADAPTER_BIN
from peft.utils.constants import INCLUDE_LINEAR_LAYERS_SHORTHAND
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    set_seed,
)
from transformers.pytorch_utils import Conv1D

from hf_eff.halora.base_model import save_embedding_layers
from hf_eff.halora.config import HaLoRAConfig
from hf_eff.halora.noise import RRAMNoise
from hf_eff.halora.regularizer import lora_factors
from hf_eff.halora.tasks import (
    harness_adds_bos,
    tokenize_for_scoring,
    tokenize_for_training,
)
from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments, sigma_key
from hf_eff.utils.resume import check_resume, resumed_checkpoint

METHODS = ("lora", "halora")
# What PEFT records in adapter_config.json at each save besides the adapter's settings, and the task PeftModel wraps the
# model for: none defines the trained adapter, so a resume may differ in these
ADAPTER_RECORD_FIELDS = ("base_model_name_or_path", "revision", "inference_mode", "task_type", "peft_version", "auto_mapping")
PAPER_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]


def adapter_config(method: str, r: int = 4, lora_alpha: int = 8, target_modules: list[str] | str | None = None,
                   lora_dropout: float = 0.0, model: torch.nn.Module | None = None, **halora_fields) -> LoraConfig:
    """LoraConfig for ``lora``, HaLoRAConfig (with ``halora_fields``) for ``halora``; same rank and targets.
    ``target_modules``: as PEFT reads them (a list of module-name suffixes, a string a regex over the module names
    or ``"all-linear"``); ``["all-linear"]``, as a command line gives it, is PEFT's shorthand too (PEFT knows it
    only as a string). ``model``, the model the adapter is for, sets ``fan_in_fan_out`` for GPT-2-style ``Conv1D``
    targets, whose weights are stored transposed (else PEFT sets it itself, warning at each such layer)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    targets = target_modules if isinstance(target_modules, str) else list(target_modules or PAPER_TARGET_MODULES)
    if targets == [INCLUDE_LINEAR_LAYERS_SHORTHAND]:
        targets = INCLUDE_LINEAR_LAYERS_SHORTHAND
    common = dict(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, task_type="CAUSAL_LM", target_modules=targets)
    config = HaLoRAConfig(**common, **halora_fields) if method == "halora" else LoraConfig(**common)
    if model is not None:
        config.fan_in_fan_out = targets_conv1d(model, config)
    return config


def targets_conv1d(model: torch.nn.Module, config: LoraConfig) -> bool:
    """Whether the layers ``config`` adapts in ``model`` are transformers' ``Conv1D`` (GPT-2's); ``"all-linear"`` adapts
    every linear layer, ``Conv1D`` included, but the output head."""
    if config.target_modules == INCLUDE_LINEAR_LAYERS_SHORTHAND:
        return any(isinstance(module, Conv1D) for module in model.modules())
    return any(isinstance(module, Conv1D) and check_target_module_exists(config, name)
               for name, module in model.named_modules())


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (data loading excluded), synchronised with the GPU, and the
    process CPU time of each step: on a CPU shared with other jobs the wall time varies with their load,
    while a one-thread run's CPU time does not."""

    def __init__(self):
        self.durations: list[float] = []
        self.cpu_durations: list[float] = []
        self._start = self._cpu_start = None

    @staticmethod
    def _sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.durations.append(time.perf_counter() - self._start)
        self.cpu_durations.append(time.process_time() - self._cpu_start)

    def mean_step_seconds(self, skip_first: int = 3, cpu: bool = False) -> float:
        """Mean over the steps after the first few (noise redraws included, amortised); ``cpu``: process CPU time."""
        durations = self.cpu_durations if cpu else self.durations
        return statistics.fmean(durations[skip_first:] or durations)


class ResidentMemory:
    """Peak resident memory (RSS) of this process over a block: the CPU counterpart of
    ``torch.cuda.max_memory_allocated``, which torch lacks for CPU tensors. Linux only: writing 5 to
    /proc/self/clear_refs resets the kernel's high-water mark (VmHWM), so the peak is not polled. It is
    the resident footprint: an allocation the allocator serves from freed memory still resident in the
    process adds nothing to it, hence the benchmark's fresh process per method."""

    STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")

    @classmethod
    def available(cls) -> bool:
        return sys.platform.startswith("linux") and os.access(cls.CLEAR_REFS, os.W_OK)

    @classmethod
    def current_mb(cls) -> float:
        return cls._status_mb("VmRSS")

    @classmethod
    def _status_mb(cls, field: str) -> float:
        for line in cls.STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
        raise RuntimeError(f"{cls.STATUS} has no {field} line")

    def __enter__(self) -> ResidentMemory:
        self.CLEAR_REFS.write_text("5")
        self.start_mb = self.current_mb()
        return self

    def __exit__(self, *exc) -> None:
        # The kernel's counters are approximate (per-CPU batches): the mark can read a little under
        # the resident size read just after the reset.
        self.peak_mb = max(self._status_mb("VmHWM"), self.start_mb)


@torch.no_grad()
def adapter_relative_norms(model: torch.nn.Module, adapter_name: str = "default") -> dict[str, float]:
    """||scaling * B A||_F / ||W0||_F per adapted layer: how far the adapter has moved the weights.
    The adapter can raise signal over RRAM noise (whose scale is set by W0 alone) only by moving
    far from zero, so this is the diagnostic beside the accuracy drop. Mean, max and layer count."""
    ratios = []
    for module, lora_a, lora_b in lora_factors(model, adapter_name):
        # an embedding's delta is the transpose of B A: the same norm
        delta = (lora_b.float() @ lora_a.float()) * module.scaling[adapter_name]
        ratios.append(float(delta.norm() / module.get_base_layer().weight.float().norm()))
    if not ratios:
        raise ValueError(f"adapter {adapter_name!r}: no LoRA layer carries it")
    return {"adapter_relative_norm_mean": statistics.fmean(ratios), "adapter_relative_norm_max": max(ratios),
            "adapter_layers": len(ratios)}


def build_trainer(model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, train: Dataset | None,
                  evaluation: Dataset, args: HaLoRATrainingArguments, max_length: int = 128) -> HaLoRATrainer:
    """Encoded as lm-evaluation-harness encodes for this model (a BOS token for Gemma only); ``train`` None: a
    trainer that only evaluates."""
    add_bos_token = harness_adds_bos(model)
    scoring, scorer = tokenize_for_scoring(evaluation, tokenizer, max_length, add_bos_token)
    return HaLoRATrainer(  # the trainer pads both datasets' rows on the right (choice_rows_collator)
        model=model,
        args=args,
        train_dataset=None if train is None else tokenize_for_training(train, tokenizer, max_length, add_bos_token),
        eval_dataset=scoring,
        scorer=scorer,
    )


def check_resumable_checkpoint(resume_from_checkpoint: bool | str | None, output_dir: str) -> None:
    """Refuses, before anything loads, a checkpoint to resume from that holds no adapter (adapter_config.json, at
    its top level or in a direct sub-folder), as every HaLoRA and LoRA checkpoint does: another method's
    checkpoint-N (a splat or GraNT run's), whose weights Trainer would load by the names that match and whose
    optimizer state it then fails on (KeyError: 'param_groups'). ``True``: the last checkpoint in ``output_dir``,
    as ``Trainer.train`` finds it; a checkpoint that is not there is left to Trainer, which names it."""
    checkpoint = resumed_checkpoint(output_dir, resume_from_checkpoint)
    if checkpoint is None:
        return
    # PEFT saves an adapter not named "default" in a sub-folder of its name, from which Trainer also resumes
    folders = [checkpoint] + [entry.path for entry in os.scandir(checkpoint) if entry.is_dir()]
    if any(os.path.isfile(os.path.join(folder, ADAPTER_CONFIG_NAME)) for folder in folders):
        return
    weights = next((os.path.join(folder, name) for folder in folders for name in (ADAPTER_SAFETENSORS, ADAPTER_BIN)
                    if os.path.isfile(os.path.join(folder, name))), None)
    if weights is not None:  # an adapter's checkpoint that lost its config
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: it holds {weights} but no {ADAPTER_CONFIG_NAME} "
                         "beside it, PEFT's record of the adapter's settings, by which a resume loads it: the file "
                         "was lost. Put it back, or resume from another checkpoint-N of the run; the checkpoint is "
                         "left as it is")
    raise ValueError(f"--resume_from_checkpoint {checkpoint}: it holds no {ADAPTER_CONFIG_NAME}, so no HaLoRA or "
                     "LoRA adapter, at its top level or in a sub-folder: it was saved by another trainer (a splat "
                     "or GraNT run's checkpoint?). Resume from a checkpoint-N of a HaLoRA or LoRA run's "
                     "--output_dir, or True for the last one there; the checkpoint is left as it is")


def check_resumed_adapter_settings(checkpoint: str, model: PeftModel) -> None:
    """Refuses to resume ``checkpoint`` into ``model``'s active adapter under other settings than the adapter there
    was trained with (its adapter_config.json against ``model``'s config: the method, the rank, the noise, the
    regulariser...), naming each setting as it was and as it is now: the saved adapter_config.json and card would
    record only the new ones, for an adapter trained under both."""
    adapter = model.active_adapter
    # PEFT saves an adapter not named "default" in a sub-folder of its name, from which Trainer resumes it
    path = next((os.path.join(folder, ADAPTER_CONFIG_NAME) for folder in (checkpoint, os.path.join(checkpoint, adapter))
                 if os.path.isfile(os.path.join(folder, ADAPTER_CONFIG_NAME))), None)
    if path is None:
        return
    with open(path) as file:
        saved = json.load(file)
    now = json.loads(json.dumps(model.peft_config[adapter].to_dict(), default=sorted))  # sets as JSON's lists

    def setting(value):  # target_modules and the like are sets: their order is not a setting
        return sorted(value, key=repr) if isinstance(value, list) else value

    changed = [f"method {str(saved['peft_type']).lower()} in the checkpoint, {str(now['peft_type']).lower()} now"
               ] if saved.get("peft_type") != now["peft_type"] else []
    changed += [f"{name} {saved[name]!r} in the checkpoint, {now[name]!r} now" for name in now
                if name in saved and name not in (*ADAPTER_RECORD_FIELDS, "peft_type")
                and setting(saved[name]) != setting(now[name])]
    if changed:
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: its adapter was trained under other settings than "
                         f"this run's ({path}): {'; '.join(changed)}. Resume with the settings it was trained with, "
                         "or start a new run (another --output_dir); nothing was written")


def train_and_evaluate(method: str, model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase,
                       train: Dataset, evaluation: Dataset, args: HaLoRATrainingArguments,
                       peft_config: LoraConfig | None = None, max_length: int = 128,
                       data_splits: list[dict] | None = None) -> tuple[HaLoRATrainer, dict]:
    """Adapts ``model`` with ``method`` (a PeftModel, e.g. an adapter loaded trainable, is trained as it is:
    ``peft_config`` must then be None), trains, evaluates under noise; ``data_splits``: saved with the adapter
    (``HaLoRATrainer.data_splits``). Returns the trainer and the
    flat results (train_*, eval_*_sigma_*, step time, peak memory, noise memory overhead, adapter size
    ``adapter_relative_norm_*``). Peak memory: ``train_peak_memory_mb`` (allocated) on a GPU; on a Linux
    CPU ``train_peak_rss_mb`` and ``train_start_rss_mb``, the process's resident memory at its peak
    during training and when training began (a baseline taken before the model was loaded turns
    them into the CPU counterpart of the GPU figure: see benchmarks/halora_robustness.py)."""
    if isinstance(model, PeftModel) and peft_config is not None:
        raise ValueError("train_and_evaluate: model already carries its adapter; pass peft_config=None")
    check_resumable_checkpoint(args.resume_from_checkpoint, args.output_dir)
    check_resume(args)
    # Seeded here, where the example, the demo and the benchmark all build their adapters: LoRA and HaLoRA
    # runs of one seed start from the same adapter whatever ran before (the Trainer seeds only once the
    # model exists).
    set_seed(args.seed)
    peft_model = model if isinstance(model, PeftModel) else get_peft_model(model, peft_config or adapter_config(method, model=model))
    checkpoint = resumed_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if checkpoint is not None:
        check_resumed_adapter_settings(checkpoint, peft_model)
    trainer = build_trainer(peft_model, tokenizer, train, evaluation, args, max_length)
    trainer.data_splits = data_splits
    timer = StepTimer()
    trainer.add_callback(timer)
    results = {"method": method}
    on_cuda = torch.cuda.is_available()
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    resident = ResidentMemory() if not on_cuda and ResidentMemory.available() else None
    with resident or contextlib.nullcontext():
        train_output = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    if on_cuda:
        results["train_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    elif resident is not None:
        results.update(train_peak_rss_mb=resident.peak_mb, train_start_rss_mb=resident.start_mb)
    if trainer.is_world_process_zero():
        # Saved before the (long) evaluation under noise, so that a failure there loses no training.
        peft_model.save_pretrained(args.output_dir, save_embedding_layers=save_embedding_layers(peft_model))
        trainer.save_data_splits(args.output_dir)
    results.update(train_output.metrics, train_step_seconds=timer.mean_step_seconds(),
                   train_step_cpu_seconds=timer.mean_step_seconds(cpu=True))
    results.update(adapter_relative_norms(peft_model, peft_model.active_adapter))
    config = trainer.halora_config()
    if config is not None and config.noise_sigma > 0:
        noise = RRAMNoise(peft_model, config.noise_sigma, config.noise_mode, config.noise_tile_size, config.noise_target_modules)
        noise.apply(seed=args.noise_seed)
        results["noise_overhead_mb"] = noise.overhead_bytes / 2**20
        results["noise_overhead_fraction"] = noise.overhead_bytes / noise.noised_weight_bytes
        noise.restore()
    results.update(trainer.evaluate())
    results.update(trainer.card_run_settings())
    return trainer, results


def evaluate_under_noise(model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, evaluation: Dataset,
                         args: HaLoRATrainingArguments, max_length: int = 128) -> tuple[HaLoRATrainer, dict]:
    """What ``train_and_evaluate`` reports after training, with no training: ``model`` (a PeftModel with its
    adapter, or a bare base model, the baseline an adapter is measured against) evaluated under noise the same
    way; returns the trainer and the flat results (eval_*_sigma_*, the noise settings and, for an adapter,
    ``adapter_relative_norm_*``)."""
    trainer = build_trainer(model, tokenizer, None, evaluation, args, max_length)
    results = adapter_relative_norms(model, model.active_adapter) if isinstance(model, PeftModel) else {}
    results.update(trainer.evaluate())
    results.pop("epoch", None)  # the unused trainer's 0, not how long the evaluated adapter trained
    results.update(trainer.card_run_settings())
    return trainer, results


def plot_accuracy_vs_sigma(runs: dict[str, dict], sigmas: list[float], path) -> None:
    """Accuracy (mean +- std over noise seeds) against sigma, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, results in runs.items():
        means = [results[sigma_key("eval", "accuracy", s, "mean")] for s in sigmas]
        stds = [results[sigma_key("eval", "accuracy", s, "std")] for s in sigmas]
        ax.errorbar(sigmas, means, yerr=stds, marker="o", capsize=3, label="LoRA" if method == "lora" else "HaLoRA")
    ax.set_xlabel("RRAM noise sigma (tile-relative)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
