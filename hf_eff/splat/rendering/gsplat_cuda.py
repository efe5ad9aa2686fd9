"""CUDA backend: gsplat's fused kernels (JIT-compiled by gsplat on first use)."""

import gsplat
from torch import Tensor


def rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    **kwargs,
):
    if not means.is_cuda:
        raise ValueError(
            "backend='gsplat' needs CUDA tensors; gsplat has no CPU kernels (use backend='cpu')"
        )
    return gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs
    )
