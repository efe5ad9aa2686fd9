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

    It also counts what densification did: `state["densification_counts"][phase]` holds the
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
