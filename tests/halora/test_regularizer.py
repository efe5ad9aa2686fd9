import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from hf_eff import HaLoRAConfig
from hf_eff.halora import halora_regularizer
from tests.halora.conftest import make_tiny_llama


def _adapted(**kwargs):
    config = HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **kwargs)
    return get_peft_model(make_tiny_llama(), config)


def _layers(model):
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def test_spectral_sum_matches_singular_values():
    model = _adapted()
    expected = sum(
        torch.linalg.svdvals(layer.lora_A["default"].weight)[0] ** 2 + torch.linalg.svdvals(layer.lora_B["default"].weight)[0] ** 2
        for layer in _layers(model)
    )
    torch.testing.assert_close(model.base_model.get_regularization_loss(), expected, rtol=1e-5, atol=1e-6)


def test_frobenius_and_mean_options():
    model = _adapted(reg_norm="frobenius", reg_reduction="mean")
    layers = _layers(model)
    expected = sum(
        torch.linalg.matrix_norm(layer.lora_A["default"].weight @ layer.lora_A["default"].weight.T)
        + torch.linalg.matrix_norm(layer.lora_B["default"].weight.T @ layer.lora_B["default"].weight)
        for layer in layers
    ) / len(layers)
    torch.testing.assert_close(model.base_model.get_regularization_loss(), expected, rtol=1e-5, atol=1e-6)


def test_inside_bf16_autocast_it_is_the_float32_value():
    model = _adapted()
    expected = model.base_model.get_regularization_loss()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # spectral norms refuse bf16
        inside = model.base_model.get_regularization_loss()
    assert inside.dtype == torch.float32 and torch.equal(inside, expected)


def test_gradients_reach_a_and_b():
    model = _adapted()
    model.base_model.get_regularization_loss().backward()
    for layer in _layers(model):
        for weight in (layer.lora_A["default"].weight, layer.lora_B["default"].weight):
            assert weight.grad is not None and weight.grad.abs().sum() > 0
    base_grads = [p.grad for n, p in model.named_parameters() if "lora_" not in n]
    assert all(g is None for g in base_grads)


def test_works_on_plain_lora_and_rejects_unknown_adapter():
    model = get_peft_model(make_tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"]))
    assert halora_regularizer(model).item() > 0
    with pytest.raises(ValueError, match="'other'"):
        halora_regularizer(model, adapter_name="other")


def test_embedding_factors_are_regularised_like_linear_ones():
    """peft keeps an adapted embedding's factors as parameters (lora_embedding_A [r, num_embeddings],
    lora_embedding_B [embedding_dim, r]): they count in L_reg, its mean and its gradient."""
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["q_proj", "embed_tokens"],
                                                           init_lora_weights=False, reg_reduction="mean"))
    embedding = model.base_model.model.model.embed_tokens
    embedding_a, embedding_b = embedding.lora_embedding_A["default"], embedding.lora_embedding_B["default"]
    factors = [(layer.lora_A["default"].weight, layer.lora_B["default"].weight)
               for layer in _layers(model) if "default" in layer.lora_A] + [(embedding_a, embedding_b)]
    assert len(factors) == 3  # q_proj of both blocks and the embedding
    expected = sum(torch.linalg.svdvals(a)[0] ** 2 + torch.linalg.svdvals(b)[0] ** 2 for a, b in factors) / 3
    loss = model.base_model.get_regularization_loss()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    for factor in (embedding_a, embedding_b):
        assert factor.grad is not None and factor.grad.abs().sum() > 0
    only = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["embed_tokens"], init_lora_weights=False))
    embedding = only.base_model.model.model.embed_tokens
    expected = sum(torch.linalg.svdvals(f["default"])[0] ** 2 for f in (embedding.lora_embedding_A, embedding.lora_embedding_B))
    torch.testing.assert_close(only.base_model.get_regularization_loss(), expected, rtol=1e-5, atol=1e-6)


def test_convolution_factors_are_regularised_as_matrices():
    """peft's conv LoRA holds A [r, in, kh, kw] and B as a 1x1 convolution [out, r, 1, 1]: L_reg takes them as
    the matrices [r, in * kh * kw] and [out, r], whose product is the convolution's update."""

    class ConvNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.fc = torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    model = get_peft_model(ConvNet(), HaLoRAConfig(r=2, target_modules=["conv", "fc"], noise_target_modules=["fc"],
                                                   init_lora_weights=False))
    conv = model.base_model.model.conv
    conv_a, conv_b = conv.lora_A["default"].weight, conv.lora_B["default"].weight
    fc = model.base_model.model.fc
    expected = sum(torch.linalg.svdvals(factor.flatten(1))[0] ** 2
                   for factor in (conv_a, conv_b, fc.lora_A["default"].weight, fc.lora_B["default"].weight))
    loss = halora_regularizer(model)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert conv_a.grad.abs().sum() > 0 and conv_b.grad.abs().sum() > 0
