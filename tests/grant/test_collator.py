import datasets
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Batch, Data

from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments
from hf_eff.grant.collator import ArrowBatches, GraphCollator, arrow_batches
from hf_eff.grant.data import encode_class_labels, generate_graphon_dataset, graphs_from_smiles


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


def test_multilabel_labels_are_float_graphs_by_targets_with_nan_kept(make_graphs):
    dataset = make_graphs(9, "graph_multilabel", seed=2)
    expected = torch.tensor(dataset["y"], dtype=torch.float32)
    assert expected.isnan().any()
    collator = GraphCollator("graph_multilabel")
    view = arrow_batches(dataset, collator)
    assert isinstance(view, ArrowBatches)
    for batch in (collator(list(dataset)), collator(view.__getitems__(list(range(9))))):
        assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (9, 3)
        torch.testing.assert_close(batch["labels"], expected, equal_nan=True)


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


MOLECULES = ["CCO", "C", "c1ccccc1", "O", "CC(=O)N", "C#N", "[Na+].[Cl-]", "CCCC"]  # methane, water, salt: no bonds


def _graph_sets(make_graphs):
    """(task, dataset) for every layout the collator reads, each with a graph without edges."""
    node_targets = make_graphs(9, "node_regression", seed=4)
    node_targets = node_targets.map(lambda row: {"y": [[v, 2 * v] for v in row["y"]]})  # 2 targets per node
    names = graphs_from_smiles(MOLECULES, ["b", "a", "c", "a", "b", "c", "a", "b"])
    return [
        ("graph_regression", graphs_from_smiles(MOLECULES, [[float(i), -0.1 * i] for i in range(8)])),
        ("node_regression", generate_graphon_dataset("regression", 6, min_nodes=2, max_nodes=9, feature_dim=3)),
        ("node_classification", generate_graphon_dataset("classification", 6, min_nodes=2, max_nodes=9, feature_dim=3,
                                                         num_classes=4)),
        ("node_regression", node_targets),
        ("graph_classification", encode_class_labels(names)),  # y a ClassLabel
        ("graph_classification", make_graphs(9, "graph_classification", seed=5)),
        ("graph_regression", make_graphs(9, "graph_regression", seed=6).shuffle(seed=0)),  # an indices mapping
    ]


def _assert_same_batch(expected, batch):
    assert list(batch) == list(expected)
    for key, value in expected.items():
        assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key


def test_arrow_batches_collate_to_the_same_tensors_as_rows(make_graphs):
    sets = _graph_sets(make_graphs)
    assert isinstance(sets[4][1].features["y"], datasets.ClassLabel)
    for task, dataset in sets:
        collator = GraphCollator.for_dataset(task, dataset)
        view = arrow_batches(dataset, collator)
        assert isinstance(view, ArrowBatches), task
        for indices in ([0], [1], list(range(len(dataset))), [5, 2, 3, 1], [1, 3]):  # [1, 3]: bond-less molecules
            table = view.__getitems__(indices)
            assert isinstance(table, pa.Table)
            _assert_same_batch(collator([dataset[i] for i in indices]), collator(table))
        # a DataLoader over the view hands the collator the batch's table
        for start, batch in zip(range(0, len(dataset), 4), DataLoader(view, batch_size=4, collate_fn=collator)):
            _assert_same_batch(collator([dataset[i] for i in range(start, min(start + 4, len(dataset)))]), batch)
        assert view[2] == dataset[2]


def test_arrow_batches_keep_float_and_bool_edge_attr_dtypes(make_graphs):
    dataset = make_graphs(6, "graph_regression", seed=1)
    widths = [len(e[0]) for e in dataset["edge_index"]]
    for values in ([[0.25 * i, -1.5] for i in range(w)] for w in widths), ([i % 2 == 0 for i in range(w)] for w in widths):
        attrs = dataset.add_column("edge_attr", list(values))
        collator = GraphCollator.for_dataset("graph_regression", attrs)
        table = arrow_batches(attrs, collator).__getitems__(list(range(6)))
        _assert_same_batch(collator([attrs[i] for i in range(6)]), collator(table))


