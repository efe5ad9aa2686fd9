"""The five task kinds, their losses and the per-sample output error GraNT scores with.

graph_multilabel is ogbg-molpcba's setting: T binary labels per graph, NaN where a graph is not
labelled for a target (METHODS.md: "MSE / CE / BCE-with-logits"; "multi-target: L2 norm over the
labelled targets / number of labelled targets")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TASKS = ("graph_regression", "graph_classification", "graph_multilabel", "node_regression", "node_classification")


class GraphTask(str):
    """A task kind name with what the trainer needs to know about it."""

    def __new__(cls, name: str):
        if name not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {name!r}")
        return super().__new__(cls, name)

    @property
    def level(self) -> str:
        return self.split("_")[0]

    @property
    def is_classification(self) -> bool:
        """One class id per graph or node (cross-entropy); not graph_multilabel's 0/1 vectors."""
        return self.endswith("classification")

    @property
    def is_multilabel(self) -> bool:
        """T independent binary labels per graph, NaN where unlabelled (BCE-with-logits)."""
        return self.endswith("multilabel")


def _check_outputs(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> None:
    if outputs.dim() != 2:
        raise ValueError(f"{task}: the model must return [rows, outputs], got shape {tuple(outputs.shape)}")
    if outputs.size(0) != labels.size(0):
        unit = "nodes" if task.level == "node" else "graphs"
        raise ValueError(
            f"{task}: the model returned {outputs.size(0)} rows for {labels.size(0)} {unit}; "
            f"a {task.level}-level task needs one output row per {task.level}"
        )
    if task.endswith("regression") and labels.size(0):
        targets = labels.numel() // labels.size(0)
        if targets != outputs.size(1):
            raise ValueError(
                f"{task}: the model returned {outputs.size(1)} outputs per {task.level} for {targets} targets; it needs "
                f"one output per target (out_channels={targets})"
            )


def check_class_count(task: GraphTask, num_outputs: int, num_classes: int) -> None:
    """Raises when a classifier returns fewer logits than the data has classes (class ids 0 ..
    num_classes - 1): cross-entropy would fail on an out-of-range id without naming the model's
    width (on a GPU, as a device-side assert)."""
    if task.is_classification and num_outputs < num_classes:
        binary = (" A single-logit binary classifier trains as task 'graph_multilabel' (BCE-with-logits) with y [0.] "
                  "or [1.] per graph." if task.level == "graph" and num_outputs == 1 else "")
        raise ValueError(
            f"{task}: the model returns {num_outputs} logit(s) per {task.level}, but the data has class ids up to "
            f"{num_classes - 1}: it needs one logit per class (out_channels={num_classes}).{binary}"
        )


def _multilabel_shapes(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """labels as [graphs, T] in the outputs' dtype (NaN kept), after checking the model gives T logits."""
    labels = labels.reshape(labels.size(0), -1).to(outputs.dtype)
    if labels.shape != outputs.shape:
        raise ValueError(
            f"{task}: the model returned {outputs.size(-1)} logits per graph for {labels.size(-1)} labels; it needs "
            "one logit per binary target"
        )
    return labels


def task_loss(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MSE for regression, cross-entropy for classification, BCE-with-logits for graph_multilabel
    (the paper's convex losses). graph_multilabel averages over the labelled (non-NaN) entries
    only, as OGB's molpcba example; a batch without any labelled entry has loss 0 (and zero
    gradient) rather than the NaN of an empty mean."""
    if task.is_multilabel:
        sums, counts = multilabel_losses(task, outputs, labels)
        return sums.sum() / counts.sum().clamp(min=1)
    _check_outputs(task, outputs, labels)
    if task.is_classification:
        return F.cross_entropy(outputs, labels.long())
    return F.mse_loss(outputs, labels.view_as(outputs).to(outputs.dtype))


def multilabel_losses(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """graph_multilabel's BCE-with-logits summed over each graph's labelled (non-NaN) entries, and
    their number: (sums [graphs] in float32, counts [graphs] as integers); `task_loss` is their
    totals' ratio. float32 and integers whatever the model's dtype: a half-precision count passes
    65504 (fp16: inf, a loss of 0) or rounds (bf16) on a batch of a few hundred molpcba graphs."""
    _check_outputs(task, outputs, labels)  # rows named before the shapes
    labels = _multilabel_shapes(task, outputs, labels)
    labelled = ~labels.isnan()
    losses = F.binary_cross_entropy_with_logits(outputs.float(), labels.float().nan_to_num(0.0), reduction="none")
    # where, not a product with the mask: an infinite loss on an unlabelled entry times 0 is NaN
    return torch.where(labelled, losses, 0.0).sum(dim=-1), labelled.sum(dim=-1)


def unit_losses(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of every loss unit, whose mean is `task_loss`: every node of a node-level task, every graph of a
    graph-level one; the squared error averaged over the unit's targets, or the cross-entropy. Shape [units].
    Not graph_multilabel's, whose units are labelled entries (`multilabel_losses`)."""
    if task.is_multilabel:
        raise ValueError(f"unit_losses: {task}'s loss units are labelled entries; use multilabel_losses")
    _check_outputs(task, outputs, labels)
    if task.is_classification:
        return F.cross_entropy(outputs, labels.long(), reduction="none")
    return F.mse_loss(outputs, labels.view_as(outputs).to(outputs.dtype), reduction="none").mean(dim=-1)


def node_losses(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of every node of a node-level task (`unit_losses`). Shape [nodes]."""
    if task.level != "node":
        raise ValueError(f"node_losses needs a node-level task, got {task!r}")
    return unit_losses(task, outputs, labels)


def per_target_std(outputs: torch.Tensor, labels: torch.Tensor, target_std: torch.Tensor | None):
    """Regression outputs and labels divided by their target's standard deviation (`target_std`, one per output;
    None: as they are), so that the loss and the teacher's scores weigh targets of any scale alike. Labels of another
    size than the outputs are left as they are, for the loss's shape checks to name. `target_std` is best on the
    outputs' device and in their dtype, as the model's buffer is: no copy is made then."""
    if target_std is None or labels.numel() != outputs.numel():
        return outputs, labels
    std = target_std.to(outputs.device, outputs.dtype)
    return outputs / std, labels.reshape(outputs.shape).to(outputs.dtype) / std


def output_error(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """dL/df per row, up to the loss's constant: f - f* for regression, softmax(f) - onehot(y)
    for classification, sigmoid(f) - y for graph_multilabel with 0 on unlabelled (NaN) entries
    (they add nothing to the loss). Shape [rows, outputs]."""
    _check_outputs(task, outputs, labels)
    if task.is_classification:
        return outputs.softmax(dim=-1) - F.one_hot(labels.long(), outputs.size(-1)).to(outputs.dtype)
    if task.is_multilabel:
        labels = _multilabel_shapes(task, outputs, labels)
        return torch.where(labels.isnan(), 0.0, outputs.sigmoid() - labels)
    return outputs - labels.view_as(outputs).to(outputs.dtype)
