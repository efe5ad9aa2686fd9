"""metric_for_best_model is checked against the metrics GraNTTrainer's evaluation reports, before training."""

import pytest

from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments
from hf_eff.grant.metrics import graph_task_metrics, metric_names, metrics_for
from tests.grant.test_trainer import OUTPUTS

BEST_MODEL = dict(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)


def _args(tmp_path, task, **overrides):
    return GraNTTrainingArguments(
        output_dir=str(tmp_path / "out"), task=task, num_train_epochs=2, per_device_train_batch_size=8,
        report_to="none", use_cpu=True, disable_tqdm=True, start_ratio=0.5, reselect_interval_start=1, seed=0,
        **overrides,
    )


def _two_target_graphs(make_graphs, count, seed):
    return make_graphs(count, "graph_regression", seed=seed).map(lambda row: {"y": [row["y"][0], 2 * row["y"][0]]})


@pytest.mark.parametrize(("task", "metric", "reported"), [
    ("graph_regression", "accuracy", "loss, mae, rmse, runtime"),
    ("graph_classification", "mae", "loss, accuracy, roc_auc, runtime"),
    ("graph_multilabel", "eval_accuracy", "loss, roc_auc, ap, runtime"),
    ("node_classification", "rmse", "loss, accuracy, roc_auc, runtime"),
])
def test_a_metric_the_evaluation_does_not_report_is_refused_before_output_dir_is_made(tmp_path, make_graphs, task,
                                                                                     metric, reported):
    graphs = make_graphs(16, task, seed=1)
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=8, level=task.split("_")[0])
    with pytest.raises(ValueError, match=rf"metric_for_best_model \(--metric_for_best_model\) is '{metric}'.*"
                                         rf"task='{task}'; it reports {reported}"):
        GraNTTrainer(model=model, args=_args(tmp_path, task, metric_for_best_model=metric, **BEST_MODEL),
                     train_dataset=graphs, eval_dataset=graphs)
    assert not (tmp_path / "out").exists()


def test_a_reported_metric_is_taken_and_ranks_the_checkpoints(tmp_path, make_graphs):
    graphs = make_graphs(16, "graph_regression", seed=1)
    args = _args(tmp_path, "graph_regression", metric_for_best_model="eval_rmse", **BEST_MODEL)
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=graphs, eval_dataset=graphs)
    trainer.train()
    assert trainer.state.best_metric == min(e["eval_rmse"] for e in trainer.state.log_history if "eval_rmse" in e)


def test_per_target_maes_are_named_by_index_or_by_the_metrics_target_names(tmp_path, make_graphs):
    graphs = _two_target_graphs(make_graphs, 16, seed=1)
    model = GrantGCN(6, 2, hidden_channels=8)
    GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression", metric_for_best_model="mae_1"),
                 train_dataset=graphs, eval_dataset=graphs)
    with pytest.raises(ValueError, match="it reports loss, mae, rmse, mae_homo, mae_lumo, runtime"):
        GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression", metric_for_best_model="mae_1"),
                     train_dataset=graphs, eval_dataset=graphs,
                     compute_metrics=metrics_for("graph_regression", ["homo", "lumo"]))


def test_a_dict_eval_datasets_metrics_are_named_by_split_and_prediction_loss_only_reports_the_loss(tmp_path,
                                                                                                  make_graphs):
    graphs = make_graphs(16, "graph_regression", seed=1)
    model = GrantGCN(6, 1, hidden_channels=8)
    splits = {"valid": graphs, "test": graphs}
    GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression", metric_for_best_model="test_mae"),
                 train_dataset=graphs, eval_dataset=splits)
    with pytest.raises(ValueError, match="it reports valid_loss, valid_mae, valid_rmse, valid_runtime"):
        GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression", metric_for_best_model="mae"),
                     train_dataset=graphs, eval_dataset=splits)
    with pytest.raises(ValueError, match="it reports loss, runtime"):
        GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression", metric_for_best_model="mae",
                                             prediction_loss_only=True), train_dataset=graphs, eval_dataset=graphs)


def test_a_metric_of_ones_own_compute_metrics_is_left_to_it(tmp_path, make_graphs):
    graphs = make_graphs(16, "graph_regression", seed=1)
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8),
                           args=_args(tmp_path, "graph_regression", metric_for_best_model="median_error"),
                           train_dataset=graphs, eval_dataset=graphs, compute_metrics=lambda prediction: {})
    assert trainer.args.metric_for_best_model == "median_error"


@pytest.mark.parametrize(("task", "targets"), [(task, 1) for task in OUTPUTS] + [("graph_regression", 3)])
def test_metric_names_are_the_keys_graph_task_metrics_reports(task, targets):
    outputs = OUTPUTS[task] if targets == 1 else targets
    predictions = [[0.1 * i + j for j in range(outputs)] for i in range(6)]
    if task.endswith("classification"):
        labels = [i % outputs for i in range(6)]
    elif task.endswith("multilabel"):
        labels = [[(i + j) % 2 for j in range(outputs)] for i in range(6)]
    else:
        labels = [[float(i)] * targets for i in range(6)]
    assert metric_names(task, targets) == list(graph_task_metrics(task, predictions, labels))
