import re

import pytest
from transformers import HfArgumentParser

from hf_eff.grant import GraNTTrainingArguments


def test_help_renders():
    # argparse %-formats every help string: a bare "%" crashes `--help`
    text = " ".join(HfArgumentParser(GraNTTrainingArguments).format_help().split())
    assert "--stratify_selection" in text and "top 5% (and 20%)" in text


def test_inputs_for_metrics_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"include_for_metrics=\['inputs'\]: a graph batch has no single input tensor"):
        GraNTTrainingArguments(output_dir=str(tmp_path), task="graph_regression", include_for_metrics=["inputs"])
    assert GraNTTrainingArguments(output_dir=str(tmp_path), task="graph_regression", include_for_metrics=["loss"])


def test_do_train_defaults_to_true_and_turns_off_by_either_flag(tmp_path):
    # transformers' do_train defaults to False (Trainer ignores it); examples/grant_train.py trains unless told not to
    parser = HfArgumentParser(GraNTTrainingArguments)
    common = ["--output_dir", str(tmp_path), "--task", "graph_regression"]
    assert parser.parse_args_into_dataclasses(common)[0].do_train is True
    for flags in (["--do_train", "False"], ["--no_do_train"]):
        assert parser.parse_args_into_dataclasses([*common, *flags])[0].do_train is False


def test_learning_rate_defaults_to_one_suited_to_a_gcn_and_a_given_one_wins(tmp_path):
    # transformers' 5e-5 hardly moves a GCN trained from scratch
    parser = HfArgumentParser(GraNTTrainingArguments)
    common = ["--output_dir", str(tmp_path), "--task", "graph_regression"]
    assert GraNTTrainingArguments(output_dir=str(tmp_path), task="graph_regression").learning_rate == 1e-3
    assert parser.parse_args_into_dataclasses(common)[0].learning_rate == 1e-3
    assert parser.parse_args_into_dataclasses([*common, "--learning_rate", "5e-3"])[0].learning_rate == 5e-3
    assert GraNTTrainingArguments(output_dir=str(tmp_path), task="graph_regression", learning_rate=5e-5).learning_rate == 5e-5


@pytest.mark.parametrize("teacher", ["grant", "none"])
def test_batches_of_no_graphs_are_refused_naming_the_flag_with_any_teacher(tmp_path, teacher):
    # with teacher='none' no plan is made, and torch's sampler would fail without naming the flag
    with pytest.raises(ValueError, match=r"^per_device_train_batch_size must be >= 1 \(graphs per batch\), got 0$"):
        GraNTTrainingArguments(output_dir=str(tmp_path), teacher=teacher, per_device_train_batch_size=0)


def test_task_may_be_left_for_the_model_and_is_checked_where_given(tmp_path):
    # None: GraNTTrainer takes the task the model records (a reloaded GrantGCN's)
    args = GraNTTrainingArguments(output_dir=str(tmp_path), variant="single", stratify_selection=True)
    assert args.task is None
    with pytest.raises(ValueError, match=r"stratify_selection needs task='graph_classification'"):
        GraNTTrainingArguments(output_dir=str(tmp_path), task="graph_regression", variant="single", stratify_selection=True)
    with pytest.raises(ValueError, match=r"task must be one of .* got 'graph'"):
        GraNTTrainingArguments(output_dir=str(tmp_path), task="graph")


def test_importance_selection_refuses_the_settings_it_does_not_support_by_name(tmp_path):
    common = dict(output_dir=str(tmp_path), task="graph_classification", selection="importance", variant="single")
    assert GraNTTrainingArguments(**common).selection == "importance"
    conflicts = [dict(teacher="random"), dict(variant="batch"), dict(stratify_selection=True),
                 dict(task="graph_multilabel")]
    help_text = GraNTTrainingArguments.__dataclass_fields__["selection"].metadata["help"]
    for conflict, name in zip(conflicts, ["teacher='random'", "variant='batch'", "stratify_selection=True",
                                          "task='graph_multilabel'"]):
        with pytest.raises(ValueError, match=re.escape(f"selection='importance' with {name}")):
            GraNTTrainingArguments(**{**common, **conflict})
        assert f"{next(iter(conflict))}=" in help_text, f"selection's help does not name {name}'s refusal"
    # teacher='none' and start_ratio=1 select nothing, so they ignore it as they ignore the teacher's other settings
    for ignored in (dict(teacher="none"), dict(start_ratio=1.0)):
        assert GraNTTrainingArguments(**{**common, "variant": "batch", **ignored}).selection == "importance"
    with pytest.raises(ValueError, match=r"selection must be one of \('top_k', 'importance'\), got 'top'"):
        GraNTTrainingArguments(**{**common, "selection": "top"})
    assert GraNTTrainingArguments(output_dir=str(tmp_path)).selection == "top_k"
