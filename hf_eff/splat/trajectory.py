"""Novel-view camera paths through a trained scene, rendered into an animated GIF.

What gsplat's ``examples/simple_trainer.py`` does after training (``render_traj``): a camera
path built from the training cameras, rendered frame by frame. gsplat ships its path code
(``examples/datasets/traj.py``, borrowed from Google's multinerf) only in its examples, so the
two paths are rewritten here:

- `interpolated_path`: a smoothing B-spline through the training poses, in their order
  (gsplat's ``generate_interpolated_path``), or chained nearest-first for cameras whose order
  is not a walk (``order="nearest"``).
- `ellipse_path`: an orbit around the point the training cameras look at (gsplat's
  ``generate_ellipse_path_z``), with the up axis taken from the cameras instead of world z.

Poses are camera-to-world [N, 4, 4] (or [N, 3, 4]) in the OpenCV convention of hf-eff's
scenes: x right, y down, z forward (a scene stores their inverses, ``world_to_camera``).
`render_trajectory` renders a path with the model's own ``render`` (gsplat on CUDA, the
PyTorch rasteriser on CPU) and `write_gif` writes the frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from hf_eff.splat.cameras import look_at_camera_to_world

__all__ = [
    "views_camera_to_world",
    "focus_point",
    "interpolated_path",
    "nearest_first_order",
    "ellipse_path",
    "camera_path",
    "path_intrinsics",
    "render_trajectory",
    "write_gif",
]

PATH_KINDS = ("ellipse", "interpolated")
# How interpolated_path visits the cameras: as given (a capture's order is its walk), or each next the
# nearest not yet visited (cameras placed in another order, e.g. the procedural scene's golden-angle azimuths).
PATH_ORDERS = ("capture", "nearest")


def _check_poses(poses, what: str, minimum: int) -> np.ndarray:
    """Camera-to-world poses as float64 [N, 4, 4], checked for shape, count and finiteness."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(
            f"{what}: poses must be camera-to-world [N, 4, 4] or [N, 3, 4], got {poses.shape}"
        )
    if len(poses) < minimum:
        raise ValueError(f"{what} needs at least {minimum} camera pose(s), got {len(poses)}")
    bad = np.flatnonzero(~np.isfinite(poses).reshape(len(poses), -1).all(1))
    if len(bad):
        raise ValueError(
            f"{what}: pose {bad[0]} contains NaN or infinite values ({len(bad)} such pose(s))"
        )
    if poses.shape[1] == 3:
        bottom = np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(poses), 1, 4))
        poses = np.concatenate([poses, bottom], axis=1)
    return poses


def _check_num_frames(num_frames) -> int:
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    return int(num_frames)


def views_camera_to_world(views) -> np.ndarray:
    """Camera-to-world [N, 4, 4] float64 of a scene split (a views `Dataset`), in its order."""
    world_to_camera = np.asarray(views.with_format("numpy")["world_to_camera"], dtype=np.float64)
    return np.linalg.inv(world_to_camera)


def focus_point(camera_to_world) -> np.ndarray:
    """The point nearest to every camera's optical axis (least squares): where the cameras look.

    multinerf's ``focus_point_fn``, as gsplat uses it for its ellipse. Cameras that look at no
    common point are refused: axes all parallel, or (a forward-facing capture turned a little
    each way) a nearest point behind at least half of the cameras, which an orbit about it would
    face away from the scene."""
    poses = _check_poses(camera_to_world, "focus_point", 2)
    directions = poses[:, :3, 2]
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    # Projections onto the plane orthogonal to each axis: the distance from a point to axis i
    # is |P_i (x - o_i)|, and the normal equations sum these projectors.
    projectors = np.eye(3) - directions[:, :, None] * directions[:, None, :]
    system = projectors.mean(0)
    eigenvalues = np.linalg.eigvalsh(system)
    if eigenvalues[0] < 1e-6 * eigenvalues[-1]:
        raise ValueError(
            "focus_point: the cameras' optical axes are parallel, so they look at no common point "
            "(a forward-facing capture): use interpolated_path"
        )
    focus = np.linalg.solve(system, (projectors @ poses[:, :3, 3, None]).mean(0))[:, 0]
    behind = int((np.einsum("ni,ni->n", focus - poses[:, :3, 3], directions) <= 0).sum())
    if 2 * behind >= len(poses):
        raise ValueError(
            f"focus_point: the point nearest to the cameras' optical axes is behind {behind} of the "
            f"{len(poses)} cameras, so they look at no common point (a forward-facing capture): use "
            "interpolated_path"
        )
    return focus


