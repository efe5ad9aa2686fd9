import math

import pytest
import torch
from torch_geometric.nn import GINEConv, global_mean_pool

from hf_eff.grant.collator import GraphCollator
from hf_eff.grant.model import GrantGCN
from hf_eff.grant.selection import (
    class_strata,
    graph_scores,
    importance_sample,
    partition_batches,
    score_dataset,
    scoring_batches,
    select_batches,
    select_importance,
    select_stratified,
    select_within_batches,
    top_k,
    weighted_loss,
)
from hf_eff.grant.tasks import GraphTask, node_losses, unit_losses


def test_batch_variant_keeps_exactly_the_batches_with_the_largest_mean_score():
    scores = torch.rand(97, generator=torch.Generator().manual_seed(0))
    batches = partition_batches(97, 8, seed=3)
    chosen = select_batches(scores, batches, 0.3)
    means = sorted(((scores[b].mean().item(), i) for i, b in enumerate(batches)), reverse=True)
    expected = {i for _, i in means[: math.ceil(0.3 * len(batches))]}
    assert {next(i for i, b in enumerate(batches) if torch.equal(b, c)) for c in chosen} == expected


def test_single_variant_keeps_exactly_the_top_graphs_of_every_batch():
    scores = torch.rand(50, generator=torch.Generator().manual_seed(1))
    batches = partition_batches(50, 12, seed=4)
    chosen = torch.cat(select_within_batches(scores, batches, 0.25, 12)).tolist()
    expected = []
    for b in batches:
        k = math.ceil(0.25 * len(b))
        expected += sorted(b.tolist(), key=lambda i: -scores[i].item())[:k]
    assert sorted(chosen) == sorted(expected)


def test_single_variant_with_one_batch_is_the_global_top_k():
    scores = torch.rand(40, generator=torch.Generator().manual_seed(2))
    chosen = torch.cat(select_within_batches(scores, partition_batches(40, 40, seed=0), 0.1, 40))
    assert set(chosen.tolist()) == set(scores.argsort(descending=True)[:4].tolist())


def test_stratified_selection_keeps_the_top_graphs_of_every_class():
    generator = torch.Generator().manual_seed(3)
    labels = torch.tensor([0] * 30 + [1] * 20 + [2] * 10)[torch.randperm(60, generator=generator)]
    scores = torch.rand(60, generator=generator) + 10 * labels  # the global top 6 are all class 2
    chosen = torch.cat(select_stratified(scores, class_strata(labels.tolist()), 0.1, 4, seed=0))
    assert len(chosen) == 3 + 2 + 1
    for c in range(3):
        members = torch.nonzero(labels == c).flatten()
        expected = members[scores[members].argsort(descending=True)[: math.ceil(0.1 * len(members))]]
        assert set(chosen[labels[chosen] == c].tolist()) == set(expected.tolist())
    order = labels[chosen].tolist()
    assert order != sorted(order)  # shuffled, so that batches mix the classes
    assert [len(c) for c in class_strata([[1], [0], [1]])] == [1, 2]
    with pytest.raises(ValueError, match="one class id per graph"):
        class_strata([[0, 1], [1, 0]])


def test_top_k_breaks_ties_by_lower_index():
    assert top_k(torch.tensor([1.0, 3.0, 3.0, 0.0, 3.0]), 2).tolist() == [1, 2]


def test_node_scores_normalise_by_node_count():
    # two graphs (3 and 12 nodes), every node off by 2: ||err||_2 / n = 2 sqrt(n) / n
    outputs = torch.zeros(15, 1)
    labels = torch.full((15,), 2.0)
    batch = torch.tensor([0] * 3 + [1] * 12)
    scores = graph_scores("node_regression", outputs, labels, batch, num_graphs=2)
    assert scores.tolist() == pytest.approx([2 / math.sqrt(3), 2 / math.sqrt(12)])
    # the root-mean-square node error does not depend on the graph's size
    rms = graph_scores("node_regression", outputs, labels, batch, num_graphs=2, node_normalization="sqrt_nodes")
    assert rms.tolist() == pytest.approx([2.0, 2.0])
    # the undivided norm, each graph's share of the gradient of a loss averaged over all 15 nodes, favours the larger
    total = graph_scores("node_regression", outputs, labels, batch, num_graphs=2, node_normalization="total")
    assert total.tolist() == pytest.approx([2 * math.sqrt(3), 2 * math.sqrt(12)])
    with pytest.raises(ValueError, match="node_normalization"):
        graph_scores("node_regression", outputs, labels, batch, num_graphs=2, node_normalization="n")


