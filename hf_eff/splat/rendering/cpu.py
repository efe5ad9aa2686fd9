"""Pure-PyTorch differentiable Gaussian rasterizer for CPUs (gsplat has no CPU path).

Pipeline: project (gsplat's PyTorch maths), enumerate the (Gaussian, pixel) pairs inside each
Gaussian's bounding box, order them by pixel then depth, drop pairs with alpha < 1/255, and
alpha-composite front to back with a segmented log-cumsum, stopping each pixel where its
transmittance would fall to 1e-4, exactly like gsplat's CUDA kernel.
"""

import math
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import Tensor

from hf_eff.splat.rendering.projection import ALPHA_THRESHOLD, project, view_dependent_colors

# gsplat clamps alpha below 1 so that 1 - alpha stays invertible in the backward pass.
MAX_ALPHA = 0.999
# gsplat stops compositing a pixel before its transmittance falls to this value.
MIN_TRANSMITTANCE = 1e-4
# Side of the square pixel tiles Gaussians are binned into (see benchmarks/render_speed.py).
TILE_SIZE = 4
# (row, pixel) pairs processed per chunk: temporaries of ~1 MB stay in cache (see TileLayout.chunks).
CHUNK_ELEMENTS = 2**18


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
    absgrad_target = None
    if absgrad:
        # gsplat's convention: the backward pass leaves |dL/dmeans2d| summed over pixels in
        # `info["means2d"].absgrad`, which DefaultStrategy(absgrad=True) reads.
        def absgrad_target(entry_absgrad):
            if packed:
                means2d.absgrad = entry_absgrad
            else:
                means2d.absgrad = entry_absgrad.new_zeros(means2d.shape).index_put_(
                    (camera_ids, gaussian_ids), entry_absgrad
                )

    render_colors, render_alphas, n_pairs = composite(
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
        absgrad_target=absgrad_target,
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
        # Not a gsplat key: (Gaussian, pixel) pairs composited, what time and memory scale with.
        "n_pairs": n_pairs,
    }
    return render_colors, render_alphas, info


