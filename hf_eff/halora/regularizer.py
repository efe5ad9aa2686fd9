"""The HaLoRA regulariser: sum over adapted layers of ||A A^T|| + ||B^T B||, on r x r Gram matrices.

It bounds how far LoRA's training trajectory under noisy weights drifts from the noise-free one:
one SGD step moves BA by about -eta (B B^T G + G A^T A) (Wu et al., arXiv 2502.19747).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from peft.tuners.lora import LoraLayer
from torch import nn

from hf_eff.halora.config import REG_NORMS, REG_REDUCTIONS


def lora_gram_matrices(layer: LoraLayer, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A A^T, B^T B) of one adapted layer, both r x r, in float32."""
    lora_a = layer.lora_A[adapter_name].weight.float()  # (r, in)
    lora_b = layer.lora_B[adapter_name].weight.float()  # (out, r)
    return lora_a @ lora_a.T, lora_b.T @ lora_b


def halora_regularizer(
    model: nn.Module, adapter_name: str = "default", norm: str = "spectral", reduction: str = "sum"
) -> torch.Tensor:
    """L_reg over every LoRA layer of ``adapter_name`` in ``model`` (any LoRA-family PEFT model).

    The norms are taken batched per rank: one linear-algebra call per distinct r instead of two
    per layer, which keeps the cost negligible on GPUs (small per-layer SVDs are launch-bound).
    """
    if norm not in REG_NORMS:
        raise ValueError(f"reg_norm must be one of {REG_NORMS}, got {norm!r}")
    if reduction not in REG_REDUCTIONS:
        raise ValueError(f"reg_reduction must be one of {REG_REDUCTIONS}, got {reduction!r}")
    grams_by_rank: dict[int, list[torch.Tensor]] = defaultdict(list)
    n_layers = 0
    for module in model.modules():
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
            gram_a, gram_b = lora_gram_matrices(module, adapter_name)
            grams_by_rank[gram_a.shape[0]] += [gram_a, gram_b]
            n_layers += 1
    if n_layers == 0:
        raise ValueError(f"adapter {adapter_name!r}: no LoRA layer carries it, so there is nothing to regularise")
    ord_ = 2 if norm == "spectral" else "fro"
    total = sum(torch.linalg.matrix_norm(torch.stack(grams), ord=ord_).sum() for grams in grams_by_rank.values())
    return total / n_layers if reduction == "mean" else total
