"""The examples' closing steps: all metrics into the log, `all_results.json` and each split's results file, a local run's
card, and the closing line naming what the run wrote."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import Trainer

from hf_eff.hub.cards import NonFiniteMetricError

logger = logging.getLogger(__name__)


def log_numeric_metrics(trainer: Trainer, split: str, metrics: dict) -> None:
    """Prints `Trainer.log_metrics`' table (transformers' examples') of the numbers and switches: a switch (such as
    pose_opt) as True or False, not the 1 or 0 the table's number format makes of a bool; a name or None (such as
    model_revision), which the table cannot format, goes to the results files only."""
    trainer.log_metrics(split, {key: str(value) if isinstance(value, bool) else value
                                for key, value in metrics.items() if isinstance(value, int | float)})


# Each split's results besides its prefixed keys, as Trainer.train's and Trainer.evaluate's metrics hold them
SPLIT_KEYS = {"train": ("total_flos", "epoch"), "eval": ("epoch",)}


def save_all_results(trainer: Trainer, results: dict) -> list[str]:
    """Logs the numeric results and writes them (`write_results_files`), whose names it returns."""
    log_numeric_metrics(trainer, "all", results)
    return write_results_files(trainer, results)


def write_results_files(trainer: Trainer, results: dict) -> list[str]:
    """Writes the results as transformers' examples do: train_results.json (the train_* results, with total_flos and
    epoch) and eval_results.json (the eval_* results, with epoch), each where there are any, and every result
    (settings and strings too) to all_results.json. Returns the names of the files written, for the run's closing
    line (`log_written`).

    A split's file that this run has no results for (eval_results.json, for a prediction) is removed: it is the part of
    an earlier all_results.json, which this run replaces, and would pass for this run's. A training run's
    train_results.json never meets an evaluation or a prediction here: check_evaluation_only refuses its folder."""
    written = []
    for split, keys in SPLIT_KEYS.items():
        own = {key: value for key, value in results.items() if key.startswith(f"{split}_")}
        if own:
            trainer.save_metrics(split, {**{key: results[key] for key in keys if key in results}, **own},
                                 combined=False)
            written.append(f"{split}_results.json")
        else:
            remove_earlier_output(trainer, f"{split}_results.json", "results")
    trainer.save_metrics("all", results, combined=False)
    return [*written, "all_results.json"]


def remove_earlier_output(trainer: Trainer, name: str, what: str) -> None:
    """Removes ``name``, an output this run does not write, that an earlier run left in output_dir (main process
    only): beside this run's files it would pass for this run's. ``what`` says what it holds, for the log. Called once
    the run succeeded, so that a run that fails leaves the earlier run whole."""
    path = Path(trainer.args.output_dir) / name
    if trainer.is_world_process_zero() and path.is_file():
        path.unlink()
        logger.info("removed %s: an earlier run's %s, not this run's", path, what)


def log_written(log: logging.Logger, trainer: Trainer, written: list[str]) -> None:
    """A run's closing line, after its metrics: what it wrote (``written``) and where. Only the
    main process writes the files, and only it says so, on the example's own ``log``, whose level the example set."""
    if written and trainer.is_world_process_zero():
        log.info("Wrote %s to %s", ", ".join(written), trainer.args.output_dir)


def save_local_model_card(trainer: Trainer) -> bool:
    """As transformers' examples do when not pushing: the card a push writes, as README.md of output_dir.
    Results a card cannot report (a non-finite metric) leave the finished run without one, and say why;
    a push refuses them. Returns whether output_dir holds this run's card, written here or by the push (only the main
    process writes either), so that a README.md left by an earlier run is not taken for this run's."""
    if not trainer.is_world_process_zero():
        return False
    if trainer.args.push_to_hub:
        return True
    try:
        trainer.create_model_card()
    except NonFiniteMetricError as error:
        logger.warning("No model card written: %s", error)
        return False
    return True
