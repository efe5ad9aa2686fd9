"""The 3DGS photometric loss and the test metrics, on [N, H, W, 3] images in [0, 1]."""

from __future__ import annotations

import torch
from pytorch_msssim import ssim as _ms_ssim


def _window_size(height: int, width: int) -> int:
    # pytorch-msssim's 11-pixel Gaussian window skips smoothing (with a warning) on images smaller
    # than the window, which coarse-to-fine produces at its coarsest levels; shrink it instead.
    size = min(11, height, width)
    return size if size % 2 == 1 else size - 1


def ssim(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (pytorch-msssim, Gaussian window 11 / sigma 1.5) of [N, H, W, 3] images."""
    if render.shape != target.shape:
        raise ValueError(f"render {tuple(render.shape)} and target {tuple(target.shape)} differ in shape")
    height, width = render.shape[1:3]
    return _ms_ssim(render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), data_range=1.0,
                    size_average=True, win_size=_window_size(height, width))


def photometric_loss(render: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """(1 - lambda) * L1 + lambda * (1 - SSIM), lambda = 0.2 as in 3DGS and the paper."""
    if not torch.isfinite(render).all():
        raise ValueError("photometric loss: the render contains NaN or inf (diverged Gaussians?)")
    l1 = (render - target).abs().mean()
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - ssim(render, target))


def psnr(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [N, H, W, 3] images in [0, 1]: shape [N]."""
    mse = ((render.clamp(0, 1) - target) ** 2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))