def interpolated_path(
    camera_to_world,
    num_frames: int,
    spline_degree: int = 5,
    smoothness: float = 0.03,
    rot_weight: float = 0.1,
    round_trip: bool = False,
    order: str = "capture",
) -> np.ndarray:
    """A smooth path through the training poses, in their order (first camera to last) or nearest-first.

    gsplat's ``generate_interpolated_path`` (multinerf): each pose becomes three points (its
    position, a point ``rot_weight`` ahead of it, one ``rot_weight`` below it), one smoothing
    B-spline (``scipy.interpolate.splprep``) runs through them, and the frames are sampled evenly
    in its chord-length parameter (about evenly along the path). Ours differs in two ways:
    ``num_frames`` is the total (gsplat asks frames per segment), and positions are divided by
    the cameras' spread first, so ``smoothness`` and ``rot_weight`` mean the same in any world
    scale (multinerf's scenes are normalised to about unit size, where its defaults were tuned).
    Consecutive identical poses are merged.

    Args:
        camera_to_world: [N, 4, 4] or [N, 3, 4] training poses (OpenCV), N >= 2, in capture order.
        num_frames: poses on the path.
        spline_degree: degree of the B-spline (at most N - 1 is used).
        smoothness: spline smoothing (splprep's ``s``); 0 passes exactly through every pose.
        rot_weight: weight of the viewing direction against the position in the fit.
        round_trip: go to the last camera and back along the same spline, so a looping video
            (`write_gif`) has no jump from the last pose to the first.
        order: 'capture' follows the poses as given; 'nearest' starts at the first and goes on to the
            nearest camera not yet visited (by position; greedy, so it may still jump back to a camera
            it passed by, but not around the scene at every step as golden-angle views do in order).

    Returns:
        [num_frames, 4, 4] camera-to-world poses (OpenCV).
    """
    from scipy.interpolate import splev, splprep

    num_frames = _check_num_frames(num_frames)
    poses = _check_poses(camera_to_world, "interpolated_path", 2)
    if order not in PATH_ORDERS:
        raise ValueError(f"interpolated_path: order must be one of {PATH_ORDERS}, got {order!r}")
    if order == "nearest":
        poses = poses[nearest_first_order(poses)]
    if not (smoothness >= 0 and rot_weight > 0 and spline_degree >= 1):
        raise ValueError(
            f"interpolated_path: need smoothness >= 0, rot_weight > 0 and spline_degree >= 1, got "
            f"{smoothness}, {rot_weight}, {spline_degree}"
        )
    keep = np.ones(len(poses), dtype=bool)
    keep[1:] = np.abs(np.diff(poses, axis=0)).reshape(len(poses) - 1, -1).max(1) > 1e-9
    poses = poses[keep]
    if len(poses) < 2:
        raise ValueError(
            "interpolated_path: every training pose is the same; a path needs two different ones"
        )
    positions = poses[:, :3, 3]
    origin = positions.mean(0)
    # 1 for cameras that only turn (a panorama): their spline fits the directions alone.
    scale = float(np.linalg.norm(positions - origin, axis=1).max()) or 1.0
    positions = (positions - origin) / scale
    points = np.stack(
        [
            positions,
            positions + rot_weight * poses[:, :3, 2],
            positions + rot_weight * poses[:, :3, 1],
        ],
        axis=1,
    )
    tck, _ = splprep(
        points.reshape(len(points), 9).T, k=min(spline_degree, len(points) - 1), s=smoothness
    )
    if round_trip:
        # Even steps of 2 / num_frames out and back (a triangle wave); an odd count starts a quarter
        # step in, or the turn would repeat a frame.
        travelled = (2.0 * np.arange(num_frames) + 0.5 * (num_frames % 2)) / num_frames
        params = 1.0 - np.abs(1.0 - travelled)
    else:
        params = np.linspace(0.0, 1.0, num_frames)
    samples = np.stack(splev(params, tck), axis=1).reshape(num_frames, 3, 3)
    return np.stack(
        [
            look_at_camera_to_world(origin + scale * position, origin + scale * ahead, position - below)
            for position, ahead, below in samples
        ]
    )


