import datasets
import pytest
import torch
from torch_geometric.data import Batch, Data

from hf_eff.grant.collator import GraphCollator
from hf_eff.grant.data import graphs_from_smiles


def _rows():
    return [
        {"x": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "edge_index": [[0, 1], [1, 2]], "y": [0.5, 1.5], "num_nodes": 3},
        {"x": [[2.0, 2.0]], "edge_index": [[], []], "y": [1.0, 2.0], "num_nodes": 1},  # no edges
        {"x": [[3.0, 3.0], [4.0, 4.0]], "edge_index": [[0, 1], [1, 0]], "y": [2.0, 3.0], "num_nodes": 2},
    ]


def test_graph_level_batch_offsets_edges_and_stacks_targets():
    batch = GraphCollator("graph_regression")(_rows())
    assert batch["x"].shape == (6, 2)
    assert batch["batch"].tolist() == [0, 0, 0, 1, 2, 2]
    assert batch["edge_index"].tolist() == [[0, 1, 4, 5], [1, 2, 5, 4]]
    assert batch["labels"].shape == (3, 2)
    assert list(batch) == ["num_nodes", "x", "edge_index", "batch", "labels"]
    assert batch["num_nodes"].tolist() == [3, 1, 2]


def test_node_level_labels_concatenate_per_node():
    rows = [dict(r, y=list(range(r["num_nodes"]))) for r in _rows()]
    batch = GraphCollator("node_classification")(rows)
    assert batch["labels"].tolist() == [0, 1, 2, 0, 0, 1]
    assert batch["labels"].dtype == torch.long


def test_node_regression_keeps_several_targets_per_node():
    rows = [dict(r, y=[[float(i), -float(i)] for i in range(r["num_nodes"])]) for r in _rows()]
    batch = GraphCollator("node_regression")(rows)
    assert batch["labels"].shape == (6, 2)
    assert batch["labels"][:, 0].tolist() == [0, 1, 2, 0, 0, 1] and batch["labels"][:, 1].tolist() == [0, -1, -2, 0, 0, -1]


def test_edge_attr_survives_a_molecule_without_bonds():
    dataset = graphs_from_smiles(["CCO", "C", "c1ccccc1"], [[0.0], [1.0], [2.0]])
    batch = GraphCollator("graph_regression")(list(dataset))
    assert batch["edge_attr"].shape == (batch["edge_index"].size(1), 3)
    assert batch["batch"].bincount().tolist() == [3, 1, 6]


def test_collator_rejects_edges_outside_the_graph():
    rows = _rows()
    rows[2]["edge_index"] = [[0, 5], [1, 0]]
    with pytest.raises(ValueError, match="graph 2 of the batch: edge_index refers to node 5"):
        GraphCollator("graph_regression")(rows)
    rows[2]["edge_index"] = [[0, -1], [1, 0]]
    with pytest.raises(ValueError, match="refers to node -1"):
        GraphCollator("graph_regression")(rows)


def test_collator_reads_torch_formatted_datasets():
    dataset = datasets.Dataset.from_list(_rows()).with_format("torch")
    batch = GraphCollator("graph_regression")([dataset[0], dataset[1]])
    assert batch["x"].shape == (4, 2)


@pytest.mark.parametrize("task", ["graph_regression", "graph_classification", "node_regression", "node_classification"])
def test_collator_matches_pyg_batching(task, make_graphs):
    rows = list(make_graphs(12, task, seed=3))  # the first graph has no edges
    batch = GraphCollator(task)(rows)
    labels = [torch.as_tensor(r["y"]) for r in rows]
    if task.endswith("regression"):  # [graphs or nodes, targets]
        labels = [y.reshape(len(y) if task == "node_regression" else 1, -1) for y in labels]
    reference = Batch.from_data_list([
        Data(x=torch.as_tensor(r["x"]), edge_index=torch.as_tensor(r["edge_index"]).reshape(2, -1), y=y,
             num_nodes=r["num_nodes"])
        for r, y in zip(rows, labels)
    ])
    assert torch.equal(batch["x"], reference.x)
    assert torch.equal(batch["edge_index"], reference.edge_index)
    assert torch.equal(batch["batch"], reference.batch)
    assert torch.equal(batch["labels"], reference.y.to(batch["labels"].dtype))
    assert batch["labels"].dtype == (torch.long if task.endswith("classification") else torch.float32)


def test_collator_keeps_categorical_edge_attr_ids():
    dataset = graphs_from_smiles(["C", "CCO"], [[0.0], [1.0]])  # methane first: an empty edge_attr
    batch = GraphCollator("graph_regression")(list(dataset))
    assert batch["edge_attr"].dtype == torch.long and batch["edge_attr"].shape == (4, 3)


def test_collator_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="empty list"):
        GraphCollator("graph_regression")([])


def test_a_batch_without_edges_gets_an_empty_edge_attr_of_the_datasets_width():
    dataset = graphs_from_smiles(["C", "CCO", "O"], [[0.0], [1.0], [2.0]])  # methane and water: no bonds
    with pytest.raises(ValueError, match="no graph of the batch has an edge.*GraphCollator.for_dataset"):
        GraphCollator("graph_regression")([dataset[0], dataset[2]])
    collator = GraphCollator.for_dataset("graph_regression", dataset)
    batch = collator([dataset[0], dataset[2]])
    assert batch["edge_attr"].shape == (0, 3) and batch["edge_attr"].dtype == torch.long
    assert collator([dataset[1]])["edge_attr"].shape == (4, 3)
    assert GraphCollator.for_dataset("graph_regression", dataset.remove_columns("edge_attr")).edge_attr_dim is None
