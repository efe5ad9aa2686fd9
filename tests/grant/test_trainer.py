import json
import logging
import math
import re
from pathlib import Path

import pytest
import torch
from torch_geometric.nn.models import GCN
from transformers import TrainerCallback
from transformers.utils import SAFE_WEIGHTS_NAME

from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments, ValidationCurveCallback
from hf_eff.grant.collator import GraphCollator
from hf_eff.grant.predictions import predictions_table
from hf_eff.grant.schedules import EpochPlan, num_selected
from hf_eff.grant.selection import partition_batches, score_dataset, select_importance
from hf_eff.grant.tasks import GraphTask, node_losses, task_loss

OUTPUTS = {"graph_regression": 1, "graph_classification": 2, "graph_multilabel": 3, "node_regression": 1,
           "node_classification": 3}
PRIMARY = {"graph_regression": "mae", "graph_classification": "roc_auc", "graph_multilabel": "ap",
           "node_regression": "mae", "node_classification": "roc_auc"}


def _args(tmp_path, task, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "out"), task=task, num_train_epochs=4, per_device_train_batch_size=8,
        per_device_eval_batch_size=32, learning_rate=1e-2, save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, logging_strategy="epoch", start_ratio=0.25,
        reselect_schedule="constant", reselect_interval_start=2, seed=0,
    )
    settings.update(overrides)
    return GraNTTrainingArguments(**settings)


def _outputs_and_labels(model, task, graphs):
    """The model's outputs and the labels over every node of `graphs`, in one eval-mode forward pass."""
    features = GraphCollator(task)(list(graphs))
    model.eval()
    with torch.no_grad():
        return model(features["x"], features["edge_index"], batch=features["batch"]), features["labels"]


@pytest.mark.parametrize("task", list(OUTPUTS))
def test_short_run_on_each_task_kind(tmp_path, make_graphs, task):
    train, validation = make_graphs(40, task, seed=1), make_graphs(12, task, seed=2)
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=16, level=task.split("_")[0])
    curve = ValidationCurveCallback()
    args = _args(tmp_path, task, eval_strategy="epoch")
    trainer = GraNTTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation, callbacks=[curve])
    output = trainer.train()
    # the learning-rate schedule spans exactly the planned steps: it ends at zero
    planned = sum(p.num_batches for p in trainer._plan)  # one batch per step
    assert output.global_step == trainer.state.max_steps == planned
    assert math.isfinite(output.training_loss)  # graph_multilabel: NaN labels never reach the loss
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(0.0)
    assert [e["epoch"] for e in trainer.teaching_log] == [0, 2]
    assert [e["subset_size"] for e in trainer.teaching_log][0] == 8 * num_selected(0.25, 5)
    logged = [entry for entry in trainer.state.log_history if "grant_ratio" in entry]
    assert len(logged) == 2 and {"grant_subset_size", "grant_score_share", "grant_reselection_seconds"} <= set(logged[0])
    assert output.metrics["grant_reselections"] == 2
    assert len(curve.curve) == 4 and all(math.isfinite(p["seconds"]) for p in curve.curve)
    assert math.isfinite(trainer.evaluate()[f"eval_{PRIMARY[task]}"])


@pytest.mark.parametrize("task", ["graph_regression", "graph_multilabel"])
def test_trainer_trains_on_exactly_the_top_scoring_graphs(tmp_path, make_graphs, task):
    # learning rate 0 and no BatchNorm: the learner never changes, so the scores at every
    # reselection are those of a fresh unshuffled pass, and the sampler must hold their top-k.
    train = make_graphs(30, task, seed=3)
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=8, batch_norm=False)
    args = _args(tmp_path, task, learning_rate=0.0, variant="single", per_device_train_batch_size=30,
                 num_train_epochs=2, start_ratio=0.2, reselect_interval_start=1)
    trainer = GraNTTrainer(model=model, args=args, train_dataset=train)
    trainer.train()
    scores = score_dataset(model, train, GraphCollator(task), task)
    chosen = {i for batch in trainer._sampler.batches for i in batch}
    ratio = trainer.teaching_log[-1]["ratio"]
    assert chosen == set(scores.argsort(descending=True)[: num_selected(ratio, 30)].tolist())
    share = trainer.teaching_log[-1]["score_share"]
    assert share == pytest.approx(float(scores[sorted(chosen)].sum() / scores.sum()), rel=1e-5)
    assert ratio < share < 1  # the top graphs carry more than their number's share


def test_stratified_selection_in_the_trainer_keeps_the_top_graphs_of_every_class(tmp_path, make_graphs):
    task = "graph_classification"
    train = make_graphs(30, task, seed=3)
    model = GrantGCN(6, 2, hidden_channels=8, batch_norm=False)
    args = _args(tmp_path, task, learning_rate=0.0, variant="single", num_train_epochs=1, start_ratio=0.2,
                 stratify_selection=True)
    trainer = GraNTTrainer(model=model, args=args, train_dataset=train)
    trainer.train()
    scores = score_dataset(model, train, GraphCollator(task), task)
    labels = torch.tensor(train["y"])
    expected = set()
    for c in (0, 1):
        members = torch.nonzero(labels == c).flatten()
        expected |= set(members[scores[members].argsort(descending=True)[: num_selected(0.2, len(members))]].tolist())
    assert {i for batch in trainer._sampler.batches for i in batch} == expected
    with pytest.raises(ValueError, match="stratify_selection"):
        _args(tmp_path, "graph_regression", variant="single", stratify_selection=True)
    with pytest.raises(ValueError, match="stratify_selection"):
        _args(tmp_path, task, variant="batch", stratify_selection=True)


@pytest.mark.parametrize("normalization", ["nodes", "sqrt_nodes"])
def test_batch_variant_in_the_trainer_keeps_top_mean_batches(tmp_path, make_graphs, normalization):
    task = "node_regression"
    train = make_graphs(32, task, seed=4)
    model = GrantGCN(6, 1, hidden_channels=8, level="node", batch_norm=False)
    args = _args(tmp_path, task, learning_rate=0.0, num_train_epochs=1, start_ratio=0.5,
                 node_score_normalization=normalization)
    trainer = GraNTTrainer(model=model, args=args, train_dataset=train)
    trainer.train()
    scores = score_dataset(model, train, GraphCollator(task), task, node_normalization=normalization)
    batches = partition_batches(32, 8, seed=args.seed)
    means = torch.stack([scores[b].mean() for b in batches])
    expected = sorted(batches[i].tolist() for i in means.argsort(descending=True)[:2].tolist())
    assert sorted(trainer._sampler.batches) == expected


def test_random_teacher_keeps_grants_subset_sizes_with_graphs_drawn_by_seed(tmp_path, make_graphs):
    task = "graph_regression"
    train = make_graphs(30, task, seed=3)

    def chosen_sets(teacher, seed=0):
        model = GrantGCN(6, 1, hidden_channels=8, batch_norm=False)
        args = _args(tmp_path, task, teacher=teacher, learning_rate=0.0, variant="single", num_train_epochs=3,
                     start_ratio=0.2, reselect_interval_start=1, seed=seed, output_dir=str(tmp_path / teacher))
        trainer = GraNTTrainer(model=model, args=args, train_dataset=train)
        trainer.train()
        return trainer, [entry["subset_size"] for entry in trainer.teaching_log]

    grant, grant_sizes = chosen_sets("grant")
    random, random_sizes = chosen_sets("random")
    assert random_sizes == grant_sizes  # the same schedule, batch by batch
    assert "score_share" not in random.teaching_log[0] and "score_share" in grant.teaching_log[0]
    picked = {i for batch in random._sampler.batches for i in batch}
    assert picked != {i for batch in grant._sampler.batches for i in batch}  # not the top-scoring graphs
    again, _ = chosen_sets("random")
    assert {i for batch in again._sampler.batches for i in batch} == picked
    other_seed, _ = chosen_sets("random", seed=1)
    assert {i for batch in other_seed._sampler.batches for i in batch} != picked
    with pytest.raises(ValueError, match="teacher must be one of"):
        _args(tmp_path, task, teacher="oracle")


def test_any_pyg_model_and_full_training(tmp_path, make_graphs):
    task = "node_regression"
    train = make_graphs(24, task, seed=5)
    model = GCN(in_channels=6, hidden_channels=8, num_layers=2, out_channels=1)
    args = _args(tmp_path, task, teacher="none", num_train_epochs=2)
    trainer = GraNTTrainer(model=model, args=args, train_dataset=train, eval_dataset=train)
    output = trainer.train()
    assert output.global_step == 2 * 3
    # evaluation pads node outputs per graph; the MAE is still the mean over every node
    flat, labels = _outputs_and_labels(model, task, train)
    expected = (flat - labels).abs().mean().item()
    assert trainer.evaluate()["eval_mae"] == pytest.approx(expected, rel=1e-4)
    grant = GraNTTrainer(model=model, args=_args(tmp_path, task), train_dataset=train).train()
    assert grant.metrics["grant_reselections"] == 2


def test_node_regression_with_several_targets_per_node(tmp_path, make_graphs):
    task = "node_regression"
    train = make_graphs(24, task, seed=5)
    train = train.map(lambda row: {"y": [[v, 2 * v] for v in row["y"]]})  # [num_nodes, 2]
    model = GrantGCN(6, 2, hidden_channels=8, level="node")
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, task), train_dataset=train, eval_dataset=train)
    assert trainer.train().metrics["grant_reselections"] == 2
    outputs, labels = _outputs_and_labels(model, task, train)
    assert labels.shape == outputs.shape == (sum(train["num_nodes"]), 2)
    # the MAE over every node and target
    expected = (outputs - labels).abs().mean().item()
    assert trainer.evaluate()["eval_mae"] == pytest.approx(expected, rel=1e-4)


