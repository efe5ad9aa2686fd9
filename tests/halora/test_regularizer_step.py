"""The decoupled regulariser step's batched gradients and foreach update give the per-factor autograd loop's
result to the bit (hf_eff/halora/regularizer.py, HaLoRATrainer._decoupled_regulariser_step)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import TrainerCallback

from hf_eff import HaLoRAConfig
from hf_eff.halora import trainer as trainer_module
from hf_eff.halora.regularizer import (
    halora_regularizer,
    halora_regularizer_gradients,
    lora_factor_groups,
    lora_factor_parameters,
)
from hf_eff.halora.trainer import HaLoRATrainer
from tests.halora.conftest import make_tiny_llama
from tests.halora.test_trainer import _args, _token_dataset


def _adapted(targets=("q_proj", "k_proj", "v_proj", "up_proj", "down_proj", "embed_tokens"), **kwargs):
    torch.manual_seed(0)
    config = HaLoRAConfig(r=4, target_modules=list(targets), init_lora_weights=False, noise_sigma=0.0, **kwargs)
    return get_peft_model(make_tiny_llama(), config)


def _factors(model):
    return [factor for _, lora_a, lora_b in lora_factor_parameters(model) for factor in (lora_a, lora_b)]


def _bit_equal(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize(("norm", "reduction"), [("spectral", "sum"), ("frobenius", "mean")])
def test_gradients_are_autograds_through_the_regulariser_to_the_bit(norm, reduction):
    model = _adapted()
    factors = _factors(model)
    expected_reg = halora_regularizer(model, norm=norm, reduction=reduction)
    expected = torch.autograd.grad(expected_reg, factors)
    reg, gradients = halora_regularizer_gradients(model, norm=norm, reduction=reduction)
    assert _bit_equal(reg, expected_reg.detach()) and not reg.requires_grad
    by_factor = {param: grad for param, grad in gradients}
    assert len(gradients) == len(by_factor) == len(factors)  # every factor once, the embedding's included
    assert all(_bit_equal(by_factor[factor], want) for factor, want in zip(factors, expected))


def test_gradients_of_convolution_factors_have_their_kernel_shape():
    """peft's Conv2d LoRA: A is an r x in x k x k kernel, B a 1x1 convolution; L_reg reads them flattened."""
    class Convolutions(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3)

    torch.manual_seed(0)
    model = get_peft_model(Convolutions(), LoraConfig(r=2, target_modules=["first", "second"], init_lora_weights=False))
    factors = _factors(model)
    expected = torch.autograd.grad(halora_regularizer(model), factors)
    by_factor = dict(halora_regularizer_gradients(model)[1])
    assert len(by_factor) == len(factors) == 4
    assert all(_bit_equal(by_factor[factor], want) for factor, want in zip(factors, expected))


def test_gradients_need_a_regularisable_adapter():
    with pytest.raises(ValueError, match="'other': no LoRA layer carries it"):
        halora_regularizer_gradients(_adapted(), adapter_name="other")
    with pytest.raises(ValueError, match="reg_norm must be one of"):
        halora_regularizer_gradients(_adapted(), norm="nuclear")


def _loop_step(model, optimizer, reg_weight):
    """The decoupled step as it was: autograd to every trained parameter, then one add_ per parameter."""
    learning_rates = {p: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    params = [p for p in learning_rates if p.requires_grad]
    grads = torch.autograd.grad(model.base_model.get_regularization_loss(), params, allow_unused=True)
    with torch.no_grad():
        for param, grad in zip(params, grads):
            if grad is not None:
                param.add_(grad, alpha=-learning_rates[param] * reg_weight)


def test_foreach_decoupled_step_equals_the_per_parameter_loop_to_the_bit(tmp_path):
    model = _adapted(reg_weight=0.3)
    trainer = HaLoRATrainer(model=model, args=_args(tmp_path), train_dataset=_token_dataset())
    looped = copy.deepcopy(model)
    # two learning rates (as a Trainer's decay / no-decay groups may have), one factor left out of the optimizer,
    # one frozen: neither of those two moves
    frozen, untrained = (dict(model.named_parameters())[name] for name in (
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
        "base_model.model.model.layers.1.mlp.up_proj.lora_B.default.weight"))
    frozen.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad and p is not untrained]
    optimizer = torch.optim.SGD([{"params": trained[::2], "lr": 0.1}, {"params": trained[1::2] + [frozen], "lr": 0.02}])
    names = {p: n for n, p in model.named_parameters()}
    looped_params = dict(looped.named_parameters())
    looped_params[names[frozen]].requires_grad_(False)
    looped_optimizer = torch.optim.SGD([{"params": [looped_params[names[p]] for p in group["params"]], "lr": group["lr"]}
                                        for group in optimizer.param_groups])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    trainer._decoupled_regulariser_step(optimizer)
    _loop_step(looped, looped_optimizer, reg_weight=0.3)

    for name, param in model.named_parameters():
        assert _bit_equal(param.detach(), looped_params[name].detach()), name
    moved = {name for name, param in model.named_parameters() if not torch.equal(param, before[name])}
    assert moved == {names[p] for p in trained}
    assert trainer._reg_count == 1 and not trainer._reg_sum.requires_grad


