"""`load_best_model_at_end` with hf-eff's error metrics.

transformers infers `greater_is_better` from `metric_for_best_model` by one rule: lower is better
only for names ending in "loss". GraNT's "mae" / "rmse" / "mae_<target>" and HaLoRA's
"loss_sigma_0.02_mean" would then keep the worst checkpoint.
"""

from __future__ import annotations

LOWER_IS_BETTER_WORDS = ("loss", "mae", "rmse", "mse")


def lower_is_better(metric: str) -> bool:
    """Whether `metric` (with or without the "eval_" prefix) is an error: its first word is one of
    LOWER_IS_BETTER_WORDS (e.g. "mae_dipole", "loss_sigma_0.02_mean"), or it ends in "loss"."""
    name = metric.removeprefix("eval_")
    return name.split("_")[0] in LOWER_IS_BETTER_WORDS or name.endswith("loss")


class BestModelArgumentsMixin:
    """Base for ``TrainingArguments`` subclasses: when the user leaves `greater_is_better` unset,
    an error metric (`lower_is_better`) gets False. An explicit value is kept.

    Use: ``class MyArguments(BestModelArgumentsMixin, TrainingArguments)``.
    """

    def __post_init__(self):
        unset = self.greater_is_better is None
        super().__post_init__()
        if unset and self.metric_for_best_model is not None and lower_is_better(self.metric_for_best_model):
            self.greater_is_better = False
