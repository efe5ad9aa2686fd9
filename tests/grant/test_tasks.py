import math

import pytest
import torch

from hf_eff.grant.tasks import TASKS, GraphTask, node_losses, output_error, task_loss, unit_losses

NAN = float("nan")


def test_multilabel_is_a_graph_task_of_its_own():
    task = GraphTask("graph_multilabel")
    assert "graph_multilabel" in TASKS
    assert task.level == "graph" and task.is_multilabel and not task.is_classification
    assert not GraphTask("graph_classification").is_multilabel


def test_multilabel_loss_is_bce_over_the_labelled_entries_only():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], requires_grad=True)
    labels = torch.tensor([[1.0, NAN, 0.0], [NAN, NAN, 1.0]])
    loss = task_loss(GraphTask("graph_multilabel"), logits, labels)

    def bce(f, y):  # -[y log sigmoid(f) + (1 - y) log(1 - sigmoid(f))]
        p = 1 / (1 + math.exp(-f))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (bce(2.0, 1) + bce(0.5, 0) + bce(-2.0, 1)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 0] == 0 and logits.grad[1, 1] == 0  # unlabelled: no signal
    assert logits.grad[0, 0] == pytest.approx((torch.sigmoid(torch.tensor(2.0)).item() - 1) / 3, rel=1e-6)


def test_multilabel_batch_without_labels_has_zero_loss_not_nan():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = task_loss(GraphTask("graph_multilabel"), logits, torch.full((2, 3), NAN))
    loss.backward()
    assert loss.item() == 0 and torch.equal(logits.grad, torch.zeros(2, 3))


def test_multilabel_output_error_is_sigmoid_minus_label_and_zero_where_unlabelled():
    logits = torch.tensor([[0.0, 1.0], [-1.0, 2.0]])
    labels = torch.tensor([[1.0, NAN], [0.0, 1.0]])
    error = output_error(GraphTask("graph_multilabel"), logits, labels)
    expected = torch.tensor([[0.5 - 1, 0.0], [torch.sigmoid(torch.tensor(-1.0)).item(), torch.sigmoid(torch.tensor(2.0)).item() - 1]])
    torch.testing.assert_close(error, expected)


def test_multilabel_needs_one_logit_per_target():
    with pytest.raises(ValueError, match="returned 2 logits per graph for 3 labels"):
        task_loss(GraphTask("graph_multilabel"), torch.zeros(4, 2), torch.zeros(4, 3))


@pytest.mark.parametrize("task", ["node_regression", "node_classification"])
def test_node_losses_average_to_the_task_loss(task):
    outputs = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1, 0]) if task == "node_classification" else torch.randn(5, 3)
    losses = node_losses(GraphTask(task), outputs, labels)
    assert losses.shape == (5,)
    torch.testing.assert_close(losses.mean(), task_loss(GraphTask(task), outputs, labels))
    with pytest.raises(ValueError, match="node-level task"):
        node_losses(GraphTask("graph_regression"), outputs, labels)


@pytest.mark.parametrize("task", ["node_regression", "node_classification", "graph_regression", "graph_classification"])
def test_unit_losses_are_one_per_node_or_graph_and_average_to_the_task_loss(task):
    outputs = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 1, 1, 0]) if task.endswith("classification") else torch.randn(5, 3)
    losses = unit_losses(GraphTask(task), outputs, labels)
    assert losses.shape == (5,)
    torch.testing.assert_close(losses.mean(), task_loss(GraphTask(task), outputs, labels))
    with pytest.raises(ValueError, match="returned 4 rows for 5"):
        unit_losses(GraphTask(task), outputs[:4], labels)
    with pytest.raises(ValueError, match="labelled entries; use multilabel_losses"):
        unit_losses(GraphTask("graph_multilabel"), outputs, torch.zeros(5, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_multilabel_loss_under_half_precision_autocast_counts_every_labelled_entry(dtype):
    # 601 graphs x 128 targets: 76928 labelled entries, past fp16's largest number (65504), rounded in bf16 (to 76800)
    generator = torch.Generator().manual_seed(0)
    layer, x = torch.nn.Linear(8, 128), torch.randn(601, 8, generator=generator)
    labels = torch.randint(0, 2, (601, 128), generator=generator).float()
    task = GraphTask("graph_multilabel")
    with torch.autocast("cpu", dtype=dtype):
        outputs = layer(x)
        loss = task_loss(task, outputs, labels)
    assert outputs.dtype == dtype
    expected = torch.nn.functional.binary_cross_entropy_with_logits(outputs.float(), labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert layer.weight.grad.abs().sum() > 0
