"""Camera helpers shared by the scene code and the converters (OpenCV convention:
x right, y down, z forward; ``world_to_camera`` maps world points into camera space)."""

from __future__ import annotations

import numpy as np

__all__ = ["camera_centres", "camera_spread", "world_normalization", "same_frame", "describe_frame", "look_at", "look_at_camera_to_world", "pinhole_intrinsics", "OPENGL_TO_OPENCV"]

# Flips y and z: OpenGL/Blender cameras look down -z with y up, OpenCV ones down +z, y down.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def camera_centres(world_to_cameras) -> np.ndarray:
    """The camera centres [N, 3] float64 of world-to-camera poses [N, 4, 4] or [N, 3, 4] (arrays,
    tensors or lists): the point x with R x + t = 0, -R^-1 t, solved in float64 whatever the poses'
    dtype (the translation of the inverse pose, without inverting it)."""
    poses = np.asarray(world_to_cameras, dtype=np.float64)
    return -np.linalg.solve(poses[:, :3, :3], poses[:, :3, 3:])[..., 0]


def camera_spread(centres, about=None) -> float:
    """The largest distance of camera centres [N, 3] (`camera_centres`) from ``about`` (default: their mean);
    0 for a single camera at its mean. The scene radius, gsplat's scene scale and `world_normalization` use it."""
    centres = np.asarray(centres, dtype=np.float64)
    about = centres.mean(0) if about is None else np.asarray(about, dtype=np.float64)
    return float(np.linalg.norm(centres - about, axis=1).max())


def world_normalization(world_to_cameras) -> np.ndarray:
    """The similarity [4, 4] float64, world to normalised coordinates, that puts the mean camera centre
    at the origin and the camera farthest from it at distance 1 (a single camera: no scaling). The idea of gsplat's
    ``normalize_world_space`` and nerfstudio's ``auto_orient_and_center_poses`` + ``auto_scale_poses``, without their
    rotation, so that a model's Gaussians and their view-dependent colour map back unrotated (gsplat also centres on
    median points and scales the median camera distance to 1; nerfstudio's scales the largest coordinate to 1).

    Compute it from the training poses as given (float64: a georegistered capture's float32 poses have
    already lost their spread) and pass it as ``world_to_normalized`` to `views_dataset` (every split),
    `points_dataset`, which apply it and name it (`Scene.from_views` takes it from them)."""
    poses = np.asarray(world_to_cameras, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)) or not len(poses):
        raise ValueError(f"world_normalization: expected world-to-camera poses [N, 4, 4] or [N, 3, 4], got shape "
                         f"{poses.shape}")
    if not np.isfinite(poses).all():
        raise ValueError("world_normalization: the poses contain NaN or infinite values")
    centres = camera_centres(poses)
    mean = centres.mean(0)
    spread = camera_spread(centres, mean)
    scale = 1.0 / spread if spread > 0 else 1.0
    transform = np.diag([scale, scale, scale, 1.0])
    transform[:3, 3] = -scale * mean
    return transform


def check_world_to_normalized(transform, where: str) -> np.ndarray:
    """``transform`` as float64 [4, 4] if it is what `world_normalization` makes: a positive uniform
    scale and a translation (no rotation: the Gaussians' quaternions and spherical harmonics would
    have to turn with it to map back); else a ValueError naming ``where``."""
    matrix = np.asarray(transform, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise ValueError(f"{where}: world_to_normalized must be a finite 4x4 matrix, got shape {matrix.shape}")
    scale = matrix[0, 0]
    if not (scale > 0 and np.array_equal(matrix[:3, :3], scale * np.eye(3))
            and np.array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0])):
        raise ValueError(
            f"{where}: world_to_normalized must be a uniform scale s > 0 and a translation t, [[s I, t], [0, 1]] "
            "(what world_normalization makes), got\n"
            f"{matrix}"
        )
    return matrix.copy()


def same_frame(first, second) -> bool:
    """Whether two ``world_to_normalized`` (each None: the capture's own coordinates) name one frame."""
    if first is None or second is None:
        return first is None and second is None
    return np.array_equal(first, second)


def describe_frame(frame) -> str:
    """A ``world_to_normalized`` (or None) as errors name it: "in the capture's own coordinates" or
    "normalised by [[...]]"."""
    return "in the capture's own coordinates" if frame is None else f"normalised by {np.asarray(frame).tolist()}"


def normalize_world_to_camera(transform: np.ndarray, world_to_camera: np.ndarray) -> np.ndarray:
    """A world-to-camera pose [4, 4] or [3, 4] (float64) of the world mapped by ``transform``
    (x_n = s x + b): [R | s t - R b], the camera frame scaled with the world so that the pose stays
    rigid (a projection is the same at any scale of camera space)."""
    scale, offset = transform[0, 0], transform[:3, 3]
    pose = np.array(world_to_camera, dtype=np.float64)
    pose[:3, 3] = scale * pose[:3, 3] - pose[:3, :3] @ offset
    return pose


def original_world_to_camera(transform: np.ndarray, world_to_camera) -> np.ndarray:
    """The inverse of `normalize_world_to_camera`: a pose [4, 4] or [3, 4] stored in the frame ``transform``
    (x_n = s x + b) maps to, as a float64 pose of the original world, [R | (t_n + R b) / s]."""
    scale, offset = transform[0, 0], transform[:3, 3]
    pose = np.array(world_to_camera, dtype=np.float64)
    pose[:3, 3] = (pose[:3, 3] + pose[:3, :3] @ offset) / scale
    return pose


def original_points(transform: np.ndarray, xyz) -> np.ndarray:
    """Points [N, 3] stored in the frame ``transform`` (x_n = s x + b) maps to, as float64 points of the original
    world: (x_n - b) / s."""
    return (np.asarray(xyz, dtype=np.float64) - transform[:3, 3]) / transform[0, 0]


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera [4, 4] (OpenCV) of a camera at ``eye`` looking at ``target``."""
    return np.linalg.inv(look_at_camera_to_world(eye, target, up))


def look_at_camera_to_world(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world [4, 4] (OpenCV) of a camera at ``eye`` looking at ``target``, level about ``up``."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError(f"look_at: viewing direction {forward} is parallel to up {up}")
    right /= norm
    down = np.cross(forward, right)
    camera_to_world = np.eye(4)
    camera_to_world[:3, :3] = np.stack([right, down, forward], axis=1)
    camera_to_world[:3, 3] = eye
    return camera_to_world


def pinhole_intrinsics(width: int, height: int, fov_x_degrees: float) -> np.ndarray:
    """K [3, 3] with square pixels, the principal point at the image centre."""
    focal = 0.5 * width / np.tan(0.5 * np.radians(fov_x_degrees))
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
