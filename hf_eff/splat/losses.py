"""The 3DGS photometric loss and the test metrics, on [N, H, W, 3] images in [0, 1].

SSIM (Gaussian window 11, sigma 1.5, C1 = 0.01^2, C2 = 0.03^2) comes in the two conventions of
splatting code, named as fused-ssim names them (``fused_ssim(..., padding=...)``):

- ``"same"``: windows zero-padded at the border, the SSIM map averaged over every pixel. 3DGS's
  loss and its metrics.py (``utils/loss_utils.ssim``: conv2d with padding = window // 2, and the
  fused-ssim default it trains with since), so the papers built on 3DGS report this one.
- ``"valid"``: only windows inside the image, the map averaged over the interior. gsplat's
  simple_trainer (loss ``fused_ssim(padding="valid")``; its evaluation, torchmetrics'
  ``StructuralSimilarityIndexMeasure``, reflect-pads and crops back to the same interior) and
  pytorch-msssim.

SplatTrainer's loss defaults to "valid" (its other defaults were tuned with it) and its evaluation
to "same" (the paper's comparisons). The two differ by about 0.002-0.01 on 256 px images, the size of the gaps between methods in
the paper's table. LPIPS is not computed: it needs pretrained AlexNet / VGG weights, which the
library does not download.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ms_ssim

SSIM_PADDINGS = ("same", "valid")
_WINDOW = 11


def _valid_window_size(height: int, width: int) -> int:
    # pytorch-msssim's 11-pixel Gaussian window skips smoothing (with a warning) on images smaller
    # than the window, which coarse-to-fine produces at its coarsest levels; shrink it instead.
    size = min(_WINDOW, height, width)
    return size if size % 2 == 1 else size - 1


def ssim(render: torch.Tensor, target: torch.Tensor, padding: str = "same") -> torch.Tensor:
    """Mean SSIM of [N, H, W, 3] images in [0, 1] under the ``padding`` convention ("same": 3DGS,
    "valid": gsplat; see the module docstring). Differentiable."""
    if render.shape != target.shape:
        raise ValueError(f"render {tuple(render.shape)} and target {tuple(target.shape)} differ in shape")
    if padding not in SSIM_PADDINGS:
        raise ValueError(f"SSIM padding must be one of {SSIM_PADDINGS} ('same': 3DGS, 'valid': gsplat), got {padding!r}")
    render, target = render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    if padding == "same":
        # pytorch-msssim only filters 'valid'; its windows over zero-padded images are exactly
        # 3DGS's zero-padded convolution (padding zeros adds nothing to x, x^2 or x*y), and the
        # map it averages is then one value per pixel of the original image.
        pad = (_WINDOW // 2,) * 4
        return _ms_ssim(F.pad(render, pad), F.pad(target, pad), data_range=1.0, size_average=True, win_size=_WINDOW)
    height, width = render.shape[2:]
    return _ms_ssim(render, target, data_range=1.0, size_average=True, win_size=_valid_window_size(height, width))


def photometric_loss(render: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2,
                     ssim_padding: str = "valid", check_finite: bool = True) -> torch.Tensor:
    """(1 - lambda) * L1 + lambda * (1 - SSIM), lambda = 0.2 as in 3DGS and the paper; SSIM under
    the ``ssim_padding`` convention: "valid" (gsplat's) as SplatTrainingArguments' default, with
    which its defaults were tuned; 3DGS's loss is "same". ``check_finite`` False skips the NaN / inf
    check of the render, a host read of the GPU (a synchronisation); `SplatTrainer` watches for
    NaN on the device instead."""
    if check_finite and not torch.isfinite(render).all():
        raise ValueError("photometric loss: the render contains NaN or inf (diverged Gaussians?)")
    l1 = (render - target).abs().mean()
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - ssim(render, target, ssim_padding))


def psnr(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [N, H, W, 3] images in [0, 1]: shape [N]."""
    mse = ((render.clamp(0, 1) - target) ** 2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))
