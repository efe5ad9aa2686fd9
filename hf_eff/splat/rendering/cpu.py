"""Pure-PyTorch differentiable Gaussian rasterizer for CPUs (gsplat has no CPU path).

Pipeline: project (gsplat's PyTorch maths), enumerate the (Gaussian, pixel) pairs inside each
Gaussian's bounding box, order them by pixel then depth, drop pairs with alpha < 1/255, and
alpha-composite front to back with a segmented log-cumsum, stopping each pixel where its
transmittance would fall to 1e-4, exactly like gsplat's CUDA kernel.
"""

from typing import Optional

import torch
from torch import Tensor

from hf_eff.splat.rendering.projection import ALPHA_THRESHOLD, project, view_dependent_colors

# gsplat clamps alpha below 1 so that 1 - alpha stays invertible in the backward pass.
MAX_ALPHA = 0.999
# gsplat stops compositing a pixel before its transmittance falls to this value.
MIN_TRANSMITTANCE = 1e-4


def rasterize_cpu(
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
    sh_degree: Optional[int] = None,
    packed: bool = True,
    backgrounds: Optional[Tensor] = None,
    render_mode: str = "RGB",
    absgrad: bool = False,
    rasterize_mode: str = "classic",
):
    """Same arguments and outputs as ``gsplat.rasterization`` (pinhole, RGB)."""
    num_cameras = viewmats.shape[0]
    projection = project(
        means, quats, scales, opacities, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d,
        antialiased=rasterize_mode == "antialiased",
    )
    camera_ids, gaussian_ids = torch.nonzero((projection.radii > 0).all(dim=-1), as_tuple=True)
    if packed:
        means2d = projection.means2d[camera_ids, gaussian_ids]
        entry_means2d = means2d
        radii = projection.radii[camera_ids, gaussian_ids]
    else:
        means2d = projection.means2d
        entry_means2d = means2d[camera_ids, gaussian_ids]
        radii = projection.radii
    entry_colors = view_dependent_colors(colors, sh_degree, means, viewmats, camera_ids, gaussian_ids)
    render_colors, render_alphas = composite(
        entry_means2d,
        projection.conics[camera_ids, gaussian_ids],
        projection.opacities[camera_ids, gaussian_ids],
        entry_colors,
        projection.depths[camera_ids, gaussian_ids].detach(),
        projection.radii[camera_ids, gaussian_ids],
        camera_ids,
        num_cameras,
        width,
        height,
        backgrounds,
    )
    info = {
        "camera_ids": camera_ids if packed else None,
        "gaussian_ids": gaussian_ids if packed else None,
        "radii": radii,
        "means2d": means2d,
        "depths": projection.depths[camera_ids, gaussian_ids] if packed else projection.depths,
        "conics": projection.conics[camera_ids, gaussian_ids] if packed else projection.conics,
        "opacities": projection.opacities[camera_ids, gaussian_ids] if packed else projection.opacities,
        "width": width,
        "height": height,
        "n_cameras": num_cameras,
        "n_batches": 1,
    }
    return render_colors, render_alphas, info


@torch.no_grad()
def pixel_pairs(means2d: Tensor, radii: Tensor, depths: Tensor, camera_ids: Tensor, width: int, height: int):
    """(entry, pixel) pairs covering each entry's bounding box, ordered by pixel then depth.

    Returns entry indices and global pixel indices (camera * H * W + y * W + x), both [M].
    """
    # Pixel centres sit at +0.5, as in gsplat.
    x_lo = torch.ceil(means2d[:, 0] - radii[:, 0] - 0.5).clamp(min=0).long()
    x_hi = torch.floor(means2d[:, 0] + radii[:, 0] - 0.5).clamp(max=width - 1).long()
    y_lo = torch.ceil(means2d[:, 1] - radii[:, 1] - 0.5).clamp(min=0).long()
    y_hi = torch.floor(means2d[:, 1] + radii[:, 1] - 0.5).clamp(max=height - 1).long()
    box_w = (x_hi - x_lo + 1).clamp(min=0)
    box_h = (y_hi - y_lo + 1).clamp(min=0)
    # Entries in depth order, so the stable sort by (camera-global) pixel keeps depth order.
    order = torch.argsort(depths, stable=True)
    counts = (box_w * box_h)[order]
    entries = torch.repeat_interleave(order, counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(entries.numel()) - torch.repeat_interleave(starts, counts)
    local_x = local % box_w[entries]
    local_y = local // box_w[entries]
    pixels = camera_ids[entries] * (height * width) + (y_lo[entries] + local_y) * width + x_lo[entries] + local_x
    pixel_order = torch.argsort(pixels, stable=True)
    return entries[pixel_order], pixels[pixel_order]


def composite(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    colors: Tensor,
    depths: Tensor,
    radii: Tensor,
    camera_ids: Tensor,
    num_cameras: int,
    width: int,
    height: int,
    backgrounds: Optional[Tensor],
):
    """Front-to-back alpha compositing of the visible entries into [C, H, W, D] images."""
    num_pixels = num_cameras * height * width
    channels = colors.shape[-1]
    entries, pixels = pixel_pairs(means2d.detach(), radii, depths, camera_ids, width, height)
    pixel_x = (pixels % width).to(means2d.dtype) + 0.5
    pixel_y = ((pixels // width) % height).to(means2d.dtype) + 0.5
    dx = means2d[entries, 0] - pixel_x
    dy = means2d[entries, 1] - pixel_y
    conic = conics[entries]
    sigma = 0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) + conic[:, 1] * dx * dy
    alphas = torch.clamp_max(opacities[entries] * torch.exp(-sigma), MAX_ALPHA)
    keep = (sigma >= 0) & (alphas >= ALPHA_THRESHOLD)
    entries, pixels, alphas = entries[keep], pixels[keep], alphas[keep]

    # Segmented exclusive log-cumsum per pixel; float64 keeps a long global cumsum exact.
    log_survival = torch.log1p(-alphas.double())
    inclusive = torch.cumsum(log_survival, 0)
    segment_start = torch.ones_like(pixels, dtype=torch.bool)
    segment_start[1:] = pixels[1:] != pixels[:-1]
    start_index = torch.cummax(torch.where(segment_start, torch.arange(pixels.numel()), 0), 0).values
    offset = inclusive[start_index] - log_survival[start_index]
    log_t_after = inclusive - offset
    with torch.no_grad():
        # Transmittance only decreases along a pixel, so this keeps a prefix of each pixel.
        reached = log_t_after > torch.log(torch.tensor(MIN_TRANSMITTANCE, dtype=torch.float64))
    entries, pixels, alphas = entries[reached], pixels[reached], alphas[reached]
    transmittance = torch.exp((log_t_after - log_survival)[reached]).to(alphas.dtype)
    weights = alphas * transmittance

    render = torch.zeros(num_pixels, channels, dtype=colors.dtype).index_add(
        0, pixels, weights[:, None] * colors[entries]
    )
    accumulated = torch.zeros(num_pixels, dtype=weights.dtype).index_add(0, pixels, weights)
    render = render.view(num_cameras, height, width, channels)
    accumulated = accumulated.view(num_cameras, height, width, 1)
    if backgrounds is not None:
        render = render + backgrounds[:, None, None, :] * (1.0 - accumulated)
    return render, accumulated
