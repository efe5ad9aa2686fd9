"""The HaLoRA regulariser: sum over adapted layers of ||A A^T|| + ||B^T B||, on r x r Gram matrices.

It bounds how far LoRA's training trajectory under noisy weights drifts from the noise-free one:
one SGD step moves BA by about -eta (B B^T G + G A^T A) (Wu et al., arXiv 2502.19747).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from peft.tuners.lora import LoraLayer
from torch import nn

from hf_eff.halora.config import REG_NORMS, REG_REDUCTIONS


def lora_factor_parameters(model: nn.Module, adapter_name: str = "default") -> Iterator[tuple[LoraLayer, nn.Parameter, nn.Parameter]]:
    """(layer, A, B) of every LoRA layer of ``adapter_name`` in ``model``, as the parameters themselves: the factor
    modules' weights (a convolution's keep their kernel dimensions), or an adapted embedding's factor parameters."""
    for module in model.modules():
        if isinstance(module, LoraLayer) and (factors := _layer_factors(module, adapter_name)) is not None:
            yield module, *factors


def _layer_factors(layer: LoraLayer, adapter_name: str) -> tuple[nn.Parameter, nn.Parameter] | None:
    """(A, B) of ``adapter_name`` in ``layer``, as the parameters themselves, or None where it has none."""
    if adapter_name in layer.lora_A:
        return layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
    if adapter_name in layer.lora_embedding_A:
        return layer.lora_embedding_A[adapter_name], layer.lora_embedding_B[adapter_name]
    return None


def lora_factors(model: nn.Module, adapter_name: str = "default") -> Iterator[tuple[LoraLayer, torch.Tensor, torch.Tensor]]:
    """(layer, A, B) of every LoRA layer of ``adapter_name`` in ``model``, A of shape [r, in] and B [out, r]:
    the factor modules' weights, or for an adapted embedding peft's factor parameters
    (``lora_embedding_A`` [r, num_embeddings], ``lora_embedding_B`` [embedding_dim, r]). A convolution's
    factors are flattened to those shapes (A [r, in * kernel], B [out, r]: peft's B is a 1x1 convolution)."""
    for module, lora_a, lora_b in lora_factor_parameters(model, adapter_name):
        yield module, lora_a.flatten(1), lora_b.flatten(1)


def _check_options(norm: str, reduction: str) -> None:
    if norm not in REG_NORMS:
        raise ValueError(f"reg_norm must be one of {REG_NORMS}, got {norm!r}")
    if reduction not in REG_REDUCTIONS:
        raise ValueError(f"reg_reduction must be one of {REG_REDUCTIONS}, got {reduction!r}")


@dataclass(frozen=True)
class FactorGroups:
    """``lora_factor_groups``'s: ``adapter_name``'s A (``a``) and B (``b``) factor parameters grouped by device, dtype
    and (flattened) shape; ``first_layer``: the first layer found with its two factors."""

    adapter_name: str
    a: dict[tuple, list[nn.Parameter]]
    b: dict[tuple, list[nn.Parameter]]
    first_layer: tuple[LoraLayer, nn.Parameter, nn.Parameter]

    def are_current(self) -> bool:
        """Whether the adapter still has these factors, as its first layer tells: peft deletes an adapter from every
        layer, so one deleted and re-added under the same name has new factors there too. One look-up, where finding
        the factors again walks every module."""
        layer, lora_a, lora_b = self.first_layer
        factors = _layer_factors(layer, self.adapter_name)
        return factors is not None and factors[0] is lora_a and factors[1] is lora_b


def lora_factor_groups(model: nn.Module, adapter_name: str = "default") -> FactorGroups:
    """The A and the B factor parameters of ``adapter_name``, grouped by device, dtype and (flattened) shape, in model
    order: the stacks L_reg is computed on. Finding them walks every module of the model."""
    factors_a: dict[tuple, list[nn.Parameter]] = defaultdict(list)  # (device, dtype, r, in)
    factors_b: dict[tuple, list[nn.Parameter]] = defaultdict(list)  # (device, dtype, out, r)
    layers = lora_factor_parameters(model, adapter_name)
    first_layer = next(layers, None)
    if first_layer is None:
        raise ValueError(f"adapter {adapter_name!r}: no LoRA layer carries it, so there is nothing to regularise")
    for _, lora_a, lora_b in itertools.chain([first_layer], layers):
        # by device: a model split over GPUs (device_map) has factors on each; by dtype: a stack of two dtypes would be
        # promoted, so a bf16 factor beside float32 ones (keep_in_fp32_modules) would get a float32 gradient
        factors_a[(lora_a.device, lora_a.dtype, lora_a.shape[0], math.prod(lora_a.shape[1:]))].append(lora_a)
        factors_b[(lora_b.device, lora_b.dtype, lora_b.shape[0], math.prod(lora_b.shape[1:]))].append(lora_b)
    return FactorGroups(adapter_name, factors_a, factors_b, first_layer)