def test_saved_model_reloads(tmp_path, make_graphs):
    train = make_graphs(16, "graph_classification", seed=6)
    trainer = GraNTTrainer(model=GrantGCN(6, 2, hidden_channels=8), args=_args(tmp_path, "graph_classification", num_train_epochs=1), train_dataset=train)
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    assert GrantGCN.from_pretrained(tmp_path / "saved").head.out_features == 2


def test_a_reloaded_model_predicts_with_the_task_it_records(tmp_path, make_graphs):
    graphs = make_graphs(16, "graph_classification", seed=6)
    GrantGCN(6, 2, hidden_channels=8, task="graph_classification").save_pretrained(tmp_path / "saved")
    args = GraNTTrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)
    assert args.task is None
    trainer = GraNTTrainer(model=GrantGCN.from_pretrained(tmp_path / "saved"), args=args)
    assert trainer.args.task == "graph_classification" and trainer.task.is_classification
    assert trainer.predict(graphs).predictions.shape == (16, 2)
    # the caller's arguments keep task=None: they take the next model's task, here another one
    assert args.task is None
    GrantGCN(6, 1, hidden_channels=8, level="node", task="node_regression").save_pretrained(tmp_path / "node")
    assert GraNTTrainer(model=GrantGCN.from_pretrained(tmp_path / "node"), args=args).args.task == "node_regression"


def test_a_task_neither_given_nor_recorded_or_given_against_the_models_is_refused(tmp_path, make_graphs):
    train = make_graphs(16, "graph_regression")
    unnamed = dict(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match=r"task=None\) and the model \(GCN\) records none: pass task=, one of"):
        GraNTTrainer(model=GCN(6, 8, 2, out_channels=1), args=GraNTTrainingArguments(**unnamed), train_dataset=train)
    with pytest.raises(ValueError, match=r"task=None\) and the model \(GrantGCN\) records none"):
        GraNTTrainer(model=GrantGCN(6, 1), args=GraNTTrainingArguments(**unnamed), train_dataset=train)
    with pytest.raises(ValueError, match=r"task='graph_regression', but the model records task='node_regression'"):
        GraNTTrainer(model=GrantGCN(6, 1, level="node", task="node_regression"),
                     args=_args(tmp_path, "graph_regression"), train_dataset=train)
    # the settings checked against the task are checked against the model's
    stratified = GraNTTrainingArguments(**unnamed, variant="single", stratify_selection=True)
    with pytest.raises(ValueError, match=r"stratify_selection needs task='graph_classification'.*got task='graph_regression'"):
        GraNTTrainer(model=GrantGCN(6, 1, task="graph_regression"), args=stratified, train_dataset=train)


def test_arguments_after_eval_dataset_are_keyword_only_as_trainers_sixth_is_processing_class(tmp_path, make_graphs):
    train = make_graphs(8, "graph_regression")
    args = _args(tmp_path, "graph_regression")
    with pytest.raises(TypeError, match="positional argument"):
        GraNTTrainer(GrantGCN(6, 1), args, None, train, None, lambda prediction: {})
    assert GraNTTrainer(GrantGCN(6, 1), args, None, train, compute_metrics=None).args is args


def test_bad_input_errors(tmp_path, make_graphs):
    train = make_graphs(8, "graph_regression")
    with pytest.raises(ValueError, match="missing column"):
        GraNTTrainer(model=GrantGCN(6, 1), args=_args(tmp_path, "graph_regression"), train_dataset=train.remove_columns("y"))
    with pytest.raises(ValueError, match="task must be one of"):
        _args(tmp_path, "edge_regression")
    with pytest.raises(ValueError, match="max_steps"):
        _args(tmp_path, "graph_regression", max_steps=10)
    for teacher in ("grant", "none"):
        with pytest.raises(ValueError, match="num_train_epochs must be > 0"):
            _args(tmp_path, "graph_regression", teacher=teacher, num_train_epochs=0)
        with pytest.raises(ValueError, match="training requires a train_dataset"):
            GraNTTrainer(model=GrantGCN(6, 1), args=_args(tmp_path, "graph_regression", teacher=teacher)).train()
    with pytest.raises(ValueError, match="node_score_normalization"):
        _args(tmp_path, "node_regression", node_score_normalization="n")
    with pytest.raises(ValueError, match="variant='single'"):  # the full-batch regime with GraNT(B)
        GraNTTrainer(model=GrantGCN(6, 1), args=_args(tmp_path, "graph_regression", per_device_train_batch_size=8),
                     train_dataset=train).train()
    with pytest.raises(ValueError, match="one output row per graph"):
        # a node-level model on a graph-level task
        args = _args(tmp_path, "graph_regression", num_train_epochs=1, per_device_train_batch_size=4)
        GraNTTrainer(model=GrantGCN(6, 1, level="node"), args=args, train_dataset=train).train()


class _DataForward(torch.nn.Module):  # PyG's habit: forward(self, data)
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 1)

    def forward(self, data):
        return self.linear(data.x)


class _NodeModelWithoutBatch(torch.nn.Module):  # a node-level forward(x, edge_index), as in PyG's tutorials
    def __init__(self):
        super().__init__()
        self.gcn = GCN(in_channels=6, hidden_channels=8, num_layers=2, out_channels=1)

    def forward(self, x, edge_index):
        return self.gcn(x, edge_index)


def test_a_forward_that_cannot_take_the_batch_is_refused_at_construction(tmp_path, make_graphs):
    train = make_graphs(8, "graph_regression")
    with pytest.raises(TypeError, match=r"_DataForward.forward\(data\) does not take \['x', 'edge_index', 'batch'\]"):
        GraNTTrainer(model=_DataForward(), args=_args(tmp_path, "graph_regression"), train_dataset=train)
    with pytest.raises(TypeError, match=r"does not take \['batch'\]"):  # a graph-level task needs the graph ids
        GraNTTrainer(model=_NodeModelWithoutBatch(), args=_args(tmp_path, "graph_regression"), train_dataset=train)


def test_a_model_built_for_another_feature_width_is_named_at_construction(tmp_path, make_graphs):
    train = make_graphs(8, "graph_regression")  # 6 node features
    args = _args(tmp_path, "graph_regression")
    for model in (GrantGCN(9, 1), GCN(9, 8, 2, out_channels=1), torch.compile(GrantGCN(9, 1), backend="eager")):
        name = "GCN" if isinstance(model, GCN) else "GrantGCN"
        with pytest.raises(ValueError, match=rf"{name} was built with in_channels=9, but the node features x of "
                                             r"train_dataset have 6 columns .*in_channels=6"):
            GraNTTrainer(model=model, args=args, train_dataset=train)
    # a trainer built without data checks the graphs given to predict
    trainer = GraNTTrainer(model=GrantGCN(9, 1), args=args)
    with pytest.raises(ValueError, match=r"in_channels=9, but the node features x of test dataset have 6 columns"):
        trainer.predict(train)
    # PyG's lazy width (-1) and a model that declares none are left alone
    GraNTTrainer(model=GCN(-1, 8, 2, out_channels=1), args=args, train_dataset=train)
    GraNTTrainer(model=_NodeModelWithoutBatch(), args=_args(tmp_path, "node_regression"),
                 train_dataset=make_graphs(8, "node_regression"))


def test_compiled_models_are_called_with_their_own_forwards_inputs(tmp_path):
    from hf_eff.grant import graphs_from_smiles

    molecules = graphs_from_smiles(["CCO", "CCN", "c1ccccc1", "CC(=O)O"], [[1.0], [2.0], [3.0], [4.0]])  # with edge_attr
    model = torch.compile(GrantGCN(len(molecules[0]["x"][0]), 1, hidden_channels=8), backend="eager")
    args = _args(tmp_path, "graph_regression", teacher="none", num_train_epochs=1, per_device_train_batch_size=2)
    trainer = GraNTTrainer(model=model, args=args, train_dataset=molecules)
    assert trainer._forward_inputs == ("x", "edge_index", "batch")  # GrantGCN takes no edge_attr
    assert trainer.train().global_step == 2
    with pytest.raises(TypeError, match=r"_DataForward.forward\(data\) does not take"):
        GraNTTrainer(model=torch.compile(_DataForward(), backend="eager"), args=args, train_dataset=molecules)


def test_a_node_model_without_a_batch_parameter_trains(tmp_path, make_graphs):
    train = make_graphs(16, "node_regression", seed=5)
    trainer = GraNTTrainer(model=_NodeModelWithoutBatch(), args=_args(tmp_path, "node_regression", num_train_epochs=2),
                           train_dataset=train, eval_dataset=train)
    assert trainer.train().metrics["grant_reselections"] == 1
    assert math.isfinite(trainer.evaluate()["eval_mae"])


def test_saved_arguments_leave_the_hub_token_out(tmp_path, make_graphs):
    train = make_graphs(8, "graph_regression")
    args = _args(tmp_path, "graph_regression", num_train_epochs=1, hub_token="hf_do_not_save_me")
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train)
    trainer.save_model(str(tmp_path / "saved"))
    assert b"hf_do_not_save_me" not in (tmp_path / "saved" / "training_args.bin").read_bytes()
    assert trainer.args.hub_token == "hf_do_not_save_me"  # the live arguments keep it for pushes


