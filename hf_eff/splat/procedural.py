"""A built-in procedural scene: ray-traced textured spheres and boxes on a checkered ground.

The images are ray traced from analytic geometry (not rendered from Gaussians), so fitting
them with Gaussians is a fair test of a splatting method. Textures mix sharp checkers,
smooth stripes and value noise, which gives the images energy at many frequencies (what
coarse-to-fine schedules measure). The seed picks the objects, textures, light and cameras;
everything is deterministic. Shading is Lambertian with cast shadows, so it is the same from
every view, and the background (beyond the ground disk) is black, as gsplat renders with no
background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from datasets import DatasetDict

from hf_eff.splat.cameras import look_at, pinhole_intrinsics
from hf_eff.splat.scene import Scene, points_dataset, views_dataset

__all__ = ["make_procedural_scene"]

_EPS = 1e-4
_GROUND_RADIUS = 3.0
_AMBIENT = 0.3
# Random placements tried in all before giving up. Each try draws a size in [0.3, 0.6) and a centre in
# the 2.8 x 2.8 square, kept if it is clear of the placed objects by 0.1; the tries are drawn in batches
# as the one-at-a-time loop drew them, so a seed gives the same scene as it always did. Measured on
# seeds 0-59: 4 objects take at most 22 tries, 8 up to ~10^5, 10 to 15 up to ~2 * 10^7 (a sliver of room
# left); 10^8 tries take about 40 s of CPU. Where no room is left at all, `_has_room` stops at once.
_PLACEMENT_TRIES = 100_000_000
_PLACEMENT_BATCH = 4096
_PLACEMENT_LOW, _PLACEMENT_HIGH = np.array([0.3, -1.4, -1.4]), np.array([0.6, 1.4, 1.4])


@dataclass
class _Texture:
    kind: str  # "checkers" | "stripes" | "noise"
    color_a: np.ndarray
    color_b: np.ndarray
    frequency: float
    axis: np.ndarray  # stripes direction
    lattice: np.ndarray  # value-noise table

    def __call__(self, points: np.ndarray) -> np.ndarray:
        if self.kind == "checkers":
            cells = np.floor(points * self.frequency).astype(np.int64).sum(-1)
            mix = (cells % 2).astype(np.float64)
        elif self.kind == "stripes":
            mix = 0.5 + 0.5 * np.sin(2 * np.pi * self.frequency * points @ self.axis)
        else:
            mix = sum(
                0.5**octave * self._value_noise(points * self.frequency * 2**octave)
                for octave in range(3)
            )
            mix = np.clip(mix / 1.75, 0.0, 1.0)
        return self.color_a + mix[:, None] * (self.color_b - self.color_a)

    def _value_noise(self, points: np.ndarray) -> np.ndarray:
        size = len(self.lattice)
        base = np.floor(points).astype(np.int64)
        frac = points - base
        weights = frac * frac * (3 - 2 * frac)  # smoothstep
        value = np.zeros(len(points))
        for corner in np.ndindex(2, 2, 2):
            idx = (base + np.array(corner)) % size
            w = np.prod(np.where(np.array(corner) == 1, weights, 1 - weights), axis=-1)
            value += w * self.lattice[idx[:, 0], idx[:, 1], idx[:, 2]]
        return value


def _random_texture(rng: np.random.Generator, kind: str | None = None) -> _Texture:
    kind = kind or rng.choice(["checkers", "stripes", "noise"])
    axis = rng.normal(size=3)
    return _Texture(
        kind=str(kind),
        color_a=rng.uniform(0.05, 0.95, 3),
        color_b=rng.uniform(0.05, 0.95, 3),
        frequency=float(rng.uniform(2.0, 6.0)),
        axis=axis / np.linalg.norm(axis),
        lattice=rng.uniform(0.0, 1.0, (16, 16, 16)),
    )


@dataclass
class _Sphere:
    center: np.ndarray
    radius: float
    texture: _Texture

    def intersect(self, origins, directions):
        offset = origins - self.center
        b = np.einsum("ij,ij->i", offset, directions)
        c = np.einsum("ij,ij->i", offset, offset) - self.radius**2
        disc = b * b - c
        root = np.sqrt(np.maximum(disc, 0.0))
        t = np.where(-b - root > _EPS, -b - root, -b + root)
        return np.where((disc > 0) & (t > _EPS), t, np.inf)

    def normal(self, points):
        return (points - self.center) / self.radius

    def albedo(self, points):
        return self.texture((points - self.center) / self.radius)


@dataclass
class _Box:
    center: np.ndarray
    half_size: np.ndarray
    rotation: np.ndarray  # local -> world, a rotation about z
    texture: _Texture

    def _local(self, origins, directions):
        local_dirs = directions @ self.rotation
        local_dirs = np.where(np.abs(local_dirs) < 1e-12, 1e-12, local_dirs)
        return (origins - self.center) @ self.rotation, local_dirs

    def intersect(self, origins, directions):
        o, d = self._local(origins, directions)
        t1, t2 = (-self.half_size - o) / d, (self.half_size - o) / d
        t_near = np.minimum(t1, t2).max(-1)
        t_far = np.maximum(t1, t2).min(-1)
        t = np.where(t_near > _EPS, t_near, t_far)
        return np.where((t_far >= t_near) & (t > _EPS), t, np.inf)

    def normal(self, points):
        local = (points - self.center) @ self.rotation / self.half_size
        axis = np.abs(local).argmax(-1)
        normals = np.zeros_like(points)
        normals[np.arange(len(points)), axis] = np.sign(local[np.arange(len(points)), axis])
        return normals @ self.rotation.T

    def albedo(self, points):
        return self.texture((points - self.center) @ self.rotation + 0.5 / self.texture.frequency)


@dataclass
class _Ground:
    texture: _Texture

    def intersect(self, origins, directions):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -origins[:, 2] / directions[:, 2]
        hits = origins + np.nan_to_num(t, posinf=0.0, neginf=0.0)[:, None] * directions
        inside = np.hypot(hits[:, 0], hits[:, 1]) <= _GROUND_RADIUS
        return np.where((t > _EPS) & inside, t, np.inf)

    def normal(self, points):
        return np.broadcast_to(np.array([0.0, 0.0, 1.0]), points.shape)

    def albedo(self, points):
        # Offset in z: the texture is 3D and the ground sits exactly on a cell boundary.
        return self.texture(points + np.array([0.0, 0.0, 0.5 / self.texture.frequency]))


class _World:
    def __init__(self, seed: int, num_objects: int):
        rng = np.random.default_rng(seed)
        self.objects: list = [_Ground(_random_texture(rng, "checkers"))]
        placed: list[tuple[np.ndarray, float]] = []
        tries = 0
        while len(self.objects) < num_objects + 1:
            if not _has_room(placed):
                raise ValueError(
                    f"num_objects={num_objects}: could not place them (seed {seed}): the {len(placed)} placed "
                    "leave no room for another; ask for fewer, or try another seed"
                )
            found, used = _place(rng, placed, _PLACEMENT_TRIES - tries)
            tries += used
            if found is None:
                raise ValueError(
                    f"num_objects={num_objects}: could not place them (seed {seed}): {len(placed)} placed "
                    f"after {_PLACEMENT_TRIES} random tries; ask for fewer, or try another seed"
                )
            size, xy = found
            placed.append((xy, size))
            texture = _random_texture(rng)
            if rng.uniform() < 0.5:
                center = np.array([xy[0], xy[1], size])
                self.objects.append(_Sphere(center, size, texture))
            else:
                half = size * rng.uniform(0.55, 0.7, 3)
                angle = rng.uniform(0, np.pi)
                rotation = np.array(
                    [
                        [np.cos(angle), -np.sin(angle), 0],
                        [np.sin(angle), np.cos(angle), 0],
                        [0, 0, 1],
                    ]
                )
                center = np.array([xy[0], xy[1], half[2]])
                self.objects.append(_Box(center, half, rotation, texture))
        light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(1.2, 2.0)])
        self.light = light / np.linalg.norm(light)

    def nearest(self, origins, directions):
        distances = np.stack([obj.intersect(origins, directions) for obj in self.objects])
        return distances.min(0), distances.argmin(0)

    def shade(self, origins, directions):
        """Colours [M, 3] in [0, 1] and hit points [M, 3] (NaN where the ray escapes)."""
        t, index = self.nearest(origins, directions)
        hit = np.isfinite(t)
        points = np.full_like(origins, np.nan)
        points[hit] = origins[hit] + t[hit, None] * directions[hit]
        colors = np.zeros_like(origins)
        for i, obj in enumerate(self.objects):
            mask = hit & (index == i)
            if not mask.any():
                continue
            p = points[mask]
            normals = obj.normal(p)
            light = np.broadcast_to(self.light, p.shape)
            shadow_t, _ = self.nearest(p + 1e-3 * normals, light)
            lit = np.isinf(shadow_t) * np.clip(normals @ self.light, 0.0, 1.0)
            colors[mask] = obj.albedo(p) * (_AMBIENT + (1 - _AMBIENT) * lit)[:, None]
        return np.clip(colors, 0.0, 1.0), points


def _place(rng: np.random.Generator, placed: list, max_tries: int):
    """The first random placement ((size, xy), tries used) clear of ``placed``, drawn from ``rng``
    exactly as one-at-a-time tries (a size, then a centre) would be; (None, max_tries) if none is."""
    used = 0
    centers = np.array([xy for xy, _ in placed]).reshape(-1, 2)
    radii = np.array([r for _, r in placed])
    while used < max_tries:
        start = rng.bit_generator.state
        draws = rng.uniform(_PLACEMENT_LOW, _PLACEMENT_HIGH, (min(_PLACEMENT_BATCH, max_tries - used), 3))
        gaps = np.linalg.norm(draws[:, None, 1:] - centers, axis=-1) - (draws[:, :1] + radii + 0.1)
        # A margin for rounding: each candidate is then checked as the loop checked it.
        for index in np.flatnonzero((gaps > -1e-9).all(1)):
            size, xy = draws[index, 0], draws[index, 1:]
            if not any(np.linalg.norm(xy - other) < size + r + 0.1 for other, r in placed):
                rng.bit_generator.state = start  # the tries after this one were not made
                rng.uniform(_PLACEMENT_LOW, _PLACEMENT_HIGH, (index + 1, 3))
                return (float(size), xy.copy()), used + index + 1
        used += len(draws)
    return None, max_tries


def _has_room(placed: list) -> bool:
    """Whether any centre in the square is clear of ``placed`` for the smallest object (size 0.3).
    The clear region, when there is one, has a corner: a corner of the square, or a point where a
    keep-out circle (radius r + 0.4 about a placed object) meets an edge or another circle. Without
    one, no try can succeed."""
    half = _PLACEMENT_HIGH[1]
    centers = np.array([xy for xy, _ in placed]).reshape(-1, 2)
    reach = np.array([r for _, r in placed]) + _PLACEMENT_LOW[0] + 0.1
    candidates = [np.array([[x, y] for x in (-half, half) for y in (-half, half)])]
    for axis in (0, 1):  # circles meeting the edges x = +-half (axis 0) and y = +-half (axis 1)
        for edge in (-half, half):
            along = np.sqrt(np.maximum(reach**2 - (edge - centers[:, axis]) ** 2, 0.0))
            for sign in (-1, 1):
                point = np.empty_like(centers)
                point[:, axis], point[:, 1 - axis] = edge, centers[:, 1 - axis] + sign * along
                candidates.append(point)
    i, j = np.triu_indices(len(placed), 1)
    offset = centers[j] - centers[i]
    distance = np.linalg.norm(offset, axis=-1)
    along = (reach[i] ** 2 - reach[j] ** 2 + distance**2) / (2 * distance)
    across = np.sqrt(np.maximum(reach[i] ** 2 - along**2, 0.0))
    unit = offset / distance[:, None]
    normal = np.stack([-unit[:, 1], unit[:, 0]], 1)
    middle = centers[i] + along[:, None] * unit
    candidates += [middle + across[:, None] * normal, middle - across[:, None] * normal]
    points = np.concatenate(candidates)
    # Margins for rounding, on the side of trying (a corner missed here would stop a placeable scene).
    inside = (np.abs(points) <= half + 1e-9).all(1)
    clear = (np.linalg.norm(points[:, None] - centers, axis=-1) >= reach - 1e-9).all(1)
    return bool((inside & clear).any())


def _camera_rays(world_to_camera, K, pixels_xy):
    camera_to_world = np.linalg.inv(world_to_camera)
    pixel_h = np.concatenate([pixels_xy, np.ones((len(pixels_xy), 1))], 1)
    directions = pixel_h @ np.linalg.inv(K).T @ camera_to_world[:3, :3].T
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origins = np.broadcast_to(camera_to_world[:3, 3], directions.shape).copy()
    return origins, directions


def _render(world, world_to_camera, K, width, height, supersample):
    offsets = (np.arange(supersample) + 0.5) / supersample
    xs = (np.arange(width)[:, None] + offsets).reshape(-1)
    ys = (np.arange(height)[:, None] + offsets).reshape(-1)
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    colors, _ = world.shade(*_camera_rays(world_to_camera, K, grid))
    colors = colors.reshape(height, supersample, width, supersample, 3).mean((1, 3))
    return np.round(colors * 255).astype(np.uint8)


def make_procedural_scene(
    seed: int = 0,
    num_train: int = 24,
    num_test: int = 6,
    width: int = 96,
    height: int = 96,
    num_objects: int = 4,
    num_points: int = 2000,
    point_noise: float = 0.01,
    fov_degrees: float = 50.0,
    camera_distance: float = 4.0,
    supersample: int = 2,
):
    """Builds a deterministic procedural `Scene`.

    Args:
        seed: picks objects, textures, light and camera positions.
        num_train, num_test: views per split. Cameras lie on a hemisphere (elevation
            15-55 degrees, golden-angle azimuths) at ``camera_distance`` from the centre,
            looking at it; the test views sit between the training ones.
        width, height: image size in pixels.
        num_objects: spheres and boxes standing on the ground disk (radius 3), placed one at a
            time at random without overlap; room runs out after 9 to 15 objects (seeds 0-59: every
            seed places 9, 58 place 10), and a number that cannot be placed raises ``ValueError``.
        num_points: size of the initial point cloud, sampled like an SfM cloud: surface
            points seen through random pixels of the training views, coloured by those
            pixels, then jittered by ``point_noise * camera_distance``.
        supersample: rays per pixel along each axis (anti-aliasing).
    """
    if num_objects < 0:
        raise ValueError(f"num_objects must be >= 0, got {num_objects}")
    if num_train < 1 or num_test < 0:
        raise ValueError(f"need num_train >= 1 and num_test >= 0, got {num_train}, {num_test}")
    if width < 1 or height < 1 or supersample < 1:
        raise ValueError(
            f"width, height and supersample must be positive, got {width}, {height}, {supersample}"
        )
    world = _World(seed, num_objects)
    rng = np.random.default_rng([seed, 1])
    center = np.array([0.0, 0.0, 0.3])
    K = pinhole_intrinsics(width, height, fov_degrees)

    total = num_train + num_test
    golden = np.pi * (3 - np.sqrt(5))
    azimuths = rng.uniform(0, 2 * np.pi) + golden * np.arange(total)
    elevations = np.radians(15 + 40 * ((np.arange(total) * 0.618034) % 1.0))
    eyes = center + camera_distance * np.stack(
        [
            np.cos(elevations) * np.cos(azimuths),
            np.cos(elevations) * np.sin(azimuths),
            np.sin(elevations),
        ],
        1,
    )
    poses = [look_at(eye, center) for eye in eyes]
    images = [_render(world, pose, K, width, height, supersample) for pose in poses]
    # Test views spread evenly through the sequence, so they sit between training views.
    test_ids = (
        set(np.linspace(0, total - 1, num_test + 2)[1:-1].round().astype(int).tolist())
        if num_test
        else set()
    )
    while len(test_ids) < num_test:  # rounding collisions on tiny scenes
        test_ids.add(next(i for i in range(total) if i not in test_ids))
    train_ids = [i for i in range(total) if i not in test_ids]
    test_ids = sorted(test_ids)

    def split(ids):
        return views_dataset([images[i] for i in ids], [K] * len(ids), [poses[i] for i in ids])

    points = None
    if num_points:
        train_poses, train_images = [poses[i] for i in train_ids], [images[i] for i in train_ids]
        xyz, rgb = _sample_points(world, train_poses, train_images, K, num_points, rng)
        xyz += rng.normal(scale=point_noise * camera_distance, size=xyz.shape).astype(np.float32)
        points = points_dataset(xyz, rgb)
    return Scene(
        views=DatasetDict({"train": split(train_ids), "test": split(test_ids)}),
        points=points,
        center=tuple(float(c) for c in center),
        radius=float(camera_distance),
    )


def _sample_points(world, poses, images, K, num_points, rng):
    height, width = images[0].shape[:2]
    xyz, rgb = [], []
    count = 0
    for _ in range(50):  # each round draws more pixels; background misses are dropped
        if count >= num_points:
            break
        view = rng.integers(len(poses), size=2 * num_points)
        pixel = rng.integers(width * height, size=2 * num_points)
        for v in np.unique(view):
            chosen = pixel[view == v]
            xy = np.stack([chosen % width + 0.5, chosen // width + 0.5], 1)
            _, hit_points = world.shade(*_camera_rays(poses[v], K, xy))
            ok = np.isfinite(hit_points[:, 0])
            xyz.append(hit_points[ok])
            rgb.append(images[v].reshape(-1, 3)[chosen[ok]])
            count += int(ok.sum())
    xyz = np.concatenate(xyz)[:num_points].astype(np.float32)
    rgb = np.concatenate(rgb)[:num_points].astype(np.uint8)
    return xyz, rgb
