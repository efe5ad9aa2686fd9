import datasets
import pytest
import torch

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


def test_edge_attr_survives_a_molecule_without_bonds():
    dataset = graphs_from_smiles(["CCO", "C", "c1ccccc1"], [[0.0], [1.0], [2.0]])
    batch = GraphCollator("graph_regression")(list(dataset))
    assert batch["edge_attr"].shape == (batch["edge_index"].size(1), 3)
    assert batch["batch"].bincount().tolist() == [3, 1, 6]


def test_collator_rejects_edges_outside_the_graph():
    rows = _rows()
    rows[2]["edge_index"] = [[0, 5], [1, 0]]
    with pytest.raises(ValueError, match="refers to node 5"):
        GraphCollator("graph_regression")(rows)


def test_collator_reads_torch_formatted_datasets():
    dataset = datasets.Dataset.from_list(_rows()).with_format("torch")
    batch = GraphCollator("graph_regression")([dataset[0], dataset[1]])
    assert batch["x"].shape == (4, 2)