def test_resumed_run_ends_where_the_uninterrupted_run_ends(tmp_path, make_graphs):
    # 32 graphs in 4 batches, GraNT(B) reselecting every 2 epochs: 2, 2, 3, 3, 4, 4 steps per epoch.
    # checkpoint-5 is inside a reselection epoch (the saved subset must be reused, not rescored),
    # checkpoint-10 ends an epoch before a reselection, checkpoint-15 is inside a later epoch.
    train = make_graphs(32, "graph_regression", seed=7)
    settings = dict(num_train_epochs=6, start_ratio=0.5, variant="batch", save_strategy="steps", save_steps=5)
    torch.manual_seed(0)
    full = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, "graph_regression", **settings),
                        train_dataset=train)
    full.train()
    assert full.state.global_step == 18
    expected = {name: p.detach().clone() for name, p in full.model.named_parameters()}
    subsets = [log["subset_size"] for log in full.teaching_log]
    for step in (5, 10, 15):
        torch.manual_seed(step)  # another initialisation: the checkpoint's weights must replace it
        resumed = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8),
                               args=_args(tmp_path, "graph_regression", **settings), train_dataset=train)
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{step}"))
        assert resumed.state.global_step == 18
        assert [log["subset_size"] for log in resumed.teaching_log] == subsets
        for name, value in resumed.model.named_parameters():
            torch.testing.assert_close(value, expected[name], msg=f"resumed at step {step}: {name}")


def test_a_run_resumed_with_more_epochs_keeps_its_past_and_follows_the_new_plan(tmp_path, make_graphs):
    # 32 graphs in 4 batches, reselected every 2 epochs. The 3-epoch plan: ratio .25 (1 batch), .25, .745 (3 batches).
    # The 6-epoch plan: .25, .25, .49 (2), .49, .745 (3), .745; its epochs 0-1 are the 3-epoch plan's, its epoch 2 not.
    train = make_graphs(32, "graph_regression", seed=7)
    settings = dict(start_ratio=0.25, variant="batch", save_strategy="steps", save_steps=1)
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, "graph_regression", num_train_epochs=3,
                                                                       **settings), train_dataset=train).train()
    extended = _args(tmp_path, "graph_regression", num_train_epochs=6, **{**settings, "save_strategy": "no"})
    # checkpoint-2 ends epoch 1: the same past, so the 6-epoch run's own plan (2 + 2 + 2 + 3 + 3 steps after it)
    # checkpoint-4 is inside epoch 2 and checkpoint-5 ends it: epoch 2 ends on its .745 subset, the teacher reselects
    # at epoch 3 (ratio .625: 3 batches), then the 6-epoch plan goes on from its reselection at epoch 4
    cases = {2: (12, [0, 2, 4], [0.25, 0.49, 0.745]), 4: (14, [0, 2, 3, 4], [0.25, 0.745, 0.625, 0.745]),
             5: (14, [0, 2, 3, 4], [0.25, 0.745, 0.625, 0.745])}
    for step, (steps, epochs, ratios) in cases.items():
        resumed = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=extended, train_dataset=train)
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{step}"))
        assert resumed.state.global_step == resumed.state.max_steps == steps, step
        assert [log["epoch"] for log in resumed.teaching_log] == epochs, step
        assert [log["ratio"] for log in resumed.teaching_log] == pytest.approx(ratios), step
        assert set(resumed.lr_scheduler.get_last_lr()) == {0.0}, step  # the linear schedule spans the steps taken
    # each checkpoint holds the plan its steps were taken under and the one its run's settings give
    saved = json.loads((tmp_path / "out" / "checkpoint-5" / "grant_teacher.json").read_text())
    for key in ("plan", "settings_plan"):
        assert [(e["epoch"], e["reselect"], e["num_batches"]) for e in saved[key]] == [(0, True, 1), (1, False, 1),
                                                                                      (2, True, 3)], key
        assert [e["ratio"] for e in saved[key]] == pytest.approx([0.25, 0.25, 0.745]), key


def test_an_extended_run_resumed_under_its_settings_follows_the_plan_it_was_extended_to(tmp_path, make_graphs):
    # the 3-epoch run of the test above, extended to 6 epochs from inside epoch 2 (steps of 1, 1, 3, 3, 3, 3), saving
    # each step; resumed inside epoch 4 under the same settings, it goes on as the extended run did (a comparison
    # with the 6-epoch settings' own plan would take it for a changed plan, reselecting at epoch 5)
    train = make_graphs(32, "graph_regression", seed=7)
    settings = dict(start_ratio=0.25, variant="batch", save_strategy="steps", save_steps=1)
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, "graph_regression", num_train_epochs=3,
                                                                       **settings), train_dataset=train).train()
    extending = _args(tmp_path, "graph_regression", num_train_epochs=6, **{**settings, "output_dir": str(tmp_path / "ext")})
    extended = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=extending, train_dataset=train)
    extended.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    saved = json.loads((tmp_path / "ext" / "checkpoint-10" / "grant_teacher.json").read_text())
    assert [EpochPlan(**entry) for entry in saved["plan"]] == extended._plan
    assert [entry["ratio"] for entry in saved["settings_plan"]] == pytest.approx([0.25, 0.25, 0.49, 0.49, 0.745, 0.745])
    again = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), train_dataset=train,
                         args=_args(tmp_path, "graph_regression", num_train_epochs=6,
                                    **{**settings, "output_dir": str(tmp_path / "ext"), "save_strategy": "no"}))
    again.train(resume_from_checkpoint=str(tmp_path / "ext" / "checkpoint-10"))
    assert again._plan == extended._plan
    assert again.teaching_log == [{**log, "selection_seconds": again.teaching_log[i]["selection_seconds"]}
                                  for i, log in enumerate(extended.teaching_log)]
    assert again.state.global_step == again.state.max_steps == 14
    for (name, value), expected in zip(again.model.named_parameters(), extended.model.parameters(), strict=True):
        torch.testing.assert_close(value, expected, msg=name)


def test_a_resume_with_no_epoch_left_to_train_is_refused_before_training(tmp_path, make_graphs):
    train = make_graphs(32, "graph_regression", seed=7)
    settings = dict(variant="batch", save_strategy="epoch")
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, "graph_regression", **settings),
                 train_dataset=train).train()
    shortened = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), train_dataset=train,
                             args=_args(tmp_path, "graph_regression", num_train_epochs=2, **settings))
    checkpoint = str(tmp_path / "out" / "checkpoint-5")  # epochs of 1, 1, 2, 2 steps: the end of epoch 2
    with pytest.raises(ValueError, match=r"it has trained 3 epoch\(s\), and num_train_epochs=2 leaves none to train"):
        shortened.train(resume_from_checkpoint=checkpoint)
    assert shortened.state.global_step == 0


def test_resume_without_the_teachers_state_is_refused(tmp_path, make_graphs):
    train = make_graphs(16, "graph_regression")
    args = _args(tmp_path, "graph_regression", num_train_epochs=2, save_strategy="steps", save_steps=1)
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train).train()
    (tmp_path / "out" / "checkpoint-1" / "grant_teacher.json").unlink()
    with pytest.raises(ValueError, match="grant_teacher.json"):
        GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train).train(
            resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-1"))


def test_resume_from_a_missing_folder_names_it(tmp_path, make_graphs):
    train = make_graphs(16, "graph_regression")
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, "graph_regression"),
                           train_dataset=train)
    missing = str(tmp_path / "out" / "checkpoint-7")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing}: the folder does not exist")):
        trainer.train(resume_from_checkpoint=missing)


def test_curve_has_cpu_seconds_and_one_point_per_evaluation_of_several_sets(tmp_path, make_graphs):
    task = "graph_regression"
    train = make_graphs(40, task, seed=1)
    curve = ValidationCurveCallback()
    trainer = GraNTTrainer(
        model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, task, eval_strategy="epoch"),
        train_dataset=train, eval_dataset={"validation": make_graphs(12, task, seed=2), "test": make_graphs(12, task, seed=3)},
        callbacks=[curve],
    )
    trainer.train()
    assert len(curve.curve) == 4  # validation and test of one epoch share a point
    assert {"eval_validation_mae", "eval_test_mae", "cpu_seconds"} <= set(curve.curve[0])
    seconds = [p["seconds"] for p in curve.curve]
    assert seconds == sorted(seconds) and all(p["cpu_seconds"] > 0 for p in curve.curve)
    assert curve.eval_seconds > 0 and curve.eval_cpu_seconds > 0


def test_resumed_run_carries_the_validation_curve_on(tmp_path, make_graphs):
    # epochs of 2, 2, 3, 3, 4, 4 steps, evaluated and saved at every epoch end: checkpoint-7 ends epoch 3
    task = "graph_regression"
    train, validation = make_graphs(32, task, seed=7), make_graphs(12, task, seed=8)
    settings = dict(num_train_epochs=6, start_ratio=0.5, variant="batch", save_strategy="epoch", eval_strategy="epoch")
    full_curve = ValidationCurveCallback()
    torch.manual_seed(0)
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, task, **settings), train_dataset=train,
                 eval_dataset=validation, callbacks=[full_curve]).train()
    curve = ValidationCurveCallback()
    resumed = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, task, **settings),
                           train_dataset=train, eval_dataset=validation, callbacks=[curve])
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-7"))
    assert [p["step"] for p in curve.curve] == [p["step"] for p in full_curve.curve] == [2, 4, 7, 10, 14, 18]
    assert curve.curve[:3] == full_curve.curve[:3]  # the checkpoint's points, clocks included
    for point, expected in zip(curve.curve[3:], full_curve.curve[3:]):
        assert point["eval_mae"] == pytest.approx(expected["eval_mae"], rel=1e-5)
    for clock in ("seconds", "cpu_seconds"):
        times = [p[clock] for p in curve.curve]
        assert times == sorted(times) and times[3] > times[2] > 0  # the resumed part starts from the checkpoint's clock
    saved = json.loads((tmp_path / "out" / "checkpoint-7" / "trainer_state.json").read_text())
    clocks = saved["stateful_callbacks"]["ValidationCurveCallback"]["attributes"]
    assert clocks["train_seconds"] >= curve.curve[2]["seconds"]
    assert curve.eval_seconds > clocks["eval_seconds"] > 0 and curve.eval_cpu_seconds > clocks["eval_cpu_seconds"] > 0


