import json
import re

import pytest
import torch
from huggingface_hub import HfApi, PyTorchModelHubMixin, constants
from huggingface_hub.errors import RepositoryNotFoundError
from torch import nn

from hf_eff.grant.model import GrantGCN
from tests.hub.hub_server import HubServer


def _graph():
    x = torch.randn(5, 4)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    return x, edge_index, torch.tensor([0, 0, 0, 1, 1])


def test_heads_give_one_row_per_graph_or_node():
    x, edge_index, batch = _graph()
    assert GrantGCN(4, 3, level="graph")(x, edge_index, batch).shape == (2, 3)
    assert GrantGCN(4, 3, level="node")(x, edge_index, batch).shape == (5, 3)


def test_layer_is_linear_on_concatenated_hops():
    # [X, ÂX, Â²X] W, Â = D^-1/2 A D^-1/2 without self loops
    x, edge_index, _ = _graph()
    model = GrantGCN(4, 1, hidden_channels=6, num_layers=1, kappa=3, level="node", batch_norm=False)
    adjacency = torch.zeros(5, 5)
    adjacency[edge_index[1], edge_index[0]] = 1
    d = adjacency.sum(1).pow(-0.5)
    a_hat = d[:, None] * adjacency * d[None, :]
    conv = model.convs[0]
    expected = sum(lin(h) for lin, h in zip(conv.lins, [x, a_hat @ x, a_hat @ a_hat @ x])) + conv.bias
    with torch.no_grad():
        assert torch.allclose(conv(x, edge_index), expected, atol=1e-5)


@pytest.mark.parametrize("width", [0, -4])
def test_a_hidden_width_below_one_is_refused_naming_the_argument(width):
    # PyG would read 0 as a width to infer lazily (failing at the first parameter count) and fail on -4's tensor
    with pytest.raises(ValueError, match=rf"^hidden_channels \(the width of every GCN layer\) must be >= 1, got {width}$"):
        GrantGCN(4, 1, hidden_channels=width)


def test_kappa_one_ignores_edges():
    x, edge_index, batch = _graph()
    model = GrantGCN(4, 2, kappa=1, level="node").eval()
    assert torch.allclose(model(x, edge_index, batch), model(x, edge_index[:, :0], batch))


def test_save_and_load_pretrained(tmp_path):
    x, edge_index, batch = _graph()
    model = GrantGCN(4, 2, hidden_channels=8, kappa=2, level="graph").eval()
    model.save_pretrained(tmp_path)
    loaded = GrantGCN.from_pretrained(tmp_path).eval()
    assert loaded.level == "graph"
    assert torch.allclose(model(x, edge_index, batch), loaded(x, edge_index, batch))


def test_config_json_has_the_task_and_data_split_the_model_has_when_saved(tmp_path):
    model = GrantGCN(4, 1)  # as loaded from a config.json older than task
    model.task, model.data_split = "graph_regression", {"seed": 3}
    model.save_pretrained(tmp_path)
    loaded = GrantGCN.from_pretrained(tmp_path)
    assert (loaded.task, loaded.data_split) == ("graph_regression", {"seed": 3})


def test_class_names_are_saved_with_the_model(tmp_path):
    GrantGCN(4, 2, hidden_channels=8, class_names=["active", "inactive"]).save_pretrained(tmp_path)
    assert GrantGCN.from_pretrained(tmp_path).class_names == ["active", "inactive"]
    assert GrantGCN(4, 1).class_names is None
    with pytest.raises(ValueError, match="class_names has 3 names for out_channels=2"):
        GrantGCN(4, 2, class_names=["a", "b", "c"])


def test_target_names_are_saved_with_the_model_and_must_name_every_output(tmp_path):
    GrantGCN(4, 2, hidden_channels=8, target_names=["logp", "tpsa"]).save_pretrained(tmp_path / "named")
    assert GrantGCN.from_pretrained(tmp_path / "named").target_names == ["logp", "tpsa"]
    GrantGCN(4, 2, hidden_channels=8).save_pretrained(tmp_path / "older")
    config = json.loads((tmp_path / "older" / "config.json").read_text())
    config.pop("target_names")  # as a model saved before target_names wrote it
    (tmp_path / "older" / "config.json").write_text(json.dumps(config))
    assert GrantGCN.from_pretrained(tmp_path / "older").target_names is None
    with pytest.raises(ValueError, match="target_names has 1 names for out_channels=2 outputs"):
        GrantGCN(4, 2, target_names=["logp"])
    with pytest.raises(ValueError, match="a classifier's outputs are its class_names"):
        GrantGCN(4, 2, target_names=["a", "b"], task="graph_classification")