def nearest_first_order(camera_to_world) -> np.ndarray:
    """Indices of the poses [N, 4, 4] chained nearest-first by camera position: the first, then each
    time the nearest one not yet visited (the lower index among equally near ones)."""
    positions = np.asarray(camera_to_world, dtype=np.float64)[:, :3, 3]
    order, left = [0], list(range(1, len(positions)))
    while left:
        distances = np.linalg.norm(positions[left] - positions[order[-1]], axis=1)
        order.append(left.pop(int(np.argmin(distances))))
    return np.asarray(order)


def ellipse_path(camera_to_world, num_frames: int) -> np.ndarray:
    """An orbit around the point the training cameras look at, always looking at it.

    After gsplat's ``generate_ellipse_path_z`` (multinerf): the centre is `focus_point`, the
    ellipse's half-axes are the 90th percentile of the cameras' offsets from it, and the path
    sits at the cameras' mean height. gsplat assumes its normalised world's z is up; hf-eff
    does not rotate scenes (a COLMAP world's up is arbitrary; ``normalize_world_space`` only
    centres and scales them), so here up is the direction
    orthogonal to the cameras' right (x) axes, which a camera held level keeps horizontal at any
    pitch, signed like their mean up vector (-y in OpenCV). That mean alone (nerfstudio's
    ``orientation_method="up"``) leans toward the side a one-sided capture stands on and tilts the
    horizon; it serves only when every right axis is parallel (up is then free about them). The
    ellipse lies in the plane orthogonal to up, along the principal directions of the camera positions.
    The minor half-axis is at least half the major one, so cameras spread along one side still
    give an orbit that keeps its distance from the focus. The path starts at the first
    camera's angle and turns counter-clockwise seen from above.

    Args:
        camera_to_world: [N, 4, 4] or [N, 3, 4] training poses (OpenCV), N >= 2.
        num_frames: poses on the orbit (one full turn; the last frame leads back to the first).

    Returns:
        [num_frames, 4, 4] camera-to-world poses (OpenCV).
    """
    num_frames = _check_num_frames(num_frames)
    poses = _check_poses(camera_to_world, "ellipse_path", 2)
    center = focus_point(poses)
    up = _up_axis(poses)
    offsets = poses[:, :3, 3] - center
    height = float((offsets @ up).mean())
    flat = offsets - np.outer(offsets @ up, up)
    # Principal directions of the horizontal offsets: the ellipse's axes.
    _, _, directions = np.linalg.svd(flat, full_matrices=True)
    major = directions[0] - (directions[0] @ up) * up
    major /= np.linalg.norm(major)
    minor = np.cross(up, major)
    radii = np.percentile(np.abs(flat @ np.stack([major, minor], 1)), 90, axis=0)
    if not radii.max() > 1e-9 * max(1.0, abs(height)):
        raise ValueError(
            "ellipse_path: every training camera sits on the up axis through the focus point"
        )
    radii = np.maximum(radii, 0.5 * radii.max())
    start = np.arctan2((flat[0] @ minor) / radii[1], (flat[0] @ major) / radii[0])
    angles = start + np.linspace(0.0, 2.0 * np.pi, num_frames, endpoint=False)
    positions = (
        center
        + height * up
        + np.outer(radii[0] * np.cos(angles), major)
        + np.outer(radii[1] * np.sin(angles), minor)
    )
    return np.stack([look_at_camera_to_world(position, center, up) for position in positions])


