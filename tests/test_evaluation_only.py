"""The examples' evaluation-only refusals (hf_eff/utils/evaluation_only.py)."""

from __future__ import annotations

import json

import pytest
from transformers import TrainingArguments

from hf_eff.utils.evaluation_only import check_evaluation_only


def _args(tmp_path, **kwargs) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], **kwargs)


def test_a_training_run_is_never_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "train_results.json").write_text("{}")
    check_evaluation_only(_args(tmp_path, do_train=True, push_to_hub=False), "--model_name_or_path", None)


def test_an_evaluation_needs_a_model_unless_told_otherwise(tmp_path):
    with pytest.raises(ValueError, match="--do_train False evaluates a trained model: name it with --adapter"):
        check_evaluation_only(_args(tmp_path), "--adapter", None)
    check_evaluation_only(_args(tmp_path), "--adapter", None, needs_model=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(push_to_hub=True, hub_model_id="me/never"), "--push_to_hub with --do_train False"),
    (dict(resume_from_checkpoint="True"), "to evaluate a checkpoint, give its folder as --model_name_or_path"),
])
def test_a_push_or_a_resume_is_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_evaluation_only(_args(tmp_path, **kwargs), "--model_name_or_path", "me/model")


@pytest.mark.parametrize("name, results", [
    ("all_results.json", {"train_runtime": 1.0, "eval_loss": 0.5}),  # HaLoRA's and GraNT's examples
    ("train_results.json", {"train_loss": 0.5}),  # Trainer.save_metrics("train"), the splats'
])
def test_a_training_runs_folder_is_refused_and_an_evaluations_is_not(tmp_path, name, results):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text(json.dumps(results))
    with pytest.raises(ValueError, match=f"--output_dir {out} holds a training run"):
        check_evaluation_only(_args(tmp_path), "--model_name_or_path", "me/model")
    (out / name).unlink()
    (out / "all_results.json").write_text(json.dumps({"eval_loss": 0.5}))  # an earlier evaluation's
    check_evaluation_only(_args(tmp_path), "--model_name_or_path", "me/model")
