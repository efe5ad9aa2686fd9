"""Projection of 3D Gaussians to screen space and view-dependent colour, on any device.

The maths is gsplat's own PyTorch reference (``gsplat.cuda._torch_impl``); what this module
adds is what that reference lacks and gsplat's CUDA kernels do: the opacity-aware bounding
radius (so ``radii`` match ``gsplat.rasterization`` exactly), the culling rules, and
flattening the visible (camera, Gaussian) pairs as gsplat's packed mode does.
"""

from dataclasses import dataclass

import torch
from gsplat.cuda._torch_impl import (
    _persp_proj,
    _quat_scale_to_covar_preci,
    _spherical_harmonics,
    _world_to_cam,
)
from torch import Tensor

# gsplat's ALPHA_THRESHOLD: a Gaussian contributes to a pixel only where alpha >= 1/255.
ALPHA_THRESHOLD = 1.0 / 255.0
# Largest bounding extent in standard deviations (gsplat's default 3.33 sigma).
MAX_EXTENT = 3.33


@dataclass
class Projection:
    """Screen-space Gaussians for C cameras; entries with ``radii == 0`` are culled."""

    radii: Tensor  # [C, N, 2] int32, pixels
    means2d: Tensor  # [C, N, 2]
    depths: Tensor  # [C, N]
    conics: Tensor  # [C, N, 3], upper triangle of the inverse 2D covariance
    opacities: Tensor  # [C, N], times the anti-aliasing compensation when asked


def project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    antialiased: bool = False,
) -> Projection:
    """Differentiable pinhole EWA projection, culled exactly like gsplat's CUDA kernel."""
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    means_c, covars_c = _world_to_cam(means, covars, viewmats)
    means2d, covars2d = _persp_proj(means_c, covars_c, Ks, width, height)
    det_orig = covars2d[..., 0, 0] * covars2d[..., 1, 1] - covars2d[..., 0, 1] * covars2d[..., 1, 0]
    var_x = covars2d[..., 0, 0] + eps2d
    var_y = covars2d[..., 1, 1] + eps2d
    cov_xy = 0.5 * (covars2d[..., 0, 1] + covars2d[..., 1, 0])
    det = var_x * var_y - cov_xy * cov_xy
    safe_det = det.clamp(min=1e-10)
    conics = torch.stack([var_y / safe_det, -cov_xy / safe_det, var_x / safe_det], dim=-1)
    depths = means_c[..., 2]
    view_opacities = opacities.unsqueeze(0).expand_as(depths)
    if antialiased:
        view_opacities = view_opacities * torch.sqrt((det_orig / safe_det).clamp(min=0.0))

    with torch.no_grad():
        # Opacity-aware extent (gsplat, after arXiv 2402.00525 B.2): beyond it alpha < 1/255.
        opacity_ratio = (view_opacities / ALPHA_THRESHOLD).clamp(min=1.0)
        extent = torch.sqrt(2.0 * torch.log(opacity_ratio)).clamp(max=MAX_EXTENT)
        radius_x = torch.ceil(extent * torch.sqrt(var_x.clamp(min=0.0)))
        radius_y = torch.ceil(extent * torch.sqrt(var_y.clamp(min=0.0)))
        visible = (
            (det > 0)
            & (depths > near_plane)
            & (depths < far_plane)
            & (view_opacities >= ALPHA_THRESHOLD)
            & ((radius_x > radius_clip) | (radius_y > radius_clip))
            & (means2d[..., 0] + radius_x > 0)
            & (means2d[..., 0] - radius_x < width)
            & (means2d[..., 1] + radius_y > 0)
            & (means2d[..., 1] - radius_y < height)
            & torch.isfinite(means2d).all(dim=-1)
        )
        radii = torch.stack([radius_x, radius_y], dim=-1) * visible.unsqueeze(-1)
    return Projection(radii.int(), means2d, depths, conics, view_opacities)


def view_dependent_colors(
    colors: Tensor,
    sh_degree: int | None,
    means: Tensor,
    viewmats: Tensor,
    camera_ids: Tensor,
    gaussian_ids: Tensor,
) -> Tensor:
    """Colours of the (camera, Gaussian) pairs given, [nnz, D].

    ``colors`` is [N, D] or [C, N, D] when ``sh_degree`` is None, else SH coefficients
    [N, K, 3] or [C, N, K, 3], evaluated along the camera-to-Gaussian direction and offset
    by 0.5 and clamped at 0 as gsplat does.
    """
    per_camera = colors.dim() == (3 if sh_degree is None else 4)
    picked = colors[camera_ids, gaussian_ids] if per_camera else colors[gaussian_ids]
    if sh_degree is None:
        return picked
    camera_positions = torch.linalg.inv(viewmats)[:, :3, 3]
    directions = means[gaussian_ids] - camera_positions[camera_ids]
    return torch.clamp_min(_spherical_harmonics(sh_degree, directions, picked) + 0.5, 0.0)
