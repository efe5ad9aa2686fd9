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

    Args:
        reset_stop_iter: no reset from this step on; None: `refine_stop_iter` (3DGS).
    """

    reset_stop_iter: int | None = None

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
        reset_stop = self.refine_stop_iter if self.reset_stop_iter is None else self.reset_stop_iter
        if 0 < step < min(reset_stop, self.refine_stop_iter) and step % self.reset_every == 0:
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)
