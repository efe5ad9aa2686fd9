"""A user's own torch_geometric models and data through GraNTTrainer, as README.md and the docstrings describe them."""

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_model
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import GCNConv, GINEConv, global_mean_pool
from torch_geometric.nn.models import GIN

from hf_eff.grant import GraNTTrainer, GraNTTrainingArguments, graphs_from_pyg
from hf_eff.grant.predictions import predictions_table


class PooledGIN(nn.Module):
    """PyG's GIN with a pooling head of the user's own."""

    def __init__(self, in_channels=3, outputs=1):
        super().__init__()
        self.body = GIN(in_channels, 8, num_layers=2)
        self.head = nn.Linear(8, outputs)

    def forward(self, x, edge_index, batch):
        return self.head(global_mean_pool(self.body(x, edge_index), batch))


class EdgeEncoded(nn.Module):
    """GINEConv on encoded edge features: the forward names edge_attr, which it needs."""

    def __init__(self, edge_dim=4):
        super().__init__()
        self.nodes, self.edges = nn.Linear(3, 8), nn.Linear(edge_dim, 8)
        self.conv = GINEConv(nn.Linear(8, 8))
        self.head = nn.Linear(8, 1)

    def forward(self, x, edge_index, edge_attr, batch):
        hidden = self.conv(self.nodes(x), edge_index, self.edges(edge_attr))
        return self.head(global_mean_pool(hidden, batch))


