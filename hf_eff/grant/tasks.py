"""The four task kinds, their losses and the per-sample output error GraNT scores with."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TASKS = ("graph_regression", "graph_classification", "node_regression", "node_classification")


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
        return self.endswith("classification")


def _check_outputs(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> None:
    if outputs.dim() != 2:
        raise ValueError(f"{task}: the model must return [rows, outputs], got shape {tuple(outputs.shape)}")
    if outputs.size(0) != labels.size(0):
        unit = "nodes" if task.level == "node" else "graphs"
        raise ValueError(
            f"{task}: the model returned {outputs.size(0)} rows for {labels.size(0)} {unit}; "
            f"a {task.level}-level task needs one output row per {task.level}"
        )


def task_loss(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MSE for regression, cross-entropy for classification (the paper's convex losses)."""
    _check_outputs(task, outputs, labels)
    if task.is_classification:
        return F.cross_entropy(outputs, labels.long())
    return F.mse_loss(outputs, labels.view_as(outputs).to(outputs.dtype))


def output_error(task: GraphTask, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """dL/df per row, up to the loss's constant: f - f* for regression, softmax(f) - onehot(y)
    for classification. Shape [rows, outputs]."""
    _check_outputs(task, outputs, labels)
    if task.is_classification:
        return outputs.softmax(dim=-1) - F.one_hot(labels.long(), outputs.size(-1)).to(outputs.dtype)
    return outputs - labels.view_as(outputs).to(outputs.dtype)