def test_node_scores_cover_every_target_of_every_node():
    # one graph of 2 nodes with 2 targets: ||f - f*||_2 over the 4 values / 2 nodes
    outputs = torch.zeros(2, 2)
    labels = torch.tensor([[1.0, 2.0], [2.0, 4.0]])
    score = graph_scores("node_regression", outputs, labels, torch.zeros(2, dtype=torch.long), num_graphs=1)
    assert score.item() == pytest.approx(5.0 / 2)


def test_graph_scores_for_multi_targets_and_classes():
    reg = graph_scores("graph_regression", torch.tensor([[1.0, 1.0]]), torch.tensor([[4.0, 5.0]]), None, 1)
    assert reg.item() == pytest.approx(5.0 / 2)
    logits = torch.tensor([[0.0, 0.0]])
    cls = graph_scores("graph_classification", logits, torch.tensor([1]), None, 1)
    assert cls.item() == pytest.approx(math.sqrt(0.5**2 * 2))


def test_multilabel_scores_normalise_by_the_labelled_count():
    nan = float("nan")
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, -1.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([[1.0, nan, 0.0], [nan, 1.0, nan], [nan, nan, nan]])
    scores = graph_scores("graph_multilabel", logits, labels, None, 3)
    # graph 0: (0.5 - 1, 0.5 - 0) over 2 labelled targets; graph 1: sigmoid(2) - 1 over 1; graph 2: none labelled
    expected = [math.sqrt(0.5**2 + 0.5**2) / 2, (1 - 1 / (1 + math.exp(-2.0))) / 1, 0.0]
    assert scores.tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("task", ["graph_regression", "graph_multilabel", "node_classification"])
def test_scoring_pass_follows_dataset_order(task, make_graphs):
    dataset = make_graphs(23, task, seed=5)
    collator = GraphCollator(task)
    outputs = {"graph_regression": 1, "graph_multilabel": 3, "node_classification": 3}[task]
    model = GrantGCN(6, outputs, level=task.split("_")[0], hidden_channels=8)
    model.eval()
    batched = score_dataset(model, dataset, collator, task, batch_size=5)
    one_by_one = torch.cat([score_dataset(model, dataset, collator, task, indices=[i], batch_size=1) for i in range(23)])
    assert torch.allclose(batched, one_by_one, atol=1e-5)
    subset = score_dataset(model, dataset, collator, task, indices=[7, 2, 19], batch_size=2)
    assert torch.allclose(subset, one_by_one[[7, 2, 19]], atol=1e-5)
    assert model.training is False


