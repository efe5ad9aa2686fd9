"""Rows of a graph dataset to one batched graph (PyG's layout), returned as a dict of tensors
so that `Trainer` moves it to the device."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from hf_eff.grant.tasks import GraphTask


def _stack(values: list, dtype: torch.dtype | None, width: int | None = None) -> list[torch.Tensor]:
    """Each row's value as a tensor of `dtype` (None: as stored); with `width`, shaped
    [-1, width] (an empty value, e.g. a bond-less molecule's edge_attr, becomes [0, width])."""
    tensors = [torch.as_tensor(v, dtype=dtype) for v in values]
    if width is None:
        return tensors
    return [t.reshape(-1, width) if t.numel() else t.reshape(0, width) for t in tensors]


@dataclass
class GraphCollator:
    """Batches graphs of any size (also graphs without edges) for `task`.

    Returns num_nodes [graphs], x [nodes, d], edge_index [2, edges] (offset per graph),
    batch [nodes] (graph id of each node), labels ([graphs, targets] or [nodes, targets] for
    regression, [graphs] or [nodes] class ids for classification) and edge_attr when the rows
    have it. The same layout as PyG's `Batch.from_data_list`, built with one concatenation per
    field: collating was most of a CPU training step on small graphs.

    A batch without any edge (e.g. a lone single-atom molecule) has an empty edge_attr whose
    width and dtype no row shows: `edge_attr_dim` and `edge_attr_dtype` give them, and
    `for_dataset` reads them off the data (GraNTTrainer's default collator does).
    """

    task: str
    edge_attr_dim: int | None = None
    edge_attr_dtype: torch.dtype | None = None

    def __post_init__(self):
        self.task = GraphTask(self.task)

    @classmethod
    def for_dataset(cls, task: str, dataset) -> GraphCollator:
        """A collator with the edge_attr width and dtype of the dataset's first graph that has edges."""
        if "edge_attr" not in dataset.column_names:
            return cls(task)
        first = next((torch.as_tensor(row["edge_attr"]) for row in dataset.select_columns(["edge_attr"])
                      if len(row["edge_attr"])), None)
        if first is None:
            return cls(task)
        return cls(task, first.reshape(len(first), -1).size(1), first.dtype)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("cannot collate an empty list of graphs")
        num_nodes = torch.tensor([int(row["num_nodes"]) for row in rows])
        features = next((len(row["x"][0]) for row in rows if len(row["x"])), 0)
        x = torch.cat(_stack([row["x"] for row in rows], torch.float32, features))
        edges = [e.reshape(2, -1) for e in _stack([row["edge_index"] for row in rows], torch.long)]
        num_edges = torch.tensor([e.size(1) for e in edges])
        edge_index = torch.cat(edges, dim=1)
        graph_of_edge = torch.repeat_interleave(torch.arange(len(rows)), num_edges)
        size = num_nodes[graph_of_edge]
        outside = ((edge_index < 0) | (edge_index >= size)).any(dim=0)
        if outside.any():
            edge = int(outside.nonzero()[0, 0])
            node = int(edge_index[:, edge].max() if edge_index[:, edge].max() >= size[edge] else edge_index[:, edge].min())
            raise ValueError(
                f"graph {int(graph_of_edge[edge])} of the batch: edge_index refers to node {node} but the graph has "
                f"{int(size[edge])} nodes"
            )
        offsets = torch.cumsum(num_nodes, 0) - num_nodes
        dtype = torch.long if self.task.is_classification else torch.float32
        ys = [row["y"] for row in rows]
        if self.task.is_classification:  # one class id per graph or per node
            labels = torch.cat([t.reshape(-1) for t in _stack(ys, dtype)])
        elif self.task.level == "node":  # [num_nodes, targets], the first graph with nodes gives the count
            targets = next((torch.as_tensor(y).numel() // n for y, n in zip(ys, num_nodes.tolist()) if n), 1)
            labels = torch.cat(_stack(ys, dtype, targets))
        else:  # one row per graph: [num_graphs, targets]
            labels = torch.stack([t.reshape(-1) for t in _stack(ys, dtype)])
        # num_nodes comes first: Trainer reads the batch size off the first tensor, and it must
        # count graphs (as every process sees the same number), not nodes
        batch = {
            "num_nodes": num_nodes,
            "x": x,
            "edge_index": edge_index + offsets[graph_of_edge],
            "batch": torch.repeat_interleave(torch.arange(len(rows)), num_nodes),
            "labels": labels,
        }
        if rows[0].get("edge_attr") is not None:
            attrs = [row["edge_attr"] for row in rows]
            # the stored dtype (from_smiles' bond features are categorical ids), taken from a
            # non-empty row since an empty list reads as float
            stored = next((torch.as_tensor(a) for a in attrs if len(a)), None)
            if stored is not None:
                batch["edge_attr"] = torch.cat(_stack(attrs, stored.dtype, stored.reshape(len(stored), -1).size(1)))
            elif self.edge_attr_dim is not None:
                batch["edge_attr"] = torch.zeros(0, self.edge_attr_dim, dtype=self.edge_attr_dtype or torch.float32)
            else:
                raise ValueError(
                    "no graph of the batch has an edge, so the width of its empty edge_attr is unknown: build the "
                    "collator with GraphCollator.for_dataset(task, dataset), or give edge_attr_dim and edge_attr_dtype"
                )
        return batch


def takes_edge_attr(model: torch.nn.Module) -> bool:
    """Whether the model's forward has an `edge_attr` parameter (e.g. one built on GINEConv)."""
    return "edge_attr" in inspect.signature(model.forward).parameters


def model_inputs(features: dict[str, torch.Tensor], edge_attr: bool) -> dict[str, torch.Tensor]:
    """The forward's keyword arguments from a collated batch: x, edge_index, batch, and edge_attr
    when the model takes it (`takes_edge_attr`) and the batch has it. Training, evaluation and
    the teacher's scoring all call the model with these, so they score the function trained."""
    inputs = {"x": features["x"], "edge_index": features["edge_index"], "batch": features["batch"]}
    if edge_attr and "edge_attr" in features:
        inputs["edge_attr"] = features["edge_attr"]
    return inputs
