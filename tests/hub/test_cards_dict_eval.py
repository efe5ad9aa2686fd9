"""Cards of runs evaluated on a dict eval_dataset, whose metrics Trainer reports as eval_<key>_<metric> (or beside a
plain eval_<metric> evaluation): each card reports the split metric_for_best_model names (else test, validation, eval,
val, the plain one, the first by name), says which, and lists the others."""

import os
import time

import pytest
from huggingface_hub import ModelCard

from hf_eff.hub import cards, push

SPEED = {"runtime": 0.004, "samples_per_second": 270.0, "steps_per_second": 270.0}


def _evaluation(split: str, **metrics) -> dict:
    """One split's keys as Trainer.evaluate's recursion over a dict eval_dataset logs them."""
    return {f"eval_{split}_{name}": value for name, value in {**metrics, **SPEED}.items()}


def _splat_results(**settings) -> dict:
    # a SplatTrainer run with eval_dataset={"test": ..., "train_views": ...}, in its evaluation order
    return {"train_runtime": 0.5, "num_gaussians": 300, "strategy": "g2l", **settings,
            **_evaluation("test", psnr=21.5, ssim=0.71, num_gaussians=300),
            **_evaluation("train_views", psnr=27.25, ssim=0.88, num_gaussians=300)}


def _metrics(card: ModelCard) -> dict:
    return {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}


def test_splat_card_reports_the_test_split_and_lists_the_others():
    card = cards.splat_card(_splat_results(), "me/splats", dataset="me/scene")
    assert ("| strategy | PSNR on `test` (dB) | SSIM on `test` | Gaussians | training time, evaluations included (s) |\n"
            "|---|---|---|---|---|\n| g2l | 21.5 | 0.71 | 300 | 0.5 |") in card.text
    assert "| split | PSNR (dB) | SSIM |\n|---|---|---|\n| `train_views` | 27.25 | 0.88 |" in card.text
    assert _metrics(card) == {("test", "psnr"): 21.5, ("test", "ssim"): 0.71}


@pytest.mark.parametrize("named", ["train_views_psnr", "eval_train_views_ssim"])
def test_splat_card_reports_the_split_metric_for_best_model_names(named):
    card = cards.splat_card(_splat_results(metric_for_best_model=named), "me/splats", dataset="me/scene")
    assert "| g2l | 27.25 | 0.88 | 300 | 0.5 |" in card.text and "PSNR on `train_views` (dB)" in card.text
    assert "| `test` | 21.5 | 0.71 |" in card.text
    assert _metrics(card) == {("train_views", "psnr"): 27.25, ("train_views", "ssim"): 0.88}


def test_a_split_whose_key_starts_with_another_keeps_its_own_metrics():
    results = {**_evaluation("test", psnr=21.5, ssim=0.71), **_evaluation("test_hard", psnr=15.0, ssim=0.5)}
    assert cards.reported_split({**results, "metric_for_best_model": "test_hard_psnr"}) == ("test_hard", ["test"])
    assert cards.split_results(results, "test") == {"eval_psnr": 21.5, "eval_ssim": 0.71,
                                                    **{f"eval_{name}": value for name, value in SPEED.items()}}


def test_splat_preview_is_a_render_of_the_reported_split(tmp_path):
    for number, split in enumerate(["test", "train_views"]):  # the training views' renders are written last
        folder = tmp_path / f"eval_{split}_renders"
        folder.mkdir()
        (folder / "step-000008.png").write_bytes(b"png")
        os.utime(folder / "step-000008.png", ns=(time.time_ns() + number * 10**9,) * 2)
    card = push.build_card("splat_model", tmp_path, "me/splats", _splat_results())
    assert "![preview](eval_test_renders/step-000008.png)" in card.text
    card = push.build_card("splat_model", tmp_path, "me/splats", _splat_results(metric_for_best_model="train_views_psnr"))
    assert "![preview](eval_train_views_renders/step-000008.png)" in card.text


def test_splat_preview_of_a_prefixed_evaluation_is_not_the_plain_ones_render(tmp_path):
    # a plain run, then evaluate(hard_views, metric_key_prefix="eval_hard"), its renders written first
    for number, folder in enumerate(["eval_hard_renders", "eval_renders"]):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "step-000008.png").write_bytes(b"png")
        os.utime(tmp_path / folder / "step-000008.png", ns=(time.time_ns() + number * 10**9,) * 2)
    results = {"eval_psnr": 20.0, "eval_runtime": 0.1, **_evaluation("hard", psnr=15.0)}
    card = push.build_card("splat_model", tmp_path, "me/splats", {**results, "metric_for_best_model": "hard_psnr"})
    assert "![preview](eval_hard_renders/step-000008.png)" in card.text