@dataclass
class TileLayout:
    """Which entries (visible camera-Gaussian pairs) touch which image tile.

    Rows are (entry, tile) intersections grouped by tile and, within a tile, sorted front to
    back; each row is evaluated densely over its tile's pixels.
    """

    tile_size: int
    tiles_x: int
    tiles_y: int
    num_cameras: int
    row_entries: Tensor  # [R] entry index of each row
    row_tiles: Tensor  # [R] global tile index (camera, tile_y, tile_x) of each row
    tile_ends: Tensor  # [num_tiles] one past the last row of each tile

    @property
    def num_tiles(self) -> int:
        return self.num_cameras * self.tiles_y * self.tiles_x

    @property
    def tile_pixels(self) -> int:
        return self.tile_size**2

    def chunks(self, max_elements: int) -> List["TileChunk"]:
        """Consecutive runs of whole tiles with about max_elements (row, pixel) pairs each.

        Working chunk by chunk keeps every temporary small enough to stay in cache and in
        the allocator's heap; one pass over all pairs would allocate fresh pages each time.
        """
        num_rows = self.row_entries.numel()
        rows_per_chunk = max(1, max_elements // self.tile_pixels)
        targets = torch.arange(1, num_rows // rows_per_chunk + 1) * rows_per_chunk
        splits = torch.unique(torch.searchsorted(self.tile_ends, targets) + 1).clamp(max=self.num_tiles)
        tile_bounds = [0, *splits.tolist(), self.num_tiles]
        ends = self.tile_ends.tolist()
        chunks = []
        for tile_start, tile_stop in zip(tile_bounds[:-1], tile_bounds[1:]):
            if tile_stop > tile_start:
                row_start = ends[tile_start - 1] if tile_start > 0 else 0
                chunks.append(TileChunk(self, tile_start, tile_stop, row_start, ends[tile_stop - 1]))
        return chunks

    def tiles_to_images(self, tiles: Tensor, width: int, height: int) -> Tensor:
        """[num_tiles, tile**2, D] -> [C, H, W, D], cropping the padding of edge tiles."""
        tile = self.tile_size
        images = tiles.reshape(self.num_cameras, self.tiles_y, self.tiles_x, tile, tile, -1)
        images = images.permute(0, 1, 3, 2, 4, 5).reshape(
            self.num_cameras, self.tiles_y * tile, self.tiles_x * tile, -1
        )
        return images[:, :height, :width]


class TileChunk:
    """Rows [row_start, row_stop) covering tiles [tile_start, tile_stop), with tile-local indices."""

    def __init__(self, layout: TileLayout, tile_start: int, tile_stop: int, row_start: int, row_stop: int):
        self.tile_start, self.tile_stop, self.row_start, self.row_stop = tile_start, tile_stop, row_start, row_stop
        self.row_entries = layout.row_entries[row_start:row_stop]
        global_tiles = layout.row_tiles[row_start:row_stop]
        self.row_tiles = global_tiles - tile_start
        self.tile_ends = layout.tile_ends[tile_start:tile_stop] - row_start
        tile = layout.tile_size
        local = torch.arange(tile * tile)
        self.origin_x = (global_tiles % layout.tiles_x) * tile
        self.origin_y = ((global_tiles // layout.tiles_x) % layout.tiles_y) * tile
        self.offset_x, self.offset_y = local % tile, local // tile

    @property
    def num_tiles(self) -> int:
        return self.tile_stop - self.tile_start

    def falloff(self, row_means2d: Tensor, row_conics: Tensor):
        """Offsets from each row's Gaussian centre to its tile's pixel centres (at +0.5, as in
        gsplat) and the exponent sigma, laid out [tile_size**2, rows] so that sums over a
        tile's rows run along the contiguous dimension."""
        pixel_x = (self.offset_x[:, None] + self.origin_x[None, :]).to(row_means2d.dtype) + 0.5
        pixel_y = (self.offset_y[:, None] + self.origin_y[None, :]).to(row_means2d.dtype) + 0.5
        dx = row_means2d[None, :, 0] - pixel_x
        dy = row_means2d[None, :, 1] - pixel_y
        a, b, c = row_conics[None, :, 0], row_conics[None, :, 1], row_conics[None, :, 2]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        return dx, dy, sigma


class _TileSums:
    """Sums over the rows of each tile of a chunk, for values laid out [K, rows].

    One float64 cumsum over the chunk serves all its tiles; per-tile quantities are
    differences of it (float32 would lose small differences of a long running sum).
    ``index_select`` along the last dimension is used throughout: on CPU it is several times
    faster than advanced indexing ``x[:, idx]``.
    """

    def __init__(self, values: Tensor, chunk: TileChunk):
        flat = values.reshape(-1, values.shape[-1]).double()
        self.row_tiles = chunk.row_tiles
        self.running = flat.cumsum(-1)
        num_rows = flat.shape[-1]
        tile_starts = torch.nn.functional.pad(chunk.tile_ends[:-1], (1, 0))
        first = tile_starts.clamp(max=num_rows - 1)
        last = (chunk.tile_ends - 1).clamp(min=0)
        self.before_tile = self.running.index_select(1, first) - flat.index_select(1, first)
        occupied = chunk.tile_ends > tile_starts
        self.tile_end = torch.where(occupied, self.running.index_select(1, last), self.before_tile)

    def within_tile(self) -> Tensor:
        """Inclusive sum over the rows up to each row, in the same tile: [K, rows]."""
        return self.running - self.before_tile.index_select(1, self.row_tiles)

    def after_row(self) -> Tensor:
        """Sum over the rows after each row, in the same tile: [K, rows]."""
        return self.tile_end.index_select(1, self.row_tiles) - self.running

    def per_tile(self) -> Tensor:
        """Sum over all rows of each tile: [K, tiles]."""
        return self.tile_end - self.before_tile


@torch.no_grad()
def tile_layout(
    means2d: Tensor, radii: Tensor, depths: Tensor, camera_ids: Tensor,
    num_cameras: int, width: int, height: int, tile_size: int,
) -> TileLayout:
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    # Pixels whose centre (at +0.5, as in gsplat) lies in the entry's bounding box.
    x_lo = torch.ceil(means2d[:, 0] - radii[:, 0] - 0.5).clamp(min=0).long()
    x_hi = torch.floor(means2d[:, 0] + radii[:, 0] - 0.5).clamp(max=width - 1).long()
    y_lo = torch.ceil(means2d[:, 1] - radii[:, 1] - 0.5).clamp(min=0).long()
    y_hi = torch.floor(means2d[:, 1] + radii[:, 1] - 0.5).clamp(max=height - 1).long()
    tile_x0, tile_y0 = x_lo // tile_size, y_lo // tile_size
    span_x = torch.where(x_hi >= x_lo, x_hi // tile_size - tile_x0 + 1, 0)
    span_y = torch.where(y_hi >= y_lo, y_hi // tile_size - tile_y0 + 1, 0)

    # Enumerate (entry, tile) rows front to back; a stable sort by tile keeps depth order.
    front_to_back = torch.argsort(depths, stable=True)
    counts = (span_x * span_y)[front_to_back]
    row_entries = torch.repeat_interleave(front_to_back, counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(row_entries.numel()) - torch.repeat_interleave(starts, counts)
    row_span_x = span_x[row_entries]
    row_tiles = (
        camera_ids[row_entries] * (tiles_y * tiles_x)
        + (tile_y0[row_entries] + local // row_span_x) * tiles_x
        + tile_x0[row_entries] + local % row_span_x
    )
    # int32 keys: PyTorch's CPU sort is several times faster on them than on int64.
    by_tile = torch.sort(row_tiles.int(), stable=True).indices
    row_entries, row_tiles = row_entries[by_tile], row_tiles[by_tile]
    tile_ends = torch.cumsum(torch.bincount(row_tiles, minlength=num_cameras * tiles_y * tiles_x), 0)
    return TileLayout(tile_size, tiles_x, tiles_y, num_cameras, row_entries, row_tiles, tile_ends)


class _CompositeTiles(torch.autograd.Function):
    """Alpha compositing with a hand-written backward (as gsplat's CUDA kernel has): autograd
    through the per-pair tensors would store every intermediate and scatter its gradients pair
    by pair, which dominates the run time on a CPU."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, layout: TileLayout, absgrad_target):
        channels = colors.shape[-1]
        render = means2d.new_zeros(layout.num_tiles, layout.tile_pixels, channels)
        accumulated = means2d.new_zeros(layout.num_tiles, layout.tile_pixels, 1)
        chunks = layout.chunks(CHUNK_ELEMENTS)
        saved = []
        n_pairs = 0
        for chunk in chunks:
            rows = chunk.row_entries
            if rows.numel() == 0:
                saved.append((None, None))
                continue
            row_colors = colors[rows]
            _, _, sigma = chunk.falloff(means2d[rows], conics[rows])
            alphas = torch.clamp_max(opacities[rows][None, :] * torch.exp(-sigma), MAX_ALPHA)
            alphas = torch.where((sigma >= 0) & (alphas >= ALPHA_THRESHOLD), alphas, 0.0)
            log_survival = torch.log1p(-alphas)
            log_transmittance_after = _TileSums(log_survival, chunk).within_tile()
            # Transmittance only decreases along a pixel, so this drops a suffix of each pixel.
            alphas = torch.where(log_transmittance_after > math.log(MIN_TRANSMITTANCE), alphas, 0.0)
            transmittance = torch.exp(log_transmittance_after - log_survival).to(alphas.dtype)
            weights = alphas * transmittance  # [P, rows]
            stacked = weights.new_empty(weights.shape[0], channels + 1, weights.shape[1])
            torch.mul(weights[:, None, :], row_colors.t()[None], out=stacked[:, :channels])
            stacked[:, channels] = weights
            per_tile = _TileSums(stacked, chunk).per_tile().view(weights.shape[0], channels + 1, -1)
            per_tile = per_tile.permute(2, 0, 1).to(render.dtype)  # [tiles, P, D + 1]
            render[chunk.tile_start : chunk.tile_stop] = per_tile[..., :channels]
            accumulated[chunk.tile_start : chunk.tile_stop] = per_tile[..., channels:]
            saved.append((alphas, transmittance))
            n_pairs += int(torch.count_nonzero(alphas))
        ctx.layout, ctx.chunks, ctx.chunk_tensors, ctx.absgrad_target = layout, chunks, saved, absgrad_target
        ctx.save_for_backward(means2d, conics, opacities, colors)
        n_pairs = torch.tensor(n_pairs)
        ctx.mark_non_differentiable(n_pairs)
        return render, accumulated, n_pairs

    @staticmethod
    def backward(ctx, grad_render, grad_accumulated, _grad_n_pairs):
        means2d, conics, opacities, colors = ctx.saved_tensors
        channels = colors.shape[-1]
        grad_render = grad_render.permute(1, 2, 0)  # [P, D, tiles]
        grad_accumulated = grad_accumulated[:, :, 0].t()  # [P, tiles]
        with_absgrad = ctx.absgrad_target is not None
        per_row = means2d.new_empty(ctx.layout.row_entries.numel(), 6 + 2 * with_absgrad + channels)
        for chunk, (alphas, transmittance) in zip(ctx.chunks, ctx.chunk_tensors):
            rows = chunk.row_entries
            if rows.numel() == 0:
                continue
            row_means2d, row_conics, row_opacities, row_colors = means2d[rows], conics[rows], opacities[rows], colors[rows]
            weights = alphas * transmittance
            chunk_tiles = chunk.row_tiles + chunk.tile_start
            grad_render_rows = grad_render.index_select(2, chunk_tiles)
            grad_weights = grad_accumulated.index_select(1, chunk_tiles)
            # Channel by channel: with few channels this beats einsum's batched matmuls.
            for channel in range(channels):
                grad_weights = grad_weights + grad_render_rows[:, channel] * row_colors[None, :, channel]
            grad_colors = (weights[:, None, :] * grad_render_rows).sum(0).t()
            # Pixel value = sum_i w_i g_i with w_i = a_i prod_{j<i} (1 - a_j), so
            # dL/da_i = T_i g_i - (sum_{j>i} w_j g_j) / (1 - a_i).
            behind = _TileSums(weights * grad_weights, chunk).after_row().to(alphas.dtype)
            grad_alphas = transmittance * grad_weights - behind / (1.0 - alphas)
            # Clamped (alpha = 0.999) and culled (alpha = 0) pairs pass no gradient, as in gsplat.
            grad_alphas = torch.where((alphas > 0) & (alphas < MAX_ALPHA), grad_alphas, 0.0)
            dx, dy, _ = chunk.falloff(row_means2d, row_conics)
            grad_sigma = -alphas * grad_alphas
            a, b, c = row_conics[None, :, 0], row_conics[None, :, 1], row_conics[None, :, 2]
            grad_mean_x = grad_sigma * (a * dx + b * dy)
            grad_mean_y = grad_sigma * (c * dy + b * dx)
            out = per_row[chunk.row_start : chunk.row_stop]
            out[:, 0] = grad_mean_x.sum(0)
            out[:, 1] = grad_mean_y.sum(0)
            out[:, 2] = (0.5 * grad_sigma * dx * dx).sum(0)
            out[:, 3] = (grad_sigma * dx * dy).sum(0)
            out[:, 4] = (0.5 * grad_sigma * dy * dy).sum(0)
            out[:, 5] = (alphas * grad_alphas).sum(0) / row_opacities
            if with_absgrad:
                out[:, 6] = grad_mean_x.abs().sum(0)
                out[:, 7] = grad_mean_y.abs().sum(0)
            out[:, -channels:] = grad_colors
        per_entry = per_row.new_zeros(means2d.shape[0], per_row.shape[1]).index_add_(
            0, ctx.layout.row_entries, per_row
        )
        if with_absgrad:
            ctx.absgrad_target(per_entry[:, 6:8])
        return per_entry[:, 0:2], per_entry[:, 2:5], per_entry[:, 5], per_entry[:, -channels:], None, None


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
    tile_size: int = TILE_SIZE,
    absgrad_target: Optional[Callable[[Tensor], None]] = None,
):
    """Front-to-back alpha compositing of the visible entries into [C, H, W, D] images.

    Returns (render_colors, render_alphas, number of contributing (Gaussian, pixel) pairs).
    """
    layout = tile_layout(means2d.detach(), radii, depths, camera_ids, num_cameras, width, height, tile_size)
    render_tiles, accumulated_tiles, n_pairs = _CompositeTiles.apply(
        means2d, conics, opacities, colors, layout, absgrad_target
    )
    render = layout.tiles_to_images(render_tiles, width, height)
    accumulated = layout.tiles_to_images(accumulated_tiles, width, height)
    if backgrounds is not None:
        render = render + backgrounds[:, None, None, :] * (1.0 - accumulated)
    return render, accumulated, int(n_pairs)