def test_compare_reports_wall_and_cpu_time_to_target(tmp_path, make_graphs):
    from hf_eff.grant.compare import compare

    task = "graph_regression"
    splits = {"train": make_graphs(40, task, seed=1), "validation": make_graphs(12, task, seed=2),
              "test": make_graphs(12, task, seed=3)}
    training = dict(output_dir=str(tmp_path / "cmp"), num_train_epochs=4, per_device_train_batch_size=8,
                    learning_rate=1e-2, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                    logging_strategy="no", eval_strategy="epoch", seed=0)
    result = compare(task, lambda: GrantGCN(6, 1, hidden_channels=8), splits, training,
                     dict(start_ratio=0.25, reselect_schedule="constant", reselect_interval_start=2), tolerance=0.5,
                     random_baseline=True)
    full, grant, random = result["rows"]
    assert [row["method"] for row in result["rows"]] == ["full", "GraNT(B)", "random(B)"]
    assert random["steps"] == grant["steps"] and "test_change_%" in random and "score_share_mean" not in random
    assert full["best_val"] == pytest.approx(result["target"], abs=1e-4)
    assert full["time_to_target_s"] is not None and full["test_at_target"] is not None
    # a looser target is reached no later than the exact one
    assert full["time_to_target_50%_cpu_s"] <= full["time_to_target_cpu_s"]
    assert {"time_to_target_x", "time_to_target_cpu_x", "time_to_target_50%_x", "test_change_%"} <= set(grant)
    assert grant["steps"] < full["steps"]
    assert grant["ratio_mean"] <= grant["score_share_mean"] <= 1 and "score_share_mean" not in full


def test_node_targets_of_minus_100_count_in_evaluation(tmp_path, make_graphs):
    task = "node_regression"
    data = make_graphs(13, task, seed=6, min_nodes=2)
    data = data.map(lambda row, i: {"y": [-100.0] + row["y"][1:] if i % 2 else row["y"]}, with_indices=True)
    model = GrantGCN(6, 1, hidden_channels=8, level="node")
    # eval batches of 4 graphs: the Trainer pads the node axis across batches with -100
    args = _args(tmp_path, task, per_device_eval_batch_size=4)
    trainer = GraNTTrainer(model=model, args=args, train_dataset=data, eval_dataset=data)
    outputs, labels = _outputs_and_labels(model, task, data)
    expected = (outputs - labels).abs().mean().item()
    assert trainer.evaluate()["eval_mae"] == pytest.approx(expected, rel=1e-5)


def test_resume_from_a_checkpoint_saved_without_the_curve_goes_on_saving(tmp_path, make_graphs):
    # A checkpoint from a run without ValidationCurveCallback (or from before it kept state):
    # transformers' next save looks up an entry for every stateful callback.
    task = "graph_regression"
    train, validation = make_graphs(32, task, seed=7), make_graphs(12, task, seed=8)
    settings = dict(num_train_epochs=6, start_ratio=0.5, variant="batch", save_strategy="epoch", eval_strategy="epoch")
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, task, **settings), train_dataset=train,
                 eval_dataset=validation).train()
    state_file = tmp_path / "out" / "checkpoint-7" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["stateful_callbacks"].pop("ValidationCurveCallback", None)
    state_file.write_text(json.dumps(state))
    curve = ValidationCurveCallback()
    resumed = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, task, **settings),
                           train_dataset=train, eval_dataset=validation, callbacks=[curve])
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-7"))
    assert resumed.state.global_step == 18 and [p["step"] for p in curve.curve] == [10, 14, 18]
    saved = json.loads((tmp_path / "out" / "checkpoint-18" / "trainer_state.json").read_text())
    assert [p["step"] for p in saved["stateful_callbacks"]["ValidationCurveCallback"]["attributes"]["curve"]] == [10, 14, 18]


class _KwargsForward(GrantGCN):  # transformers counts a **kwargs forward as one that normalises its own loss
    def forward(self, x, edge_index, batch=None, **kwargs):
        return super().forward(x, edge_index, batch)


@pytest.mark.parametrize("teacher", ["none", "grant"])
def test_a_kwargs_forward_trains_as_a_plain_one_under_gradient_accumulation(tmp_path, make_graphs, teacher):
    train = make_graphs(32, "graph_regression", seed=1)

    def trained(model_class):
        torch.manual_seed(0)
        model = model_class(6, 1, hidden_channels=8, batch_norm=False)
        # plain SGD without clipping: a gradient twice too large shows in the weights (AdamW would hide it)
        args = _args(tmp_path, "graph_regression", teacher=teacher, num_train_epochs=3, start_ratio=0.5,
                     per_device_train_batch_size=4, gradient_accumulation_steps=2, optim="sgd", learning_rate=0.1,
                     max_grad_norm=0)
        GraNTTrainer(model=model, args=args, train_dataset=train).train()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.testing.assert_close(trained(_KwargsForward), trained(GrantGCN))


@pytest.mark.parametrize("teacher", ["grant", "none"])
def test_removing_unused_columns_is_refused_with_the_default_collator(tmp_path, make_graphs, teacher):
    train = make_graphs(16, "graph_regression")
    args = _args(tmp_path, "graph_regression", teacher=teacher, remove_unused_columns=True)
    with pytest.raises(ValueError, match=r"remove_unused_columns=True would drop the columns GraphCollator batches"):
        GraNTTrainer(model=GrantGCN(6, 1), args=args, train_dataset=train)


def test_batch_eval_metrics_without_a_compute_metrics_of_ones_own_is_refused(tmp_path, make_graphs):
    args = _args(tmp_path, "graph_classification", batch_eval_metrics=True)
    with pytest.raises(ValueError, match="batch_eval_metrics=True: the default metrics.*whole evaluation set"):
        GraNTTrainer(model=GrantGCN(6, 2, hidden_channels=8), args=args, train_dataset=make_graphs(16, "graph_classification"))


class _GraphCountingTrainer(GraNTTrainer):
    """Counts the graphs its training steps take, as the loss sees them."""

    graphs_trained = 0

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            self.graphs_trained += inputs["num_nodes"].numel()
        return super().compute_loss(model, inputs, *args, **kwargs)


def _graphs_reported(metrics) -> float:
    return metrics["train_samples_per_second"] * metrics["train_runtime"]  # both rounded: compared to within 1%


# mini-batches, one batch holding the whole training set, and GraNT(B) on batches of 16, 16 and 8
@pytest.mark.parametrize(("variant", "batch_size"), [("single", 8), ("single", 64), ("batch", 16)])
def test_train_samples_per_second_counts_the_graphs_taught(tmp_path, make_graphs, variant, batch_size):
    task = "graph_regression"
    args = _args(tmp_path, task, per_device_train_batch_size=batch_size, variant=variant)
    trainer = _GraphCountingTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=make_graphs(40, task))
    metrics = trainer.train().metrics
    assert trainer.graphs_trained < trainer.state.max_steps * batch_size  # what transformers would count
    assert _graphs_reported(metrics) == pytest.approx(trainer.graphs_trained, rel=0.01)


def test_a_resumed_runs_train_samples_per_second_counts_the_graphs_of_the_epochs_it_trains(tmp_path, make_graphs):
    # 40 graphs in batches of 8, GraNT(S): epochs 0-1 keep 10 graphs (2 steps each), epochs 2-3 keep 25 (4 steps
    # each). Resumed after epoch 1, the run trains 50 graphs in 8 of the 12 steps, not 8/12 of the plan's 70.
    task = "graph_regression"
    train = make_graphs(40, task)
    args = _args(tmp_path, task, variant="single", save_strategy="epoch")
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train).train()
    resumed = _GraphCountingTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train)
    metrics = resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4")).metrics
    assert resumed.graphs_trained == 50
    assert _graphs_reported(metrics) == pytest.approx(50, rel=0.01)


def test_a_compute_loss_func_is_refused(tmp_path, make_graphs):
    with pytest.raises(ValueError, match="compute_loss_func would not be used"):
        GraNTTrainer(model=GrantGCN(6, 1), args=_args(tmp_path, "graph_regression"),
                     train_dataset=make_graphs(8, "graph_regression"), compute_loss_func=lambda *a, **k: 0)


def test_every_card_reports_the_runs_selection_totals(tmp_path, make_graphs):
    from hf_eff.hub.push import build_card

    task = "graph_regression"
    args = _args(tmp_path, task, num_train_epochs=6)  # reselections at epochs 0, 2 and 4
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=make_graphs(40, task, seed=1))
    output = trainer.train()
    assert output.metrics["grant_selection_seconds"] == sum(e["selection_seconds"] for e in trainer.teaching_log)

    def measures(card_text):
        return dict(re.findall(r"^\| (grant_\w+) \| ([^|]+) \|", card_text, flags=re.MULTILINE))  # name: value

    trainer.save_model()
    trainer.create_model_card()  # the trainer's own card (push_to_hub), read from the log history
    own = measures((tmp_path / "out" / "README.md").read_text())
    trainer.save_metrics("train", output.metrics)  # all_results.json, which `hf-eff push` reads
    pushed = measures(build_card("grant_model", tmp_path / "out", "user/run").text)
    assert own == pushed and set(own) == {"grant_selection_seconds", "grant_reselections"}
    assert own["grant_reselections"] == "3"


