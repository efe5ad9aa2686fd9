"""Per-view camera pose corrections: gsplat simple_trainer's ``--pose_opt`` and ``--pose_noise``.

gsplat keeps its `CameraOptModule` and `rotation_6d_to_matrix` in its examples (examples/utils.py), not in the
installed package, so they are written here, with its conventions: each view's correction is 3 translation
values and a 6D rotation delta (Zhou et al. 2019) added to the identity's, an ``nn.Embedding(num_views, 9)``
that is zero (the identity) at the start. gsplat right-multiplies the camera-to-world pose by the correction,
``camtoworld @ T`` (a move in the camera's own frame); the views here hold world-to-camera poses, which become
``inv(T) @ world_to_camera``, the inverse of gsplat's corrected pose, computed without inverting the pose.

The corrections' file (`POSE_ADJUSTMENT_NAME`, `PoseAdjustment.save` and `load`, `load_corrected_poses`), the
fingerprint of the Gaussians it was fitted with (`gaussians_sha256`) and the corrections' learning-rate schedule
(`pose_lr`) are here too; `SplatTrainer` decides when they are written, read and matched to a run and a model.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

# The 6D representation of the identity rotation: its first two rows.
IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# A run's corrections (and its corrected training poses), beside the model in checkpoints and output_dir.
POSE_ADJUSTMENT_NAME = "pose_adjustment.safetensors"
# What the file's tensors hold, in its metadata beside the record of the run that wrote it.
TENSOR_DESCRIPTIONS = {
    "pose_deltas": "per training view: translation [3] + 6D rotation delta [6], applied as camera_to_world @ T "
                   "(gsplat's CameraOptModule)",
    "world_to_camera": "the training views' corrected world-to-camera poses (OpenCV), in the training split's stored "
                       "frame (normalised when it was stored so)",
}


def camera_key(viewmat: torch.Tensor, K: torch.Tensor) -> bytes:
    """A view's camera as bytes (its stored world_to_camera and K, CPU): two views share a camera when these are
    equal bit for bit."""
    return viewmat.numpy().tobytes() + K.numpy().tobytes()


def cameras_sha256(camera_keys: list[bytes]) -> str:
    """The hash of views' cameras (their `camera_key`s) in their order, which a pose file records of its training
    views."""
    return hashlib.sha256(b"".join(camera_keys)).hexdigest()


def gaussians_sha256(splats: Mapping[str, torch.Tensor]) -> str:
    """The fingerprint of Gaussians (a `GaussianModel`'s ``splats``) that a pose file records of the model it corrects
    the poses of: sha256 of each tensor's name, shape and float32 bytes (as `GaussianModel.save_pretrained` writes
    them, on the CPU), in the names' sorted order."""
    # Of the tensors, not of model.safetensors: the file's bytes also hold a header and metadata that another
    # safetensors or huggingface_hub version may write otherwise, and a model in memory has no file at all.
    digest = hashlib.sha256()
    for name in sorted(splats):
        tensor = splats[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{list(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _read_tensor(path: str | os.PathLike, name: str) -> tuple[torch.Tensor, dict[str, str]]:
    """The file's tensor ``name`` and its metadata, in one opening; a file that does not read or lacks it is named."""
    try:
        with safe_open(path, "pt") as saved:
            if name not in saved.keys():
                raise KeyError(name)
            return saved.get_tensor(name), saved.metadata() or {}
    except (SafetensorError, KeyError) as error:
        raise ValueError(f"{path} does not load ({type(error).__name__}: {error})") from error


def load_corrected_poses(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, str]]:
    """The corrected training poses a run saved (`PoseAdjustment.save`'s ``world_to_camera`` [N, 4, 4]) and the file's
    metadata (the run's record), read in one opening. A file that does not read, or holds no such poses, is named."""
    poses, metadata = _read_tensor(path, "world_to_camera")
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or not poses.is_floating_point():
        raise ValueError(f"{path}: world_to_camera must be float [num_views, 4, 4] (the corrected training poses), "
                         f"got {poses.dtype} {list(poses.shape)}")
    return poses, metadata


def pose_lr(step: int, pose_opt_lr: float, batch_size: int, max_steps: int) -> float:
    """The corrections' learning rate at ``step``, gsplat's: pose_opt_lr x sqrt(batch size), decayed exponentially
    to 1% at max_steps."""
    return pose_opt_lr * math.sqrt(batch_size) * 0.01 ** (min(step, max_steps) / max_steps)


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of 6D rotations [..., 6] (two rows, made orthonormal by Gram-Schmidt; the
    third row is their cross product), as gsplat's examples and pytorch3d convert them."""
    first, second = d6[..., :3], d6[..., 3:]
    row_1 = F.normalize(first, dim=-1)
    row_2 = F.normalize(second - (row_1 * second).sum(-1, keepdim=True) * row_1, dim=-1)
    return torch.stack((row_1, row_2, torch.linalg.cross(row_1, row_2, dim=-1)), dim=-2)


class PoseAdjustment(nn.Module):
    """One learned SE(3) correction per training view (gsplat's `CameraOptModule`), zero-initialised.

    Args:
        num_views: the training views, indexed as their split is (`SceneViews`' ``view_index``).
    """

    def __init__(self, num_views: int):
        super().__init__()
        self.embeds = nn.Embedding(num_views, 9)  # translation [3] + 6D rotation delta [6]
        nn.init.zeros_(self.embeds.weight)
        self.register_buffer("identity", torch.tensor(IDENTITY_6D), persistent=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PoseAdjustment:
        """The corrections a run saved (SplatTrainer's pose_adjustment.safetensors, its ``pose_deltas`` [N, 9]), as
        a module that corrects the run's training poses (those it trained on: after pose_noise, in the training
        split's stored frame). The file's ``world_to_camera`` [N, 4, 4] holds the corrected poses themselves
        (`safetensors.torch.load_file`). A file that does not read, or holds no [N, 9] ``pose_deltas``, is named."""
        return cls.load(path)[0]

    @classmethod
    def load(cls, path: str | os.PathLike) -> tuple[PoseAdjustment, dict[str, str]]:
        """`from_file`'s module and the file's metadata (what `save` recorded of the run), read in one opening."""
        deltas, metadata = _read_tensor(path, "pose_deltas")
        if deltas.ndim != 2 or deltas.shape[1] != 9 or not deltas.is_floating_point():
            raise ValueError(f"{path}: pose_deltas must be float [num_views, 9] (translation and 6D rotation delta "
                             f"per view), got {deltas.dtype} {list(deltas.shape)}")
        adjustment = cls(len(deltas))
        with torch.no_grad():
            adjustment.embeds.weight.copy_(deltas)
        return adjustment, metadata

    def save(self, path: str | os.PathLike, world_to_camera: torch.Tensor, metadata: dict[str, str]) -> None:
        """Writes the corrections to ``path`` as ``pose_deltas`` [N, 9] (which `load` reads), with ``world_to_camera``
        [N, 4, 4], the poses they correct the training poses into, and ``metadata`` (strings: what the run that
        wrote them was, for a resume to match) beside descriptions of the two."""
        tensors = {"pose_deltas": self.embeds.weight.detach().cpu().contiguous(),
                   "world_to_camera": world_to_camera.detach().cpu().contiguous()}
        save_file(tensors, path, metadata={**TENSOR_DESCRIPTIONS, **metadata})

    @classmethod
    def random(cls, num_views: int, std: float, seed: int) -> PoseAdjustment:
        """gsplat's ``--pose_noise``: every value of every view's correction drawn from N(0, std) (its
        ``random_init``), by a generator seeded with ``seed`` on the CPU, so every process draws the same."""
        noise = cls(num_views)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            noise.embeds.weight.normal_(0.0, std, generator=generator)
        return noise

    def _camera_transforms(self, view_indices: torch.Tensor) -> torch.Tensor:
        """The corrections [..., 4, 4] of ``view_indices`` [...], as gsplat right-multiplies them to camera-to-world."""
        deltas = self.embeds(view_indices)
        transform = torch.eye(4, dtype=deltas.dtype, device=deltas.device).repeat(*view_indices.shape, 1, 1)
        transform[..., :3, :3] = rotation_6d_to_matrix(deltas[..., 3:] + self.identity)
        transform[..., :3, 3] = deltas[..., :3]
        return transform

    def forward(self, viewmats: torch.Tensor, view_indices: torch.Tensor) -> torch.Tensor:
        """The corrected world-to-camera poses [..., 4, 4] of ``viewmats`` [..., 4, 4]: ``inv(T) @ viewmat``,
        the inverse of gsplat's ``camtoworld @ T`` (a rigid T's inverse is ``[R^T | -R^T t]``)."""
        transform = self._camera_transforms(view_indices).to(viewmats.dtype)
        rotation_t = transform[..., :3, :3].transpose(-1, -2)
        inverse = torch.eye(4, dtype=viewmats.dtype, device=viewmats.device).repeat(*view_indices.shape, 1, 1)
        inverse[..., :3, :3] = rotation_t
        inverse[..., :3, 3] = -(rotation_t @ transform[..., :3, 3:])[..., 0]
        return inverse @ viewmats
