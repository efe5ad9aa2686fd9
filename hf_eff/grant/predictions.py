"""A graph model's predictions as a table: a row per graph (or per node), a named column per output.

`GraNTTrainer.predict` returns arrays (a node task's padded per graph); `predictions_table` turns them into the
table examples/grant_train.py writes as predict_results.csv, naming the columns after the model's `target_names`
or `class_names` (GrantGCN saves both; another model without them gets numbered columns)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import datasets
import numpy as np
import pandas as pd
import torch

from hf_eff.grant.tasks import GraphTask

logger = logging.getLogger(__name__)

# the table's own columns, before the predictions, per level
ROW_COLUMNS = {"graph": ("index", "smiles"), "node": ("graph_index", "smiles", "node_index")}


def target_prediction_names(target_names: list[str] | None, count: int, level: str) -> list[str]:
    """The columns of `count` regression outputs: `target_names` (without them `prediction`, or `prediction_<i>` for
    several), a target named as one of the table's own columns (ROW_COLUMNS) as `prediction_<name>`."""
    names = target_names or (["prediction"] if count == 1 else [f"prediction_{i}" for i in range(count)])
    own = ROW_COLUMNS[level]
    columns = [f"prediction_{name}" if name in own else name for name in names]
    if len(set(columns)) < len(columns):
        raise ValueError(f"the model's target_names {names} would write the prediction columns {columns}, some twice "
                         f"({', '.join(own)} are the table's own columns, a target of that name is written as "
                         "prediction_<name>): rename its targets (target_names in its config.json)")
    return columns


def check_prediction_names(model: torch.nn.Module, task: str, count: int) -> None:
    """Before any work: refuses a regression model's target names that would write a column twice, and says which
    the table renames."""
    task = GraphTask(task)
    if task.is_classification or task.is_multilabel:
        return
    target_names = getattr(model, "target_names", None) or []
    renamed = [(name, column) for name, column in zip(target_names, target_prediction_names(target_names or None, count,
                                                                                                task.level))
               if name != column]
    if renamed:
        logger.warning("the prediction table has its own column(s) %s: the model's target(s) %s are written as %s",
                       ", ".join(ROW_COLUMNS[task.level]), ", ".join(name for name, _ in renamed),
                       ", ".join(column for _, column in renamed))


def prediction_columns(model: torch.nn.Module, task: str, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """The columns of outputs [rows, outputs]: a classifier's predicted class (its name where the model has
    class_names) and each class's softmax probability; a multilabel model's sigmoid probability per label; else
    each target's value, named as `target_prediction_names` says."""
    task = GraphTask(task)
    count = outputs.shape[1]
    target_names = getattr(model, "target_names", None)
    if task.is_classification:
        classes = getattr(model, "class_names", None) or list(range(count))
        probabilities = torch.softmax(torch.from_numpy(outputs), dim=-1).numpy()
        return {"prediction": np.asarray(classes)[outputs.argmax(axis=1)],
                **{f"probability_{name}": probabilities[:, i] for i, name in enumerate(classes)}}
    if task.is_multilabel:
        probabilities = torch.sigmoid(torch.from_numpy(outputs)).numpy()
        return {f"probability_{name}": probabilities[:, i] for i, name in enumerate(target_names or range(count))}
    return {name: outputs[:, i] for i, name in enumerate(target_prediction_names(target_names, count, task.level))}


def predictions_table(trainer, graphs: datasets.Dataset, smiles: list[str] | None = None,
                      index: Sequence[int] | None = None) -> pd.DataFrame:
    """`trainer.predict(graphs)` (a `GraNTTrainer`; `graphs` need no y) as one row per graph (index, and `smiles`:
    those given, one per graph, else the graphs' own smiles column where they have one, as `graphs_from_smiles`
    and `graphs_from_pyg` keep it) or, for a node-level task, per node (graph_index, its graph's `smiles` where there are any,
    node_index), then the prediction columns (`prediction_columns`). A graph's index is its position in `graphs`, or
    `index`'s entry for it where given (e.g. its row in a file of which some rows were left out:
    `molecules_from_csv(..., return_rows=True)`)."""
    task = GraphTask(trainer.args.task)
    if smiles is None and "smiles" in graphs.column_names:
        smiles = list(graphs["smiles"])
    if smiles is not None and len(smiles) != len(graphs):
        raise ValueError(f"{len(smiles)} SMILES for {len(graphs)} graphs")
    if index is not None and len(index) != len(graphs):
        raise ValueError(f"{len(index)} indices for {len(graphs)} graphs")
    index = np.arange(len(graphs)) if index is None else np.asarray(index)
    # targets in the graphs are ignored: predict would check and score them
    unlabelled = graphs.remove_columns([name for name in ("y",) if name in graphs.column_names])
    predictions = trainer.predict(unlabelled).predictions
    num_nodes = list(graphs["num_nodes"])
    if task.level == "node":  # the Trainer pads each graph's node outputs to the most nodes
        outputs = np.concatenate([predictions[graph, :nodes] for graph, nodes in enumerate(num_nodes)])
        graph_of_row = np.repeat(np.arange(len(num_nodes)), num_nodes)
        rows = {"graph_index": index[graph_of_row]}
        if smiles is not None:  # a node's row names its molecule, as a graph's row does
            rows["smiles"] = np.asarray(smiles, dtype=object)[graph_of_row]
        rows["node_index"] = np.concatenate([np.arange(nodes) for nodes in num_nodes])
    else:
        outputs, rows = predictions, {"index": index}
        if smiles is not None:
            rows["smiles"] = smiles
    return pd.DataFrame({**rows, **prediction_columns(trainer.model, task, outputs)})