def test_grant_card_has_a_column_per_split_the_reported_one_first():
    # a GraNTTrainer run with eval_dataset={"validation": ..., "test": ...}, then predict(test) under test_
    results = {"train_runtime": 2.0, "task": "graph_regression", "teacher": "grant",
               **_evaluation("validation", loss=1.9, mae=1.1), **_evaluation("test", loss=2.1, mae=1.25),
               "test_mae": 1.3, "test_loss": 2.2}
    card = cards.grant_card(results, "me/gcn", dataset="me/graphs")
    assert ("| metric | test | validation | test (predict) |\n|---|---|---|---|\n"
            "| loss | 2.1 | 1.9 | 2.2 |\n| mae | 1.25 | 1.1 | 1.3 |") in card.text
    assert _metrics(card) == {("validation", "loss"): 1.9, ("validation", "mae"): 1.1, ("test", "loss"): 2.1,
                              ("test", "mae"): 1.25, ("test (predict)", "loss"): 2.2, ("test (predict)", "mae"): 1.3}
    card = cards.grant_card({**results, "metric_for_best_model": "validation_mae"}, "me/gcn")
    assert "| metric | validation | test | test (predict) |" in card.text


def test_grant_card_of_splits_named_neither_validation_nor_test():
    results = {"train_runtime": 2.0, "task": "graph_regression", **_evaluation("hard", mae=2.5),
               **_evaluation("val", mae=1.1, loss=1.9)}
    card = cards.grant_card(results, "me/gcn", dataset="me/graphs")
    assert "| metric | val | hard |\n|---|---|---|\n| loss | 1.9 |  |\n| mae | 1.1 | 2.5 |" in card.text
    assert _metrics(card) == {("val", "loss"): 1.9, ("val", "mae"): 1.1, ("hard", "mae"): 2.5}


def test_a_plain_evaluation_beside_a_prefixed_one_is_a_split_of_its_own():
    # a plain run, then evaluate(hard_graphs, metric_key_prefix="eval_hard")
    results = {"train_runtime": 2.0, "task": "graph_regression", "eval_mae": 1.1, "eval_runtime": 0.1,
               **_evaluation("hard", mae=2.5), "eval_ssim_padding": "valid"}
    assert cards.reported_split(results) == (None, ["hard"])
    assert cards.split_results(results, None) == {key: value for key, value in results.items() if "hard" not in key}
    assert cards.split_results(results, "hard")["eval_mae"] == 2.5
    card = cards.grant_card(results, "me/gcn", dataset="me/graphs")
    assert "| metric | validation | hard |\n|---|---|---|\n| mae | 1.1 | 2.5 |" in card.text

    card = cards.splat_card({"eval_psnr": 20.0, "eval_runtime": 0.1, **_evaluation("hard", psnr=15.0)}, "me/splats")
    assert "| PSNR (dB) |\n|---|\n| 20 |" in card.text and "| `hard` | 15 |" in card.text
    card = cards.splat_card({"eval_psnr": 20.0, "eval_runtime": 0.1, **_evaluation("hard", psnr=15.0),
                             "metric_for_best_model": "hard_psnr"}, "me/splats")
    assert "| PSNR on `hard` (dB) |\n|---|\n| 15 |" in card.text and "| plain evaluation (`eval_*`) | 20 |" in card.text


def test_a_reported_plain_splat_evaluation_is_test_in_the_model_index_unless_a_named_split_is():
    # the plain evaluation is of SplatTrainer's eval_dataset, the scene's test views, as on a single split's card
    plain = {"eval_psnr": 20.0, "eval_runtime": 0.1, "metric_for_best_model": "psnr"}
    card = cards.splat_card({**plain, **_evaluation("hard", psnr=15.0)}, "me/splats", dataset="me/scene")
    assert _metrics(card) == {("test", "psnr"): 20.0}
    # a prefixed evaluation named test (evaluate(ds, metric_key_prefix="eval_test")): "test" is its metrics' name
    card = cards.splat_card({**plain, **_evaluation("test", psnr=15.0)}, "me/splats", dataset="me/scene")
    assert _metrics(card) == {("plain evaluation", "psnr"): 20.0} and "| `test` | 15 |" in card.text


def test_a_metric_whose_name_starts_like_another_split_stays_with_its_own():
    # splits x and x_train, each measuring train_seconds: eval_x_train_seconds is x's, not x_train's seconds
    results = {**_evaluation("x", psnr=20.0, train_seconds=3.0), **_evaluation("x_train", psnr=25.0, train_seconds=4.0)}
    assert cards.split_results(results, "x") == {"eval_psnr": 20.0, "eval_train_seconds": 3.0,
                                                 **{f"eval_{name}": value for name, value in SPEED.items()}}
    assert cards.split_results(results, "x_train") == {"eval_psnr": 25.0, "eval_train_seconds": 4.0,
                                                       **{f"eval_{name}": value for name, value in SPEED.items()}}
    assert cards.reported_split({**results, "metric_for_best_model": "x_train_seconds"}) == ("x", ["x_train"])


@pytest.mark.parametrize(("splits", "reported"), [(["train", "test"], "test"), (["hard", "val", "eval"], "eval"),
                                                   (["train_views", "validation", "val"], "validation"),
                                                   (["hard", "easy"], "easy")])
