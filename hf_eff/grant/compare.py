"""Full-data training beside GraNT on the same data, model, optimiser, seed and epoch
budget: validation curves against training wall-clock time, time-to-target, final test
metric. Shared by `hf-eff demo` and benchmarks/grant_speed.py."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PrinterCallback, set_seed

from hf_eff.grant.config import GraNTTrainingArguments
from hf_eff.grant.metrics import (
    ValidationCurveCallback,
    best_value,
    first_reaching,
    primary_metric,
    relaxed_target,
)
from hf_eff.grant.trainer import GraNTTrainer


@dataclass
class RunResult:
    teacher: str
    curve: list[dict]  # validation (and test) metrics against training seconds and CPU seconds
    train_seconds: float  # training wall clock, evaluations excluded
    train_cpu_seconds: float  # the same in process CPU time
    selection_seconds: float
    optimizer_steps: int
    test_metrics: dict
    teaching_log: list[dict]  # ratio, subset size and selection seconds at every reselection


def train_and_test(model_fn: Callable[[], torch.nn.Module], splits, args: GraNTTrainingArguments) -> RunResult:
    """Trains on splits["train"], evaluating splits["validation"] and splits["test"] at every
    evaluation: the validation curve sets the target; the test curve is only reported (the
    test metric at the moment a run reaches the target)."""
    set_seed(args.seed)
    curve = ValidationCurveCallback()
    trainer = GraNTTrainer(
        model=model_fn(), args=args, train_dataset=splits["train"],
        eval_dataset={"validation": splits["validation"], "test": splits["test"]}, callbacks=[curve],
    )
    if args.disable_tqdm:  # keep the console to the tables, not one dict per evaluation
        trainer.remove_callback(PrinterCallback)
    start, start_cpu = time.perf_counter(), time.process_time()
    output = trainer.train()
    return RunResult(
        teacher=args.teacher,
        curve=curve.curve,
        train_seconds=time.perf_counter() - start - curve.eval_seconds,
        train_cpu_seconds=time.process_time() - start_cpu - curve.eval_cpu_seconds,
        selection_seconds=output.metrics.get("grant_selection_seconds", 0.0),
        optimizer_steps=output.global_step,
        test_metrics=trainer.evaluate(splits["test"], metric_key_prefix="test"),
        teaching_log=trainer.teaching_log,
    )


def _ratio(numerator, denominator):
    return None if numerator is None or not denominator else round(numerator / denominator, 3)


def compare(task: str, model_fn, splits, training: dict, teaching: dict, tolerance: float = 0.0,
            random_baseline: bool = False) -> dict:
    """Runs teacher="none", then teacher="grant" (with `teaching` settings on top of the shared
    `training` ones) and, with `random_baseline`, teacher="random" (the same schedule on random
    subsets); returns the runs plus a summary row for each, full's first.

    The target is the full run's best validation metric; each row gives the wall and CPU
    seconds until a run first reaches it, and the test metric at that moment, and every taught
    row its times and test metric relative to full's. With `tolerance` > 0 the rows also give
    the times to come within that relative distance of the target (a plateaued curve wanders
    around its best, so the exact best is one noisy point)."""
    name, higher = primary_metric(task)
    key, test_key = f"eval_validation_{name}", f"eval_test_{name}"
    variant = training_variant(teaching)
    methods = {"none": "full", "grant": f"GraNT({variant})"} | ({"random": f"random({variant})"} if random_baseline else {})
    runs = {}
    for teacher in methods:
        args = GraNTTrainingArguments(task=task, teacher=teacher, **training, **({} if teacher == "none" else teaching))
        runs[teacher] = train_and_test(model_fn, splits, args)
    target = best_value(runs["none"].curve, key, higher)
    targets = {"target": target}
    if tolerance > 0:
        targets[f"{tolerance:.0%}"] = relaxed_target(target, tolerance, higher)
    rows = []
    for teacher, run in runs.items():
        row = {
            "task": task,
            "method": methods[teacher],
            "train_s": round(run.train_seconds, 2),
            "train_cpu_s": round(run.train_cpu_seconds, 2),
            "selection_s": round(run.selection_seconds, 2),
            "steps": run.optimizer_steps,
            "metric": name,
            "best_val": round(best_value(run.curve, key, higher), 4),
        }
        for label, value in targets.items():
            point = first_reaching(run.curve, key, value, higher)
            suffix = "" if label == "target" else f"_{label}"
            row[f"time_to_target{suffix}_s"] = None if point is None else round(point["seconds"], 2)
            row[f"time_to_target{suffix}_cpu_s"] = None if point is None else round(point["cpu_seconds"], 2)
            row[f"test_at_target{suffix}"] = None if point is None else round(point[test_key], 4)
        row["test"] = round(run.test_metrics[f"test_{name}"], 4)
        rows.append(row)
    full = rows[0]
    for taught, run in zip(rows[1:], list(runs.values())[1:]):
        for label in targets:
            suffix = "" if label == "target" else f"_{label}"
            for clock in ("", "_cpu"):
                seconds = f"time_to_target{suffix}{clock}_s"
                taught[f"time_to_target{suffix}{clock}_x"] = _ratio(taught[seconds], full[seconds])
        taught["test_change_%"] = round(100 * (taught["test"] - full["test"]) / abs(full["test"]), 2)
        scored = [entry for entry in run.teaching_log if entry["ratio"] < 1 and "score_share" in entry]
        if scored:  # how much of the summed scores the subsets carried, beside their size
            taught["ratio_mean"] = round(statistics.fmean(e["ratio"] for e in scored), 3)
            taught["score_share_mean"] = round(statistics.fmean(e["score_share"] for e in scored), 3)
    return {"task": task, "metric": name, "higher_is_better": higher, "target": target, "rows": rows, "runs": runs}


def training_variant(teaching: dict) -> str:
    return "S" if teaching.get("variant", "batch") == "single" else "B"


def plot_curves(results: list[dict], path: Path) -> None:
    """One panel per task: validation metric against training seconds, every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    for axis, result in zip(axes[0], results):
        key = f"eval_validation_{result['metric']}"
        for row, run in zip(result["rows"], result["runs"].values()):
            axis.plot([p["seconds"] for p in run.curve], [p[key] for p in run.curve], label=row["method"])
        axis.axhline(result["target"], color="grey", linestyle=":", linewidth=1, label="full best")
        axis.set_title(result["task"])
        axis.set_xlabel("training seconds (evaluation excluded)")
        axis.set_ylabel(f"validation {result['metric']}")
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
