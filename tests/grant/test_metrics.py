import logging

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from transformers import EvalPrediction

from hf_eff.grant.metrics import (
    first_reaching,
    graph_task_metrics,
    macro_roc_auc,
    metrics_for,
    primary_metric,
    relaxed_target,
    time_to_target,
)


def test_mae_is_per_sample_not_per_batch():
    # batch averages of |err| ([0, 0, 0] and [9]) would give 4.5; per sample it is 2.25
    predictions = np.array([[0.0], [0.0], [0.0], [9.0]])
    labels = np.zeros((4, 1))
    assert graph_task_metrics("graph_regression", predictions, labels)["mae"] == pytest.approx(2.25)
    node = graph_task_metrics("node_regression", np.array([[1.0], [3.0]]), np.array([0.0, 0.0]))
    assert node["mae"] == pytest.approx(2.0)


def test_node_metrics_drop_the_padding_of_dense_batches():
    # two graphs (2 nodes and 1 node) padded to [graphs, 2 nodes, outputs]: NaN labels for regression
    predictions = np.array([[[1.0], [3.0]], [[5.0], [-100.0]]])
    labels = np.array([[0.0, 0.0], [4.0, np.nan]])
    assert graph_task_metrics("node_regression", predictions, labels)["mae"] == pytest.approx(5 / 3)
    mask = np.array([[1, 1], [1, -100]])  # the trainer's node mask, padded by the Trainer with -100
    padded = np.array([[0.0, 0.0], [4.0, -100.0]])
    assert graph_task_metrics("node_regression", predictions, padded, node_mask=mask)["mae"] == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="a target can be -100; pad with NaN, or pass node_mask"):
        graph_task_metrics("node_regression", predictions, padded)
    with pytest.raises(ValueError, match="node_mask has 3 entries"):
        graph_task_metrics("node_regression", predictions, padded, node_mask=mask[:, :1].tolist() + [[1]])
    logits = np.array([[[2.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [-100.0, -100.0]]])
    classes = np.array([[0, 1], [1, -100]])
    assert graph_task_metrics("node_classification", logits, classes)["accuracy"] == pytest.approx(2 / 3)


def test_several_targets_get_one_mae_each_besides_the_mean():
    predictions = np.array([[1.0, 10.0], [3.0, 10.0]])
    labels = np.array([[0.0, 0.0], [0.0, 0.0]])
    metrics = graph_task_metrics("graph_regression", predictions, labels, target_names=["logp", "tpsa"])
    assert metrics["mae"] == pytest.approx(6.0)
    assert (metrics["mae_logp"], metrics["mae_tpsa"]) == pytest.approx((2.0, 10.0))
    assert graph_task_metrics("graph_regression", predictions, labels)["mae_1"] == pytest.approx(10.0)
    assert "mae_0" not in graph_task_metrics("graph_regression", predictions[:, :1], labels[:, :1])
    with pytest.raises(ValueError, match="target_names has 1 names for 2 targets"):
        graph_task_metrics("graph_regression", predictions, labels, target_names=["logp"])


def test_a_real_node_target_of_minus_100_counts():
    predictions = np.array([[[1.0], [2.0], [3.0]], [[5.0], [-100.0], [-100.0]]])
    labels = np.array([[-100.0, 1.0, 1.0], [0.0, -100.0, -100.0]])
    mask = np.array([[1, 1, 1], [1, 0, 0]])
    expected = np.mean([101, 1, 2, 5])
    assert graph_task_metrics("node_regression", predictions, labels, node_mask=mask)["mae"] == pytest.approx(expected)
    nan_padded = np.where(mask == 1, labels, np.nan)
    assert graph_task_metrics("node_regression", predictions, nan_padded)["mae"] == pytest.approx(expected)


def test_classification_accuracy_and_auc():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0], [0.0, 3.0]])
    metrics = graph_task_metrics("graph_classification", logits, np.array([0, 1, 1, 1]))
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["roc_auc"] == pytest.approx(1.0)


def test_macro_auc_skips_classes_absent_from_the_labels():
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    assert macro_roc_auc(np.array([0, 1, 0]), probabilities) == pytest.approx(1.0)


