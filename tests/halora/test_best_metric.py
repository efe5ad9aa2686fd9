"""metric_for_best_model is checked against the metrics HaLoRATrainer's evaluation reports, before training."""

import pytest
from peft import LoraConfig, get_peft_model

from hf_eff.halora.tasks import builtin_task, tokenize_for_scoring
from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments
from tests.halora.conftest import make_tiny_llama

BEST_MODEL = dict(eval_strategy="steps", eval_steps=1, save_strategy="steps", load_best_model_at_end=True)


def _args(tmp_path, **kwargs):
    return HaLoRATrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True, disable_tqdm=True,
                                   eval_sigmas=[0.0, 0.05], eval_noise_seeds=2, **kwargs)


@pytest.fixture
def scored(char_tokenizer):
    return tokenize_for_scoring(builtin_task(train_size=4, eval_size=4)[1], char_tokenizer, max_length=96)


def _lora():
    return get_peft_model(make_tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"]))


@pytest.mark.parametrize("metric", ["rmse", "eval_accuracy_sigma_0.05", "accuracy_sigma_0.05_median"])
def test_a_metric_the_evaluation_does_not_report_is_refused_before_output_dir_is_made(tmp_path, scored, metric):
    rows, scorer = scored
    reported = (r"it reports loss, accuracy, accuracy_norm \(the run at sigma 0\), <metric>_sigma_<s>_mean and _std "
                r"of loss, accuracy, accuracy_norm at each of eval_sigmas \(0, 0.05\), e.g. 'loss_sigma_0_mean', "
                r"and runtime, samples_per_second, steps_per_second")
    with pytest.raises(ValueError, match=rf"metric_for_best_model \(--metric_for_best_model\) is '{metric}'.*{reported}"):
        HaLoRATrainer(model=_lora(), args=_args(tmp_path, metric_for_best_model=metric, **BEST_MODEL),
                      train_dataset=rows, eval_dataset=rows, scorer=scorer)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("metric", ["accuracy_norm", "eval_accuracy_norm_sigma_0.05_std", "loss_sigma_0_mean"])
def test_a_metric_the_scorers_evaluation_reports_is_taken(tmp_path, scored, metric):
    rows, scorer = scored
    trainer = HaLoRATrainer(model=_lora(), args=_args(tmp_path, metric_for_best_model=metric, **BEST_MODEL),
                            train_dataset=rows, eval_dataset=rows, scorer=scorer)
    assert f"eval_{metric.removeprefix('eval_')}" in trainer.evaluate()


def test_without_compute_metrics_only_the_loss_is_reported(tmp_path, scored):
    rows, _ = scored
    with pytest.raises(ValueError, match=r"'accuracy', .* it reports loss \(the run at sigma 0\), <metric>_sigma_<s>_"
                                         r"mean and _std of loss at"):
        HaLoRATrainer(model=_lora(), args=_args(tmp_path, metric_for_best_model="accuracy"), eval_dataset=rows)
    with pytest.raises(ValueError, match="is 'accuracy', .* of loss at"):
        HaLoRATrainer(model=_lora(), args=_args(tmp_path, metric_for_best_model="accuracy", prediction_loss_only=True),
                      eval_dataset=rows, compute_metrics=scored[1].compute_metrics)


def test_a_dict_eval_datasets_metrics_are_named_by_split(tmp_path, scored):
    rows, scorer = scored
    splits = {"arith": rows, "more": rows}
    HaLoRATrainer(model=_lora(), args=_args(tmp_path, metric_for_best_model="more_accuracy_sigma_0.05_mean"),
                  eval_dataset=splits, scorer=scorer)
    with pytest.raises(ValueError, match=r"each led by its eval_dataset split's key \(arith, more\)"):
        HaLoRATrainer(model=_lora(), args=_args(tmp_path, metric_for_best_model="accuracy"), eval_dataset=splits,
                      scorer=scorer)


def test_a_metric_of_ones_own_compute_metrics_is_left_to_it(tmp_path, scored):
    trainer = HaLoRATrainer(model=_lora(), args=_args(tmp_path, metric_for_best_model="f1"), eval_dataset=scored[0],
                            compute_metrics=lambda prediction: {"f1": 0.0}, processing_class=scored[1].tokenizer)
    assert trainer.args.metric_for_best_model == "f1"