@pytest.mark.parametrize("task", ["node_regression", "node_classification", "graph_regression", "graph_multilabel"])
def test_eval_loss_is_the_mean_over_nodes_or_graphs(tmp_path, make_graphs, task):
    # eval batches of 4 graphs of 1 to 12 nodes: weighting each batch by its graphs is not the node mean, nor
    # (graph_multilabel, 40% of two targets unlabelled) the mean over labelled entries
    data = make_graphs(13, task, seed=6, min_nodes=1, max_nodes=12)
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=8, level=task.split("_")[0])
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, task, per_device_eval_batch_size=4), eval_dataset=data)
    outputs, labels = _outputs_and_labels(model, task, data)
    if task.endswith("multilabel"):
        labelled = ~labels.isnan()
        expected = torch.nn.functional.binary_cross_entropy_with_logits(outputs[labelled], labels[labelled])
    elif task.endswith("classification"):
        expected = torch.nn.functional.cross_entropy(outputs, labels)
    else:
        expected = torch.nn.functional.mse_loss(outputs, labels.view_as(outputs))
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert trainer.predict(data).metrics["test_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_training_loader_options_are_passed_on_or_refused(tmp_path, make_graphs):
    task = "graph_regression"
    train = make_graphs(32, task, seed=1)

    def trained(**options):
        torch.manual_seed(0)
        model = GrantGCN(6, 1, hidden_channels=8, batch_norm=False)
        trainer = GraNTTrainer(model=model, args=_args(tmp_path, task, num_train_epochs=4, **options), train_dataset=train)
        output = trainer.train()
        assert output.global_step == sum(p.num_batches for p in trainer._plan)
        return trainer, torch.cat([p.detach().flatten() for p in model.parameters()])

    # one worker kept across epochs whose batches change at every reselection
    workers, weights = trained(dataloader_num_workers=1, dataloader_persistent_workers=True, dataloader_prefetch_factor=3,
                               dataloader_in_order=False)
    loader = workers.get_train_dataloader()
    assert loader.persistent_workers and loader.prefetch_factor == 3 and not loader.in_order
    torch.testing.assert_close(weights, trained()[1])
    for option, value in (("dataloader_drop_last", True), ("auto_find_batch_size", True), ("label_smoothing_factor", 0.1)):
        with pytest.raises(ValueError, match=option):
            _args(tmp_path, task, **{option: value})
    _args(tmp_path, task, teacher="none", dataloader_drop_last=True, auto_find_batch_size=True)  # transformers' loader
    with pytest.raises(ValueError, match="label_smoothing_factor"):
        _args(tmp_path, task, teacher="none", label_smoothing_factor=0.1)


@pytest.mark.parametrize("sampling", ["group_by_length", "sequential", "batch_rebalance"])
def test_a_training_sampler_the_teacher_would_ignore_is_refused(tmp_path, sampling):
    with pytest.raises(ValueError, match=f"train_sampling_strategy='{sampling}'.*ignored.*teacher='none'"):
        _args(tmp_path, "graph_regression", train_sampling_strategy=sampling)
    _args(tmp_path, "graph_regression", train_sampling_strategy=sampling, teacher="none")


def test_length_grouped_full_training_measures_graphs_by_num_nodes(tmp_path, make_graphs):
    # transformers measured the rows by their input_ids, which graphs lack: "Can only automatically infer lengths"
    task = "graph_regression"
    train, validation = make_graphs(24, task, seed=1), make_graphs(8, task, seed=2)
    for sampling, given in (("group_by_length", {"eval_dataset": validation}), ("batch_rebalance", {})):
        args = _args(tmp_path, task, teacher="none", train_sampling_strategy=sampling, length_column_name="length")
        with pytest.raises(ValueError, match=f"'{sampling}'.*length_column_name='length'.*train_dataset.*'num_nodes'"):
            GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train, **given)
        args = _args(tmp_path, task, teacher="none", train_sampling_strategy=sampling)  # num_nodes by default
        trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train, **given)
        assert trainer.train().global_step == 12
    assert math.isfinite(trainer.evaluate(validation)["eval_mae"])
    # evaluation is never grouped by length: a set without the length column evaluates
    args = _args(tmp_path, task, teacher="none", train_sampling_strategy="group_by_length", length_column_name="length")
    assert math.isfinite(GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args).evaluate(validation)["eval_mae"])


@pytest.mark.parametrize("teacher", ["grant", "random"])
def test_start_ratio_one_is_full_training_batch_for_batch(tmp_path, make_graphs, teacher):
    # GraNT's own batches at ratio 1 were another order than the Trainer's: another loss, other weights
    task = "graph_regression"
    train = make_graphs(40, task, seed=1)

    def trained(**options):
        torch.manual_seed(0)
        model = GrantGCN(6, 1, hidden_channels=8)
        trainer = GraNTTrainer(model=model, args=_args(tmp_path, task, **options), train_dataset=train)
        trainer.train()
        return [e["loss"] for e in trainer.state.log_history if "loss" in e], list(model.parameters())

    full_losses, full_weights = trained(teacher="none")
    losses, weights = trained(teacher=teacher, start_ratio=1.0)
    assert losses == full_losses
    for weight, full_weight in zip(weights, full_weights):
        assert torch.equal(weight, full_weight)
    _args(tmp_path, task, teacher=teacher, start_ratio=1.0, max_steps=3, dataloader_drop_last=True)  # as teacher='none'


def test_data_seed_seeds_the_teachers_batches(tmp_path, make_graphs):
    task = "graph_regression"
    train = make_graphs(30, task, seed=3)

    def batches(**seeds):
        args = _args(tmp_path, task, teacher="random", variant="single", num_train_epochs=1, start_ratio=0.5, **seeds)
        trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train)
        trainer.train()
        return trainer._sampler.batches, list(trainer._sampler)

    assert batches(seed=0, data_seed=7) == batches(seed=1, data_seed=7)  # the model's seed leaves the data alone
    assert batches(seed=0, data_seed=7) != batches(seed=0, data_seed=8)
    assert batches(seed=0) == batches(seed=5, data_seed=0)  # without data_seed, seed seeds the data


class _WrappedOutputs(torch.nn.Module):
    """GrantGCN whose forward returns (prediction, node count) or {"logits": prediction, "hidden": ...}."""

    def __init__(self, wrap: str):
        super().__init__()
        self.gcn, self.wrap = GrantGCN(6, 2, hidden_channels=8), wrap

    def forward(self, x, edge_index, batch):
        out = self.gcn(x, edge_index, batch)
        if self.wrap == "tuple":
            return out, x.size(0)
        return {"logits": out, "hidden": x} if self.wrap == "dict" else {"out": out}


@pytest.mark.parametrize("wrap", ["tuple", "dict"])
def test_a_model_returning_a_tuple_or_a_dict_trains_on_its_prediction(tmp_path, make_graphs, wrap):
    task = "graph_classification"
    train = make_graphs(24, task, seed=3)
    torch.manual_seed(0)
    plain = GrantGCN(6, 2, hidden_channels=8)
    torch.manual_seed(0)
    wrapped = _WrappedOutputs(wrap)
    metrics = []
    for model in (plain, wrapped):  # the teacher scores, training and evaluation all read the prediction
        trainer = GraNTTrainer(model=model, args=_args(tmp_path, task), train_dataset=train, eval_dataset=train)
        trainer.train()
        metrics.append(trainer.evaluate())
    assert metrics[1]["eval_loss"] == pytest.approx(metrics[0]["eval_loss"])
    assert metrics[1]["eval_accuracy"] == metrics[0]["eval_accuracy"]
    for (name, value), expected in zip(wrapped.gcn.named_parameters(), plain.parameters()):
        torch.testing.assert_close(value, expected, msg=name)
    with pytest.raises(TypeError, match=r"returned a dict with keys \['out'\]; GraNT needs the prediction tensor"):
        GraNTTrainer(model=_WrappedOutputs("other"), args=_args(tmp_path, task), train_dataset=train).train()


@pytest.mark.parametrize("teacher", ["grant", "none"])
def test_a_model_narrower_than_the_targets_or_classes_is_named(tmp_path, make_graphs, teacher):
    # the teacher scores before the first step, training (teacher none) computes the loss first
    regression = make_graphs(16, "graph_regression").map(lambda row: {"y": row["y"] * 3})
    args = _args(tmp_path, "graph_regression", teacher=teacher, per_device_train_batch_size=4)
    with pytest.raises(ValueError, match=r"returned 2 outputs per graph for 3 targets; it needs one output per target \(out_channels=3\)"):
        GraNTTrainer(model=GrantGCN(6, 2), args=args, train_dataset=regression).train()
    binary = make_graphs(16, "graph_classification")
    args = _args(tmp_path, "graph_classification", teacher=teacher, per_device_train_batch_size=4)
    with pytest.raises(ValueError, match=r"returns 1 logit\(s\) per graph, but the data has class ids up to 1: .*"
                                         r"\(out_channels=2\)\. A single-logit binary classifier trains as task 'graph_multilabel'"):
        GraNTTrainer(model=GrantGCN(6, 1), args=args, train_dataset=binary).train()
    nodes = make_graphs(16, "node_classification")  # class ids 0, 1, 2
    args = _args(tmp_path, "node_classification", teacher=teacher, per_device_train_batch_size=4)
    with pytest.raises(ValueError, match=r"returns 2 logit\(s\) per node, but the data has class ids up to 2: it needs one "
                                         r"logit per class \(out_channels=3\)\.$"):
        GraNTTrainer(model=GrantGCN(6, 2, level="node"), args=args, train_dataset=nodes).train()


@pytest.mark.parametrize("task", ["graph_regression", "node_classification"])
def test_predict_on_graphs_without_labels(tmp_path, make_graphs, task):
    train, new = make_graphs(16, task, seed=1), make_graphs(6, task, seed=2)
    trainer = GraNTTrainer(model=GrantGCN(6, OUTPUTS[task], hidden_channels=8, level=task.split("_")[0]),
                           args=_args(tmp_path, task, num_train_epochs=1, per_device_eval_batch_size=4), train_dataset=train)
    trainer.train()
    labelled, unlabelled = trainer.predict(new), trainer.predict(new.remove_columns("y"))
    assert unlabelled.label_ids is None and "test_loss" not in unlabelled.metrics
    assert unlabelled.predictions.shape == labelled.predictions.shape  # node tasks: padded per graph, as with labels
    assert (unlabelled.predictions == labelled.predictions).all()


