"""Pure-PyTorch differentiable Gaussian rasterizer for CPUs (gsplat has no CPU path).

Pipeline, following gsplat's CUDA kernels:
1. project with gsplat's own PyTorch maths (autograd differentiates it);
2. bin the visible Gaussians into 4x4-pixel tiles: (Gaussian, tile) rows, minus tiles of
   the bounding box that the ellipse misses, sorted by tile and, within a tile, front to
   back (one sort of int32 tile keys, no per-pixel sort);
3. composite chunk by chunk of whole tiles, each row evaluated densely over its tile's pixels:
   alpha = min(0.999, opacity * exp(-sigma)), dropped below 1/255, transmittance from a
   float64 log-cumsum within the tile, each pixel stopped before its transmittance reaches
   1e-4; a hand-written backward (``_CompositeTiles``) returns gradients to the 2D means,
   conics, opacities and colours, and autograd carries them through the projection.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hf_eff.splat.rendering.projection import ALPHA_THRESHOLD, project, view_dependent_colors

# gsplat clamps alpha below 1 so that 1 - alpha stays invertible in the backward pass.
MAX_ALPHA = 0.999
# gsplat stops compositing a pixel before its transmittance falls to this value.
MIN_TRANSMITTANCE = 1e-4
# Side of the square pixel tiles Gaussians are binned into: 4 beat 2 and 8 on the render
# benchmark (smaller tiles waste fewer pixel evaluations but make more rows).
TILE_SIZE = 4
# (row, pixel) pairs processed per chunk: temporaries of ~1 MB stay in cache (see TileLayout.chunks).
CHUNK_ELEMENTS = 2**18
# gsplat's render modes: colours, accumulated depth (D), expected depth (ED), or both.
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


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
    sh_degree: int | None = None,
    packed: bool = True,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    absgrad: bool = False,
    rasterize_mode: str = "classic",
):
    """Same arguments and outputs as ``gsplat.rasterization`` (pinhole cameras). ``render_mode``
    as gsplat: "RGB"; "D", the accumulated camera-space depth sum_i w_i z_i; "ED", the expected
    depth (D divided by the alpha); "RGB+D" / "RGB+ED", the depth as a last channel after the
    colours. Depth channels composite onto a background of 0."""
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    num_cameras = viewmats.shape[0]
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
        radius_clip=radius_clip,
        eps2d=eps2d,
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
    entry_depths = projection.depths[camera_ids, gaussian_ids]
    # As gsplat: depth is composited like one more colour channel, with a background of 0.
    if render_mode in ("D", "ED"):
        entry_colors = entry_depths[:, None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(num_cameras, 1)
    else:
        entry_colors = view_dependent_colors(
            colors, sh_degree, means, viewmats, camera_ids, gaussian_ids
        )
        if render_mode in ("RGB+D", "RGB+ED"):
            entry_colors = torch.cat([entry_colors, entry_depths[:, None]], dim=1)
            if backgrounds is not None:
                backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(num_cameras, 1)], dim=1)
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
        entry_depths.detach(),
        projection.radii[camera_ids, gaussian_ids],
        camera_ids,
        num_cameras,
        width,
        height,
        backgrounds,
        tile_size=TILE_SIZE,
        absgrad_target=absgrad_target,
    )
    if render_mode in ("ED", "RGB+ED"):
        # gsplat's expected depth: the accumulated depth over the accumulated weight.
        expected = render_colors[..., -1:] / render_alphas.clamp(min=1e-10)
        render_colors = torch.cat([render_colors[..., :-1], expected], dim=-1)
    info = {
        "camera_ids": camera_ids if packed else None,
        "gaussian_ids": gaussian_ids if packed else None,
        "radii": radii,
        "means2d": means2d,
        "depths": projection.depths[camera_ids, gaussian_ids] if packed else projection.depths,
        "conics": projection.conics[camera_ids, gaussian_ids] if packed else projection.conics,
        "opacities": projection.opacities[camera_ids, gaussian_ids]
        if packed
        else projection.opacities,
        "width": width,
        "height": height,
        "n_cameras": num_cameras,
        "n_batches": 1,
        # Not a gsplat key: (Gaussian, pixel) pairs evaluated (tile rows x tile pixels), what
        # the CPU backend's time and memory scale with.
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

    def chunks(self, max_elements: int) -> list["TileChunk"]:
        """Consecutive runs of whole tiles with about max_elements (row, pixel) pairs each.

        Working chunk by chunk keeps every temporary small enough to stay in cache and in
        the allocator's heap; one pass over all pairs would allocate fresh pages each time.
        """
        num_rows = self.row_entries.numel()
        rows_per_chunk = max(1, max_elements // self.tile_pixels)
        targets = torch.arange(1, num_rows // rows_per_chunk + 1) * rows_per_chunk
        splits = torch.unique(torch.searchsorted(self.tile_ends, targets) + 1).clamp(
            max=self.num_tiles
        )
        tile_bounds = [0, *splits.tolist(), self.num_tiles]
        ends = self.tile_ends.tolist()
        chunks = []
        for tile_start, tile_stop in zip(tile_bounds[:-1], tile_bounds[1:]):
            if tile_stop > tile_start:
                row_start = ends[tile_start - 1] if tile_start > 0 else 0
                chunks.append(
                    TileChunk(self, tile_start, tile_stop, row_start, ends[tile_stop - 1])
                )
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
    """Rows [row_start, row_stop) covering tiles [tile_start, tile_stop), with tile-local indices.

    Per (pixel, row) values are laid out [tile_size**2, rows], so that sums over a tile's rows
    run along the contiguous dimension. The Gaussian exponent at a pixel is a quadratic in the
    pixel's offset from its tile centre, so it is evaluated, and differentiated, as one small
    matrix product with the offsets' monomials instead of a dozen elementwise passes.
    """

    def __init__(
        self, layout: TileLayout, tile_start: int, tile_stop: int, row_start: int, row_stop: int
    ):
        self.tile_start, self.tile_stop, self.row_start, self.row_stop = (
            tile_start,
            tile_stop,
            row_start,
            row_stop,
        )
        self.row_entries = layout.row_entries[row_start:row_stop]
        global_tiles = layout.row_tiles[row_start:row_stop]
        self.row_tiles = global_tiles - tile_start
        self.tile_ends = layout.tile_ends[tile_start:tile_stop] - row_start
        tile = layout.tile_size
        # Pixel centres sit at +0.5, as in gsplat; offsets are taken from the tile centre.
        self.centre_x = (global_tiles % layout.tiles_x) * tile + tile / 2
        self.centre_y = ((global_tiles // layout.tiles_x) % layout.tiles_y) * tile + tile / 2
        local = torch.arange(tile * tile, dtype=torch.float64)
        self.offset_x = local % tile + 0.5 - tile / 2
        self.offset_y = torch.div(local, tile, rounding_mode="floor") + 0.5 - tile / 2
        self.monomials = torch.stack(
            [
                torch.ones_like(local),
                self.offset_x,
                self.offset_y,
                self.offset_x**2,
                self.offset_x * self.offset_y,
                self.offset_y**2,
            ],
            dim=1,
        )  # [P, 6]

    def centre_offsets(self, row_means2d: Tensor) -> tuple[Tensor, Tensor]:
        """Each row's Gaussian centre relative to its tile centre: u, v [rows]."""
        return row_means2d[:, 0] - self.centre_x, row_means2d[:, 1] - self.centre_y

    def sigma(self, row_means2d: Tensor, row_conics: Tensor) -> Tensor:
        """Exponent 0.5 d^T conic d at every (pixel, row), with d = mean - pixel: [P, rows]."""
        u, v = self.centre_offsets(row_means2d)
        a, b, c = row_conics.unbind(-1)
        au_bv, bu_cv = a * u + b * v, b * u + c * v
        coefficients = torch.stack(
            [0.5 * (u * au_bv + v * bu_cv), -au_bv, -bu_cv, 0.5 * a, b, 0.5 * c]
        )
        return self.monomials.to(row_means2d.dtype) @ coefficients

    def sigma_backward(self, grad_sigma: Tensor, row_means2d: Tensor, row_conics: Tensor):
        """Sums over each row's pixels of dL/dsigma times dsigma/d(mean, conic): [rows, 5]."""
        m00, m10, m01, m20, m11, m02 = self.monomials.t().to(grad_sigma.dtype) @ grad_sigma
        u, v = self.centre_offsets(row_means2d)
        a, b, c = row_conics.unbind(-1)
        # With d = (u - ox, v - oy): sums of g * d and g * d d^T from the moments of g.
        sum_dx, sum_dy = u * m00 - m10, v * m00 - m01
        sum_dxdx = u * u * m00 - 2 * u * m10 + m20
        sum_dxdy = u * v * m00 - u * m01 - v * m10 + m11
        sum_dydy = v * v * m00 - 2 * v * m01 + m02
        return torch.stack(
            [
                a * sum_dx + b * sum_dy,
                b * sum_dx + c * sum_dy,
                0.5 * sum_dxdx,
                sum_dxdy,
                0.5 * sum_dydy,
            ],
            dim=1,
        )

    def mean_grad_per_pixel(self, grad_sigma: Tensor, row_means2d: Tensor, row_conics: Tensor):
        """dL/dmeans2d at every (pixel, row), [P, rows] each (for gsplat's absgrad)."""
        u, v = self.centre_offsets(row_means2d)
        dx = u[None, :] - self.offset_x.to(u.dtype)[:, None]
        dy = v[None, :] - self.offset_y.to(v.dtype)[:, None]
        a, b, c = row_conics.unbind(-1)
        return grad_sigma * (a * dx + b * dy), grad_sigma * (b * dx + c * dy)