def _regularizer_of_stacks(stacks_a: list[torch.Tensor], stacks_b: list[torch.Tensor], n_layers: int, norm: str,
                           reduction: str, model: nn.Module, adapter_name: str) -> torch.Tensor:
    """L_reg from the stacked factors, (k, r, in) for A and (k, out, r) for B, on any devices."""
    ord_ = 2 if norm == "spectral" else "fro"
    first_device = stacks_a[0].device
    # float32 whatever the surrounding autocast (on every device type holding factors): matrix_norm(ord=2)
    # refuses bf16/fp16
    with contextlib.ExitStack() as no_autocast:
        for device_type in {stacked.device.type for stacked in (*stacks_a, *stacks_b)}:
            no_autocast.enter_context(torch.autocast(device_type, enabled=False))
        grams: dict[tuple, list[torch.Tensor]] = defaultdict(list)  # (device, r)
        for stacked in stacks_a:
            stacked = stacked.float()
            grams[(stacked.device, stacked.shape[1])].append(stacked @ stacked.transpose(1, 2))  # A A^T
        for stacked in stacks_b:
            stacked = stacked.float()
            grams[(stacked.device, stacked.shape[2])].append(stacked.transpose(1, 2) @ stacked)  # B^T B
        try:
            total = sum(torch.linalg.matrix_norm(torch.cat(group), ord=ord_).sum().to(first_device)
                        for group in grams.values())
        except torch.linalg.LinAlgError as error:  # the spectral norm's SVD refuses non-finite Gram matrices
            raise FloatingPointError(non_finite_factors(model, adapter_name)) from error
    return total / n_layers if reduction == "mean" else total


def halora_regularizer(
    model: nn.Module, adapter_name: str = "default", norm: str = "spectral", reduction: str = "sum"
) -> torch.Tensor:
    """L_reg over every LoRA layer of ``adapter_name`` in ``model`` (any LoRA-family PEFT model).

    Factors of equal shape are stacked, so the Gram matrices and their norms take a handful of
    batched kernels instead of several per layer: the cost is launch-bound, not arithmetic-bound
    (r x r matrices), and a per-layer loop made a GPU training step about 1.3x slower than LoRA's.
    Non-finite factors, which the spectral norm's SVD refuses, raise a ``FloatingPointError`` naming their layers.
    """
    _check_options(norm, reduction)
    groups = lora_factor_groups(model, adapter_name)
    factors_a, factors_b = groups.a, groups.b
    stacks_a = [torch.stack([factor.flatten(1) for factor in group]) for group in factors_a.values()]
    stacks_b = [torch.stack([factor.flatten(1) for factor in group]) for group in factors_b.values()]
    n_layers = sum(len(group) for group in factors_a.values())
    return _regularizer_of_stacks(stacks_a, stacks_b, n_layers, norm, reduction, model, adapter_name)


def halora_regularizer_gradients(
    model: nn.Module, adapter_name: str = "default", norm: str = "spectral", reduction: str = "sum",
    groups: FactorGroups | None = None,
) -> tuple[torch.Tensor, list[tuple[nn.Parameter, torch.Tensor]]]:
    """L_reg (detached) and its gradient with respect to each factor parameter, as ``torch.autograd.grad`` of
    ``halora_regularizer`` gives them, to the bit. The backward runs from each stack of factors, not from each
    factor: a per-factor backward of the stack would cost an operator call per factor, the launch-bound cost of
    the decoupled step (the gradients are views of the stacks' gradients). ``groups``: ``lora_factor_groups(model,
    adapter_name)`` where the caller keeps them (the walk over every module costs as much host time as the rest of the
    decoupled step).
    Needs grad mode on."""
    _check_options(norm, reduction)
    if groups is None:
        groups = lora_factor_groups(model, adapter_name)
    elif groups.adapter_name != adapter_name:
        raise ValueError(f"groups hold the factors of adapter {groups.adapter_name!r}, not of {adapter_name!r}")
    factors_a, factors_b = groups.a, groups.b
    both = [*factors_a.values(), *factors_b.values()]
    with torch.no_grad():
        stacks = [torch.stack([factor.flatten(1) for factor in group]).requires_grad_() for group in both]
    n_layers = sum(len(group) for group in factors_a.values())
    total = _regularizer_of_stacks(stacks[:len(factors_a)], stacks[len(factors_a):], n_layers, norm, reduction,
                                   model, adapter_name)
    gradients = []
    for group, gradient in zip(both, torch.autograd.grad(total, stacks)):
        gradients += [(factor, grad if grad.shape == factor.shape else grad.view(factor.shape))
                      for factor, grad in zip(group, gradient.unbind(0))]
    return total.detach(), gradients


def non_finite_factors(model: nn.Module, adapter_name: str = "default") -> str:
    """Which of ``adapter_name``'s LoRA factors hold non-finite values or overflow their float32 Gram matrix: read
    only once the regulariser has failed, as it costs a device read per layer."""
    names = {module: name for name, module in model.named_modules()}
    bad = []
    for layer, lora_a, lora_b in lora_factors(model, adapter_name):
        for factor, value, gram in (("A", lora_a, lora_a.float() @ lora_a.float().T),
                                    ("B", lora_b, lora_b.float().T @ lora_b.float())):
            if not value.isfinite().all():
                bad.append(f"{names[layer]}'s lora_{factor} holds non-finite values")
            elif not gram.isfinite().all():
                bad.append(f"{names[layer]}'s lora_{factor} overflows its Gram matrix (largest |value| "
                           f"{value.abs().max().item():.3g})")
    shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
    return f"adapter {adapter_name!r}: {shown or 'a Gram matrix has no SVD'}"