def test_a_nan_roc_auc_of_a_single_class_is_warned_of(caplog):
    # an imbalanced set split at random can leave the evaluation set no positive: NaN, which best-model and
    # early-stopping comparisons cannot rank
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0]])
    with caplog.at_level(logging.WARNING, logger="hf_eff.grant.metrics"):
        metrics = graph_task_metrics("graph_classification", logits, np.array([0, 0, 0]))
    assert metrics["accuracy"] == pytest.approx(2 / 3) and np.isnan(metrics["roc_auc"])
    assert "roc_auc is NaN: every label is class 0" in caplog.text and "stratify_by_column" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_eff.grant.metrics"):
        metrics = graph_task_metrics("graph_multilabel", np.zeros((2, 2)), np.array([[1.0, float("nan")], [1.0, 0.0]]))
        assert np.isnan(metrics["roc_auc"]) and np.isnan(metrics["ap"])
        assert "no target's labelled rows hold both 0 and 1" in caplog.text
        caplog.clear()
        graph_task_metrics("graph_classification", logits, np.array([0, 1, 0]))
    assert not caplog.text


def test_multilabel_auc_and_ap_average_the_targets_with_both_classes_among_labelled_rows():
    nan = float("nan")
    labels = np.array([
        [1.0, 0.0, 1.0, nan],
        [0.0, nan, 1.0, nan],
        [1.0, 1.0, 1.0, nan],
        [0.0, 0.0, nan, nan],
        [1.0, nan, nan, nan],
        [nan, 1.0, 0.0, nan],  # target 2's only negative: labelled, so target 2 counts
    ])
    logits = np.array([
        [2.0, -1.0, 0.3, 0.0],
        [-0.5, 5.0, 0.1, 0.0],
        [0.1, 0.2, 0.7, 0.0],
        [0.4, 0.9, 9.0, 0.0],
        [0.3, 5.0, -9.0, 0.0],
        [7.0, -0.3, 0.5, 0.0],
    ])
    metrics = graph_task_metrics("graph_multilabel", logits, labels)
    aucs, aps = [], []
    for t in range(3):  # target 3 is never labelled: skipped
        labelled = ~np.isnan(labels[:, t])
        aucs.append(roc_auc_score(labels[labelled, t], logits[labelled, t]))
        aps.append(average_precision_score(labels[labelled, t], logits[labelled, t]))
    assert metrics == pytest.approx({"roc_auc": np.mean(aucs), "ap": np.mean(aps)})
    one_class = labels.copy()
    one_class[5, 2] = nan  # target 2's labelled rows are now all positive: skipped too
    metrics = graph_task_metrics("graph_multilabel", logits, one_class)
    assert metrics["ap"] == pytest.approx(np.mean(aps[:2])) and metrics["roc_auc"] == pytest.approx(np.mean(aucs[:2]))
    nothing = graph_task_metrics("graph_multilabel", logits, np.full_like(labels, nan))
    assert np.isnan(nothing["ap"]) and np.isnan(nothing["roc_auc"])
    assert primary_metric("graph_multilabel") == ("ap", True)
    assert metrics_for("graph_multilabel")(EvalPrediction(logits, one_class)) == metrics


def test_time_to_target():
    curve = [{"seconds": 1.0, "eval_mae": 3.0}, {"seconds": 2.0, "eval_mae": 1.0}, {"seconds": 3.0, "eval_mae": 0.5}]
    assert time_to_target(curve, "eval_mae", 1.0, higher_is_better=False) == 2.0
    assert time_to_target(curve, "eval_mae", 0.1, higher_is_better=False) is None
    for point, cpu in zip(curve, (0.5, 0.9, 1.4)):
        point["cpu_seconds"] = cpu
    assert time_to_target(curve, "eval_mae", 1.0, higher_is_better=False, clock="cpu_seconds") == 0.9
    assert first_reaching(curve, "eval_mae", 1.0, higher_is_better=False) is curve[1]
    assert primary_metric("node_classification") == ("roc_auc", True)


def test_relaxed_target_loosens_towards_worse_values():
    assert relaxed_target(0.5, 0.01, higher_is_better=False) == pytest.approx(0.505)
    assert relaxed_target(0.9, 0.01, higher_is_better=True) == pytest.approx(0.891)
    curve = [{"seconds": 1.0, "eval_mae": 0.504}, {"seconds": 2.0, "eval_mae": 0.5}]
    assert time_to_target(curve, "eval_mae", relaxed_target(0.5, 0.01, False), higher_is_better=False) == 1.0
    with pytest.raises(ValueError, match="tolerance"):
        relaxed_target(0.5, -0.1, higher_is_better=False)