class _TileSums:
    """Running sums over the rows of each tile of a chunk, for values laid out [K, rows].

    One float64 cumsum over the chunk serves all its tiles; per-tile quantities are
    differences of it (float32 would lose small differences of a long running sum).
    Per-tile values are spread over the rows with ``torch.gather``, which on CPU is several
    times faster here than ``index_select`` or advanced indexing along the last dimension.
    """

    def __init__(self, values: Tensor, chunk: TileChunk):
        # A copy even for float64 input: the running sum is accumulated in place.
        flat = values.reshape(-1, values.shape[-1]).to(torch.float64, copy=True)
        self.row_tiles = chunk.row_tiles
        tile_starts = torch.nn.functional.pad(chunk.tile_ends[:-1], (1, 0))
        first = tile_starts.clamp(max=flat.shape[-1] - 1)
        last = (chunk.tile_ends - 1).clamp(min=0)
        first_values = flat.index_select(1, first)
        self.running = flat.cumsum_(-1)
        self.before_tile = self.running.index_select(1, first).sub_(first_values)
        occupied = chunk.tile_ends > tile_starts
        self.tile_end = torch.where(occupied, self.running.index_select(1, last), self.before_tile)

    def _per_row(self, per_tile: Tensor) -> Tensor:
        return torch.gather(per_tile, 1, self.row_tiles.expand(per_tile.shape[0], -1))

    def within_tile_(self) -> Tensor:
        """Inclusive sum over the rows up to each row, in the same tile: [K, rows] (consumes
        the running sum)."""
        return self.running.sub_(self._per_row(self.before_tile))

    def after_row_(self) -> Tensor:
        """Sum over the rows after each row, in the same tile: [K, rows] (consumes the running
        sum)."""
        return self.running.neg_().add_(self._per_row(self.tile_end))


