import torch

from hf_eff.grant.model import GrantGCN


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