def test_a_run_too_short_to_reselect_is_warned_of(tmp_path, make_graphs, caplog):
    train = make_graphs(32, "graph_regression")
    for epochs, warned in ((2, True), (3, False)):  # reselections every 2 epochs: at 0 only, then at 0 and 2
        caplog.clear()
        args = _args(tmp_path, "graph_regression", num_train_epochs=epochs)
        with caplog.at_level(logging.WARNING, logger="hf_eff.grant.trainer"):
            GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train).train()
        assert ("every epoch trains on the same 1 of the 4 training batches (25%)" in caplog.text) == warned


def test_a_run_too_short_to_reselect_names_the_share_actually_kept(tmp_path, make_graphs, caplog):
    # GraNT(B) keeps at least one batch: start_ratio=0.05 of 4 batches of 8 keeps 1 of them, a quarter of the graphs
    args = _args(tmp_path, "graph_regression", num_train_epochs=2, variant="batch", start_ratio=0.05)
    with caplog.at_level(logging.WARNING, logger="hf_eff.grant.trainer"):
        GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=make_graphs(32, "graph_regression")).train()
    assert "every epoch trains on the same 1 of the 4 training batches (25%)" in caplog.text



@pytest.mark.parametrize("task", ["graph_multilabel", "node_classification", "node_regression", "graph_regression"])
def test_the_batch_losses_compute_metrics_sees_are_task_loss(tmp_path, make_graphs, task):
    # evaluation takes graph_multilabel's batch loss from the per-graph sums it gathers (one BCE pass, not two)
    data = make_graphs(10, task, seed=6, min_nodes=1, max_nodes=12)
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=8, level=task.split("_")[0])
    seen = {}

    def keep_losses(prediction):
        seen["losses"] = prediction.losses
        return {}

    args = _args(tmp_path, task, per_device_eval_batch_size=4, include_for_metrics=["loss"])
    GraNTTrainer(model=model, args=args, eval_dataset=data, compute_metrics=keep_losses).evaluate()
    expected = []
    for start in range(0, len(data), 4):
        graphs = data.select(range(start, min(start + 4, len(data))))
        expected += [task_loss(GraphTask(task), *_outputs_and_labels(model, task, graphs)).item()] * len(graphs)
    assert seen["losses"].tolist() == expected


class _OneRowShort(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gcn = GrantGCN(6, 3, hidden_channels=8)

    def forward(self, x, edge_index, batch):
        return self.gcn(x, edge_index, batch)[:-1]


def test_a_multilabel_model_returning_too_few_rows_is_named_at_evaluation(tmp_path, make_graphs):
    data = make_graphs(8, "graph_multilabel")
    trainer = GraNTTrainer(model=_OneRowShort(), args=_args(tmp_path, "graph_multilabel", per_device_eval_batch_size=4),
                           eval_dataset=data)
    with pytest.raises(ValueError, match=r"graph_multilabel: the model returned 3 rows for 4 graphs; a graph-level task "
                                         r"needs one output row per graph"):
        trainer.evaluate()

def test_a_labelled_set_given_to_evaluate_or_predict_is_checked(tmp_path, make_graphs):
    train = make_graphs(16, "graph_regression")
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, "graph_regression"), train_dataset=train)
    test_set = make_graphs(6, "graph_regression", seed=1).map(lambda row, i: {"y": [float("nan")] if i == 2 else row["y"]},
                                                              with_indices=True)
    with pytest.raises(ValueError, match=r"test dataset row 2 \(0-based, as dataset\[2\]\): y contains NaN"):  # the metrics would be NaN
        trainer.evaluate(test_set, metric_key_prefix="test")
    with pytest.raises(ValueError, match=r"test dataset row 2 \(0-based, as dataset\[2\]\): y contains NaN"):
        trainer.predict(test_set)
    assert trainer.predict(test_set.remove_columns("y")).predictions.shape == (6, 1)  # graphs to predict on


@pytest.mark.parametrize("task", ["graph_regression", "node_regression"])
def test_evaluation_sets_of_other_targets_than_the_training_sets_are_refused(tmp_path, make_graphs, task):
    train = make_graphs(16, task)
    two_targets = make_graphs(6, task, seed=1).map(
        lambda row: {"y": [[v, v] for v in row["y"]] if task == "node_regression" else row["y"] * 2})
    level = task.split("_")[0]
    message = rf"y holds 2 target\(s\) per {level}, train_dataset's 1; give every dataset the same targets per {level}"
    with pytest.raises(ValueError, match=rf"^eval_dataset: {message}$"):  # not only after training, at evaluation
        GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8, level=level), args=_args(tmp_path, task),
                     train_dataset=train, eval_dataset=two_targets)
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8, level=level), args=_args(tmp_path, task),
                           train_dataset=train, eval_dataset={"same": make_graphs(6, task, seed=2)})
    with pytest.raises(ValueError, match=rf"^test dataset: {message}$"):
        trainer.evaluate(two_targets, metric_key_prefix="test")


@pytest.mark.parametrize("task", ["graph_regression", "graph_multilabel", "node_classification", "node_regression"])
def test_metrics_of_unconcatenated_evaluation_batches_are_the_sets(tmp_path, make_graphs, task):
    data = make_graphs(13, task, seed=6, min_nodes=1, max_nodes=12)  # batches of 4 graphs, each padded to its own size
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=8, level=task.split("_")[0])
    metrics = [GraNTTrainer(model=model, args=_args(tmp_path, task, per_device_eval_batch_size=4, eval_do_concat_batches=concat),
                            eval_dataset=data).evaluate() for concat in (True, False)]
    for name, value in metrics[0].items():
        if not name.endswith(("runtime", "per_second", "time")):  # clocks
            assert metrics[1][name] == pytest.approx(value), name


@pytest.mark.parametrize("task", ["node_classification", "graph_multilabel"])
def test_a_half_precision_evaluation_casts_the_features_and_sums_the_loss_in_float32(tmp_path, make_graphs, task):
    # bf16_full_eval casts the model: the float32 features failed its first layer ('expected m1 and m2 to have the
    # same dtype'). bf16 holds integers exactly up to 256 only: graphs of 300 to 400 nodes, and their loss sums,
    # were rounded
    data = make_graphs(6, task, seed=6, min_nodes=300, max_nodes=400)
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=8, level=task.split("_")[0])
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, task, bf16_full_eval=True), eval_dataset=data)
    loss = trainer.evaluate()["eval_loss"]
    features = GraphCollator(task)(list(data))
    with torch.no_grad():
        outputs = model.to(torch.bfloat16).eval()(features["x"].bfloat16(), features["edge_index"], features["batch"])
    outputs, labels = outputs.float(), features["labels"]
    if task.endswith("multilabel"):
        labelled = ~labels.isnan()
        expected = torch.nn.functional.binary_cross_entropy_with_logits(outputs[labelled], labels[labelled])
    else:
        expected = torch.nn.functional.cross_entropy(outputs, labels)
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_evaluate_refuses_graphs_without_y(tmp_path, make_graphs):
    train = make_graphs(16, "graph_regression")
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=_args(tmp_path, "graph_regression"), train_dataset=train)
    renamed = train.rename_column("y", "label")  # evaluated, it gave the clocks alone: no loss, no metric
    with pytest.raises(ValueError, match=r"test dataset has no column y \(it has \['x', 'edge_index', 'label', "
                                         r"'num_nodes'\]\): evaluate needs y; predict takes graphs without y"):
        trainer.evaluate(renamed, metric_key_prefix="test")
    assert trainer.predict(renamed).predictions.shape == (16, 1)


def test_a_given_set_with_more_classes_than_the_model_is_named(tmp_path, make_graphs):
    train = make_graphs(16, "graph_classification")  # class ids 0 and 1
    other = train.map(lambda row, i: {"y": 2 if i == 5 else row["y"]}, with_indices=True)
    trainer = GraNTTrainer(model=GrantGCN(6, 2, hidden_channels=8), args=_args(tmp_path, "graph_classification"),
                           train_dataset=train)
    for run in (trainer.evaluate, trainer.predict):  # was IndexError: Target 2 is out of bounds
        with pytest.raises(ValueError, match=r"returns 2 logit\(s\) per graph, but the data has class ids up to 2: it needs "
                                             r"one logit per class \(out_channels=3\)"):
            run(other)
    assert "eval_loss" in trainer.evaluate(train)  # the other set's classes count while it is evaluated only


def test_the_teacher_checks_the_classifier_against_the_datasets_classes(tmp_path, make_graphs):
    # scoring batches of 4 graphs: the first holds class ids 0 to 3, the set 0 to 4; training names the set's
    train = make_graphs(16, "graph_classification").map(lambda row, i: {"y": i % 4 if i < 15 else 4}, with_indices=True)
    args = _args(tmp_path, "graph_classification", score_batch_size=4)
    with pytest.raises(ValueError, match=r"class ids up to 4: it needs one logit per class \(out_channels=5\)"):
        GraNTTrainer(model=GrantGCN(6, 2, hidden_channels=8), args=args, train_dataset=train).train()