def test_loading_a_folder_without_a_grantgcn_names_it(tmp_path):
    with pytest.raises(ValueError, match=f"the folder {re.escape(str(tmp_path))} holds no GrantGCN: it has no config.json"):
        GrantGCN.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"sh_degree": 3}))  # a Gaussian scene's, say
    with pytest.raises(ValueError, match=r"its config.json has no \['in_channels', 'out_channels'\] \(its keys: \['sh_degree'\]\)"):
        GrantGCN.from_pretrained(tmp_path)
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError, match=f"cannot load a GrantGCN: there is no such folder {re.escape(str(missing))}, "
                                                "and it is not a Hub repo id either"):
        GrantGCN.from_pretrained(missing)


class _UsersGNN(nn.Module, PyTorchModelHubMixin):
    """A user's own model, whose config.json has the in_channels and out_channels a GrantGCN needs."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels)


def test_another_models_weights_are_refused_not_left_at_random(tmp_path):
    _UsersGNN(4, 2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'model.safetensors'))} holds no GrantGCN weights "
                                         r"\(a model of another class.*it lacks \['convs.0.*and has \['lin.bias', "
                                         r"'lin.weight'\]; load it with the class that saved it"):
        GrantGCN.from_pretrained(tmp_path)
    assert GrantGCN.from_pretrained(tmp_path, strict=False).head.out_features == 2  # asked for, as huggingface_hub's


def test_a_run_folder_without_its_weights_names_the_checkpoint_that_has_them(tmp_path):
    GrantGCN(4, 2).save_pretrained(tmp_path / "checkpoint-12")
    with pytest.raises(ValueError, match=f"holds no GrantGCN: it has no config.json .*; its last checkpoint that holds "
                                         f"one: {re.escape(str(tmp_path / 'checkpoint-12'))}$"):
        GrantGCN.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text((tmp_path / "checkpoint-12" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=f"the folder {re.escape(str(tmp_path))} holds no GrantGCN weights: it "
                                                f"has no model.safetensors beside its config.json; its last checkpoint"):
        GrantGCN.from_pretrained(tmp_path)


def test_loading_a_hub_repo_without_a_grantgcn_names_it(tmp_path, monkeypatch):
    server = HubServer({"hf_token": "me"}).start()
    try:
        # huggingface_hub read its endpoint at import: point it at the local server
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        api = HfApi(endpoint=server.url, token="hf_token")
        api.create_repo("me/scene")
        api.upload_file(path_or_fileobj=b"ply", path_in_repo="scene.ply", repo_id="me/scene")
        hub = dict(token="hf_token", cache_dir=tmp_path / "cache")
        with pytest.raises(ValueError, match="the Hub repo me/scene holds no GrantGCN: it has no config.json"):
            GrantGCN.from_pretrained("me/scene", **hub)
        _UsersGNN(4, 2).push_to_hub("me/users-gnn", token="hf_token")
        with pytest.raises(ValueError, match="holds no GrantGCN weights"):
            GrantGCN.from_pretrained("me/users-gnn", **hub)
        with pytest.raises(FileNotFoundError, match="cannot load a GrantGCN: there is no such folder me/nonexistent "
                                                    r"\(.*\), and no Hub repo me/nonexistent that this token can read") as caught:
            GrantGCN.from_pretrained("me/nonexistent", **hub)
        assert isinstance(caught.value.__cause__, RepositoryNotFoundError)
    finally:
        server.stop()


def test_a_training_batch_of_one_single_node_graph_uses_the_running_statistics():
    # e.g. the last batch holds one single-atom molecule: BatchNorm has no batch statistics of one node
    model = GrantGCN(4, 1, hidden_channels=8)
    model.train()
    model(torch.randn(6, 4), torch.tensor([[0, 1, 2], [1, 2, 3]]), torch.tensor([0, 0, 0, 0, 1, 1]))  # moves the statistics
    running = [norm.running_mean.clone() for norm in model.norms]
    node, no_edges = torch.randn(1, 4), torch.zeros(2, 0, dtype=torch.long)
    trained = model(node, no_edges)
    assert all(torch.equal(norm.running_mean, mean) for norm, mean in zip(model.norms, running))  # left as they were
    model.eval()
    torch.testing.assert_close(trained, model(node, no_edges))


def test_task_is_saved_and_must_match_the_level(tmp_path):
    GrantGCN(4, 2, level="node", task="node_classification").save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["task"] == "node_classification"
    assert GrantGCN.from_pretrained(tmp_path).task == "node_classification"
    with pytest.raises(ValueError, match="task 'node_regression' is node-level, but level='graph'"):
        GrantGCN(4, 1, level="graph", task="node_regression")


def test_the_task_gives_the_level_when_none_is_given():
    x, edge_index, batch = _graph()
    node_model = GrantGCN(4, 2, task="node_classification")
    assert node_model.level == "node"
    assert node_model(x, edge_index, batch).shape == (5, 2)
    assert GrantGCN(4, 1, task="graph_regression").level == "graph"
    assert GrantGCN(4, 1).level == "graph"  # no task: graph-level, as before the task could tell
    with pytest.raises(ValueError, match="task 'graph_regression' is graph-level, but level='node'"):
        GrantGCN(4, 1, level="node", task="graph_regression")


def test_a_level_taken_from_the_task_is_written_to_config_json(tmp_path):
    # spelled out, not None: config.json then means the same to a reader that defaults level to "graph"
    GrantGCN(4, 2, task="node_classification").save_pretrained(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "config.json").read_text())["level"] == "node"
    assert GrantGCN.from_pretrained(tmp_path / "new").level == "node"
    # as saved before level followed the task: every argument spelled out, or level alone without a task
    GrantGCN(4, 2, level="node", task="node_classification").save_pretrained(tmp_path / "old")
    assert GrantGCN.from_pretrained(tmp_path / "old").level == "node"
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({name: value for name, value in config.items() if name != "task"}))
    assert GrantGCN.from_pretrained(tmp_path / "old").level == "node"


def test_a_standardised_model_predicts_in_the_targets_units_and_saves_its_statistics(tmp_path):
    x, edge_index, batch = _graph()
    model = GrantGCN(4, 2, task="graph_regression", target_mean=[0.002, 1500.0], target_std=[0.001, 800.0]).eval()
    plain = GrantGCN(4, 2, task="graph_regression").eval()
    plain.load_state_dict(model.state_dict())  # the statistics are no weights: same keys
    expected = plain(x, edge_index, batch) * torch.tensor([0.001, 800.0]) + torch.tensor([0.002, 1500.0])
    torch.testing.assert_close(model(x, edge_index, batch), expected)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["target_mean"], config["target_std"]) == ([0.002, 1500.0], [0.001, 800.0])
    torch.testing.assert_close(GrantGCN.from_pretrained(tmp_path).eval()(x, edge_index, batch), expected)


@pytest.mark.parametrize(("arguments", "problem"), [
    ({"target_mean": [0.0, 0.0]}, "give both or neither"),
    ({"target_mean": [0.0], "target_std": [1.0]}, r"target_mean has 1 and target_std 1 values for out_channels=2"),
    ({"target_mean": [0.0, 0.0], "target_std": [1.0, 0.0]}, r"target_std needs finite standard deviations above 0"),
    ({"target_mean": [0.0, float("nan")], "target_std": [1.0, 1.0]}, r"target_std needs finite"),
    ({"target_mean": [0.0, 0.0], "target_std": [1.0, 1.0], "task": "graph_multilabel"},
     "standardise regression targets; the model is for graph_multilabel"),
    ({"target_mean": [0.0, 0.0], "target_std": [1.0, 1.0], "class_names": ["a", "b"]},
     "standardise regression targets; the model is for classification"),
])
def test_target_statistics_that_do_not_fit_a_regression_models_outputs_are_refused(arguments, problem):
    with pytest.raises(ValueError, match=problem):
        GrantGCN(4, 2, **arguments)


def test_a_reloaded_model_tells_its_input_and_output_widths(tmp_path):
    # GraNTTrainer checks in_channels against the data's node features
    GrantGCN(4, 3, hidden_channels=8).save_pretrained(tmp_path)
    loaded = GrantGCN.from_pretrained(tmp_path)
    assert (loaded.in_channels, loaded.out_channels) == (4, 3)
