import pytest

from hf_eff.grant import GraNTTrainingArguments
from hf_eff.halora import HaLoRATrainingArguments
from hf_eff.utils.best_model import lower_is_better


@pytest.mark.parametrize(
    ("metric", "lower"),
    [("mae", True), ("eval_rmse", True), ("mae_dipole", True), ("loss", True), ("eval_loss", True),
     ("loss_sigma_0.02_mean", True), ("train_loss", True), ("eval_validation_mae", True), ("val_mae_dipole", True), ("roc_auc", False), ("accuracy", False),
     ("accuracy_sigma_0.02_mean", False), ("psnr", False)],
)
def test_lower_is_better(metric, lower):
    assert lower_is_better(metric) is lower


def _args(cls, tmp_path, **kwargs):
    return cls(output_dir=str(tmp_path), eval_strategy="steps", save_strategy="steps", report_to="none",
               use_cpu=True, load_best_model_at_end=True, **kwargs)


@pytest.mark.parametrize(("metric", "greater"), [("mae", False), ("rmse", False), ("roc_auc", True)])
def test_grant_best_model_direction(tmp_path, metric, greater):
    args = _args(GraNTTrainingArguments, tmp_path, task="graph_regression", metric_for_best_model=metric)
    assert args.greater_is_better is greater


@pytest.mark.parametrize(("metric", "greater"), [("loss_sigma_0.02_mean", False), ("accuracy_sigma_0.02_mean", True)])
def test_halora_best_model_direction(tmp_path, metric, greater):
    args = _args(HaLoRATrainingArguments, tmp_path, metric_for_best_model=metric)
    assert args.greater_is_better is greater


def test_explicit_direction_is_kept(tmp_path):
    args = _args(GraNTTrainingArguments, tmp_path, task="graph_regression", metric_for_best_model="mae",
                 greater_is_better=True)
    assert args.greater_is_better is True
