"""HaLoRA on 2 CPU DDP processes (gloo) against one process with the same global batch.

Run by pytest, this file launches itself with ``accelerate launch`` (trainers/accelerate/cpu_2proc.yaml);
each rank writes what it saw (world size, per-step noise fingerprints, the noise table, the final
adapter) and the test compares the ranks with each other and with a one-process run that
accumulates the same two micro-batches per step.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from hf_eff.utils.distributed import finish_distributed
from tests.distributed.launch import launch_two_ranks
from tests.halora.conftest import char_tokenizer, make_tiny_llama  # noqa: F401  (char_tokenizer: a fixture)

STEPS = 3
APPLICATIONS = ("loss", "decoupled")


def _fingerprint(model) -> float:
    """Sum of every frozen weight: identical iff the ranks hold the same noisy weights."""
    return float(sum(p.detach().double().sum() for n, p in model.named_parameters() if "lora_" not in n))


def run_worker(model_dir: Path, out_dir: Path, per_device_batch: int, accumulation: int) -> None:
    """Trains a HaLoRA adapter (one per regulariser application) and writes rank<r>.json / .pt (and, from the
    evaluation before training, samples_eval.jsonl into the application's folder)."""
    from peft import get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM, TrainerCallback, set_seed

    from hf_eff.halora import HaLoRAConfig
    from hf_eff.halora.experiment import build_trainer
    from hf_eff.halora.tasks import builtin_task
    from hf_eff.halora.trainer import HaLoRATrainingArguments
    from hf_eff.utils.distributed import check_world_size, prepare_cpu_distributed

    class NoiseFingerprints(TrainerCallback):
        def __init__(self):
            self.values = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.values.append(_fingerprint(model))

    prepare_cpu_distributed()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # 13 evaluation questions: uneven across 2 ranks, so the gather must drop the padding duplicates.
    train, evaluation = builtin_task("comparison", train_size=64, eval_size=13, seed=0)
    report, adapters = {}, {}
    for application in APPLICATIONS:
        args = HaLoRATrainingArguments(
            output_dir=str(out_dir / application), max_steps=STEPS, per_device_train_batch_size=per_device_batch,
            gradient_accumulation_steps=accumulation, per_device_eval_batch_size=4, optim="sgd", learning_rate=0.2,
            lr_scheduler_type="constant", max_grad_norm=0.0, save_strategy="no", report_to=[], disable_tqdm=True,
            dataloader_num_workers=0, seed=0, eval_sigmas=[0.0, 0.05], eval_noise_seeds=2, log_samples=True,
        )
        check_world_size(args.world_size)
        config = HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False,
                              noise_sigma=0.05, noise_resample_steps=1, reg_weight=1.0, reg_application=application)

        def seeded_model(config=config):
            set_seed(0)
            return get_peft_model(LlamaForCausalLM.from_pretrained(model_dir), config)

        # The untrained adapter is scored, so the one-process run scores exactly the same one. It is a
        # separate copy: a model that accelerate has prepared for evaluation is later trained WITHOUT
        # DDP (accelerate 1.15 returns a model marked prepared unwrapped). The Trainer's eval loss is
        # a per-batch mean that depends on how batches are cut across ranks; accuracy is per question.
        metrics = build_trainer(seeded_model(), tokenizer, train, evaluation, args, max_length=64).evaluate()
        table = {k: v for k, v in metrics.items() if k.startswith("eval_accuracy_sigma_")}
        model = seeded_model()
        trainer = build_trainer(model, tokenizer, train, evaluation, args, max_length=64)
        fingerprints = NoiseFingerprints()
        trainer.add_callback(fingerprints)
        trainer.train()
        report[application] = {"world_size": args.world_size, "ddp": type(trainer.model_wrapped).__name__,
                               "noise_fingerprints": fingerprints.values,
                               "eval_table": table}
        adapters[application] = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    rank = int(os.environ.get("RANK", "0"))
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    torch.save(adapters, out_dir / f"rank{rank}.pt")



@pytest.mark.slow
def test_halora_ddp_matches_one_process(tmp_path, char_tokenizer):  # noqa: F811
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    launch_two_ranks(__file__, str(model_dir), str(ddp_dir))
    run_worker(model_dir, single_dir, per_device_batch=2, accumulation=2)

    ranks = [json.loads((ddp_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    single = json.loads((single_dir / "rank0.json").read_text())
    adapters = [torch.load(ddp_dir / f"rank{r}.pt") for r in (0, 1)]
    single_adapters = torch.load(single_dir / "rank0.pt")
    for application in APPLICATIONS:
        assert [rank[application]["world_size"] for rank in ranks] == [2, 2]
        assert [rank[application]["ddp"] for rank in ranks] == ["DistributedDataParallel"] * 2
        # One chip: every rank trains on the same noise draw at every step, and it is the one-process draw.
        prints = [rank[application]["noise_fingerprints"] for rank in ranks]
        assert len(prints[0]) == STEPS and len(set(prints[0])) == STEPS  # redrawn every step
        assert prints[0] == prints[1]
        torch.testing.assert_close(prints[0], single[application]["noise_fingerprints"], rtol=1e-9, atol=0)
        assert len(single[application]["eval_table"]) == 4  # mean and std at sigma 0 and 0.05
        assert ranks[0][application]["eval_table"] == ranks[1][application]["eval_table"] == single[application]["eval_table"]
        # log_samples: one file, written by rank 0 alone, every question once per run as in one process
        samples = [(folder / application / "samples_eval.jsonl").read_text().splitlines() for folder in (ddp_dir, single_dir)]
        assert len(samples[0]) == 13 * (1 + 2)
        assert samples[0] == samples[1]
        for name, param in adapters[0][application].items():
            assert torch.equal(param, adapters[1][application][name]), name
            # Same global batch per step as one process accumulating two micro-batches: the regulariser
            # (mu = 1, plain SGD) counts once in both, or the adapters would part.
            torch.testing.assert_close(param, single_adapters[application][name], rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]), Path(sys.argv[2]), per_device_batch=2, accumulation=1)
    finish_distributed()
