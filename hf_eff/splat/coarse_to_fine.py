"""Energy-guided coarse-to-fine training resolution (Huang, Liu & Wong, 2025).

The training images' spectral energy says how much of the densification budget each resolution
deserves: E_r = ||FFT2(I_r)||_1 * r^2 for I downscaled by r, T_r = round(E_r / E_1 * T_densify),
and training runs at downscale r from step T_(r+1) to T_r, coarsest first (T_(K+1) = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def downscale_images(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Anti-aliased bilinear downscale of [N, H, W, C] images by an integer `factor`.

    The output size is (H // factor, W // factor), at least one pixel, matching
    `scale_intrinsics`.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {tuple(images.shape)}")
    if factor < 1:
        raise ValueError(f"downscale factor must be >= 1, got {factor}")
    if factor == 1:
        return images
    height, width = images.shape[1:3]
    size = (max(1, height // factor), max(1, width // factor))
    channels_first = images.permute(0, 3, 1, 2)
    return F.interpolate(channels_first, size=size, mode="bilinear", antialias=True,
                         align_corners=False).permute(0, 2, 3, 1)


def scale_intrinsics(Ks: torch.Tensor, width: int, height: int, factor: int) -> tuple[torch.Tensor, int, int]:
    """Intrinsics [..., 3, 3] and image size for rendering at downscale `factor`."""
    new_width, new_height = max(1, width // factor), max(1, height // factor)
    scaled = Ks.clone()
    scaled[..., 0, :] *= new_width / width
    scaled[..., 1, :] *= new_height / height
    return scaled, new_width, new_height


# Images per FFT batch in the energy schedule: the FFT's complex output and the downscaled copies
# cost several times the images' own memory: all at once, 300 views at 256x256 (225 MB) peaked at
# +1.36 GB (an estimated +40 GB at 1600x1200); 16 at a time, +0.08 GB and faster.
ENERGY_CHUNK_SIZE = 16


def _as_float(values: torch.Tensor) -> torch.Tensor:
    """uint8 values read as value / 255 (`images_to_float`), others as float32."""
    from hf_eff.splat.scene import images_to_float

    return images_to_float(values) if values.dtype == torch.uint8 else values.float()


def _per_image_energies(images: torch.Tensor, factors: list[int], chunk_size: int, alphas: torch.Tensor | None = None,
                        background: torch.Tensor | None = None) -> list[torch.Tensor]:
    """For each factor, the [N] float32 per-image sums of |FFT2| over pixels and channels of the
    downscaled images, computed `chunk_size` images at a time. Each image's sum does not depend
    on the chunking, so the averages are those of a single all-images batch. uint8 images (the
    trainer's `SceneViews.images`) are read as value / 255, one chunk at a time; so are ``alphas``, with which
    the images (their colour over black) are composited onto ``background`` first (`energy_schedule`)."""
    from hf_eff.splat.scene import composite_premultiplied

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    sums: list[list[torch.Tensor]] = [[] for _ in factors]
    for start in range(0, len(images), chunk_size):
        chunk = _as_float(images[start : start + chunk_size])
        if alphas is not None and background is not None:
            chunk = composite_premultiplied(chunk, _as_float(alphas[start : start + chunk_size])[..., None],
                                            background.to(chunk.device))
        bad = (~torch.isfinite(chunk.flatten(1))).any(dim=1).nonzero()
        if len(bad):
            raise ValueError(f"coarse-to-fine: training image {start + bad[0].item()} contains NaN or inf")
        for level, factor in enumerate(factors):
            small = downscale_images(chunk, factor).permute(0, 3, 1, 2)
            sums[level].append(torch.fft.fft2(small).abs().sum(dim=(1, 2, 3)))
    return [torch.cat(level_sums) for level_sums in sums]


def _area_ratio(height: int, width: int, factor: int) -> float:
    return height * width / (max(1, height // factor) * max(1, width // factor))


def _energies(images: torch.Tensor, factors: list[int], chunk_size: int, alphas: torch.Tensor | None = None,
              background=None) -> list[float]:
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty [N, H, W, C] tensor, got shape {tuple(images.shape)}")
    if alphas is not None:
        if tuple(alphas.shape) != tuple(images.shape[:3]) or images.shape[3] != 3:
            raise ValueError(f"alphas must be [N, H, W] for RGB images [N, H, W, 3], got alphas {tuple(alphas.shape)} "
                             f"for images {tuple(images.shape)}")
        if background is not None:
            background = torch.as_tensor(background, dtype=torch.float32).reshape(3)
    height, width = images.shape[1:3]
    return [
        per_image.mean().item() * _area_ratio(height, width, factor)
        for per_image, factor in zip(_per_image_energies(images, factors, chunk_size, alphas, background), factors)
    ]


def spectral_energy(images: torch.Tensor, factor: int, chunk_size: int = ENERGY_CHUNK_SIZE) -> float:
    """E_r: the L1 norm of the unnormalised 2D FFT magnitude of the images downscaled by
    `factor`, times factor^2, averaged over the images (the paper leaves per-image vs average
    open; the average is the robust choice). Channels are summed. Images are [N, H, W, C], float
    in [0, 1] or uint8 (read as value / 255). The FFT runs on `chunk_size` images at a time
    to bound peak memory; the result does not depend on it.

    factor^2 is taken as the exact pixel-count ratio (H * W) / (H_r * W_r), which equals r^2 when
    r divides the size and keeps a flat image's energy equal across levels when it does not."""
    return _energies(images, [factor], chunk_size)[0]


def energy_schedule(
    images: torch.Tensor, densify_steps: int, num_levels: int = 8, chunk_size: int = ENERGY_CHUNK_SIZE,
    alphas: torch.Tensor | None = None, background=None,
) -> list[int]:
    """[T_1, ..., T_K]: T_r = round(E_r / E_1 * densify_steps) for r = 1..K.

    Downscaling removes high frequencies, so E_r decreases with r and the schedule is
    non-increasing; it is made so explicitly (a running minimum) because resampling noise can
    make neighbouring levels cross on nearly flat images. The images ([N, H, W, C], float in
    [0, 1] or uint8 read as value / 255) are read `chunk_size` at a time (all K levels per
    chunk), so peak memory does not grow with the number of views.

    Views kept with their alpha (the trainer's `SceneViews`) are measured as they are seen: ``images`` are then
    their colour over black [N, H, W, 3] and ``alphas`` [N, H, W] (uint8 or float, read as the images are), and
    each chunk is composited onto ``background`` (RGB in [0, 1]; None: black, the images as they are) before its
    FFT: no float copy of the whole split.
    """
    if num_levels < 1:
        raise ValueError(f"num_levels (K) must be >= 1, got {num_levels}")
    if densify_steps < 0:
        raise ValueError(f"densify_steps must be >= 0, got {densify_steps}")
    energies = _energies(images, list(range(1, num_levels + 1)), chunk_size, alphas, background)
    if energies[0] <= 0:
        raise ValueError("coarse-to-fine: the training images have zero spectral energy (all black)")
    schedule, bound = [], densify_steps
    for energy in energies:
        bound = min(bound, round(energy / energies[0] * densify_steps))
        schedule.append(bound)
    return schedule


@dataclass
class EnergyCoarseToFine:
    """The resolution schedule of one training run.

    Args:
        thresholds: [T_1, ..., T_K] from `energy_schedule`; T_1 = T_densify.
    """

    thresholds: list[int]

    @classmethod
    def from_images(cls, images: torch.Tensor, densify_steps: int, num_levels: int = 8,
                    alphas: torch.Tensor | None = None, background=None) -> EnergyCoarseToFine:
        """The schedule of ``images`` (`energy_schedule`; with ``alphas``, composited onto ``background``)."""
        return cls(energy_schedule(images, densify_steps, num_levels, alphas=alphas, background=background))

    @property
    def full_resolution_step(self) -> int:
        """T_2: the first full-resolution step, where global-to-local densification hands over
        to split + clone and the means learning rate starts to decay."""
        return self.thresholds[1] if len(self.thresholds) > 1 else 0

    def factor_at(self, step: int) -> int:
        """The downscale factor r with T_(r+1) <= step < T_r (1 from T_2 on)."""
        for factor in range(len(self.thresholds), 1, -1):
            if step < self.thresholds[factor - 1]:
                return factor
        return 1

    def state_dict(self) -> dict:
        return {"thresholds": list(self.thresholds)}

    @classmethod
    def from_state_dict(cls, state: dict) -> EnergyCoarseToFine:
        return cls(list(state["thresholds"]))
