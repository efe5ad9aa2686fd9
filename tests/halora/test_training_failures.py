"""HaLoRA's trainer and regulariser stop a diverged run by name (hf_eff/utils/training_failures.py)."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import default_data_collator

from hf_eff import HaLoRAConfig
from hf_eff.halora.regularizer import halora_regularizer
from hf_eff.halora.trainer import HaLoRATrainer
from tests.halora.conftest import make_tiny_llama
from tests.halora.test_trainer import _args, _token_dataset


def _halora_model(**kwargs):
    torch.manual_seed(0)
    config = HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, noise_sigma=0.0, **kwargs)
    return get_peft_model(make_tiny_llama(), config)


def test_a_nan_lora_factor_is_named_by_the_regulariser_not_left_to_torch_svd():
    model = _halora_model()
    layer = model.base_model.model.model.layers[1].self_attn.v_proj
    with torch.no_grad():
        layer.lora_B["default"].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"adapter 'default': .*layers\.1\.self_attn\.v_proj's lora_B holds "
                                                 r"non-finite values$"):
        halora_regularizer(model, norm="spectral")


@pytest.mark.parametrize("reg_application", ["decoupled", "loss"])
def test_a_divergent_learning_rate_stops_training_with_the_named_error(tmp_path, reg_application):
    model = _halora_model(reg_weight=0.1, reg_application=reg_application)
    args = _args(tmp_path, per_device_train_batch_size=4, max_steps=4, optim="sgd", learning_rate=1e30,
                 max_grad_norm=0.0)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=_token_dataset(), data_collator=default_data_collator)
    with pytest.raises(FloatingPointError, match=r"training diverged at step \d: .*--learning_rate, now 1e\+30"):
        trainer.train()


def test_regulariser_on_nan_factors_in_training_names_the_step(tmp_path):
    """The decoupled step after the optimizer step that made the factors NaN: the trainer's error, with the step."""
    model = _halora_model(reg_weight=0.1)
    args = _args(tmp_path, per_device_train_batch_size=4, max_steps=2, optim="sgd", learning_rate=1e-3,
                 max_grad_norm=0.0)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=_token_dataset(), data_collator=default_data_collator)
    factor = model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight

    def nan_gradient(param):
        param.grad.fill_(float("nan"))

    factor.register_post_accumulate_grad_hook(nan_gradient)
    with pytest.raises(FloatingPointError, match=r"training diverged at step 1: the HaLoRA regulariser's adapter "
                                                 r"'default': .*layers\.0\.self_attn\.q_proj's lora_A holds non-finite"):
        trainer.train()


def test_a_resume_from_a_damaged_adapter_checkpoint_names_the_file(tmp_path):
    args = _args(tmp_path, per_device_train_batch_size=4, max_steps=1, save_strategy="steps", save_steps=1)
    HaLoRATrainer(model=_halora_model(), args=args, train_dataset=_token_dataset(),
                  data_collator=default_data_collator).train()
    weights = tmp_path / "checkpoint-1" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # truncated
    trainer = HaLoRATrainer(model=_halora_model(), args=_args(tmp_path, per_device_train_batch_size=4, max_steps=2),
                            train_dataset=_token_dataset(), data_collator=default_data_collator)
    with pytest.raises(ValueError, match=f"--resume_from_checkpoint: {weights} does not load"):
        trainer.train(resume_from_checkpoint=True)