@pytest.mark.parametrize("teacher", ["none", "grant"])
def test_loaders_do_not_pin_memory_off_cuda(tmp_path, make_graphs, teacher):
    # torch warned "'pin_memory' argument is set as true but no accelerator is found" on every CPU run
    import warnings

    if torch.cuda.is_available():
        pytest.skip("pinning pays on CUDA")
    task = "graph_regression"
    args = _args(tmp_path, task, teacher=teacher, use_cpu=False)  # use_cpu=True turns pinning off itself
    assert args.dataloader_pin_memory is False
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=make_graphs(16, task, seed=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert not [str(w.message) for w in caught if "pin_memory" in str(w.message)]


@pytest.mark.parametrize("task", ["graph_regression", "node_classification"])
def test_predictions_follow_the_graphs_under_length_grouped_training(tmp_path, make_graphs, task):
    graphs = make_graphs(30, task, seed=3)
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=8, level=task.split("_")[0],
                     class_names=["a", "b", "c"] if task.endswith("classification") else None)
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, task, teacher="none", per_device_eval_batch_size=4,
                                                   train_sampling_strategy="group_by_length"))
    expected, _ = _outputs_and_labels(model, task, graphs)
    table = predictions_table(trainer, graphs)
    if task == "graph_regression":
        assert list(table.columns) == ["index", "prediction"]
        torch.testing.assert_close(torch.tensor(table["prediction"].to_numpy()), expected[:, 0], rtol=1e-5, atol=1e-6)
    else:
        assert list(table.columns) == ["graph_index", "node_index", "prediction", "probability_a", "probability_b",
                                       "probability_c"]
        assert table["graph_index"].tolist() == [g for g, n in enumerate(graphs["num_nodes"]) for _ in range(n)]
        probabilities = torch.tensor(table[["probability_a", "probability_b", "probability_c"]].to_numpy())
        torch.testing.assert_close(probabilities, expected.softmax(dim=-1), rtol=1e-5, atol=1e-6)
        assert table["prediction"].tolist() == [["a", "b", "c"][i] for i in expected.argmax(dim=-1).tolist()]


def test_graphs_to_predict_with_nan_or_inf_features_are_refused_by_predict(tmp_path, make_graphs):
    train = make_graphs(16, "graph_regression")
    train = train.add_column("edge_attr", [[[1.0, 0.0]] * len(e[0]) for e in train["edge_index"]])
    model = GrantGCN(6, 1, hidden_channels=8)
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression"), train_dataset=train)
    new = make_graphs(6, "graph_regression", seed=1, min_nodes=2).remove_columns("y")
    new = new.add_column("edge_attr", [[[1.0, 0.0]] * len(e[0]) for e in new["edge_index"]])
    assert trainer.predict(new).predictions.shape == (6, 1)
    with pytest.raises(ValueError, match=r"^test dataset row 3 \(0-based, as dataset\[3\]\): x contains inf \(node 1, feature 4\)"):
        trainer.predict(new.map(lambda row, i: {"x": [row["x"][0], row["x"][1][:4] + [float("inf")] + row["x"][1][5:],
                                                      *row["x"][2:]] if i == 3 else row["x"]}, with_indices=True))
    edges = next(i for i, e in enumerate(new["edge_index"]) if len(e[0]))
    with pytest.raises(ValueError, match=rf"^test dataset row {edges} \(0-based, as dataset\[{edges}\]\): edge_attr contains NaN \(edge 0, feature 1\)"):
        trainer.predict(new.map(lambda row, i: {"edge_attr": [[1.0, float("nan")]] + row["edge_attr"][1:]
                                                if i == edges else row["edge_attr"]}, with_indices=True))


def _two_scale_graphs(make_graphs, num_graphs=24):
    """Two regression targets, one a thousandth and one a thousand times x's first feature's mean."""
    graphs = make_graphs(num_graphs, "graph_regression")
    return graphs.map(lambda row: {"y": [row["y"][0] * 1e-3, row["y"][0] * 1e3 + 5.0]})


def test_a_standardised_models_loss_and_teacher_divide_each_targets_errors_by_its_std(tmp_path, make_graphs):
    from hf_eff.grant.selection import graph_scores, score_batches, scoring_batches

    graphs = _two_scale_graphs(make_graphs)
    std = [1e-3, 1e3]
    model = GrantGCN(6, 2, hidden_channels=8, task="graph_regression", target_mean=[0.0, 5.0], target_std=std)
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression"), train_dataset=graphs)
    batch = trainer.data_collator([graphs[i] for i in range(8)])
    outputs = model.eval()(batch["x"], batch["edge_index"], batch["batch"])
    errors = (outputs - batch["labels"]) / torch.tensor(std)
    torch.testing.assert_close(trainer.compute_loss(model, batch), errors.pow(2).mean())
    plain = GraNTTrainer(model=GrantGCN(6, 2, hidden_channels=8, task="graph_regression"),
                         args=_args(tmp_path, "graph_regression"), train_dataset=graphs)
    plain.model.load_state_dict(model.state_dict())
    unscaled = plain.model.eval()(batch["x"], batch["edge_index"], batch["batch"])
    torch.testing.assert_close(plain.compute_loss(plain.model, batch), (unscaled - batch["labels"]).pow(2).mean())
    # the teacher's scores: ||errors / std||_2 / T per graph, so the small target counts as much as the large one
    scores = trainer._score_training_set()
    everything = scoring_batches(graphs, trainer.data_collator)
    features = everything[0][0]
    outputs = model.eval()(features["x"], features["edge_index"], features["batch"])
    expected = graph_scores("graph_regression", outputs / torch.tensor(std), features["labels"] / torch.tensor(std),
                            features["batch"], len(graphs))
    torch.testing.assert_close(scores, expected)
    assert not torch.allclose(score_batches(model, everything, "graph_regression"), expected)  # unscaled differ


def test_the_loss_and_teacher_divide_by_the_models_own_std_buffer(tmp_path, make_graphs, monkeypatch):
    # no copy of target_std per step or scoring batch: the buffer, on the model's device, in its dtype
    import hf_eff.grant.selection as selection
    import hf_eff.grant.trainer as trainer_module

    graphs = _two_scale_graphs(make_graphs, num_graphs=8)
    model = GrantGCN(6, 2, hidden_channels=8, task="graph_regression", target_mean=[0.0, 5.0], target_std=[1e-3, 1e3])
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression"), train_dataset=graphs)
    used = []

    def recording(per_target_std):
        return lambda outputs, labels, target_std: used.append(target_std) or per_target_std(outputs, labels, target_std)

    monkeypatch.setattr(trainer_module, "per_target_std", recording(trainer_module.per_target_std))
    monkeypatch.setattr(selection, "per_target_std", recording(selection.per_target_std))
    batch = trainer.data_collator([graphs[i] for i in range(4)])
    trainer.compute_loss(model, batch)
    trainer._score_training_set()
    assert len(used) == 2 and all(std is model._target_std for std in used)
    model.double()  # a cast replaces the buffer: the trainer reads the model's current one
    trainer.compute_loss(model, {**batch, "x": batch["x"].double()})
    assert used[2] is model._target_std and used[2].dtype == torch.float64


class _OwnStandardisedGCN(torch.nn.Module):
    """A user's model that standardises its targets without GrantGCN's buffer of target_std."""

    target_std = [1e-3, 1e3]

    def __init__(self):
        super().__init__()
        self.gcn = GCN(6, 8, num_layers=1, out_channels=2)

    def forward(self, x, edge_index, batch):
        from torch_geometric.nn import global_mean_pool

        return global_mean_pool(self.gcn(x, edge_index), batch)


def test_a_users_model_with_target_std_and_no_buffer_gets_one_tensor_of_it(tmp_path, make_graphs, monkeypatch):
    import hf_eff.grant.trainer as trainer_module

    graphs = _two_scale_graphs(make_graphs, num_graphs=8)
    model = _OwnStandardisedGCN()
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, "graph_regression"), train_dataset=graphs)
    used = []
    per_target_std = trainer_module.per_target_std
    monkeypatch.setattr(trainer_module, "per_target_std",
                        lambda outputs, labels, std: used.append(std) or per_target_std(outputs, labels, std))
    batch = trainer.data_collator([graphs[i] for i in range(4)])
    loss = trainer.compute_loss(model, batch)
    trainer.compute_loss(model, batch)
    assert used[0] is used[1] and used[0].device == trainer.args.device  # made once, on the run's device
    outputs = model(batch["x"], batch["edge_index"], batch["batch"])
    errors = (outputs - batch["labels"]) / torch.tensor(model.target_std)
    torch.testing.assert_close(loss, errors.pow(2).mean())


def test_a_model_standardising_targets_is_refused_for_a_classification_task(tmp_path, make_graphs):
    model = GrantGCN(6, 2, hidden_channels=8, target_mean=[0.0, 0.0], target_std=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"the model standardises regression targets \(target_std=\[1.0, 1.0\]\); the "
                                         "task is graph_classification"):
        GraNTTrainer(model=model, args=_args(tmp_path, "graph_classification"),
                     train_dataset=make_graphs(8, "graph_classification"))


