import json

import torch
from transformers import Trainer, TrainingArguments

from hf_eff.utils.results import log_numeric_metrics, save_all_results

RESULTS = {"eval_psnr": 31.25, "num_gaussians": 1200, "dataset": "garden", "model_revision": None}


def _trainer(tmp_path):
    return Trainer(model=torch.nn.Linear(1, 1), args=TrainingArguments(output_dir=str(tmp_path), report_to="none",
                                                                       use_cpu=True))


def test_log_numeric_metrics_prints_the_numbers_only(tmp_path, capsys):
    # Trainer.log_metrics cannot format None (model_revision of a run from a local folder), and a name has no
    # place in the table: both go to the results files only.
    log_numeric_metrics(_trainer(tmp_path), "eval", RESULTS)
    printed = capsys.readouterr().out
    assert "***** eval metrics *****" in printed
    assert "eval_psnr" in printed and "31.25" in printed and "num_gaussians" in printed
    assert "dataset" not in printed and "model_revision" not in printed


def test_save_all_results_prints_the_numbers_and_writes_every_result(tmp_path, capsys):
    save_all_results(_trainer(tmp_path), RESULTS)
    printed = capsys.readouterr().out
    assert "***** all metrics *****" in printed and "eval_psnr" in printed and "dataset" not in printed
    assert json.loads((tmp_path / "all_results.json").read_text()) == RESULTS
