"""Full-data training beside GraNT on the same data, model, optimiser, seed and epoch
budget: validation curves against training wall-clock time, time-to-target, final test
metric. Shared by `hf-eff demo` and benchmarks/grant_speed.py."""

from __future__ import annotations

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
    primary_metric,
    relaxed_target,
    time_to_target,
)
from hf_eff.grant.trainer import GraNTTrainer


@dataclass
class RunResult:
    teacher: str
    curve: list[dict]
    train_seconds: float  # training wall clock, evaluations excluded
    selection_seconds: float
    optimizer_steps: int
    test_metrics: dict
    teaching_log: list[dict]  # ratio, subset size and selection seconds at every reselection


def train_and_test(model_fn: Callable[[], torch.nn.Module], splits, args: GraNTTrainingArguments) -> RunResult:
    set_seed(args.seed)
    curve = ValidationCurveCallback()
    trainer = GraNTTrainer(
        model=model_fn(), args=args, train_dataset=splits["train"], eval_dataset=splits["validation"], callbacks=[curve]
    )
    if args.disable_tqdm:  # keep the console to the tables, not one dict per evaluation
        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start - sum(p.get("eval_runtime", 0.0) for p in curve.curve)
    return RunResult(
        teacher=args.teacher,
        curve=curve.curve,
        train_seconds=seconds,
        selection_seconds=output.metrics.get("grant_selection_seconds", 0.0),
        optimizer_steps=output.global_step,
        test_metrics=trainer.evaluate(splits["test"], metric_key_prefix="test"),
        teaching_log=trainer.teaching_log,
    )


def compare(task: str, model_fn, splits, training: dict, teaching: dict, tolerance: float = 0.0) -> dict:
    """Runs teacher="none" then teacher="grant" (with `teaching` settings on top of the shared
    `training` ones) and returns both runs plus the summary row for each. With `tolerance` > 0
    the rows also give the time to come within that relative distance of the full run's best."""
    name, higher = primary_metric(task)
    runs = {}
    for teacher, extra in (("none", {}), ("grant", teaching)):
        args = GraNTTrainingArguments(task=task, teacher=teacher, **training, **extra)
        runs[teacher] = train_and_test(model_fn, splits, args)
    target = best_value(runs["none"].curve, f"eval_{name}", higher)
    rows = []
    for teacher, run in runs.items():
        reached = time_to_target(run.curve, f"eval_{name}", target, higher)
        rows.append({
            "task": task,
            "method": "full" if teacher == "none" else f"GraNT({training_variant(teaching)})",
            "train_s": round(run.train_seconds, 2),
            "selection_s": round(run.selection_seconds, 2),
            "steps": run.optimizer_steps,
            "metric": name,
            "best_val": round(best_value(run.curve, f"eval_{name}", higher), 4),
            "time_to_target_s": None if reached is None else round(reached, 2),
            "test": round(run.test_metrics[f"test_{name}"], 4),
        })
        if tolerance > 0:
            near = time_to_target(run.curve, f"eval_{name}", relaxed_target(target, tolerance, higher), higher)
            rows[-1][f"time_to_{tolerance:.0%}_s"] = None if near is None else round(near, 2)
    full, grant = rows
    grant["time_to_target_x"] = (
        None if grant["time_to_target_s"] is None else round(grant["time_to_target_s"] / full["time_to_target_s"], 3)
    )
    if tolerance > 0:
        key = f"time_to_{tolerance:.0%}_s"
        grant[f"time_to_{tolerance:.0%}_x"] = (
            None if grant[key] is None or full[key] is None else round(grant[key] / full[key], 3)
        )
    grant["test_change_%"] = round(100 * (grant["test"] - full["test"]) / abs(full["test"]), 2)
    return {"task": task, "metric": name, "higher_is_better": higher, "target": target, "rows": rows, "runs": runs}


def training_variant(teaching: dict) -> str:
    return "S" if teaching.get("variant", "batch") == "single" else "B"


def plot_curves(results: list[dict], path: Path) -> None:
    """One panel per task: validation metric against training seconds, both runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    for axis, result in zip(axes[0], results):
        key = f"eval_{result['metric']}"
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
