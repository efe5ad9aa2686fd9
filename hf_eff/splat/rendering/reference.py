"""Dense all-pairs rasterizer: every Gaussian against every pixel, O(C * N * H * W) memory.

Too slow for training; it exists as the plainest statement of gsplat's compositing rules
(alpha >= 1/255, alpha <= 0.999, sigma >= 0, stop before transmittance reaches 1e-4), so
tests can check the sparse CPU backend's images and gradients against it.
"""

import torch
from torch import Tensor

from hf_eff.splat.rendering.cpu import MAX_ALPHA, MIN_TRANSMITTANCE
from hf_eff.splat.rendering.projection import ALPHA_THRESHOLD, project, view_dependent_colors


def rasterize_dense(
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
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
):
    """Returns (render_colors [C, H, W, D], render_alphas [C, H, W, 1], means2d [C, N, 2])."""
    num_cameras, num_gaussians = viewmats.shape[0], means.shape[0]
    projection = project(
        means,
        quats,
        scales,
        opacities,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near_plane,
        far_plane=far_plane,
    )
    camera_ids = torch.arange(num_cameras).repeat_interleave(num_gaussians)
    gaussian_ids = torch.arange(num_gaussians).repeat(num_cameras)
    all_colors = view_dependent_colors(colors, sh_degree, means, viewmats, camera_ids, gaussian_ids)
    all_colors = all_colors.view(num_cameras, num_gaussians, -1)
    visible = (projection.radii > 0).all(dim=-1)  # [C, N]

    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pixel_centres = torch.stack([xs, ys], dim=-1).reshape(-1, 2).to(means.dtype) + 0.5  # [P, 2]
    renders, alphas_out = [], []
    for camera in range(num_cameras):
        order = torch.argsort(projection.depths[camera].detach(), stable=True)
        delta = projection.means2d[camera, order][None] - pixel_centres[:, None]  # [P, N, 2]
        conic = projection.conics[camera, order]
        sigma = (
            0.5 * (conic[:, 0] * delta[..., 0] ** 2 + conic[:, 2] * delta[..., 1] ** 2)
            + conic[:, 1] * delta[..., 0] * delta[..., 1]
        )
        alpha = torch.clamp_max(projection.opacities[camera, order] * torch.exp(-sigma), MAX_ALPHA)
        contributes = visible[camera, order] & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
        alpha = torch.where(contributes, alpha, torch.zeros_like(alpha))
        with torch.no_grad():
            reached = torch.cumprod(1.0 - alpha, dim=1) > MIN_TRANSMITTANCE
        alpha = torch.where(reached, alpha, torch.zeros_like(alpha))
        survival = torch.cumprod(1.0 - alpha, dim=1)
        transmittance = torch.cat([torch.ones_like(survival[:, :1]), survival[:, :-1]], dim=1)
        weights = alpha * transmittance  # [P, N]
        render = weights @ all_colors[camera, order]
        accumulated = weights.sum(dim=1, keepdim=True)
        if backgrounds is not None:
            render = render + backgrounds[camera] * (1.0 - accumulated)
        renders.append(render.view(height, width, -1))
        alphas_out.append(accumulated.view(height, width, 1))
    return torch.stack(renders), torch.stack(alphas_out), projection.means2d
