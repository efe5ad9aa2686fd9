"""Rows of a graph dataset to one batched graph (PyG's layout), returned as a dict of tensors
so that `Trainer` moves it to the device."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from hf_eff.grant.data import REQUIRED_COLUMNS
from hf_eff.grant.tasks import GraphTask

# what a graph needs to be collated: y is left out of the graphs to predict on
GRAPH_COLUMNS = tuple(c for c in REQUIRED_COLUMNS if c != "y")


def _stack(values: list, dtype: torch.dtype | None, width: int | None = None) -> list[torch.Tensor]:
    """Each row's value as a tensor of `dtype` (None: as stored); with `width`, shaped
    [-1, width] (an empty value, e.g. a bond-less molecule's edge_attr, becomes [0, width])."""
    tensors = [torch.as_tensor(v, dtype=dtype) for v in values]
    if width is None:
        return tensors
    return [t.reshape(-1, width) if t.numel() else t.reshape(0, width) for t in tensors]


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _numbers(kind: pa.DataType, depths: tuple[int, ...]) -> bool:
    """Whether an Arrow type is numbers (integers, floats or booleans) nested `depth` lists deep
    for one of `depths`."""
    depth = 0
    while _is_list(kind):
        kind, depth = kind.value_type, depth + 1
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    return numeric and depth in depths


# Nesting depths of the columns that the Arrow path reads: y is a number, a list (targets, or
# one label per node) or a list of lists (several targets per node).
_ARROW_DEPTHS = {"num_nodes": (0,), "x": (2,), "edge_index": (1, 2), "y": (0, 1, 2), "edge_attr": (1, 2)}


@dataclass(frozen=True)
class _Column:
    """A batch's column of nested lists: the innermost values, the list lengths at each level
    (outermost first), and where each graph's values start and end in `values`."""

    values: np.ndarray
    lengths: list[np.ndarray]
    bounds: np.ndarray

    @classmethod
    def read(cls, table: pa.Table, name: str) -> _Column:
        array = table.column(name).combine_chunks()
        lengths, bounds = [], np.arange(len(array) + 1)
        while True:
            if array.null_count:
                raise ValueError(f"a graph of the batch has a missing (null) {name}")
            if not _is_list(array.type):
                break
            lengths.append(pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64))
            bounds = np.concatenate(([0], np.cumsum(lengths[-1])))[bounds]
            array = pc.list_flatten(array)
        return cls(array.to_numpy(zero_copy_only=False), lengths, bounds)

    @property
    def counts(self) -> np.ndarray:
        """Number of values of each graph."""
        return np.diff(self.bounds)

    def graph_of_item(self, item: int) -> int:
        """The graph that the `item`-th inner list belongs to."""
        return int(np.searchsorted(np.cumsum(self.lengths[0]), item, side="right"))

    def matrix(self, name: str, dtype: np.dtype) -> np.ndarray:
        """Lists of lists as one [items, width] array: every inner list must have the same length."""
        inner = self.lengths[1]
        width = int(inner[0]) if len(inner) else 0
        uneven = np.flatnonzero(inner != width)
        if len(uneven):
            raise ValueError(
                f"graph {self.graph_of_item(int(uneven[0]))} of the batch: {name} has a row of {int(inner[uneven[0]])} "
                f"values where the batch's first has {width}"
            )
        return self.values.astype(dtype).reshape(len(inner), width)