def test_the_decoupled_steps_of_a_train_call_find_the_factors_once(tmp_path, monkeypatch):
    """Finding the factors walks every module: once per train() call, not once per step."""
    walks = []
    original = trainer_module.lora_factor_groups
    monkeypatch.setattr(trainer_module, "lora_factor_groups", lambda *args: walks.append(args[1]) or original(*args))
    model = _adapted(targets=("q_proj", "v_proj"), reg_weight=0.1)
    args = _args(tmp_path, per_device_train_batch_size=4, max_steps=3)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=_token_dataset())
    trainer.train()
    assert walks == ["default"]
    trainer.train()  # adapters may change between train() calls: found again
    assert walks == ["default", "default"]


def test_the_factors_kept_for_the_decoupled_step_follow_the_active_adapter(tmp_path):
    model = _adapted(targets=("q_proj", "v_proj"), reg_weight=0.1)
    trainer = HaLoRATrainer(model=model, args=_args(tmp_path), train_dataset=_token_dataset())
    with torch.enable_grad():
        first = {param for param, _ in trainer.regularization_gradients()[1]}
        model.add_adapter("second", HaLoRAConfig(r=2, target_modules=["k_proj"], noise_sigma=0.0))
        model.set_adapter("second")
        second = {param for param, _ in trainer.regularization_gradients()[1]}
    assert first == {p for _, a, b in lora_factor_parameters(model, "default") for p in (a, b)}
    assert second == {p for _, a, b in lora_factor_parameters(model, "second") for p in (a, b)}


class _TwoLinears(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x):
        return self.second(self.first(x))


def _mixed_dtype_model(bf16_layer="second"):
    """Equal-shaped factors of two dtypes, as T5's keep_in_fp32_modules=["wo"] leaves them in a bf16 model."""
    torch.manual_seed(0)
    config = HaLoRAConfig(r=4, target_modules=["first", "second"], init_lora_weights=False, noise_sigma=0.0,
                          reg_weight=0.3)
    model = get_peft_model(_TwoLinears(), config)
    layer = getattr(model.base_model.model, bf16_layer)
    layer.lora_A.default.to(torch.bfloat16)
    layer.lora_B.default.to(torch.bfloat16)
    return model


@pytest.mark.parametrize("bf16_layer", ["first", "second"])
def test_factors_of_one_shape_and_two_dtypes_get_gradients_and_steps_of_their_dtype_to_the_bit(tmp_path, bf16_layer):
    model = _mixed_dtype_model(bf16_layer)
    factors = _factors(model)
    assert {factor.dtype for factor in factors} == {torch.float32, torch.bfloat16}
    # the same numbers in float32 (bf16 converts exactly): L_reg as one stack of each shape computes it, and its
    # gradients, which autograd through a stack promoted to float32 rounds to each factor's dtype
    as_float32 = copy.deepcopy(model).float()
    float32_reg = halora_regularizer(as_float32)
    float32_gradients = torch.autograd.grad(float32_reg, _factors(as_float32))
    expected_reg = halora_regularizer(model)
    expected = torch.autograd.grad(expected_reg, factors)
    reg, gradients = halora_regularizer_gradients(model)
    by_factor = dict(gradients)
    assert all(_bit_equal(by_factor[factor], want) for factor, want in zip(factors, expected))
    assert all(_bit_equal(by_factor[factor], want.to(factor.dtype)) for factor, want in zip(factors, float32_gradients))
    assert _bit_equal(reg, expected_reg.detach()) and _bit_equal(reg, float32_reg.detach())

    trainer = HaLoRATrainer(model=model, args=_args(tmp_path, eval_sigmas=[0.0]))
    looped = copy.deepcopy(model)
    trainer._decoupled_regulariser_step(torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1))
    _loop_step(looped, torch.optim.SGD([p for p in looped.parameters() if p.requires_grad], lr=0.1), reg_weight=0.3)
    looped_params = dict(looped.named_parameters())
    for name, param in model.named_parameters():
        assert _bit_equal(param.detach(), looped_params[name].detach()), name


