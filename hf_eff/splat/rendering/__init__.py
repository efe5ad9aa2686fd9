"""Gaussian rasterization with one signature on every device.

``rasterize`` takes the arguments of ``gsplat.rasterization`` and returns its triple
``(render_colors, render_alphas, info)``. Tensors on CUDA go to gsplat's kernels; tensors on
the CPU go to the pure-PyTorch backend in :mod:`hf_eff.splat.rendering.cpu`, whose ``info``
carries the keys gsplat's densification strategies read.
"""

import inspect
from typing import Literal

import torch
from gsplat.rendering import rasterization as gsplat_rasterization
from torch import Tensor

from hf_eff.splat.rendering.cpu import rasterize_cpu

__all__ = ["RASTERIZE_MODES", "rasterize", "rasterize_cpu"]

Backend = Literal["auto", "cpu", "gsplat"]
# gsplat's modes: "antialiased" is Mip-Splatting's 2D filter with opacity compensation (see `rasterize`).
RASTERIZE_MODES = ("classic", "antialiased")
# Half precision is rendered from float32 copies: gsplat's kernels take float32 and float64 only, and
# the CPU backend's projection inverts matrices, which PyTorch does not do in half precision.
LOW_PRECISION = (torch.float16, torch.bfloat16)
# The CPU backend renders what gsplat renders with these at their defaults (a loop written for gsplat passes them so).
GSPLAT_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(gsplat_rasterization).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}


def _check_cpu_options(gsplat_kwargs: dict) -> None:
    """Refuses an option gsplat does not have, or a gsplat-only option the CPU backend would ignore: one whose
    value is not gsplat's default."""
    unknown = sorted(set(gsplat_kwargs) - set(GSPLAT_DEFAULTS))
    if unknown:
        raise TypeError(f"rasterize got {unknown}, which gsplat.rendering.rasterization does not take either")
    changed = {name: value for name, value in gsplat_kwargs.items() if not _is_default(value, GSPLAT_DEFAULTS[name])}
    if changed:
        given = ", ".join(f"{name}={_shown(value)} (gsplat's default: {GSPLAT_DEFAULTS[name]!r})"
                          for name, value in sorted(changed.items()))
        raise ValueError(f"the CPU backend does not support {given}; they are gsplat-only options, which it "
                         "takes only at gsplat's defaults")


def _is_default(value, default) -> bool:
    if value is default:
        return True
    # a tensor given where gsplat's default is None (covars, distortion coefficients) is never the default
    return not isinstance(value, Tensor) and default is not None and value == default


def _shown(value) -> str:
    return f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)


