"""Camera helpers shared by the scene code and the converters (OpenCV convention:
x right, y down, z forward; ``world_to_camera`` maps world points into camera space)."""

from __future__ import annotations

import numpy as np

__all__ = ["look_at", "look_at_camera_to_world", "pinhole_intrinsics", "OPENGL_TO_OPENCV"]

# Flips y and z: OpenGL/Blender cameras look down -z with y up, OpenCV ones down +z, y down.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


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