@dataclass
class GraphCollator:
    """Batches graphs of any size (also graphs without edges) for `task`.

    Returns num_nodes [graphs], x [nodes, d], edge_index [2, edges] (offset per graph),
    batch [nodes] (graph id of each node), labels ([graphs, targets] or [nodes, targets] for
    regression, [graphs] or [nodes] class ids for classification, float32 [graphs, targets] of
    0/1 with NaN kept where unlabelled for graph_multilabel; left out when the rows have no y,
    e.g. new molecules to predict on) and edge_attr when the rows have it. The same layout as
    PyG's `Batch.from_data_list`, built with one concatenation per field: collating was most of
    a CPU training step on small graphs.

    Takes a list of rows (dicts of lists, arrays or tensors), or the same rows as one
    `pyarrow.Table` (`dataset.with_format("arrow")[indices]`, what `arrow_batches` gives a
    DataLoader), whose columns it turns into tensors with numpy instead of one row at a time;
    both give the same tensors.

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

    def __call__(self, rows: list[dict] | pa.Table) -> dict[str, torch.Tensor]:
        if len(rows) == 0:
            raise ValueError("cannot collate an empty list of graphs")
        parts = self._from_arrow(rows) if isinstance(rows, pa.Table) else self._from_rows(rows)
        num_nodes, x, edge_index, num_edges, labels, edge_attr = parts
        graph_of_edge = torch.repeat_interleave(torch.arange(len(num_nodes)), num_edges)
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
        # num_nodes comes first: Trainer reads the batch size off the first tensor, and it must
        # count graphs (as every process sees the same number), not nodes
        batch = {
            "num_nodes": num_nodes,
            "x": x,
            "edge_index": edge_index + offsets[graph_of_edge],
            "batch": torch.repeat_interleave(torch.arange(len(num_nodes)), num_nodes),
        }
        if labels is not None:
            batch["labels"] = labels
        if edge_attr is not None:
            batch["edge_attr"] = edge_attr
        return batch

    def _from_rows(self, rows: list[dict]) -> tuple:
        num_nodes = torch.tensor([int(row["num_nodes"]) for row in rows])
        features = next((len(row["x"][0]) for row in rows if len(row["x"])), 0)
        x = torch.cat(_stack([row["x"] for row in rows], torch.float32, features))
        edges = [e.reshape(2, -1) for e in _stack([row["edge_index"] for row in rows], torch.long)]
        num_edges = torch.tensor([e.size(1) for e in edges])
        labels = None if "y" not in rows[0] else self._labels_from_rows([row["y"] for row in rows], num_nodes)
        edge_attr = None
        if rows[0].get("edge_attr") is not None:
            attrs = [row["edge_attr"] for row in rows]
            # the stored dtype (from_smiles' bond features are categorical ids), taken from a
            # non-empty row since an empty list reads as float
            stored = next((torch.as_tensor(a) for a in attrs if len(a)), None)
            if stored is None:
                edge_attr = self._edgeless_edge_attr()
            else:
                edge_attr = torch.cat(_stack(attrs, stored.dtype, stored.reshape(len(stored), -1).size(1)))
        return num_nodes, x, torch.cat(edges, dim=1), num_edges, labels, edge_attr

    def _labels_from_rows(self, ys: list, num_nodes: torch.Tensor) -> torch.Tensor:
        dtype = torch.long if self.task.is_classification else torch.float32
        if self.task.is_classification:  # one class id per graph or per node
            return torch.cat([t.reshape(-1) for t in _stack(ys, dtype)])
        if self.task.level == "node":  # [num_nodes, targets], the first graph with nodes gives the count
            targets = next((torch.as_tensor(y).numel() // n for y, n in zip(ys, num_nodes.tolist()) if n), 1)
            return torch.cat(_stack(ys, dtype, targets))
        return torch.stack([t.reshape(-1) for t in _stack(ys, dtype)])  # one row per graph: [num_graphs, targets]

    def _from_arrow(self, table: pa.Table) -> tuple:
        """What `_from_rows` builds from the same rows as python lists, from the Arrow columns:
        their flat values cast by numpy to the dtypes torch.as_tensor gives the lists."""
        sizes = _Column.read(table, "num_nodes").values.astype(np.int64)
        x = _Column.read(table, "x").matrix("x", np.float32)
        edges = _Column.read(table, "edge_index")
        if len(edges.lengths) == 2:  # [[sources], [targets]] of equal length, or [] without edges
            lists, inner = edges.lengths
            pairs = lists == 2
            bad = (lists != 0) & ~pairs
            first = (np.cumsum(lists) - lists)[pairs]
            bad[pairs] |= inner[first] != inner[first + 1]
            if bad.any():
                raise ValueError(f"graph {int(np.flatnonzero(bad)[0])} of the batch: edge_index must be "
                                 "[[sources], [targets]] of equal length")
        odd = np.flatnonzero(edges.counts % 2)
        if len(odd):
            raise ValueError(f"graph {int(odd[0])} of the batch: edge_index has {int(edges.counts[odd[0]])} values, "
                             "not two per edge")
        num_edges = edges.counts // 2
        # graph g's sources are its first num_edges[g] values, its targets the next num_edges[g]
        source = np.arange(int(num_edges.sum())) + np.repeat(edges.bounds[:-1] - (np.cumsum(num_edges) - num_edges),
                                                             num_edges)
        edge_index = np.stack((edges.values[source], edges.values[source + np.repeat(num_edges, num_edges)]))
        labels = self._labels_from_arrow(_Column.read(table, "y"), sizes) if "y" in table.column_names else None
        edge_attr = None
        if "edge_attr" in table.column_names:
            attrs = _Column.read(table, "edge_attr")
            if not attrs.lengths[0].any():
                edge_attr = self._edgeless_edge_attr()
            else:
                # torch.as_tensor's dtypes for python bools, ints and floats (torch's default dtype)
                kind = attrs.values.dtype
                dtype = kind if kind == np.bool_ else np.int64 if kind.kind in "iu" else torch.zeros(0).numpy().dtype
                matrix = attrs.matrix("edge_attr", dtype) if len(attrs.lengths) == 2 else attrs.values.astype(dtype)[:, None]
                edge_attr = torch.from_numpy(matrix)
        return (torch.from_numpy(sizes), torch.from_numpy(x), torch.from_numpy(edge_index.astype(np.int64)),
                torch.from_numpy(num_edges), labels, edge_attr)

    def _labels_from_arrow(self, y: _Column, sizes: np.ndarray) -> torch.Tensor:
        if self.task.is_classification:  # one class id per graph or per node
            return torch.from_numpy(y.values.astype(np.int64))
        if self.task.level == "node":  # [num_nodes, targets], the first graph with nodes gives the count
            with_nodes = np.flatnonzero(sizes)
            targets = int(y.counts[with_nodes[0]] // sizes[with_nodes[0]]) if len(with_nodes) else 1
            if targets == 0:
                raise ValueError(f"graph {int(with_nodes[0])} of the batch has {int(sizes[with_nodes[0]])} nodes but no label")
            indivisible = np.flatnonzero(y.counts % targets)
            if len(indivisible):
                graph = int(indivisible[0])
                raise ValueError(f"graph {graph} of the batch has {int(y.counts[graph])} labels, not {targets} per node")
            return torch.from_numpy(y.values.astype(np.float32)).reshape(-1, targets)
        uneven = np.flatnonzero(y.counts != y.counts[0])  # one row per graph: [num_graphs, targets]
        if len(uneven):
            graph = int(uneven[0])
            raise ValueError(f"graph {graph} of the batch has {int(y.counts[graph])} targets, graph 0 {int(y.counts[0])}")
        return torch.from_numpy(y.values.astype(np.float32)).reshape(len(sizes), int(y.counts[0]))

    def _edgeless_edge_attr(self) -> torch.Tensor:
        if self.edge_attr_dim is None:
            raise ValueError(
                "no graph of the batch has an edge, so the width of its empty edge_attr is unknown: build the "
                "collator with GraphCollator.for_dataset(task, dataset), or give edge_attr_dim and edge_attr_dtype"
            )
        return torch.zeros(0, self.edge_attr_dim, dtype=self.edge_attr_dtype or torch.float32)


class ArrowBatches(torch.utils.data.Dataset):
    """A `datasets.Dataset` as a DataLoader's dataset whose batches come out as one Arrow table of
    the graph columns: the DataLoader fetches a batch with `__getitems__(indices)` and
    GraphCollator builds its tensors from the columns. On QM9 (71 node features, edge_attr) the
    rows as python lists cost ~0.2 ms per graph, about 45% of it in torch.as_tensor of nested
    lists and 35% in datasets' python formatter; "numpy" format was slower still (one array per
    row of every ragged column). A single index gives the dataset's row."""

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset
        columns = [c for c in (*REQUIRED_COLUMNS, "edge_attr") if c in dataset.column_names]
        self.columns = dataset.with_format("arrow", columns=columns)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> pa.Table:
        return self.columns[list(indices)]