@pytest.mark.parametrize("task", ["node_regression", "graph_regression"])
def test_a_standardised_models_eval_loss_is_that_of_its_errors_per_std(tmp_path, make_graphs, task):
    data = make_graphs(13, task, seed=6, min_nodes=1, max_nodes=12)
    model = GrantGCN(6, 1, hidden_channels=8, level=task.split("_")[0], target_mean=[3.0], target_std=[0.01])
    trainer = GraNTTrainer(model=model, args=_args(tmp_path, task, per_device_eval_batch_size=4), eval_dataset=data)
    outputs, labels = _outputs_and_labels(model, task, data)
    expected = torch.nn.functional.mse_loss(outputs / 0.01, labels.view_as(outputs) / 0.01)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_a_resume_under_another_gradient_accumulation_is_refused_before_anything_changes(tmp_path, make_graphs):
    train = make_graphs(32, "graph_regression", seed=7)
    settings = dict(variant="batch", save_strategy="steps", save_steps=2)
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), train_dataset=train,
                 args=_args(tmp_path, "graph_regression", gradient_accumulation_steps=1, **settings)).train()
    checkpoint = str(tmp_path / "out" / "checkpoint-4")
    assert json.loads((tmp_path / "out" / "checkpoint-4" / "grant_teacher.json").read_text())[
        "gradient_accumulation_steps"] == 1
    accumulating = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), train_dataset=train,
                                args=_args(tmp_path, "graph_regression", gradient_accumulation_steps=2, **settings))
    before = {path: path.read_bytes() for path in (tmp_path / "out").rglob("*") if path.is_file()}
    with pytest.raises(ValueError, match=re.escape(f"cannot resume GraNT from {checkpoint}: it was saved with "
                                                   "gradient_accumulation_steps=1, this run has "
                                                   "gradient_accumulation_steps=2") + ".*resume with "
                                         "gradient_accumulation_steps=1, or start a new run"):
        accumulating.train(resume_from_checkpoint=checkpoint)
    assert accumulating.state.global_step == 0
    assert {path: path.read_bytes() for path in (tmp_path / "out").rglob("*") if path.is_file()} == before
    resumed = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), train_dataset=train,
                           args=_args(tmp_path, "graph_regression", gradient_accumulation_steps=1,
                                      **{**settings, "save_strategy": "no"}))
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.state.global_step == resumed.state.max_steps > 4


def test_a_checkpoint_saved_before_gradient_accumulation_was_recorded_resumes_as_before(tmp_path, make_graphs):
    train = make_graphs(32, "graph_regression", seed=7)
    settings = dict(variant="batch", save_strategy="steps", save_steps=2)
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), train_dataset=train,
                 args=_args(tmp_path, "graph_regression", **settings)).train()
    teacher_state = tmp_path / "out" / "checkpoint-4" / "grant_teacher.json"
    state = json.loads(teacher_state.read_text())
    del state["gradient_accumulation_steps"]
    teacher_state.write_text(json.dumps(state))
    resumed = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), train_dataset=train,
                           args=_args(tmp_path, "graph_regression", gradient_accumulation_steps=2,
                                      **{**settings, "save_strategy": "no"}))
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert resumed.state.global_step == resumed.state.max_steps


@pytest.mark.parametrize("task", ["node_regression", "graph_regression"])
def test_an_importance_runs_training_loss_on_a_selected_full_batch_is_the_weighted_sum_by_hand(
        tmp_path, make_graphs, task):
    # learning rate 0, no BatchNorm or dropout: the scores at the reselection are those of a fresh pass, and the one
    # step's loss is that of the same model on the drawn graphs
    train = make_graphs(30, task, seed=3)
    level = task.split("_")[0]
    model = GrantGCN(6, 1, hidden_channels=8, level=level, batch_norm=False)
    args = _args(tmp_path, task, learning_rate=0.0, variant="single", per_device_train_batch_size=30,
                 num_train_epochs=1, start_ratio=0.2, selection="importance")
    trainer = GraNTTrainer(model=model, args=args, train_dataset=train)
    output = trainer.train()
    scores = score_dataset(model, train, GraphCollator(task), task)
    units = torch.tensor(train["num_nodes"]) if level == "node" else torch.ones(30)
    k = num_selected(0.2, 30)
    (expected_batch,), _ = select_importance(scores, units, k, 30, seed=args.seed)  # data_seed (else seed) + epoch 0
    (drawn,) = trainer._sampler.batches
    assert drawn == expected_batch.tolist()
    weights = (1.0 / (k * units.sum() * scores[drawn] / scores.sum())).float()
    outputs, labels = _outputs_and_labels(model, task, train.select(drawn))
    if level == "node":
        batch = torch.repeat_interleave(torch.arange(k), torch.tensor(train.select(drawn)["num_nodes"]))
        expected = (weights[batch] * node_losses(GraphTask(task), outputs, labels)).sum()
    else:
        expected = (weights * ((outputs - labels) ** 2).mean(dim=-1)).sum()
    assert output.training_loss == pytest.approx(expected.item(), rel=1e-5)
    assert output.training_loss != pytest.approx(task_loss(GraphTask(task), outputs, labels).item(), rel=1e-3)


@pytest.mark.parametrize("task", ["node_classification", "graph_classification"])
def test_importance_selection_trains_end_to_end_and_leaves_evaluation_unweighted(tmp_path, make_graphs, task):
    train, validation = make_graphs(40, task, seed=1), make_graphs(12, task, seed=2)
    model = GrantGCN(6, OUTPUTS[task], hidden_channels=16, level=task.split("_")[0])
    args = _args(tmp_path, task, variant="single", selection="importance", eval_strategy="epoch")
    trainer = GraNTTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation)
    output = trainer.train()
    assert output.global_step == sum(p.num_batches for p in trainer._plan) and math.isfinite(output.training_loss)
    # GraNT(S)'s subset sizes: ceil(ratio * 8) of each of the 5 batches of 8, drawn over the whole set
    assert [e["subset_size"] for e in trainer.teaching_log] == [5 * num_selected(e["ratio"], 8) for e in trainer.teaching_log]
    assert {e["selection"] for e in trainer.teaching_log} == {"importance"}
    logged = [entry for entry in trainer.state.log_history if "grant_ratio" in entry]
    assert len(logged) == 2 and {entry["grant_selection"] for entry in logged} == {"importance"}
    assert sorted(trainer._graph_weights.nonzero().flatten().tolist()) == sorted(
        i for batch in trainer._sampler.batches for i in batch)
    outputs, labels = _outputs_and_labels(trainer.model, task, validation)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(task_loss(GraphTask(task), outputs, labels).item(), rel=1e-5)


def test_an_importance_run_resumed_inside_an_epoch_ends_where_the_uninterrupted_run_ends(tmp_path, make_graphs):
    # the checkpoint keeps its subset's loss weights, and the later reselections redraw as the uninterrupted run drew
    train = make_graphs(32, "node_regression", seed=7)
    settings = dict(num_train_epochs=6, start_ratio=0.5, variant="single", selection="importance",
                    save_strategy="steps", save_steps=3)

    def trainer_of(seed):
        torch.manual_seed(seed)
        model = GrantGCN(6, 1, hidden_channels=8, level="node")
        return GraNTTrainer(model=model, args=_args(tmp_path, "node_regression", **settings), train_dataset=train)

    full = trainer_of(0)
    full.train()
    expected = {name: p.detach().clone() for name, p in full.model.named_parameters()}
    # steps per epoch 2, 2, 3, 3, 4, 4: checkpoint-3 is inside epoch 1, checkpoint-6 inside epoch 2 (a reselection's)
    assert [full._epoch_at_step(full._plan, step) for step in (3, 6)] == [(1, 1), (2, 2)]
    for step in (3, 6):
        with open(tmp_path / "out" / f"checkpoint-{step}" / "grant_teacher.json") as file:
            saved = json.load(file)
        assert [len(w) for w in saved["batch_weights"]] == [len(b) for b in saved["batches"]]
        resumed = trainer_of(step)
        resumed.train(resume_from_checkpoint=str(tmp_path / "out" / f"checkpoint-{step}"))
        for name, value in resumed.model.named_parameters():
            torch.testing.assert_close(value, expected[name], msg=f"resumed at step {step}: {name}")


class _DamageTheBestCheckpointAtTheLastSave(TrainerCallback):
    """Truncates the best checkpoint's weights at the last step's on_save: Trainer calls it after the last
    checkpoint is written (and best_model_checkpoint set), before _finalize_training loads the best model."""

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.global_step == state.max_steps:
            self.weights = Path(state.best_model_checkpoint, SAFE_WEIGHTS_NAME)
            self.weights.write_bytes(self.weights.read_bytes()[:20])
            self.damaged = self.weights.read_bytes()
            self.last = {name: p.detach().clone() for name, p in model.named_parameters()}


def test_load_best_model_at_end_onto_a_damaged_best_checkpoint_names_the_file_and_keeps_the_run(tmp_path, make_graphs):
    torch.manual_seed(0)
    damage = _DamageTheBestCheckpointAtTheLastSave()
    # mae falls step by step here: greater_is_better makes an earlier checkpoint than the last the "best", so that
    # the model kept in memory (the last step's) is not the best one's
    args = _args(tmp_path, "graph_regression", num_train_epochs=2, start_ratio=1.0, eval_strategy="steps", eval_steps=1,
                 save_strategy="steps", save_steps=1, load_best_model_at_end=True, metric_for_best_model="mae",
                 greater_is_better=True)
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=make_graphs(16, "graph_regression"),
                           eval_dataset=make_graphs(8, "graph_regression", seed=1), callbacks=[damage])
    with pytest.raises(ValueError) as error:
        trainer.train()
    message = str(error.value)
    assert message.startswith(f"load_best_model_at_end: the best checkpoint's {damage.weights} does not load "
                              "(SafetensorError: ")
    assert ("it is left as it is. Training finished and its checkpoints are kept; the model in memory is the last "
            "step's, not the best") in message
    assert trainer.state.global_step == trainer.state.max_steps == 4
    assert damage.weights.read_bytes() == damage.damaged
    checkpoints = sorted(tmp_path.joinpath("out").glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert [path.name for path in checkpoints] == [f"checkpoint-{step}" for step in range(1, 5)]
    assert damage.weights.parent != checkpoints[-1]
    for checkpoint in checkpoints:
        if checkpoint != damage.weights.parent:
            assert GrantGCN.from_pretrained(checkpoint)  # each other checkpoint still loads
    for name, value in trainer.model.named_parameters():
        torch.testing.assert_close(value, damage.last[name], msg=name)