class _EdgeAwareGraphModel(torch.nn.Module):
    """GINEConv needs edge_attr: the teacher must call it as training does."""

    def __init__(self, in_channels: int, edge_dim: int):
        super().__init__()
        mlp = torch.nn.Sequential(torch.nn.Linear(in_channels, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
        self.conv = GINEConv(mlp, edge_dim=edge_dim)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x, edge_index, batch, edge_attr=None):
        if edge_attr is None:
            raise AssertionError("called without edge_attr")
        return self.head(global_mean_pool(self.conv(x, edge_index, edge_attr), batch))


def test_teacher_scores_with_edge_attr_when_the_model_takes_it(make_graphs):
    dataset = make_graphs(9, "graph_regression", seed=0)
    rng = torch.Generator().manual_seed(0)
    dataset = dataset.add_column(
        "edge_attr", [torch.randn(len(e[0]), 3, generator=rng).tolist() for e in dataset["edge_index"]]
    )
    collator = GraphCollator("graph_regression")
    model = _EdgeAwareGraphModel(6, 3)
    scores = score_dataset(model, dataset, collator, "graph_regression", batch_size=4)
    features = collator([dataset[i] for i in range(9)])
    model.eval()
    with torch.no_grad():
        outputs = model(features["x"], features["edge_index"], features["batch"], edge_attr=features["edge_attr"])
    expected = (outputs - features["labels"]).abs().flatten()
    assert torch.allclose(scores, expected, atol=1e-5)


def test_scoring_batches_read_arrow_columns_with_the_same_tensors_and_keep_a_users_collator(make_graphs):
    dataset = make_graphs(11, "node_classification", seed=2)
    collator = GraphCollator("node_classification")
    indices = [7, 2, 10, 0, 5]
    seen = []

    def users_collator(rows):  # a plain function gets the rows, as before
        seen.append(type(rows))
        return collator(rows)

    batches = scoring_batches(dataset, collator, indices, batch_size=2)
    from_rows = scoring_batches(dataset, users_collator, indices, batch_size=2)
    assert seen == [list] * 3
    assert [size for _, size in batches] == [size for _, size in from_rows] == [2, 2, 1]
    for (features, _), (expected, _), start in zip(batches, from_rows, range(0, 5, 2)):
        assert torch.equal(features["num_nodes"], torch.tensor([dataset[i]["num_nodes"] for i in indices[start:start + 2]]))
        assert list(features) == list(expected)
        assert all(torch.equal(features[k], expected[k]) and features[k].dtype == expected[k].dtype for k in expected)


def test_a_half_precision_model_is_scored_on_its_float32_outputs(make_graphs):
    # the float32 features failed a bf16 model's first layer; in bf16 a graph's node count rounds past 256
    task = "node_regression"
    dataset = make_graphs(4, task, seed=5, min_nodes=300, max_nodes=400)
    model = GrantGCN(6, 1, level="node", hidden_channels=8).to(torch.bfloat16).eval()
    features = GraphCollator(task)(list(dataset))
    with torch.no_grad():
        outputs = model(features["x"].bfloat16(), features["edge_index"], features["batch"]).float()
    expected = graph_scores(task, outputs, features["labels"], features["batch"], 4)
    torch.testing.assert_close(score_dataset(model, dataset, GraphCollator(task), task), expected)


def test_importance_draw_repeats_for_a_seed_and_differs_across_seeds():
    scores = torch.rand(60, generator=torch.Generator().manual_seed(5))
    units = torch.randint(1, 9, (60,))
    first, first_weights = select_importance(scores, units, 12, 5, seed=7)
    again, again_weights = select_importance(scores, units, 12, 5, seed=7)
    assert [b.tolist() for b in first] == [b.tolist() for b in again]
    assert all(torch.equal(a, b) for a, b in zip(first_weights, again_weights))
    assert [len(b) for b in first] == [5, 5, 2] and len(set(torch.cat(first).tolist())) == 12  # without replacement
    other, _ = select_importance(scores, units, 12, 5, seed=8)  # the next epoch's seed
    assert set(torch.cat(other).tolist()) != set(torch.cat(first).tolist())


def test_importance_never_draws_a_graph_scored_zero():
    scores = torch.rand(40, generator=torch.Generator().manual_seed(6))
    scores[::2] = 0.0  # 20 positive scores
    for seed in range(20):
        drawn = torch.cat(select_importance(scores, torch.ones(40), 15, 40, seed)[0])
        assert (scores[drawn] > 0).all()


def test_importance_with_fewer_positive_scores_than_k_takes_them_all_and_fills_with_unweighted_zeros():
    scores = torch.zeros(10)
    scores[[2, 5, 7]] = torch.tensor([0.5, 2.0, 1.0])
    units = torch.arange(1, 11)  # U = 55
    drawn, weights = importance_sample(scores, 5, units, torch.Generator().manual_seed(0))
    assert {2, 5, 7} <= set(drawn.tolist()) and len(set(drawn.tolist())) == 5
    for graph, weight in zip(drawn.tolist(), weights.tolist()):
        # a graph taken with certainty weighs 1 / U (the exact mean); a zero-score filler nothing
        assert weight == pytest.approx(1 / 55 if scores[graph] > 0 else 0.0)


def test_importance_weights_are_one_over_k_units_p_and_k_over_each_batchs_size_times_that():
    scores, units = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2, 3, 1, 4])  # sum(s) = 10, U = 10
    (batch,), (weights,) = select_importance(scores, units, 2, 4, seed=0)  # one batch: 1 / (k U p_i)
    for graph, weight in zip(batch.tolist(), weights.tolist()):
        assert weight == pytest.approx(1 / (2 * 10 * scores[graph].item() / 10))
    batches, weights = select_importance(scores, units, 3, 2, seed=0)  # batches of 2 and 1: 1 / (k_b U p_i)
    assert [len(b) for b in batches] == [2, 1]
    for batch, batch_weights in zip(batches, weights):
        for graph, weight in zip(batch.tolist(), batch_weights.tolist()):
            assert weight == pytest.approx(1 / (len(batch) * 10 * scores[graph].item() / 10))