def _up_axis(poses: np.ndarray) -> np.ndarray:
    """The unit vector most orthogonal to the cameras' right axes, signed like their mean up."""
    rights = poses[:, :3, 0] / np.linalg.norm(poses[:, :3, 0], axis=1, keepdims=True)
    mean_up = -poses[:, :3, 1].mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(rights.T @ rights)
    # Right axes spread over less than a few degrees pin up down no better than their noise.
    if eigenvalues[1] > 1e-2 * eigenvalues[2]:
        up = eigenvectors[:, 0]
    else:
        right = eigenvectors[:, 2]
        up = mean_up - (mean_up @ right) * right
    up /= np.linalg.norm(up)
    if not abs(up @ mean_up) > 1e-6:
        raise ValueError(
            "ellipse_path: the training cameras' up vectors cancel out, so the scene has no up axis"
        )
    return up * np.sign(up @ mean_up)


def camera_path(views, kind: str, num_frames: int, order: str = "capture") -> np.ndarray:
    """``kind`` ('ellipse' or 'interpolated') path of ``num_frames`` through a scene split's cameras
    (e.g. ``scene.views["train"]``): [num_frames, 4, 4] camera-to-world. Both loop, as `write_gif`
    does: the ellipse is one turn, the interpolated path goes to the last camera and back, visiting
    them in ``order`` (`interpolated_path`'s)."""
    if kind not in PATH_KINDS:
        raise ValueError(f"camera path kind must be one of {PATH_KINDS}, got {kind!r}")
    poses = views_camera_to_world(views)
    return (
        ellipse_path(poses, num_frames)
        if kind == "ellipse"
        else interpolated_path(poses, num_frames, round_trip=True, order=order)
    )


def path_intrinsics(views, max_size: int | None = None) -> tuple[np.ndarray, int, int]:
    """K [3, 3], width and height of a scene split's first view, scaled down (never up) so that
    the longest side is at most ``max_size`` (None: the view's own size): the camera a path is
    rendered with."""
    first = views.select_columns(["K", "width", "height"])[0]
    K, view_width, view_height = np.array(first["K"], dtype=np.float64), first["width"], first["height"]
    factor = 1.0 if max_size is None else min(1.0, max_size / max(view_width, view_height))
    width, height = max(1, round(view_width * factor)), max(1, round(view_height * factor))
    K[0] *= width / view_width
    K[1] *= height / view_height
    return K, width, height


