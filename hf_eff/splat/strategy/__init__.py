"""Densification strategies (gsplat's Strategy API): the fixed 3DGS baseline and global-to-local."""

from hf_eff.splat.strategy.default import FixedDefaultStrategy
from hf_eff.splat.strategy.global_to_local import GlobalToLocalStrategy, adaptive_opacity_threshold

__all__ = ["FixedDefaultStrategy", "GlobalToLocalStrategy", "adaptive_opacity_threshold"]