def pyg_graphs(count, edge_dim=None, labelled=True, x_dim=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for _ in range(count):
        x = torch.randn(4, x_dim, generator=generator)
        graph = Data(x=x, edge_index=torch.tensor([[0, 1, 2, 1, 2, 3], [1, 2, 3, 0, 1, 2]]))
        if labelled:
            graph.y = x.sum().view(1, 1)
        if edge_dim:
            graph.edge_attr = torch.randn(6, edge_dim, generator=generator)
        graphs.append(graph)
    return graphs


def trainer_for(model, tmp_path, train, **kwargs):
    args = GraNTTrainingArguments(output_dir=str(tmp_path / "run"), task="graph_regression", teacher="none",
                                  num_train_epochs=1, per_device_train_batch_size=4, report_to=[], save_strategy="no",
                                  disable_tqdm=True, use_cpu=True)
    return GraNTTrainer(model=model, args=args, train_dataset=train, **kwargs)


def test_predictions_table_gives_edge_attr_to_a_model_that_takes_it(tmp_path):
    graphs = graphs_from_pyg(pyg_graphs(8, edge_dim=4), "graph_regression")
    model = EdgeEncoded()
    trainer = trainer_for(model, tmp_path, graphs)
    table = predictions_table(trainer, graphs)
    assert list(table.columns) == ["index", "prediction"]
    np.testing.assert_allclose(table["prediction"].to_numpy(), trainer.predict(graphs).predictions[:, 0], rtol=1e-6)


def test_pyg_graphs_without_y_are_new_graphs_to_predict(tmp_path):
    model = PooledGIN()
    trainer = trainer_for(model, tmp_path, graphs_from_pyg(pyg_graphs(8), "graph_regression"))
    trainer.train()
    new = graphs_from_pyg(pyg_graphs(3, labelled=False, seed=1), "graph_regression")
    assert "y" not in new.column_names
    output = trainer.predict(new)
    assert output.predictions.shape == (3, 1) and output.label_ids is None
    assert predictions_table(trainer, new)["index"].tolist() == [0, 1, 2]
    assert predictions_table(trainer, new, index=[4, 7, 9])["index"].tolist() == [4, 7, 9]  # e.g. their rows in a file
    with pytest.raises(ValueError, match="2 indices for 3 graphs"):
        predictions_table(trainer, new, index=[4, 7])
    with pytest.raises(ValueError, match=r"data_list row 1 \(0-based, as data_list\[1\]\): the graph has labels .y. but the first graph has none"):
        graphs_from_pyg([*pyg_graphs(1, labelled=False), *pyg_graphs(1)], "graph_regression")
    with pytest.raises(ValueError, match=r"data_list row 1 \(0-based, as data_list\[1\]\): the graph has no labels .y is None. but the first graph has"):
        graphs_from_pyg([*pyg_graphs(1), *pyg_graphs(1, labelled=False)], "graph_regression")


def test_graphs_of_other_feature_widths_are_refused_by_name(tmp_path):
    train = graphs_from_pyg(pyg_graphs(8, edge_dim=4), "graph_regression")
    without_edge_attr = graphs_from_pyg(pyg_graphs(4), "graph_regression")
    with pytest.raises(ValueError, match="eval_dataset has no edge_attr column, which EdgeEncoded.forward takes"):
        trainer_for(EdgeEncoded(), tmp_path, train, eval_dataset=without_edge_attr)
    trainer = trainer_for(EdgeEncoded(), tmp_path, train)
    with pytest.raises(ValueError, match="test dataset: edge_attr has 2 features per edge, train_dataset's 4"):
        trainer.predict(graphs_from_pyg(pyg_graphs(2, edge_dim=2, labelled=False), "graph_regression"))
    with pytest.raises(ValueError, match="eval dataset: node features x have 5 columns, train_dataset's 3"):
        trainer.evaluate(graphs_from_pyg(pyg_graphs(2, edge_dim=4, x_dim=5), "graph_regression"))
    # a model that does not take edge_attr is not held to it
    trainer_for(PooledGIN(), tmp_path, train, eval_dataset=without_edge_attr).evaluate()


def test_own_model_saves_as_its_card_loads_it(tmp_path):
    graphs = graphs_from_pyg(pyg_graphs(8), "graph_regression")
    trainer = trainer_for(PooledGIN(), tmp_path, graphs)
    trainer.train()
    trainer.save_model()
    trained = trainer.predict(graphs).predictions[:, 0]
    loaded = PooledGIN()  # the card's lines: built as for training, then load_model(model, model.safetensors)
    load_model(loaded, str(tmp_path / "run" / "model.safetensors"))
    trainer.model = loaded.eval()
    np.testing.assert_allclose(predictions_table(trainer, graphs)["prediction"].to_numpy(), trained, rtol=1e-6)
    trainer.create_model_card()
    card = (tmp_path / "run" / "README.md").read_text()
    assert "model = PooledGIN(...)  # built as for training" in card and 'load_model(model, hf_hub_download(' in card
    assert "Seconds of training on `graph_regression`" in card  # the task, from the arguments: no example saved it


def test_max_steps_is_a_budget_only_without_selection(tmp_path):
    common = dict(output_dir=str(tmp_path), task="graph_regression", max_steps=3, report_to=[])
    with pytest.raises(ValueError, match="max_steps=3 with teacher='random'.*or use teacher='none' for a budget in steps"):
        GraNTTrainingArguments(teacher="random", **common)
    graphs = graphs_from_pyg(pyg_graphs(8), "graph_regression")
    for settings in ({"teacher": "none"}, {"start_ratio": 1.0}):
        args = GraNTTrainingArguments(per_device_train_batch_size=4, save_strategy="no", disable_tqdm=True, use_cpu=True,
                                      **settings, **common)
        assert GraNTTrainer(model=PooledGIN(), args=args, train_dataset=graphs).train().global_step == 3


def test_pyg_graphs_given_as_they_are_name_graphs_from_pyg(tmp_path):
    graphs = pyg_graphs(8)
    convert = r"convert them with hf_eff.grant.graphs_from_pyg\({}, 'graph_regression'\)"
    with pytest.raises(TypeError, match="train_dataset holds torch_geometric graphs; .*" + convert.format("train_dataset")):
        trainer_for(PooledGIN(), tmp_path, graphs)
    trainer = trainer_for(PooledGIN(), tmp_path, graphs_from_pyg(graphs, "graph_regression"))
    with pytest.raises(TypeError, match=convert.format("test_dataset")):
        trainer.predict(graphs)
    with pytest.raises(TypeError, match=convert.format("eval_dataset")):
        trainer.evaluate(graphs)


class EdgeWeighted(nn.Module):
    """GCNConv with a weight per edge: edge_attr stored 1-D, one number per edge."""

    def __init__(self):
        super().__init__()
        self.conv = GCNConv(3, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x, edge_index, batch, edge_attr=None):
        return self.head(global_mean_pool(self.conv(x, edge_index, edge_attr.view(-1)), batch))


def test_edge_weights_by_hand_train_evaluate_and_predict(tmp_path):
    rows = {"x": [[[1.0, 2.0, 0.0]] * 3] * 4, "edge_index": [[[0, 1], [1, 2]]] * 4, "edge_attr": [[0.5, 0.7]] * 4,
            "y": [[1.0]] * 4, "num_nodes": [3] * 4}
    graphs = datasets.Dataset.from_dict(rows)
    trainer = trainer_for(EdgeWeighted(), tmp_path, graphs, eval_dataset=graphs)
    trainer.train()
    assert np.isfinite(trainer.evaluate()["eval_loss"])
    assert trainer.predict(graphs.remove_columns("y")).predictions.shape == (4, 1)
    with pytest.raises(ValueError, match="edge_attr has 2 features per edge, train_dataset's 1"):
        trainer.predict(datasets.Dataset.from_dict({**rows, "edge_attr": [[[0.5, 1.0], [0.7, 1.0]]] * 4}))