def test_arrow_batches_only_for_graph_collator_on_a_datasets_dataset_in_python_format(make_graphs):
    dataset = make_graphs(5, "graph_regression")
    collator = GraphCollator("graph_regression")

    class RowCollator(GraphCollator):  # a subclass may rely on rows
        pass

    def custom(rows):
        return rows

    rows = [dataset[i] for i in range(5)]
    assert arrow_batches(rows, collator) is rows  # a torch-style dataset (a list of rows)
    for kept in (dataset.with_format("torch"), dataset.with_format("numpy"), dataset.select_columns(["x", "y"])):
        assert arrow_batches(kept, collator) is kept
    # rows without their edge_attr column: the collator must not see it
    attrs = dataset.add_column("edge_attr", [[[1, 2]] * len(e[0]) for e in dataset["edge_index"]])
    assert isinstance(arrow_batches(attrs, collator), ArrowBatches)
    hidden = attrs.with_format(None, columns=["x", "edge_index", "y", "num_nodes"])
    assert arrow_batches(hidden, collator) is hidden
    assert arrow_batches(dataset, RowCollator("graph_regression")) is dataset
    assert arrow_batches(dataset, custom) is dataset
    strings = dataset.cast_column("num_nodes", datasets.Value("string"))
    assert arrow_batches(strings, collator) is strings


def test_arrow_batches_reject_bad_graphs_as_rows_do():
    rows = [dict(r) for r in _rows()]
    rows[2]["edge_index"] = [[0, 5], [1, 0]]
    collator = GraphCollator("graph_regression")
    table = arrow_batches(datasets.Dataset.from_list(rows), collator).__getitems__([0, 1, 2])
    with pytest.raises(ValueError, match="graph 2 of the batch: edge_index refers to node 5"):
        collator(table)
    ragged = pa.Table.from_pylist([dict(rows[0], edge_index=[[0, 1], [1]])])
    with pytest.raises(ValueError, match=r"graph 0 of the batch: edge_index must be \[\[sources\], \[targets\]\]"):
        collator(ragged)
    uneven = pa.Table.from_pylist([rows[0], dict(rows[1], x=[[2.0, 2.0, 2.0]])])
    with pytest.raises(ValueError, match="graph 1 of the batch: x has a row of 3 values"):
        collator(uneven)
    missing = pa.Table.from_pylist([rows[0], dict(rows[1], y=None)])
    with pytest.raises(ValueError, match="missing"):
        collator(missing)
    with pytest.raises(ValueError, match="empty list"):
        collator(table.slice(0, 0))


class _RowsOnly:
    """A user's collator: GraphCollator on the rows it is given, which must be a list of dicts."""

    def __init__(self, task):
        self.collator = GraphCollator(task)
        self.calls = 0

    def __call__(self, rows):
        assert isinstance(rows, list) and all(isinstance(row, dict) for row in rows)
        self.calls += 1
        return self.collator(rows)


@pytest.mark.parametrize("teacher", ["none", "grant"])
def test_trainer_loaders_use_arrow_batches_or_the_users_collator(tmp_path, make_graphs, teacher):
    task = "graph_regression"
    train, validation = make_graphs(24, task, seed=1), make_graphs(10, task, seed=2)
    args = GraNTTrainingArguments(
        output_dir=str(tmp_path / "out"), task=task, teacher=teacher, num_train_epochs=2, per_device_train_batch_size=8,
        per_device_eval_batch_size=4, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        start_ratio=0.5, seed=0,
    )
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train,
                           eval_dataset=validation)
    loader = trainer.get_eval_dataloader()
    assert isinstance(loader.dataset, ArrowBatches)
    for start, batch in zip(range(0, 10, 4), loader):
        _assert_same_batch(trainer.data_collator([validation[i] for i in range(start, min(start + 4, 10))]), batch)
    if teacher == "none":
        assert isinstance(trainer.get_train_dataloader().dataset, ArrowBatches)
    trainer.train()

    collator = _RowsOnly(task)
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train,
                           eval_dataset=validation, data_collator=collator)
    trainer.train()
    # every training batch, and for GraNT the teacher's scoring pass (one batch, kept for the next)
    trained = collator.calls
    assert trained == (6 if teacher == "none" else sum(entry.num_batches for entry in trainer._plan) + 1)
    trainer.evaluate()
    assert collator.calls == trained + 3


def test_graphs_without_y_collate_without_labels(make_graphs):
    graphs = make_graphs(6, "node_regression").remove_columns("y")
    rows = GraphCollator("node_regression")(list(graphs))
    columns = GraphCollator("node_regression")(ArrowBatches(graphs).__getitems__(range(6)))
    assert list(rows) == list(columns) == ["num_nodes", "x", "edge_index", "batch"]
    for name, value in rows.items():
        torch.testing.assert_close(columns[name], value, msg=name)
    assert isinstance(arrow_batches(graphs, GraphCollator("node_regression")), ArrowBatches)
