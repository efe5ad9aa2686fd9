"""The examples' closing step: all metrics into the log and `all_results.json`."""

from __future__ import annotations

from transformers import Trainer


def save_all_results(trainer: Trainer, results: dict) -> None:
    """Logs the numeric results and writes every result (strings too) to all_results.json."""
    numeric = {k: v for k, v in results.items() if isinstance(v, (int, float))}
    trainer.log_metrics("all", numeric)
    trainer.save_metrics("all", results, combined=False)