def arrow_batches(dataset, collate_fn):
    """The dataset to give a DataLoader that collates with `collate_fn`: `ArrowBatches(dataset)`
    when that is a GraphCollator (not a subclass, which may expect rows) and the dataset a
    `datasets.Dataset` in its default format (rows as python lists, no transform) whose graph
    columns are Arrow lists of numbers; the dataset itself otherwise (a user's collator, a torch
    dataset, another format or layout), so that the collator gets the rows it always got."""
    if type(collate_fn) is not GraphCollator or not isinstance(dataset, datasets.Dataset):
        return dataset
    default_format = dataset.format["type"] is None and set(dataset.format["columns"]) == set(dataset.column_names)
    if not default_format or not set(GRAPH_COLUMNS) <= set(dataset.column_names):
        return dataset
    schema = dataset.features.arrow_schema
    columns = [c for c in _ARROW_DEPTHS if c in dataset.column_names]
    if not all(_numbers(schema.field(c).type, _ARROW_DEPTHS[c]) for c in columns):
        return dataset
    return ArrowBatches(dataset)


def forward_inputs(model: torch.nn.Module, task: str) -> tuple[str, ...]:
    """The collated fields the model's forward is called with: x, edge_index, batch (optional for
    node-level models) and edge_attr (when the forward names it, e.g. a model built on GINEConv;
    a forward with **kwargs gets the first three). A torch.compile or DDP wrapper is looked
    through to the model's own forward. Raises a TypeError naming the contract when the
    forward cannot take them, e.g. PyG's habit `forward(self, data)`, instead of failing at the
    first training step."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers) or isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
        model = model.module if isinstance(model, wrappers) else model._orig_mod  # DDP / torch.compile
    parameters = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        named = ("edge_attr",) if "edge_attr" in parameters else ()
        return ("x", "edge_index", "batch", *named)
    needed = ("x", "edge_index", "batch") if GraphTask(task).level == "graph" else ("x", "edge_index")
    missing = [name for name in needed if name not in parameters]
    if missing:
        raise TypeError(
            f"{type(model).__name__}.forward{inspect.signature(model.forward)} does not take {missing}: GraNT calls "
            "model(x=..., edge_index=..., batch=...) with the batch's node features, edges and graph id per node "
            "(and edge_attr when the forward names it); a forward(self, data) model needs a wrapper whose forward "
            "takes these keywords"
        )
    return tuple(name for name in ("x", "edge_index", "batch", "edge_attr") if name in parameters)


def model_inputs(features: dict[str, torch.Tensor], names: tuple[str, ...], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The forward's keyword arguments from a collated batch: the fields `forward_inputs` names
    that the batch has (edge_attr only when the data has it). Training, evaluation and the
    teacher's scoring all call the model with these, so they score the function trained.
    Float fields take the dtype of the model's weights (its first floating parameter's): the
    batch is float32, and bf16_full_eval / fp16_full_eval cast the model only (float32 weights,
    autocast's included, leave the batch as it is)."""
    inputs = {name: features[name] for name in names if name in features}
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is None:
        return inputs
    return {name: value.to(dtype) if value.is_floating_point() else value for name, value in inputs.items()}


def model_prediction(outputs, model: torch.nn.Module) -> torch.Tensor:
    """The prediction tensor in what the model's forward returned: the tensor itself, the first
    element of a tuple or list (e.g. `(out, node_embeddings)`), or the "logits" of a dict or
    transformers `ModelOutput`, as `Trainer` reads a model's outputs. Anything else raises a
    TypeError naming what came back."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    if isinstance(outputs, Mapping) and isinstance(outputs.get("logits"), torch.Tensor):
        return outputs["logits"]
    what = f"a dict with keys {list(outputs)}" if isinstance(outputs, Mapping) else type(outputs).__name__
    raise TypeError(
        f"{type(model).__name__}.forward returned {what}; GraNT needs the prediction tensor [rows, outputs]: "
        "return it, a tuple whose first element it is, or a dict with it under 'logits'"
    )
