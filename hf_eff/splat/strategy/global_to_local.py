"""Global-to-local densification with adaptive opacity pruning (Huang, Liu & Wong, 2025)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from gsplat.strategy.ops import duplicate, remove, split

from hf_eff.splat.strategy.default import FixedDefaultStrategy


def check_prune_ratio(prune_ratio: float, owner: str) -> None:
    """The range of p, checked where it is given (`SplatTrainingArguments`, `GlobalToLocalStrategy`):
    floor(N * p) must index one of the N opacities. NaN is refused too."""
    if not 0 <= prune_ratio < 1:
        raise ValueError(f"{owner}.prune_ratio must be in [0, 1) (the fraction of opacities under the adaptive "
                         f"threshold), got {prune_ratio}")


def adaptive_opacity_threshold(opacities: torch.Tensor, prune_ratio: float, max_threshold: float) -> float:
    """tau = min(alpha_sorted[floor(N * p)], tau_u) for post-sigmoid opacities `alpha`.

    The lowest `p` fraction of opacities sets the bar, so pruning follows the opacity
    distribution, while `tau_u` caps it so that a mostly transparent model is not gutted.
    `p` must be in [0, 1): `GlobalToLocalStrategy` checks it (`check_prune_ratio`).
    """
    if opacities.numel() == 0:
        return max_threshold
    flat = opacities.detach().flatten()
    if not torch.isfinite(flat).all():
        raise ValueError("adaptive pruning: opacities contain NaN or inf")
    kth = torch.sort(flat).values[math.floor(flat.numel() * prune_ratio)].item()
    return min(kth, max_threshold)


@dataclass
class GlobalToLocalStrategy(FixedDefaultStrategy):
    """3DGS densification decomposed into a global and a local phase, plus adaptive pruning.

    Before `global_stop_iter` (the paper's T_2, the first full-resolution step of the
    energy-guided coarse-to-fine schedule) only SPLIT runs: large Gaussians with high screen-space
    gradient are split to cover the scene, and clone candidates are left alone. From
    `global_stop_iter` on, split and clone follow the usual 3DGS rule, unless `clone_grad2d`
    gives cloning its own (higher) gradient threshold. With `global_stop_iter=0` and no
    `clone_grad2d`, growth is exactly the default one.

    With `adaptive_pruning`, a Gaussian is pruned when its opacity is below
    `tau = min(alpha_sorted[floor(N * prune_ratio)], prune_opa_max)` instead of the fixed
    `prune_opa`; the paper uses p = 0.03 and tau_u = 0.05. The opacity reset and the pruning of
    oversized Gaussians are the default ones (the paper does not change them).

    The paper does not say whether adaptive pruning stops with densification. With
    `prune_stop_iter` beyond `refine_stop_iter`, the pruning step keeps running every
    `refine_every` steps until `prune_stop_iter`, without growth or opacity reset. It removes
    both what the adaptive opacity threshold prunes and the oversized Gaussians (3D scale above
    `prune_scale3d` times the scene scale; gsplat no longer gathers the screen-space radii then,
    so none is pruned by radius). Its steps are counted under the phase "post".

    Nor does it say how soon after an opacity reset the adaptive rule may prune. Just after a
    reset every opacity sits near `2 * prune_opa`, under tau_u, so the rule removes the lowest `p`
    of Gaussians that have had only a few steps to recover. With `prune_pause_after_reset`, the
    opacity criterion waits that many steps after each reset, or until the next reset step when
    resets come sooner (3DGS's first prune comes 100 steps after its reset; Adam's per-step
    recovery does not shrink with a shorter run).

    Args:
        global_stop_iter: T_2; split-only growth before this step. The trainer fills it from the
            coarse-to-fine schedule when left as None.
        adaptive_pruning: use the adaptive threshold (True) or the fixed `prune_opa` (False).
        prune_ratio: p, the fraction of the opacity distribution below the threshold.
        prune_opa_max: tau_u, the cap on the threshold.
        prune_stop_iter: no adaptive pruning (opacity or oversized) from this step on; None:
            `refine_stop_iter` (as gsplat and 3DGS prune). The fixed rule always stops with densification.
        prune_pause_after_reset: steps after an opacity reset without adaptive opacity pruning.
        clone_grad2d: in the local phase, clone only above this screen-space gradient (splitting
            keeps `grow_grad2d`); None: `grow_grad2d` (the paper's and 3DGS's rule).
    """

    global_stop_iter: int | None = None
    adaptive_pruning: bool = True
    prune_ratio: float = 0.03
    prune_opa_max: float = 0.05
    prune_stop_iter: int | None = None
    prune_pause_after_reset: int = 0
    clone_grad2d: float | None = None

    def __post_init__(self):
        check_prune_ratio(self.prune_ratio, "GlobalToLocalStrategy")
        if self.prune_pause_after_reset < 0:
            raise ValueError(f"prune_pause_after_reset must be >= 0, got {self.prune_pause_after_reset}")
        if self.clone_grad2d is not None and not self.clone_grad2d > 0:  # NaN too
            raise ValueError(f"clone_grad2d must be > 0 or None, got {self.clone_grad2d}")
        if self.global_stop_iter is not None and self.global_stop_iter < 0:
            raise ValueError(f"global_stop_iter must be >= 0, got {self.global_stop_iter}")

    def is_global_phase(self, step: int) -> bool:
        if self.global_stop_iter is None:
            raise ValueError(
                "GlobalToLocalStrategy.global_stop_iter (T_2) is not set: pass it, or let "
                "SplatTrainer fill it from the coarse-to-fine schedule"
            )
        return step < self.global_stop_iter

    def phase(self, step: int) -> str:
        if step >= self.refine_stop_iter:
            return "post"
        return "global" if self.is_global_phase(step) else "local"

    def step_post_backward(self, params, optimizers, state: dict[str, Any], step: int, info: dict[str, Any],
                           packed: bool = False):
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        prune_stop = self.refine_stop_iter if self.prune_stop_iter is None else self.prune_stop_iter
        if self.adaptive_pruning and self.refine_stop_iter <= step < prune_stop and step % self.refine_every == 0:
            self._prune_gs(params, optimizers, state, step)

    def _grow(self, params, optimizers, state: dict[str, Any], step: int) -> tuple[int, int]:
        global_phase = self.is_global_phase(step)
        if not global_phase and self.clone_grad2d is None:
            return super()._grow(params, optimizers, state, step)
        # gsplat's rule (clone small, split large), with cloning suppressed in the global phase
        # and held to its own threshold in the local one.
        grads = state["grad2d"] / state["count"].clamp_min(1)
        is_small = (
            torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        )
        if global_phase:
            is_dupli = torch.zeros_like(is_small)
        else:
            is_dupli = (grads > self.clone_grad2d) & is_small
        is_split = (grads > self.grow_grad2d) & ~is_small
        if step < self.refine_scale2d_stop_iter:
            is_split |= state["radii"] > self.grow_scale2d
        n_dupli, n_split = int(is_dupli.sum().item()), int(is_split.sum().item())
        if n_dupli > 0:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        # As in gsplat, the copies just made are not split.
        is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=is_split.device)])
        if n_split > 0:
            split(params=params, optimizers=optimizers, state=state, mask=is_split,
                  revised_opacity=self.revised_opacity)
        return n_dupli, n_split

    def steps_since_reset(self, step: int) -> int | None:
        """Steps since the last opacity reset before `step`; None when none happened yet."""
        last = (step - 1) // self.reset_every * self.reset_every
        if not self.is_reset_step(last):
            return None
        return step - last

    def _prune(self, params, optimizers, state: dict[str, Any], step: int) -> int:
        if not self.adaptive_pruning:
            return super()._prune(params, optimizers, state, step)
        opacities = torch.sigmoid(params["opacities"].flatten())
        since_reset = self.steps_since_reset(step)
        # A reset period shorter than the pause still prunes once, at its end, before the next reset.
        if since_reset is not None and since_reset < min(self.prune_pause_after_reset, self.reset_every):
            is_prune = torch.zeros_like(opacities, dtype=torch.bool)
        else:
            threshold = adaptive_opacity_threshold(opacities, self.prune_ratio, self.prune_opa_max)
            is_prune = opacities < threshold
        # Oversized Gaussians are pruned exactly as in the parent.
        if step > self.reset_every:
            is_prune |= (
                torch.exp(params["scales"]).max(dim=-1).values
                > self.prune_scale3d * state["scene_scale"]
            )
            if step < self.refine_scale2d_stop_iter:
                is_prune |= state["radii"] > self.prune_scale2d
        n_prune = int(is_prune.sum().item())
        if n_prune > 0:
            remove(params=params, optimizers=optimizers, state=state, mask=is_prune)
        return n_prune
