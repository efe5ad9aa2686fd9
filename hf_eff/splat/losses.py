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

Masked views (a scene's optional ``mask`` column; [N, H, W, 1], 1 = kept, 0 = ignored): `psnr` and
`ssim` count the kept pixels only. PSNR is the MSE over the kept pixels; SSIM compares the two
images with the ignored pixels set to 0 in both (so their content cannot change the value) and
averages its map over the windows centred on kept pixels. With every pixel kept, both equal the
unmasked metrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, gaussian_filter

SSIM_PADDINGS = ("same", "valid")
_WINDOW = 11


def _valid_window_size(height: int, width: int) -> int:
    # pytorch-msssim's 11-pixel Gaussian window skips smoothing (with a warning) on images smaller
    # than the window, which coarse-to-fine produces at its coarsest levels; shrink it instead.
    size = min(_WINDOW, height, width)
    return size if size % 2 == 1 else size - 1


def _check_mask_shape(mask: torch.Tensor, render: torch.Tensor) -> None:
    if mask.shape != (*render.shape[:3], 1):
        raise ValueError(
            f"mask {tuple(mask.shape)} must be [N, H, W, 1] for images {tuple(render.shape)}"
        )


def _check_mask(mask: torch.Tensor, render: torch.Tensor) -> None:
    _check_mask_shape(mask, render)
    empty = (mask.flatten(1) == 0).all(dim=1).nonzero()
    if len(empty):
        raise ValueError(f"the mask of image {empty[0].item()} keeps no pixel: it has no metric")


def ssim_window_centres(mask: torch.Tensor, padding: str) -> torch.Tensor:
    """The pixels of ``mask`` [N, H, W, 1] on which the SSIM windows of ``padding`` are centred: every
    pixel ("same"), or those at least half a window from the border ("valid"). Masked SSIM averages
    its map over the kept ones: an image whose mask keeps none of them has no masked SSIM."""
    if padding == "same":
        return mask
    height, width = mask.shape[1:3]
    half = _valid_window_size(height, width) // 2
    return mask[:, half : height - half, half : width - half]


def ssim_blind_images(mask: torch.Tensor, padding: str) -> tuple[list[int], int]:
    """The images of ``mask`` [N, H, W, 1] that have no masked SSIM under ``padding``: their masks keep no
    pixel where its windows are centred (`ssim_window_centres`). Returns their indices and the margin,
    how many pixels from the border no window is centred (0 for "same"). Reads the device."""
    centres = ssim_window_centres(mask, padding)
    blind = (centres.flatten(1) == 0).all(dim=1).nonzero().flatten().tolist()
    return blind, (mask.shape[1] - centres.shape[1]) // 2


def ssim(render: torch.Tensor, target: torch.Tensor, padding: str = "same",
         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM of [N, H, W, 3] images in [0, 1] under the ``padding`` convention ("same": 3DGS,
    "valid": gsplat; see the module docstring). Differentiable. ``mask`` [N, H, W, 1] (1 = kept,
    0 = ignored): the SSIM of the kept pixels (module docstring), over the whole batch; an image whose
    mask keeps no pixel where the windows are centred (`ssim_window_centres`) is refused."""
    if render.shape != target.shape:
        raise ValueError(f"render {tuple(render.shape)} and target {tuple(target.shape)} differ in shape")
    if padding not in SSIM_PADDINGS:
        raise ValueError(f"SSIM padding must be one of {SSIM_PADDINGS} ('same': 3DGS, 'valid': gsplat), got {padding!r}")
    if mask is not None:
        return _masked_ssim(render, target, padding, mask)
    render, target, size = _windowed(render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), padding)
    # pytorch-msssim's ssim() squeezes away a 1-pixel side (coarse-to-fine's coarsest level of a thin
    # image) and then refuses the tensor; its map, built here from the same filter, does not.
    return _ssim_map(render, target, size).mean()


def _windowed(render, target, padding: str):
    """[N, 3, H, W] images as pytorch-msssim's interior-only filter reads them under ``padding``, and
    the window size. pytorch-msssim only filters 'valid'; its windows over zero-padded images are
    exactly 3DGS's zero-padded convolution (padding zeros adds nothing to x, x^2 or x*y), and the map
    it averages is then one value per pixel of the original image."""
    if padding == "same":
        pad = (_WINDOW // 2,) * 4
        return F.pad(render, pad), F.pad(target, pad), _WINDOW
    return render, target, _valid_window_size(*render.shape[2:])


def _masked_ssim(render, target, padding: str, mask: torch.Tensor) -> torch.Tensor:
    # pytorch-msssim averages its SSIM map inside; the map is rebuilt here from its Gaussian filter
    # (window 11, sigma 1.5, K = (0.01, 0.03), data range 1, as above) to average it over kept pixels.
    _check_mask_shape(mask, render)
    blind, margin = ssim_blind_images(mask, padding)  # for "same": the masks that keep no pixel
    if blind and not margin:
        raise ValueError(f"the mask of image {blind[0]} keeps no pixel: it has no metric")
    if blind:
        raise ValueError(
            f"SSIM padding {padding!r}: the mask of image {blind[0]} keeps no pixel at least {margin} pixels "
            "from the border, where the windows of this convention are centred; use padding 'same'"
        )
    centres = ssim_window_centres(mask, padding).permute(0, 3, 1, 2)
    mask = mask.permute(0, 3, 1, 2)
    # where() rather than a product: an ignored pixel's NaN or inf must not count either
    render, target = (torch.where(mask > 0, image.permute(0, 3, 1, 2), 0) for image in (render, target))
    render, target, size = _windowed(render, target, padding)
    ssim_map = _ssim_map(render, target, size)
    centres = centres.to(ssim_map.dtype)
    return (ssim_map * centres).sum() / (centres.sum() * ssim_map.shape[1])


def _ssim_map(render, target, size: int) -> torch.Tensor:
    """pytorch-msssim's SSIM map of [N, 3, H, W] images (its Gaussian filter: window ``size``, sigma 1.5,
    K = (0.01, 0.03), data range 1), over the windows inside the images."""
    window = _fspecial_gauss_1d(size, 1.5).to(render).repeat(render.shape[1], 1, 1, 1)
    c1, c2 = 0.01**2, 0.03**2
    mu1, mu2 = gaussian_filter(render, window), gaussian_filter(target, window)
    sigma1 = gaussian_filter(render * render, window) - mu1**2
    sigma2 = gaussian_filter(target * target, window) - mu2**2
    sigma12 = gaussian_filter(render * target, window) - mu1 * mu2
    return ((2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1)) * ((2 * sigma12 + c2) / (sigma1 + sigma2 + c2))


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


def gaussian_regularization(splats, opacity_reg: float = 0.0, scale_reg: float = 0.0) -> torch.Tensor | float:
    """gsplat simple_trainer's regularisers of the Gaussians, added to its photometric loss: ``opacity_reg`` times
    the mean opacity (the sigmoid of ``splats["opacities"]``, logits) plus ``scale_reg`` times the mean scale (the exp
    of ``splats["scales"]``, log-scales, every axis of every Gaussian). A weight of 0 adds no term (0.0 for both)."""
    terms = []
    if opacity_reg:
        terms.append(opacity_reg * torch.sigmoid(splats["opacities"]).mean())
    if scale_reg:
        terms.append(scale_reg * torch.exp(splats["scales"]).mean())
    return sum(terms, 0.0)


def psnr(render: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image PSNR in dB of [N, H, W, 3] images in [0, 1]: shape [N]. ``mask`` [N, H, W, 1]
    (1 = kept, 0 = ignored): the MSE is taken over each image's kept pixels only."""
    error = (render.clamp(0, 1) - target) ** 2
    if mask is None:
        mse = error.flatten(1).mean(dim=1)
    else:
        _check_mask(mask, render)
        mask = mask.to(error.dtype)
        kept = mask.flatten(1).sum(dim=1) * error.shape[-1]
        # where() rather than a product: an ignored pixel's NaN or inf must not count either
        mse = torch.where(mask > 0, error, 0).flatten(1).sum(dim=1) / kept
    return -10.0 * torch.log10(mse.clamp_min(1e-10))