def render_trajectory(
    model,
    camera_to_world,
    K,
    width: int,
    height: int,
    batch_size: int = 4,
    background=None,
    sh_degree: int | None = None,
    **render_kwargs,
) -> Iterator[np.ndarray]:
    """Renders a camera path with ``model.render``, ``batch_size`` cameras at a time.

    The arguments are checked when this is called; the frames come lazily, so a long path
    holds one batch of renders in memory at a time.

    Args:
        model: a `GaussianModel` (rendered on the device of its parameters).
        camera_to_world: [F, 4, 4] or [F, 3, 4] path poses (OpenCV), F >= 1.
        K: [3, 3] pinhole intrinsics, in pixels of ``width`` x ``height``, shared by every frame.
        background: RGB in [0, 1] behind the Gaussians (None: ``render``'s, white for a model fitted with
            ``white_background``, else black).
        sh_degree: SH degree to evaluate (None: every stored degree).
        render_kwargs: passed to ``model.render`` (backend, packed, near_plane, ...).

    Yields:
        uint8 [height, width, 3] frames, in path order.
    """
    poses = _check_poses(camera_to_world, "render_trajectory", 1)
    K = np.asarray(K.detach().cpu() if isinstance(K, torch.Tensor) else K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(
            f"render_trajectory: K must be a [3, 3] intrinsics matrix, got shape {K.shape}"
        )
    if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(
            f"render_trajectory: K must be finite with positive focal lengths, got {K.tolist()}"
        )
    for name, value in (("width", width), ("height", height), ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"render_trajectory: {name} must be a positive integer, got {value!r}")
    if background is not None:
        background = np.asarray(background, dtype=np.float32)
        if background.shape != (3,) or not np.isfinite(background).all():
            raise ValueError(
                f"render_trajectory: background must be 3 finite floats, got {background.tolist()}"
            )
    return _render_frames(
        model,
        poses,
        K,
        int(width),
        int(height),
        int(batch_size),
        background,
        sh_degree,
        render_kwargs,
    )


def _render_frames(
    model, poses, K, width, height, batch_size, background, sh_degree, render_kwargs
):
    device = model.splats["means"].device
    viewmats = torch.as_tensor(np.linalg.inv(poses), dtype=torch.float32)
    K = torch.as_tensor(K, dtype=torch.float32, device=device)
    for start in range(0, len(viewmats), batch_size):
        batch = viewmats[start : start + batch_size].to(device)
        backgrounds = (
            None
            if background is None
            else torch.as_tensor(background, device=device).expand(len(batch), 3)
        )
        with torch.no_grad():
            colors, _, _ = model.render(
                batch,
                K.expand(len(batch), 3, 3),
                width,
                height,
                sh_degree=sh_degree,
                backgrounds=backgrounds,
                **render_kwargs,
            )
        frames = (colors[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        del colors
        yield from frames


def write_gif(frames: Iterable, path, fps: float = 20.0, frames_dir=None) -> int:
    """Writes frames (uint8 [H, W, 3] arrays, e.g. from `render_trajectory`) as a looping GIF.

    The GIF is written beside ``path`` and moved over it only once complete, so a failure keeps
    an earlier file. Pillow palettises each frame (256 colours) and holds the palettised frames
    (H x W bytes each) until it writes them; identical consecutive frames become one longer frame.

    Args:
        fps: frames per second, at most 50. A GIF stores delays in whole 1/100 s, so frame i ends
            at ``round(100 * (i + 1) / fps)`` hundredths (30 fps: 3, 4, 3, 3, 4, 3, ...), which
            keeps the stated rate; browsers play delays under 2/100 s at 10 fps, hence the cap.
        frames_dir: also write every frame there as ``frame_00000.png``, ... (a folder made if
            missing), losslessly and as the frames arrive.

    Returns:
        the number of frames written.
    """
    from PIL import Image

    if not 0 < fps <= 50:
        raise ValueError(
            f"write_gif: fps must be in (0, 50] (a GIF's shortest delay browsers honour is 20 ms), got {fps}"
        )
    path = Path(path)
    if frames_dir is not None:
        frames_dir = Path(frames_dir)
        frames_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    size = None

    def images():
        nonlocal count, size
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(
                    f"write_gif: frame {count} must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}"
                )
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise ValueError(f"write_gif: frame {count} is {frame.shape}, frame 0 is {size}")
            image = Image.fromarray(frame)
            if frames_dir is not None:
                image.save(frames_dir / f"frame_{count:05d}.png")
            count += 1
            # Pillow truncates milliseconds to hundredths: whole hundredths, rounded on the
            # running total, keep the rate for any fps (a constant round(1000 / fps) did not).
            image.info["duration"] = 10 * (round(100 * count / fps) - round(100 * (count - 1) / fps))
            yield image

    stream = images()
    first = next(stream, None)
    if first is None:
        raise ValueError("write_gif: no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        first.save(
            partial,
            format="GIF",
            save_all=True,
            append_images=stream,
            loop=0,
        )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count
