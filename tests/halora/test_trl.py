"""HaLoRA inside TRL's SFTTrainer, the combination the README documents."""

import json
import warnings
from dataclasses import dataclass

import torch
import trl
from datasets import Dataset

from hf_eff import HaLoRAConfig
from hf_eff.halora.tasks import character_tokenizer
from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments
from tests.halora.conftest import make_tiny_llama

OUTSIDE = "outside HaLoRATrainer"


# SFTTrainer turns any other TrainingArguments into an SFTConfig (refusing HaLoRA's fields), and
# HaLoRATrainer needs HaLoRATrainingArguments: the arguments must be both.
@dataclass
class HaLoRASFTConfig(HaLoRATrainingArguments, trl.SFTConfig):
    pass


class HaLoRASFTTrainer(HaLoRATrainer, trl.SFTTrainer):
    pass


def _text_dataset():
    return Dataset.from_dict({"text": [f"{a} + {b} = {a + b}" for a in range(8) for b in range(4)]})


def _tokenizer():
    tokenizer = character_tokenizer()
    tokenizer.eos_token = "<s>"  # SFTTrainer appends EOS to every text
    return tokenizer


def _halora_config():
    return HaLoRAConfig(r=2, target_modules=["q_proj", "v_proj"], noise_sigma=0.05, noise_resample_steps=2,
                        reg_weight=0.1)


def _common_args(tmp_path):
    # SFT's bf16 and activation checkpointing defaults off: a CPU test (gradient_checkpointing, SFT's name for it, is
    # a deprecated alias in transformers 5)
    return dict(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, save_strategy="no", max_steps=4,
                logging_steps=1, per_device_train_batch_size=4, max_length=32, bf16=False,
                activation_checkpointing=False, disable_tqdm=True, seed=0)


def _weights_seen_in_training(layer):
    """The weight of ``layer`` at every training forward (evaluation runs none here)."""
    seen = []
    layer.register_forward_pre_hook(lambda module, args: seen.append(module.weight.detach().clone())
                                    if module.training else None)
    return seen


def test_sft_trainer_with_a_halora_config_warns_and_trains_as_plain_lora(tmp_path):
    args = trl.SFTConfig(**_common_args(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = trl.SFTTrainer(model=make_tiny_llama(), args=args, train_dataset=_text_dataset(),
                                 processing_class=_tokenizer(), peft_config=_halora_config())
        layer = trainer.model.base_model.model.model.layers[0].mlp.up_proj  # on RRAM, not adapted
        clean = layer.weight.detach().clone()
        seen = _weights_seen_in_training(layer)
        trainer.train()
    assert len([w for w in caught if OUTSIDE in str(w.message)]) == 1
    assert len(seen) == 4 and all(torch.equal(w, clean) for w in seen)  # no noise
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 4 and not {"reg_loss", "noise_sigma", "task_loss"} & set().union(*logged)


def test_halora_first_keeps_noise_regulariser_sft_metrics_and_noisy_evaluation(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = HaLoRASFTConfig(**_common_args(tmp_path), eval_sigmas=[0.0, 0.5], eval_noise_seeds=2,
                               per_device_eval_batch_size=16)
        trainer = HaLoRASFTTrainer(model=make_tiny_llama(), args=args, train_dataset=_text_dataset(),
                                   eval_dataset=_text_dataset(), processing_class=_tokenizer(),
                                   peft_config=_halora_config())
        layer = trainer.model.base_model.model.model.layers[0].mlp.up_proj
        clean = layer.weight.detach().clone()
        seen = _weights_seen_in_training(layer)
        trainer.train()
    assert not [w for w in caught if OUTSIDE in str(w.message) or "`gradient_checkpointing` is deprecated" in str(w.message)]
    # noisy at every step, one draw per noise_resample_steps=2 steps, clean bit-exactly afterwards
    assert len(seen) == 4 and not any(torch.equal(w, clean) for w in seen)
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[2], seen[3]) and not torch.equal(seen[1], seen[2])
    assert torch.equal(layer.weight, clean)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 4
    for entry in logged:
        assert entry["noise_sigma"] == 0.05 and entry["reg_loss"] > 0
        assert "task_loss" in entry and "mean_token_accuracy" in entry  # HaLoRA's and SFT's metrics
    # SFT's evaluation metrics are reported per sigma too; the plain names are the noise-free run's
    first = trainer.evaluate()
    trainer.predict(trainer.eval_dataset.select(range(4)))  # leaves SFT metrics that are not the evaluation's
    metrics = trainer.evaluate()
    assert metrics["eval_entropy"] == first["eval_entropy"]  # the noise-free run, not pooled with predict's
    assert metrics["eval_num_tokens"] > 0 and not [k for k in metrics if "num_tokens_sigma" in k]
    for name in ("loss", "entropy", "mean_token_accuracy"):
        assert metrics[f"eval_{name}"] == metrics[f"eval_{name}_sigma_0_mean"]
        assert f"eval_{name}_sigma_0.5_std" in metrics
    assert metrics["eval_entropy_sigma_0.5_mean"] != metrics["eval_entropy_sigma_0_mean"]
    assert torch.equal(layer.weight, clean)
    trainer.save_model(str(tmp_path / "adapter"))
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "HALORA" and saved["noise_sigma"] == 0.05 and saved["reg_weight"] == 0.1
