"""The baseline: gsplat's DefaultStrategy (3DGS densification) with its opacity reset working."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import reset_opa


@dataclass
class FixedDefaultStrategy(DefaultStrategy):
    """gsplat's `DefaultStrategy` whose periodic opacity reset fires.

    gsplat 1.5.3 tests `step % self.reset_every == 0 & step > 0`, which Python reads as the chain
    `step % reset_every == (0 & step) > 0`: always False, so opacities are never reset (fixed
    upstream in gsplat 1.6). The parent's growth, pruning and statistics are kept unchanged; this
    class only adds the reset, every `reset_every` steps while refinement runs, clamping opacities
    to `2 * prune_opa` as 3DGS does.

    Its running statistics are gsplat's, gathered without reading the device from the host
    (`_update_state`), and it also counts what densification did: `state["densification_counts"][phase]` holds the
    Gaussians cloned, split and pruned so far in each phase (`phase(step)`; one phase, "densify",
    here), which is how the benchmark tells where each strategy's Gaussians come from.

    Args:
        reset_stop_iter: no reset from this step on; None: `refine_stop_iter` (3DGS).
    """

    reset_stop_iter: int | None = None

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        state = super().initialize_state(scene_scale=scene_scale)
        # Plain ints, not tensors: gsplat's ops resize every tensor of the state per Gaussian.
        state["densification_counts"] = {}
        return state

    @torch.no_grad()
    def _update_state(self, params, state: dict[str, Any], info: dict[str, Any], packed: bool = False) -> None:
        """gsplat's running statistics, without a host read of the device.

        For unpacked renders gsplat picks the visible (camera, Gaussian) pairs with a boolean mask,
        whose size the host must read: on CUDA, a synchronisation at every step. Here the invisible
        pairs are zeroed and the cameras summed: with one camera the same bits as gsplat's, with
        several the same sums in another order. Packed renders carry the Gaussians' indices and
        are summed as gsplat does. radii is the true maximum over cameras (a scatter max, which
        gsplat notes it should be: its indexed assignment keeps one camera's value when several see
        a Gaussian).
        """
        for key in ("width", "height", "n_cameras", "radii", "gaussian_ids", self.key_for_gradient):
            if key not in info:
                raise KeyError(f"{type(self).__name__}: the render's info lacks {key!r}, which densification needs")
        means2d = info[self.key_for_gradient]
        grads = (means2d.absgrad if self.absgrad else means2d.grad).clone()  # [C, N, 2], packed [nnz, 2]
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        n_gaussians = len(params["means"])
        track_radii = self.refine_scale2d_stop_iter > 0
        for key in ("grad2d", "count") + (("radii",) if track_radii else ()):
            if state[key] is None:
                state[key] = torch.zeros(n_gaussians, device=grads.device)
        # Normalised to [0, 1] screen space, as gsplat does.
        radii = info["radii"].max(dim=-1).values / float(max(info["width"], info["height"]))
        if packed:
            ids = info["gaussian_ids"]
            norms = grads.norm(dim=-1)
            state["grad2d"].index_add_(0, ids, norms)
            state["count"].index_add_(0, ids, torch.ones_like(norms))
            if track_radii:
                state["radii"].scatter_reduce_(0, ids, radii, reduce="amax")
            return
        visible = (info["radii"] > 0.0).all(dim=-1)  # [C, N]
        state["grad2d"] += torch.where(visible, grads.norm(dim=-1), 0.0).sum(dim=0)
        state["count"] += visible.sum(dim=0)
        if track_radii:
            torch.maximum(state["radii"], torch.where(visible, radii, 0.0).amax(dim=0), out=state["radii"])

    def phase(self, step: int) -> str:
        """The name under which `step`'s densification is counted."""
        return "densify"

    def _count(self, state: dict[str, Any], step: int, **counts: int) -> None:
        # States saved before the counters existed, or built by gsplat's own initialize_state, have none.
        phase_counts = state.setdefault("densification_counts", {}).setdefault(
            self.phase(step), {"cloned": 0, "split": 0, "pruned": 0})
        for name, value in counts.items():
            phase_counts[name] += int(value)

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state: dict[str, Any], step: int) -> tuple[int, int]:
        n_clone, n_split = self._grow(params, optimizers, state, step)
        self._count(state, step, cloned=n_clone, split=n_split)
        return n_clone, n_split

    @torch.no_grad()
    def _prune_gs(self, params, optimizers, state: dict[str, Any], step: int) -> int:
        n_prune = self._prune(params, optimizers, state, step)
        self._count(state, step, pruned=n_prune)
        return n_prune

    def _grow(self, params, optimizers, state: dict[str, Any], step: int) -> tuple[int, int]:
        """(cloned, split): 3DGS growth. Subclasses change the rule here."""
        return DefaultStrategy._grow_gs(self, params, optimizers, state, step)

    def _prune(self, params, optimizers, state: dict[str, Any], step: int) -> int:
        """Number pruned: 3DGS pruning. Subclasses change the rule here."""
        return DefaultStrategy._prune_gs(self, params, optimizers, state, step)

    def is_reset_step(self, step: int) -> bool:
        """Whether opacities are reset after `step`'s update."""
        reset_stop = self.refine_stop_iter if self.reset_stop_iter is None else self.reset_stop_iter
        return 0 < step < min(reset_stop, self.refine_stop_iter) and step % self.reset_every == 0

    def step_post_backward(
        self,
        params: dict[str, torch.nn.Parameter] | torch.nn.ParameterDict,
        optimizers: dict[str, torch.optim.Optimizer],
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
        packed: bool = False,
    ):
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if self.is_reset_step(step):
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)
