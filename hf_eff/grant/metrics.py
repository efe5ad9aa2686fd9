"""Metrics for the five task kinds, and a validation curve against training wall-clock time.

MAE is the true per-sample mean (over graphs, or over nodes for node tasks), not the public
code's mean of per-batch averages."""

from __future__ import annotations

import logging
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from transformers import EvalPrediction, TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_eff.grant.tasks import GraphTask

logger = logging.getLogger(__name__)


def primary_metric(task: str) -> tuple[str, bool]:
    """(metric name, higher is better) used for the best value and time-to-target. For several
    regression targets "mae" is the mean over all of them (of whatever units, as the paper's
    multi-target MAE); the per-target "mae_<name>" are reported besides. graph_multilabel ranks
    by AP, ogbg-molpcba's metric (METHODS.md: "ogbg-molpcba ... AP 0.327 -> 0.336"): with rare
    positives (~1.4% on molpcba) ROC-AUC is dominated by the many easy negatives, AP is not."""
    task = GraphTask(task)
    if task.is_multilabel:
        return "ap", True
    return ("roc_auc", True) if task.is_classification else ("mae", False)


def macro_roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """One-vs-rest ROC-AUC averaged over the classes that have both positives and negatives
    (sklearn's multi-class mode refuses label sets missing a class); NaN, with a warning, when the
    labels hold a single class."""
    aucs = []
    for c in range(probabilities.shape[1]):
        positive = labels == c
        if positive.any() and not positive.all():
            aucs.append(roc_auc_score(positive, probabilities[:, c]))
    if not aucs:
        _warn_nan_roc_auc(
            (f"every label is class {int(labels[0])}" if len(labels) else "there are no labels")
            + " (split an imbalanced set stratified: datasets' class_encode_column('y'), then "
            "train_test_split(stratify_by_column='y'))"
        )
        return float("nan")
    return float(np.mean(aucs))


def _warn_nan_roc_auc(reason: str) -> None:
    # NaN compares false, so metric_for_best_model and EarlyStoppingCallback cannot rank it
    logger.warning(
        "roc_auc is NaN: %s, and ROC-AUC ranks positives against negatives: an evaluation set needs both. "
        "metric_for_best_model and EarlyStoppingCallback cannot rank NaN.", reason,
    )


