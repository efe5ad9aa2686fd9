"""Rows of a graph dataset to one PyG `Batch`, returned as a dict of tensors so that
`Trainer` moves it to the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch_geometric.data import Batch, Data

from hf_eff.grant.tasks import GraphTask


def row_to_data(row: dict, task: GraphTask) -> Data:
    num_nodes = int(row["num_nodes"])
    x = torch.as_tensor(row["x"], dtype=torch.float32)
    edge_index = torch.as_tensor(row["edge_index"], dtype=torch.long).reshape(2, -1)
    if edge_index.size(1) and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        raise ValueError(f"edge_index refers to node {int(edge_index.max())} but the graph has {num_nodes} nodes")
    y = torch.as_tensor(row["y"])
    y = y.long() if task.is_classification else y.float()
    if task.level == "graph":
        # one row per graph, so that Batch stacks [num_graphs, targets] instead of flattening
        y = y.reshape(1, -1) if not task.is_classification else y.reshape(1)
    data = Data(x=x, edge_index=edge_index, y=y, num_nodes=num_nodes)
    if row.get("edge_attr") is not None:
        # an edgeless graph's edge_attr arrives as an empty list; a 1-D empty tensor is what
        # torch.cat accepts beside [edges, features] ones
        edge_attr = torch.as_tensor(row["edge_attr"])
        data.edge_attr = edge_attr.reshape(edge_index.size(1), -1) if edge_attr.numel() else edge_attr.reshape(0)
    return data


@dataclass
class GraphCollator:
    """Batches graphs of any size (also graphs without edges) for `task`.

    Returns num_nodes [graphs], x [nodes, d], edge_index [2, edges], batch [nodes] (graph id of each node),
    labels ([graphs, targets], [graphs] class ids, or per-node labels) and edge_attr when the
    rows have it.
    """

    task: str

    def __post_init__(self):
        self.task = GraphTask(self.task)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = Batch.from_data_list([row_to_data(row, self.task) for row in rows])
        # num_nodes comes first: Trainer reads the batch size off the first tensor, and it must
        # count graphs (as every process sees the same number), not nodes
        features = {
            "num_nodes": batch.ptr.diff(), "x": batch.x, "edge_index": batch.edge_index, "batch": batch.batch,
            "labels": batch.y,
        }
        if "edge_attr" in batch:
            features["edge_attr"] = batch.edge_attr
        return features