def _min_sigma_over_square(u: Tensor, v: Tensor, conics: Tensor, half: float) -> Tensor:
    """Minimum of sigma(d) = 0.5 d^T conic d over d in [u - half, u + half] x [v - half, v + half].

    sigma is convex (the conic is positive definite): 0 if the square holds the origin,
    else its minimum lies on one of the four edges, where sigma is a 1D quadratic.
    """
    a, b, c = conics.unbind(-1)

    def sigma(dx, dy):
        return 0.5 * a * dx * dx + b * dx * dy + 0.5 * c * dy * dy

    candidates = []
    for edge in (-half, half):
        x = u + edge
        candidates.append(sigma(x, torch.minimum(torch.maximum(-b * x / c, v - half), v + half)))
        y = v + edge
        candidates.append(sigma(torch.minimum(torch.maximum(-b * y / a, u - half), u + half), y))
    inside = (u.abs() <= half) & (v.abs() <= half)
    return torch.where(inside, 0.0, torch.stack(candidates).amin(0))


@torch.no_grad()
def tile_layout(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    radii: Tensor,
    depths: Tensor,
    camera_ids: Tensor,
    num_cameras: int,
    width: int,
    height: int,
    tile_size: int,
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
    tile_column = tile_x0[row_entries] + local % row_span_x
    tile_row = tile_y0[row_entries] + local // row_span_x
    # About a quarter of the tiles in a bounding box miss the ellipse itself: drop the rows
    # where alpha < 1/255 at every pixel centre of the tile, a conservative test on the
    # exponent's minimum over the rectangle those centres span.
    half_span = (tile_size - 1) / 2
    min_sigma = _min_sigma_over_square(
        means2d[row_entries, 0] - (tile_column * tile_size + tile_size / 2),
        means2d[row_entries, 1] - (tile_row * tile_size + tile_size / 2),
        conics[row_entries],
        half_span,
    )
    reachable = min_sigma <= torch.log(opacities[row_entries] / ALPHA_THRESHOLD) + 1e-3
    row_entries = row_entries[reachable]
    row_tiles = (camera_ids[row_entries] * tiles_y + tile_row[reachable]) * tiles_x + tile_column[
        reachable
    ]
    # int32 keys: PyTorch's CPU sort is several times faster on them than on int64.
    by_tile = torch.sort(row_tiles.int(), stable=True).indices
    row_entries, row_tiles = row_entries[by_tile], row_tiles[by_tile]
    tile_ends = torch.cumsum(
        torch.bincount(row_tiles, minlength=num_cameras * tiles_y * tiles_x), 0
    )
    return TileLayout(tile_size, tiles_x, tiles_y, num_cameras, row_entries, row_tiles, tile_ends)


class _CompositeTiles(torch.autograd.Function):
    """Alpha compositing with a hand-written backward (as gsplat's CUDA kernel has): autograd
    through the per-pair tensors would store every intermediate and scatter its gradients pair
    by pair, which dominates the run time on a CPU. Operations are in place where possible:
    each fresh allocation of a chunk-sized tensor costs page faults."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, layout: TileLayout, absgrad_target):
        channels = colors.shape[-1]
        # Per tile and pixel: weighted colour sums and the weight sum (the alpha).
        per_tile = means2d.new_zeros(layout.num_tiles, layout.tile_pixels, channels + 1)
        chunks = layout.chunks(CHUNK_ELEMENTS)
        # One table of per-entry values, gathered once per chunk (index_select beats several
        # advanced-indexing gathers): mean (2), conic (3), log-opacity, colours and a one.
        entries = torch.cat(
            [
                means2d,
                conics,
                torch.log(opacities)[:, None],
                colors,
                torch.ones_like(opacities)[:, None],
            ],
            dim=1,
        )
        saved = []
        for chunk in chunks:
            if chunk.row_entries.numel() == 0:
                saved.append((None, None, False))
                continue
            rows = entries.index_select(0, chunk.row_entries)
            # gsplat also skips sigma < 0, which a positive-definite conic only gives by rounding.
            alphas = chunk.sigma(rows[:, 0:2], rows[:, 2:5]).neg_().add_(rows[:, 5]).exp_()
            # threshold_ (10x faster than masked_fill_) also drops alpha == 1/255 exactly.
            torch.nn.functional.threshold_(alphas.clamp_max_(MAX_ALPHA), ALPHA_THRESHOLD, 0.0)
            log_survival = alphas.neg().log1p_()
            log_transmittance_after = _TileSums(log_survival, chunk).within_tile_()
            # Transmittance only decreases along a pixel, so this drops a suffix of each pixel.
            alphas.mul_(log_transmittance_after > math.log(MIN_TRANSMITTANCE))
            transmittance = log_transmittance_after.sub_(log_survival).to(alphas.dtype).exp_()
            weights = (alphas * transmittance).t().contiguous()  # [rows, P]
            # [rows, P, D + 1]: weighted colours and the weight itself (times the trailing one).
            per_tile.index_add_(
                0, chunk.row_tiles + chunk.tile_start, weights[:, :, None] * rows[:, None, 6:]
            )
            saved.append((alphas, transmittance, bool(alphas.max() >= MAX_ALPHA)))
        ctx.layout, ctx.chunks, ctx.chunk_tensors, ctx.absgrad_target = (
            layout,
            chunks,
            saved,
            absgrad_target,
        )
        ctx.save_for_backward(means2d, conics, opacities, colors)
        return per_tile[:, :, :channels], per_tile[:, :, channels:]

    @staticmethod
    def backward(ctx, grad_render, grad_accumulated):
        means2d, conics, opacities, colors = ctx.saved_tensors
        channels = colors.shape[-1]
        # Per tile: [tiles, D + 1, P], the gradients of the colour channels and of the alpha.
        grad_tiles = torch.cat([grad_render, grad_accumulated], dim=2).transpose(1, 2).contiguous()
        entries = torch.cat([means2d, conics, opacities[:, None], colors], dim=1)
        with_absgrad = ctx.absgrad_target is not None
        per_row = means2d.new_empty(ctx.layout.row_entries.numel(), 6 + 2 * with_absgrad + channels)
        for chunk, (alphas, transmittance, any_clamped) in zip(ctx.chunks, ctx.chunk_tensors):
            if chunk.row_entries.numel() == 0:
                continue
            rows = entries.index_select(0, chunk.row_entries)
            row_means2d, row_conics, row_opacities, row_colors = (
                rows[:, 0:2],
                rows[:, 2:5],
                rows[:, 5],
                rows[:, 6:],
            )
            weights = alphas * transmittance
            # Whole-row gathers of the per-tile table ([rows, D + 1, P]) are much faster than
            # gathers along the last dimension; only the results are transposed to [P, rows].
            grad_rows = grad_tiles.index_select(0, chunk.row_tiles + chunk.tile_start)
            # dL/dw for each pair: colour gradient . colour + alpha gradient.
            grad_weights = grad_rows[:, channels].clone()
            for channel in range(channels):
                grad_weights.addcmul_(grad_rows[:, channel], row_colors[:, channel, None])
            grad_weights = grad_weights.t().contiguous()
            grad_colors = (grad_rows[:, :channels] * weights.t().contiguous()[:, None, :]).sum(-1)
            # Pixel value = sum_i w_i g_i with w_i = a_i prod_{j<i} (1 - a_j), so
            # dL/da_i = T_i g_i - (sum_{j>i} w_j g_j) / (1 - a_i).
            behind = _TileSums(weights.mul_(grad_weights), chunk).after_row_().to(alphas.dtype)
            grad_alphas = grad_weights.mul_(transmittance).sub_(behind.div_(1.0 - alphas))
            # dalpha/dsigma = -alpha, so culled pairs (alpha = 0) pass nothing; clamped ones
            # (alpha = 0.999) pass nothing either, as in gsplat.
            grad_sigma = grad_alphas.mul_(alphas).neg_()
            if any_clamped:
                grad_sigma.mul_(alphas < MAX_ALPHA)
            out = per_row[chunk.row_start : chunk.row_stop]
            out[:, 0:5] = chunk.sigma_backward(grad_sigma, row_means2d, row_conics)
            # dalpha/dopacity = alpha / opacity and dalpha/dsigma = -alpha.
            out[:, 5] = -grad_sigma.sum(0) / row_opacities
            if with_absgrad:
                grad_x, grad_y = chunk.mean_grad_per_pixel(grad_sigma, row_means2d, row_conics)
                out[:, 6] = grad_x.abs().sum(0)
                out[:, 7] = grad_y.abs().sum(0)
            out[:, -channels:] = grad_colors
        per_entry = per_row.new_zeros(means2d.shape[0], per_row.shape[1]).index_add_(
            0, ctx.layout.row_entries, per_row
        )
        if with_absgrad:
            ctx.absgrad_target(per_entry[:, 6:8])
        return (
            per_entry[:, 0:2],
            per_entry[:, 2:5],
            per_entry[:, 5],
            per_entry[:, -channels:],
            None,
            None,
        )


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
    backgrounds: Tensor | None,
    tile_size: int,
    absgrad_target: Callable[[Tensor], None] | None = None,
):
    """Front-to-back alpha compositing of the visible entries into [C, H, W, D] images.

    Returns (render_colors, render_alphas, number of (Gaussian, pixel) pairs evaluated).
    """
    layout = tile_layout(
        means2d.detach(),
        conics.detach(),
        opacities.detach(),
        radii,
        depths,
        camera_ids,
        num_cameras,
        width,
        height,
        tile_size,
    )
    render_tiles, accumulated_tiles = _CompositeTiles.apply(
        means2d, conics, opacities, colors, layout, absgrad_target
    )
    render = layout.tiles_to_images(render_tiles, width, height)
    accumulated = layout.tiles_to_images(accumulated_tiles, width, height)
    if backgrounds is not None:
        render = render + backgrounds[:, None, None, :] * (1.0 - accumulated)
    return render, accumulated, layout.row_entries.numel() * layout.tile_pixels