def _check_inputs(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds,
    check_finite,
):
    num_gaussians = means.shape[0] if means.dim() == 2 else -1
    if means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be [N, 3], got {tuple(means.shape)}")
    for name, tensor, shape in (
        ("quats", quats, (num_gaussians, 4)),
        ("scales", scales, (num_gaussians, 3)),
        ("opacities", opacities, (num_gaussians,)),
    ):
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} must be {list(shape)} for {num_gaussians} Gaussians, got {tuple(tensor.shape)}"
            )
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(
            f"viewmats must be [C, 4, 4] world-to-camera matrices, got {tuple(viewmats.shape)}"
        )
    num_cameras = viewmats.shape[0]
    if tuple(Ks.shape) != (num_cameras, 3, 3):
        raise ValueError(
            f"Ks must be [{num_cameras}, 3, 3] to match viewmats, got {tuple(Ks.shape)}"
        )
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    if sh_degree is None:
        if colors.shape[-2] != num_gaussians or colors.dim() not in (2, 3):
            raise ValueError(
                f"colors must be [N, D] or [C, N, D] when sh_degree is None, got {tuple(colors.shape)}"
            )
    else:
        if colors.dim() not in (3, 4) or colors.shape[-3] != num_gaussians or colors.shape[-1] != 3:
            raise ValueError(
                f"SH colors must be [N, K, 3] or [C, N, K, 3], got {tuple(colors.shape)}"
            )
        if (sh_degree + 1) ** 2 > colors.shape[-2]:
            raise ValueError(
                f"sh_degree {sh_degree} needs {(sh_degree + 1) ** 2} SH coefficients, colors has {colors.shape[-2]}"
            )
    # Per-camera colours ([C, N, D] or SH [C, N, K, 3]) need one entry per camera, as gsplat asserts.
    per_camera = colors.dim() == (3 if sh_degree is None else 4)
    if per_camera and colors.shape[0] != num_cameras:
        raise ValueError(
            f"colors {tuple(colors.shape)} are per camera for {colors.shape[0]} cameras, but viewmats "
            f"{tuple(viewmats.shape)} has {num_cameras}"
        )
    if backgrounds is not None and tuple(backgrounds.shape) != (num_cameras, colors.shape[-1]):
        raise ValueError(
            f"backgrounds must be [{num_cameras}, {colors.shape[-1]}], got {tuple(backgrounds.shape)}"
        )
    if not check_finite:
        return
    # A NaN camera renders a black image without a word. One read of the device for all six: a read per
    # tensor would wait on the GPU once each.
    named = (("means", means), ("quats", quats), ("scales", scales), ("opacities", opacities),
             ("viewmats", viewmats), ("Ks", Ks))
    finite = torch.stack([torch.isfinite(tensor).all().to(means.device) for _, tensor in named]).tolist()
    for (name, tensor), is_finite in zip(named, finite):
        if not is_finite:
            if name in ("viewmats", "Ks"):
                cameras = (~torch.isfinite(tensor)).flatten(1).any(1).nonzero().flatten().tolist()
                raise ValueError(f"{name} contains NaN or infinite values (camera {cameras[0]})")
            raise ValueError(f"{name} contains NaN or infinite values")


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = True,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    backend: Backend = "auto",
    check_finite: bool = True,
    **gsplat_kwargs,
):
    """Render Gaussians into C images, like ``gsplat.rasterization``.

    Args follow gsplat: means [N, 3], quats [N, 4] (need not be normalised), scales [N, 3]
    (activated), opacities [N] (activated), colors [N, D] / [C, N, D] or SH coefficients
    [N, K, 3] with ``sh_degree``, viewmats [C, 4, 4] (world-to-camera, OpenCV), Ks [C, 3, 3].
    ``backend`` "auto" picks gsplat on CUDA tensors and the PyTorch backend on CPU tensors.
    ``render_mode`` "D" / "ED" (accumulated / expected depth) and "RGB+D" / "RGB+ED" work on both.
    ``rasterize_mode``, as gsplat: both modes add ``eps2d`` (0.3 pixel^2) to each projected 2D
    covariance, so that no Gaussian is thinner than a pixel; "antialiased" (Mip-Splatting's 2D
    filter, gsplat's ``--antialiased``) also multiplies its opacity by
    ``sqrt(det(cov2d) / det(cov2d + eps2d I))``, so that the dilation keeps its total weight
    instead of making small or distant Gaussians look larger and more opaque. A model trained in one
    mode should be rendered in it.
    Gaussians in float16 / bfloat16 are rendered in float32 (neither backend computes in half
    precision) and the images and alphas come back in their dtype.
    ``gsplat_kwargs`` (e.g. ``tile_size``, ``camera_model``) pass through to gsplat; the CPU backend
    takes them at ``gsplat.rendering.rasterization``'s defaults only (as a loop written for gsplat
    passes them) and refuses any other value, naming it.
    ``check_finite`` False skips the NaN / inf check of the Gaussians and cameras: on CUDA it reads the GPU
    from the host (a synchronisation), which a training loop that watches for NaN itself, without
    waiting on the GPU at every step (`SplatTrainer`), does not pay.

    Returns (render_colors [C, H, W, D], render_alphas [C, H, W, 1], info).
    """
    if backend not in ("auto", "cpu", "gsplat"):
        raise ValueError(f"backend must be 'auto', 'cpu' or 'gsplat', got {backend!r}")
    # gsplat takes any other string for "classic" without a word
    if rasterize_mode not in RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    half = means.dtype if means.dtype in LOW_PRECISION else None
    if half is not None:
        means, quats, scales, opacities, colors = (t.float() for t in (means, quats, scales, opacities, colors))
    _check_inputs(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds,
        check_finite,
    )
    # Cameras often come from numpy as float64; both backends need the Gaussians' dtype.
    viewmats, Ks = viewmats.to(means.dtype), Ks.to(means.dtype)
    if backgrounds is not None:
        backgrounds = backgrounds.to(means.dtype)
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "cpu"
    options = dict(
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=packed,
        backgrounds=backgrounds,
        render_mode=render_mode,
        absgrad=absgrad,
        rasterize_mode=rasterize_mode,
    )
    if backend == "gsplat":
        from hf_eff.splat.rendering.gsplat_cuda import rasterize_gsplat

        render_colors, render_alphas, info = rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            **options, **gsplat_kwargs,
        )
    else:
        _check_cpu_options(gsplat_kwargs)
        if means.is_cuda:
            raise ValueError(
                "backend='cpu' needs CPU tensors; move them with .cpu() or use backend='gsplat'"
            )
        render_colors, render_alphas, info = rasterize_cpu(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, **options
        )
    if half is not None:
        render_colors, render_alphas = render_colors.to(half), render_alphas.to(half)
    return render_colors, render_alphas, info
