import json
import logging
import re

import torch
from transformers import Trainer, TrainingArguments

from hf_eff.utils.results import log_numeric_metrics, log_written, save_all_results

TRAINED = {"train_loss": 0.5, "train_runtime": 2.0, "total_flos": 0.0, "epoch": 1.0, "train_questions": 32,
           "eval_accuracy": 0.75, "eval_questions": 8, "dataset_name": "comparison", "model_revision": None}


def _trainer(tmp_path):
    return Trainer(model=torch.nn.Linear(1, 1), args=TrainingArguments(output_dir=str(tmp_path), report_to="none",
                                                                       use_cpu=True))


def test_a_training_runs_results_are_split_into_train_and_eval_results_beside_all_results(tmp_path):
    written = save_all_results(_trainer(tmp_path), TRAINED)
    assert written == ["train_results.json", "eval_results.json", "all_results.json"]  # for the closing line
    read = {name: json.loads((tmp_path / f"{name}_results.json").read_text()) for name in ("train", "eval", "all")}
    assert read["train"] == {"train_loss": 0.5, "train_runtime": 2.0, "total_flos": 0.0, "epoch": 1.0,
                             "train_questions": 32}
    assert read["eval"] == {"eval_accuracy": 0.75, "eval_questions": 8, "epoch": 1.0}
    assert read["all"] == TRAINED


def test_an_evaluations_results_write_no_train_results(tmp_path):
    evaluated = {"eval_accuracy": 0.75, "test_accuracy": 0.5, "dataset_name": "comparison"}
    assert save_all_results(_trainer(tmp_path), evaluated) == ["eval_results.json", "all_results.json"]
    assert not (tmp_path / "train_results.json").exists()
    assert json.loads((tmp_path / "eval_results.json").read_text()) == {"eval_accuracy": 0.75}
    assert json.loads((tmp_path / "all_results.json").read_text()) == evaluated


def test_a_split_this_run_has_no_results_for_leaves_no_earlier_results_file(tmp_path, monkeypatch):
    # a prediction-only run replaced an earlier evaluation's all_results.json and kept its eval_results.json
    trainer = _trainer(tmp_path)
    save_all_results(trainer, TRAINED)
    predicted = {"predict_graphs": 4, "task": "graph_regression"}
    monkeypatch.setattr(trainer, "is_world_process_zero", lambda: False)  # only the main process writes and removes
    save_all_results(trainer, predicted)
    assert (tmp_path / "train_results.json").is_file() and (tmp_path / "eval_results.json").is_file()
    monkeypatch.undo()
    assert save_all_results(trainer, predicted) == ["all_results.json"]
    assert not (tmp_path / "train_results.json").exists() and not (tmp_path / "eval_results.json").exists()
    assert json.loads((tmp_path / "all_results.json").read_text()) == predicted


def test_only_the_main_process_says_what_it_wrote(tmp_path, caplog, monkeypatch):
    caplog.set_level("INFO")
    trainer, log = _trainer(tmp_path), logging.getLogger("example")
    log_written(log, trainer, ["the model", "all_results.json"])
    assert caplog.messages == [f"Wrote the model, all_results.json to {tmp_path}"]
    caplog.clear()
    monkeypatch.setattr(trainer, "is_world_process_zero", lambda: False)  # another rank wrote nothing
    log_written(log, trainer, ["the model", "all_results.json"])
    assert caplog.messages == []


def test_a_switch_is_printed_as_true_or_false_and_written_as_a_bool(tmp_path, capsys):
    # the table's number format printed the splat example's pose_opt as 1
    trainer = _trainer(tmp_path)
    log_numeric_metrics(trainer, "train", {"pose_opt": True, "absgrad": False, "num_gaussians": 2000})
    printed = capsys.readouterr().out
    assert re.search(r"pose_opt\s+=\s+True\n", printed) and re.search(r"absgrad\s+=\s+False\n", printed)
    assert re.search(r"num_gaussians\s+=\s+2000\n", printed)
    save_all_results(trainer, {"pose_opt": True})
    assert json.loads((tmp_path / "all_results.json").read_text()) == {"pose_opt": True}
