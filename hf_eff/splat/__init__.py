"""Fast Gaussian splatting: scenes as `datasets` (scene.py, converters/, procedural.py), the
Gaussians (model.py), renderers (rendering/: gsplat on CUDA, PyTorch on CPU), densification
strategies (strategy/: 3DGS default, global-to-local), energy-guided coarse-to-fine
(coarse_to_fine.py), per-view camera pose corrections (pose_adjustment.py), `SplatTrainer` with
`SplatTrainingArguments`, and novel-view camera paths rendered into a GIF (trajectory.py)."""

import importlib

# Public name -> defining module, imported on first access so `import hf_eff.splat` stays cheap.
_LAZY_EXPORTS = {
    "rasterize": "hf_eff.splat.rendering",
    "GaussianModel": "hf_eff.splat.model",
    "make_procedural_scene": "hf_eff.splat.procedural",
    "Scene": "hf_eff.splat.scene",
    "load_scene": "hf_eff.splat.scene",
    # Packaging your own scene: views (images, K, world_to_camera) and an optional point set.
    "views_dataset": "hf_eff.splat.scene",
    "points_dataset": "hf_eff.splat.scene",
    # A capture far from the world origin: views and points normalised in float64 before they are stored.
    "world_normalization": "hf_eff.splat.cameras",
    "scene_views_to_tensors": "hf_eff.splat.scene",
    "scene_views_masks": "hf_eff.splat.scene",
    "images_to_float": "hf_eff.splat.scene",
    "scene_from_colmap": "hf_eff.splat.converters",
    "write_colmap": "hf_eff.splat.converters",
    "scene_from_nerf_synthetic": "hf_eff.splat.converters",
    "write_nerf_synthetic": "hf_eff.splat.converters",
    "SplatTrainer": "hf_eff.splat.trainer",
    "SplatTrainingArguments": "hf_eff.splat.config",
    "FixedDefaultStrategy": "hf_eff.splat.strategy",
    "GlobalToLocalStrategy": "hf_eff.splat.strategy",
    "EnergyCoarseToFine": "hf_eff.splat.coarse_to_fine",
    # pose_opt's per-view camera corrections (gsplat's CameraOptModule); PoseAdjustment.from_file reads a run's
    # pose_adjustment.safetensors.
    "PoseAdjustment": "hf_eff.splat.pose_adjustment",
    # Novel-view videos: camera paths from the training cameras, rendered into a GIF.
    "camera_path": "hf_eff.splat.trajectory",
    "ellipse_path": "hf_eff.splat.trajectory",
    "interpolated_path": "hf_eff.splat.trajectory",
    "path_intrinsics": "hf_eff.splat.trajectory",
    "render_trajectory": "hf_eff.splat.trajectory",
    "write_gif": "hf_eff.splat.trajectory",
}

__all__: list[str] = [*_LAZY_EXPORTS]


def __getattr__(name):
    if name in _LAZY_EXPORTS:
        return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'hf_eff.splat' has no attribute {name!r}")