def test_without_metric_for_best_model_held_out_splits_come_first_in_any_order(splits, reported):
    results = {key: value for split in splits for key, value in _evaluation(split, psnr=20.0).items()}
    for order in (results, dict(sorted(results.items())), dict(reversed(results.items()))):
        chosen, others = cards.reported_split(order)
        assert chosen == reported and sorted(others) == sorted(set(splits) - {reported})


def test_halora_card_tables_the_reported_splits_noise_results():
    def noisy(split: str, accuracy: float) -> dict:
        return {f"eval_{split}_accuracy_sigma_{sigma}_{stat}": value for sigma, mean in ((0, accuracy), (0.05, accuracy / 2))
                for stat, value in (("mean", mean), ("std", 0.0 if sigma == 0 else 0.01))}

    # a HaLoRATrainer run with eval_dataset={"dev": ..., "test": ...}
    results = {"num_noise_seeds": 3, **noisy("dev", 0.8), **_evaluation("dev", accuracy=0.8),
               **noisy("test", 0.6), **_evaluation("test", accuracy=0.6)}
    card = cards.halora_card({**results, "metric_for_best_model": "dev_accuracy"}, "me/adapter", task_type="SEQ_CLS",
                             dataset="me/data")
    assert "## accuracy on `dev` under RRAM weight noise" in card.text
    assert "| sigma | accuracy |\n|---|---|\n| 0 | 0.8 |\n| 0.05 | 0.4 ± 0.01 |" in card.text
    assert "| eval_test_accuracy | 0.6 |" in card.text
    assert {(r.dataset_split, r.metric_type, r.metric_config, r.metric_value) for r in card.data.eval_results} == {
        ("dev", "accuracy", "sigma=0", 0.8), ("dev", "accuracy", "sigma=0.05", 0.4)}
    card = cards.halora_card(results, "me/adapter", task_type="SEQ_CLS")
    assert "## accuracy on `test` under RRAM weight noise" in card.text and "| 0.05 | 0.3 ± 0.01 |" in card.text


def test_halora_card_of_a_prefixed_evaluation_after_a_plain_one_keeps_the_runs_multiple_choice_scoring():
    # examples/halora_finetune.py's run (eval_questions), then evaluate(hard, metric_key_prefix="eval_hard")
    results = {"eval_questions": 64, "eval_accuracy_sigma_0_mean": 0.8, "eval_runtime": 0.1,
               "eval_hard_accuracy_sigma_0_mean": 0.5, "eval_hard_runtime": 0.1, "metric_for_best_model": "hard_accuracy"}
    card = cards.halora_card(results, "me/adapter", dataset="me/data")
    assert "## accuracy on `hard` under RRAM weight noise" in card.text and "| 0 | 0.5 |" in card.text
    assert {(r.task_type, r.dataset_split, r.metric_value) for r in card.data.eval_results} == {
        ("multiple-choice", "hard", 0.5)}


def test_a_single_split_card_names_no_split():
    card = cards.splat_card({"eval_psnr": 20.0, "eval_ssim": 0.7, "eval_runtime": 0.1}, "me/splats", dataset="me/s")
    assert "| PSNR (dB) | SSIM |" in card.text and "other evaluation splits" not in card.text
    assert _metrics(card) == {("test", "psnr"): 20.0, ("test", "ssim"): 0.7}


def _trained_card(tmp_path, eval_dataset, **arguments):
    """A 2-step SplatTrainer run evaluated on ``eval_dataset`` (given the scene's views), its final evaluation's
    metrics and the card it writes."""
    from hf_eff import GaussianModel, make_procedural_scene
    from hf_eff.splat import SplatTrainer, SplatTrainingArguments

    scene = make_procedural_scene(seed=1, num_train=3, num_test=1, width=16, height=16, num_objects=1,
                                  num_points=30, supersample=1)
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True,
                                  save_strategy="no", **arguments)
    trainer = SplatTrainer(model=GaussianModel.from_points(*scene.point_arrays(), sh_degree=1), args=args,
                           train_dataset=scene.views["train"], eval_dataset=eval_dataset(scene.views))
    trainer.train()
    metrics = trainer.evaluate()
    trainer.create_model_card(dataset="me/scene")
    return metrics, ModelCard.load(tmp_path / "README.md")


def test_trainer_card_of_a_dict_run_reports_the_split_metric_for_best_model_names(tmp_path):
    metrics, card = _trained_card(tmp_path, lambda views: {"train_views": views["train"], "test": views["test"]},
                                  eval_render_images=1, metric_for_best_model="test_psnr")
    assert "PSNR on `test` (dB)" in card.text and f"| `train_views` | {metrics['eval_train_views_psnr']:.4g} |" in card.text
    assert _metrics(card)[("test", "psnr")] == pytest.approx(metrics["eval_test_psnr"])


def test_trainer_card_of_a_scenes_views_reports_the_test_views(tmp_path):
    # the DatasetDict of train and test views, the training views evaluated first
    metrics, card = _trained_card(tmp_path, lambda views: views, eval_render_images=0)
    assert "PSNR on `test` (dB)" in card.text and f"| `train` | {metrics['eval_train_psnr']:.4g} |" in card.text
    assert _metrics(card)[("test", "psnr")] == pytest.approx(metrics["eval_test_psnr"])