def test_gradients_refuse_groups_of_another_adapter():
    model = _adapted(targets=("q_proj",))
    with pytest.raises(ValueError, match="groups hold the factors of adapter 'default', not of 'other'"):
        halora_regularizer_gradients(model, adapter_name="other", groups=lora_factor_groups(model))


def test_factor_groups_are_not_current_once_their_adapter_is_deleted_and_added_again():
    model = _adapted(targets=("q_proj", "v_proj"))
    groups = lora_factor_groups(model)
    assert groups.are_current()
    model.delete_adapter("default")
    assert not groups.are_current()
    model.add_adapter("default", HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], noise_sigma=0.0))
    assert not groups.are_current() and lora_factor_groups(model).are_current()


class _AtStep(TrainerCallback):
    def __init__(self, step, action):
        self.step, self.action = step, action

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.action()


def _recording_factors(trainer):
    """The factors each of ``trainer``'s decoupled steps regularised."""
    seen = []
    regularization_gradients = trainer.regularization_gradients

    def recorded():
        reg, gradients = regularization_gradients()
        seen.append({id(param) for param, _ in gradients})
        return reg, gradients

    trainer.regularization_gradients = recorded
    return seen


def _adapter_factor_ids(model):
    return {id(p) for _, a, b in lora_factor_parameters(model) for p in (a, b)}


def test_the_decoupled_step_regularises_an_adapter_deleted_and_added_again_during_training(tmp_path):
    model = _adapted(targets=("q_proj", "v_proj"), reg_weight=0.1)
    trainer = HaLoRATrainer(model=model, args=_args(tmp_path, per_device_train_batch_size=4, max_steps=2),
                            train_dataset=_token_dataset())
    seen = _recording_factors(trainer)
    first = _adapter_factor_ids(model)

    def add_again():
        model.delete_adapter("default")
        model.add_adapter("default", HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], noise_sigma=0.0, reg_weight=0.1))
        model.set_adapter("default")

    trainer.add_callback(_AtStep(1, add_again))
    trainer.train()
    assert seen == [first, _adapter_factor_ids(model)] and not first & seen[1]


def test_factors_found_outside_train_are_not_kept_for_a_model_changed_meanwhile(tmp_path):
    model = _mixed_dtype_model()
    second = model.base_model.model.second
    second.lora_A.default.float(), second.lora_B.default.float()
    trainer = HaLoRATrainer(model=model, args=_args(tmp_path, eval_sigmas=[0.0]))
    with torch.enable_grad():
        trainer.regularization_gradients()
        second.lora_A.default.to(torch.bfloat16), second.lora_B.default.to(torch.bfloat16)  # the same parameters, cast
        gradients = dict(trainer.regularization_gradients()[1])
    assert {gradients[factor].dtype for factor in (second.lora_A.default.weight, second.lora_B.default.weight)} == {
        torch.bfloat16}


def test_a_plain_lora_adapter_set_active_during_a_decoupled_run_is_refused_by_name(tmp_path):
    model = _adapted(targets=("q_proj", "v_proj"), reg_weight=0.1)
    # through the tuner: PeftModel.add_adapter refuses an adapter of another peft type
    model.peft_config["plain"] = LoraConfig(r=2, target_modules=["q_proj"])
    model.base_model.inject_adapter(model.base_model.model, "plain")
    trainer = HaLoRATrainer(model=model, args=_args(tmp_path, per_device_train_batch_size=4, max_steps=3),
                            train_dataset=_token_dataset())
    trainer.add_callback(_AtStep(1, lambda: model.set_adapter("plain")))
    with pytest.raises(ValueError, match=r"adapter 'plain' is not a HaLoRA adapter \(LoraConfig\)"):
        trainer.train()
