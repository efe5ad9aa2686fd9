"""Scene converters: COLMAP sparse models and NeRF-synthetic ``transforms.json`` folders,
to and from `Scene`."""

from hf_eff.splat.converters.colmap import scene_from_colmap, write_colmap
from hf_eff.splat.converters.nerf_synthetic import scene_from_nerf_synthetic, write_nerf_synthetic

__all__ = ["scene_from_colmap", "write_colmap", "scene_from_nerf_synthetic", "write_nerf_synthetic"]
