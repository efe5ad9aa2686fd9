"""The examples' closing steps: all metrics into the log and `all_results.json`, and a local run's card."""

from __future__ import annotations

import logging

from transformers import Trainer

from hf_eff.hub.cards import NonFiniteMetricError

logger = logging.getLogger(__name__)


def save_all_results(trainer: Trainer, results: dict) -> None:
    """Logs the numeric results and writes every result (strings too) to all_results.json."""
    numeric = {k: v for k, v in results.items() if isinstance(v, (int, float))}
    trainer.log_metrics("all", numeric)
    trainer.save_metrics("all", results, combined=False)


def save_local_model_card(trainer: Trainer) -> None:
    """As transformers' examples do when not pushing: the card a push writes, as README.md of output_dir.
    Results a card cannot report (a non-finite metric) leave the finished run without one, and say why;
    a push refuses them."""
    if trainer.args.push_to_hub:
        return
    try:
        trainer.create_model_card()
    except NonFiniteMetricError as error:
        logger.warning("No model card written: %s", error)
