"""Metrics for the four task kinds, and a validation curve against training wall-clock time.

MAE is the true per-sample mean (over graphs, or over nodes for node tasks), not the public
code's mean of per-batch averages."""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score
from transformers import EvalPrediction, TrainerCallback

from hf_eff.grant.tasks import GraphTask


def primary_metric(task: str) -> tuple[str, bool]:
    """(metric name, higher is better) used for time-to-target."""
    return ("roc_auc", True) if GraphTask(task).is_classification else ("mae", False)


def macro_roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest ROC-AUC averaged over the classes that have both positives and negatives
    (sklearn's multi-class mode refuses label sets missing a class)."""
    aucs = []
    for c in range(probabilities.shape[1]):
        positive = labels == c
        if positive.any() and not positive.all():
            aucs.append(roc_auc_score(positive, probabilities[:, c]))
    return float(np.mean(aucs)) if aucs else float("nan")


def graph_task_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """predictions [rows, outputs] and labels [rows(, targets)]; node-level tasks may also come
    as [graphs, max nodes, ...] padded with -100 (how `GraNTTrainer` evaluates)."""
    task = GraphTask(task)
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels)
    if task.level == "node" and predictions.ndim == 3:
        labels = labels.reshape(predictions.shape[0] * predictions.shape[1], -1)
        real = ~(labels == -100).all(axis=1)
        predictions, labels = predictions.reshape(len(labels), -1)[real], labels[real].squeeze(-1)
    if task.is_classification:
        labels = labels.astype(np.int64).reshape(-1)
        shifted = predictions - predictions.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        return {
            "accuracy": float((predictions.argmax(axis=-1) == labels).mean()),
            "roc_auc": macro_roc_auc(labels, probabilities),
        }
    error = predictions.reshape(len(labels), -1) - labels.reshape(len(labels), -1)
    return {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error**2).mean()))}


def metrics_for(task: str):
    """A `compute_metrics` for `Trainer`."""
    GraphTask(task)

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        return graph_task_metrics(task, prediction.predictions, prediction.label_ids)

    return compute_metrics


class ValidationCurveCallback(TrainerCallback):
    """Records (training seconds, training CPU seconds, epoch, eval metrics) at every
    evaluation during training. Both clocks exclude the evaluations, which cost the same for
    every method: an evaluation spans the time from the last training event (step or epoch end)
    to `on_evaluate`. CPU time is the process's (`time.process_time`), which, on one thread,
    stays steady when other processes load the machine. Several eval datasets evaluated
    together (`eval_dataset` as a dict) share one point of the curve."""

    def __init__(self):
        self.curve: list[dict] = []
        self._start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.curve, self._start = [], (time.perf_counter(), time.process_time())
        self.eval_seconds, self.eval_cpu_seconds = 0.0, 0.0
        self._mark, self._trained_since_eval = self._start, True

    def _training_event(self):
        self._mark, self._trained_since_eval = (time.perf_counter(), time.process_time()), True

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self._training_event()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self._training_event()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self._start is None:
            return
        now = (time.perf_counter(), time.process_time())
        self.eval_seconds += now[0] - self._mark[0]
        self.eval_cpu_seconds += now[1] - self._mark[1]
        self._mark = now
        if not self._trained_since_eval and self.curve:  # another eval dataset of the same evaluation
            self.curve[-1].update(metrics)
            return
        self._trained_since_eval = False
        self.curve.append({
            "seconds": now[0] - self._start[0] - self.eval_seconds,
            "cpu_seconds": now[1] - self._start[1] - self.eval_cpu_seconds,
            "epoch": state.epoch,
            "step": state.global_step,
            **metrics,
        })

    def on_train_end(self, args, state, control, **kwargs):
        self._start = None


def best_value(curve: list[dict], metric: str, higher_is_better: bool) -> float:
    values = [point[metric] for point in curve]
    return max(values) if higher_is_better else min(values)


def first_reaching(curve: list[dict], metric: str, target: float, higher_is_better: bool) -> dict | None:
    """The first point of the curve where `metric` reaches `target`; None if none does."""
    for point in curve:
        if (point[metric] >= target) if higher_is_better else (point[metric] <= target):
            return point
    return None


def time_to_target(
    curve: list[dict], metric: str, target: float, higher_is_better: bool, clock: str = "seconds"
) -> float | None:
    """`clock` ("seconds" or "cpu_seconds") until `metric` first reaches `target`; None if it never does."""
    point = first_reaching(curve, metric, target, higher_is_better)
    return None if point is None else point[clock]


def relaxed_target(target: float, tolerance: float, higher_is_better: bool) -> float:
    """`target` loosened by a relative `tolerance` (0.01: within 1%). A validation curve that
    has plateaued wanders around its best value, so the exact best marks one noisy point."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return target - tolerance * abs(target) if higher_is_better else target + tolerance * abs(target)
