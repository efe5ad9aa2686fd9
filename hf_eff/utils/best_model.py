"""`load_best_model_at_end` with hf-eff's error metrics.

transformers infers `greater_is_better` from `metric_for_best_model` by one rule: lower is better
only for names ending in "loss". GraNT's "mae" / "rmse" / "mae_<target>" and HaLoRA's
"loss_sigma_0.02_mean" would then keep the worst checkpoint.
"""

from __future__ import annotations

LOWER_IS_BETTER_WORDS = ("loss", "mae", "rmse", "mse")


def reported_metric_names(names, eval_dataset) -> list[str]:
    """The metric names (without eval_) an evaluation reporting ``names`` gives: with a dict eval_dataset, each split's
    ``<key>_<name>``, as Trainer.evaluate prefixes them; by which the trainers check metric_for_best_model."""
    if isinstance(eval_dataset, dict):
        return [f"{key}_{name}" for key in eval_dataset for name in names]
    return list(names)


def lower_is_better(metric: str) -> bool:
    """Whether `metric` is an error: one of its words is in LOWER_IS_BETTER_WORDS (e.g.
    "mae_dipole", "eval_validation_mae" of a dict of eval sets, "loss_sigma_0.02_mean"), or it
    ends in "loss" as transformers' rule has it."""
    return any(word in LOWER_IS_BETTER_WORDS for word in metric.split("_")) or metric.endswith("loss")


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