def test_importance_refuses_scores_that_are_not_finite():
    with pytest.raises(ValueError, match=r"graph 1 scored nan"):
        select_importance(torch.tensor([1.0, float("nan"), 2.0]), torch.ones(3), 2, 3, seed=0)


@pytest.mark.parametrize("task", ["node_regression", "node_classification", "graph_regression", "graph_classification"])
def test_weighted_loss_weighs_each_unit_by_its_graphs_weight(task):
    generator = torch.Generator().manual_seed(4)
    batch = torch.tensor([0, 0, 1, 2, 2, 2])
    weights = torch.tensor([0.5, 2.0, 0.25])
    rows = len(batch) if task.startswith("node") else 3
    outputs = torch.randn(rows, 3 if task.endswith("classification") else 2, generator=generator)
    labels = (torch.randint(0, 3, (rows,), generator=generator) if task.endswith("classification")
              else torch.randn(rows, 2, generator=generator))
    if task.startswith("node"):
        expected = sum(weights[batch[v]] * node_losses(GraphTask(task), outputs, labels)[v] for v in range(rows))
    elif task == "graph_regression":
        expected = sum(weights[g] * ((outputs[g] - labels[g]) ** 2).mean() for g in range(3))
    else:
        expected = sum(weights[g] * -outputs[g].log_softmax(-1)[labels[g]] for g in range(3))
    assert weighted_loss(task, outputs, labels, batch, weights).item() == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="graph_multilabel"):
        weighted_loss("graph_multilabel", outputs, labels, batch, weights)


@pytest.mark.parametrize("task", ["node_regression", "graph_classification"])
def test_weighted_loss_under_fp16_autocast_keeps_small_weights_in_the_losses_float32(task):
    # weights 1 / (k_b U p_i) of a large pool: 1e-8 underflows to 0 in fp16, 3e-5 rounds (its nearest fp16 is
    # 2.998e-5), while autocast computes the losses in float32
    generator = torch.Generator().manual_seed(0)
    batch = torch.tensor([0, 0, 1, 1, 1])
    rows = len(batch) if task.startswith("node") else 2
    layer, x = torch.nn.Linear(4, 3), torch.randn(rows, 4, generator=generator)
    # regression labels that fp16 holds exactly (the loss casts them to the outputs' dtype)
    labels = torch.randn(rows, 3, generator=generator).half().float() if task.endswith("regression") else torch.tensor([2, 0])
    weights = torch.tensor([1e-8, 3e-5], dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.float16):
        outputs = layer(x)
        loss = weighted_loss(task, outputs, labels, batch, weights)
    assert outputs.dtype == torch.float16 and loss.dtype == torch.float32
    losses = unit_losses(GraphTask(task), outputs.float(), labels).double()
    unit_weights = weights[batch] if task.startswith("node") else weights
    assert loss.item() == pytest.approx((losses * unit_weights).sum().item(), rel=1e-4)