def multilabel_metrics(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """labels [graphs, T] of 0/1 with NaN where unlabelled, logits [graphs, T]: ROC-AUC and average
    precision per target over its labelled rows, averaged over the targets whose labelled rows
    hold both classes (OGB's graph property evaluator; the other targets have no ranking to
    score). NaN when no target qualifies. Both are rank metrics, so the logits are used as
    they are (a float32 sigmoid would tie the largest ones)."""
    labels = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    logits = np.asarray(logits, dtype=np.float64).reshape(labels.shape)
    aucs, aps = [], []
    for target in range(labels.shape[1]):
        labelled = ~np.isnan(labels[:, target])
        truth = labels[labelled, target]
        if (truth == 1).any() and (truth == 0).any():
            aucs.append(roc_auc_score(truth, logits[labelled, target]))
            aps.append(average_precision_score(truth, logits[labelled, target]))
    if not aucs:
        _warn_nan_roc_auc("no target's labelled rows hold both 0 and 1")
        return {"roc_auc": float("nan"), "ap": float("nan")}
    return {"roc_auc": float(np.mean(aucs)), "ap": float(np.mean(aps))}


def graph_task_metrics(
    task: str, predictions: np.ndarray, labels: np.ndarray, node_mask=None, target_names=None
) -> dict[str, float]:
    """predictions [rows, outputs] and labels [rows(, targets)]. graph_multilabel gives roc_auc and
    ap (`multilabel_metrics`). Regression gives mae and rmse
    over every row and target and, with several targets, mae_<name> per target (`target_names`,
    by default the target's index). Node-level tasks may also come
    padded to [graphs, max nodes, ...], as `GraNTTrainer` evaluates: `node_mask` [graphs, max
    nodes] is 1 on real nodes (the trainer's); without it, padding is -100 for class ids (never
    a class) and NaN for regression targets (-100 can be a real target)."""
    task = GraphTask(task)
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels)
    if task.is_multilabel:
        return multilabel_metrics(labels, predictions)
    if task.level == "node" and predictions.ndim == 3:
        rows = predictions.shape[0] * predictions.shape[1]
        labels = labels.reshape(rows, -1)
        predictions = predictions.reshape(rows, -1)
        if node_mask is not None:
            node_mask = np.asarray(node_mask)
            if node_mask.size != rows:
                raise ValueError(
                    f"node_mask has {node_mask.size} entries for predictions padded to {rows} nodes "
                    f"(shape {tuple(node_mask.shape)}); it needs one per [graph, node] position"
                )
            real = node_mask.reshape(-1) == 1
        elif task.is_classification:
            real = labels[:, 0] != -100
        else:
            real = ~np.isnan(labels.astype(np.float64)).all(axis=1)
            if ((labels[real] == -100).all(axis=1) & (predictions[real] == -100).all(axis=1)).any():
                raise ValueError(
                    "node regression labels padded with -100: a target can be -100; pad with NaN, or pass "
                    "node_mask (1 on real nodes)"
                )
        predictions, labels = predictions[real], labels[real]
    if task.is_classification:
        labels = labels.astype(np.int64).reshape(-1)
        shifted = predictions - predictions.max(axis=-1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        return {
            "accuracy": float((predictions.argmax(axis=-1) == labels).mean()),
            "roc_auc": macro_roc_auc(labels, probabilities),
        }
    error = predictions.reshape(len(labels), -1) - labels.reshape(len(labels), -1)
    metrics = {"mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error**2).mean()))}
    if error.shape[1] > 1:
        names = [str(i) for i in range(error.shape[1])] if target_names is None else list(target_names)
        if len(names) != error.shape[1]:
            raise ValueError(f"target_names has {len(names)} names for {error.shape[1]} targets: {names}")
        metrics.update({f"mae_{name}": float(value) for name, value in zip(names, np.abs(error).mean(axis=0))})
    return metrics


def metric_names(task: str, num_targets: int, target_names=None) -> list[str]:
    """The metrics `graph_task_metrics` reports for `num_targets` targets per graph (per node for node tasks)."""
    task = GraphTask(task)
    if task.is_multilabel:
        return ["roc_auc", "ap"]
    if task.is_classification:
        return ["accuracy", "roc_auc"]
    per_target = [] if num_targets < 2 else [f"mae_{name}" for name in (target_names or range(num_targets))]
    return ["mae", "rmse", *per_target]


def metrics_for(task: str, target_names=None):
    """A `compute_metrics` for `Trainer`; `target_names` name the per-target MAEs of several
    regression targets (mae_<name>; by default their indices). It takes the evaluation's batches
    concatenated (the default) or one by one (`eval_do_concat_batches=False`)."""
    GraphTask(task)

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        predictions, labels, node_mask = prediction.predictions, prediction.label_ids, None
        if isinstance(predictions, list):  # eval_do_concat_batches=False: one entry per batch
            predictions, labels, node_mask = _joined_batches(predictions, labels)
        elif isinstance(labels, (tuple, list)):  # node-level: (padded labels, node mask), from GraNTTrainer
            labels, node_mask = labels
        return graph_task_metrics(task, predictions, labels, node_mask, target_names)

    # what it reports, by which GraNTTrainer checks metric_for_best_model before training
    compute_metrics.metric_names = lambda num_targets: metric_names(task, num_targets, target_names)
    return compute_metrics


def _joined_batches(predictions: list, labels: list) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The batches of an evaluation left unconcatenated, as one set: graph-level rows stacked;
    node-level batches (each padded to its own largest graph, labels as (labels, node mask)) as
    their real nodes, every node one row (a mask of ones)."""
    if not isinstance(labels[0], (tuple, list)):
        return np.concatenate(predictions), np.concatenate(labels), None
    rows, targets = [], []
    for batch, (batch_labels, mask) in zip(predictions, labels):
        real = np.asarray(mask).reshape(-1) == 1
        rows.append(np.asarray(batch).reshape(real.size, -1)[real])
        targets.append(np.asarray(batch_labels).reshape(real.size, -1)[real])
    nodes = np.concatenate(rows)
    # [1 graph, nodes, ...] with every position real: graph_task_metrics' padded node layout
    return nodes[None], np.concatenate(targets)[None], np.ones((1, len(nodes)))


class ValidationCurveCallback(TrainerCallback, ExportableState):
    """Records (training seconds, training CPU seconds, epoch, eval metrics) at every
    evaluation during training. Both clocks exclude the evaluations, which cost the same for
    every method: an evaluation spans the time from the last training event (step or epoch end)
    to `on_evaluate`. CPU time is the process's (`time.process_time`), which, on one thread,
    stays steady when other processes load the machine. Several eval datasets evaluated
    together (`eval_dataset` as a dict) share one point of the curve.

    Every checkpoint stores the curve and the clocks (in trainer_state.json, as transformers
    does for any `ExportableState` callback), and a run resumed from it carries them on, so the
    curve, its best value and time-to-target cover the whole run. Leave
    `restore_callback_states_from_checkpoint` off (the default): it would replace this object
    by a new one in the trainer, and the curve would grow on that one instead."""

    def __init__(self):
        self.curve: list[dict] = []
        # the clocks so far: training (evaluations excluded) and evaluation, wall and CPU seconds
        self.train_seconds = self.train_cpu_seconds = 0.0
        self.eval_seconds = self.eval_cpu_seconds = 0.0
        self._mark = None  # (wall, CPU) time of the last event; None outside training
        self._trained_since_eval = True

    def state(self) -> dict:
        return {"args": {}, "attributes": {
            "curve": self.curve, "train_seconds": self.train_seconds, "train_cpu_seconds": self.train_cpu_seconds,
            "eval_seconds": self.eval_seconds, "eval_cpu_seconds": self.eval_cpu_seconds,
        }}

    def on_train_begin(self, args, state, control, **kwargs):
        saved = {}
        if state.global_step > 0:  # resumed: the checkpoint's trainer state holds the curve so far
            name = type(self).__name__
            saved = state.stateful_callbacks.get(name)
            if isinstance(saved, dict):
                saved = saved["attributes"]
            else:
                logger.warning(
                    "resuming at step %d from a checkpoint without %s (or with several): the validation curve "
                    "and its clocks start at the resumed step", state.global_step, name,
                )
                if saved is None:  # transformers' next checkpoint save expects an entry for every such callback
                    state.stateful_callbacks[name] = self.state()
                saved = {}
        self.curve = list(saved.get("curve", []))
        self.train_seconds, self.train_cpu_seconds = saved.get("train_seconds", 0.0), saved.get("train_cpu_seconds", 0.0)
        self.eval_seconds, self.eval_cpu_seconds = saved.get("eval_seconds", 0.0), saved.get("eval_cpu_seconds", 0.0)
        self._mark, self._trained_since_eval = (time.perf_counter(), time.process_time()), True

    def _elapsed(self) -> tuple[float, float]:
        now = (time.perf_counter(), time.process_time())
        elapsed = (now[0] - self._mark[0], now[1] - self._mark[1])
        self._mark = now
        return elapsed

    def _training_event(self):
        if self._mark is not None:
            wall, cpu = self._elapsed()
            self.train_seconds += wall
            self.train_cpu_seconds += cpu
            self._trained_since_eval = True

    def on_step_end(self, args, state, control, **kwargs):
        self._training_event()

    def on_epoch_end(self, args, state, control, **kwargs):
        self._training_event()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self._mark is None:
            return
        wall, cpu = self._elapsed()
        self.eval_seconds += wall
        self.eval_cpu_seconds += cpu
        if not self._trained_since_eval and self.curve:  # another eval dataset of the same evaluation
            self.curve[-1].update(metrics)
            return
        self._trained_since_eval = False
        self.curve.append({
            "seconds": self.train_seconds,
            "cpu_seconds": self.train_cpu_seconds,
            "epoch": state.epoch,
            "step": state.global_step,
            **metrics,
        })

    def on_train_end(self, args, state, control, **kwargs):
        self._mark = None


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
