"""SplatTrainer with a dict of evaluation splits, as transformers' Trainer takes one: each split is evaluated under
eval_<key>_ and metric_for_best_model names one of them."""

import re

import pytest
import torch

from hf_eff.splat.config import SplatTrainingArguments
from hf_eff.splat.model import GaussianModel
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.trainer import EVAL_METRICS, SplatTrainer, train_seconds_to_reach

SPEED = ("runtime", "samples_per_second", "steps_per_second")


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=1, num_train=6, num_test=2, width=32, height=32, num_points=300)


def make_trainer(scene, output_dir, eval_dataset=None, trainer_class=SplatTrainer, **overrides):
    torch.manual_seed(0)
    model = GaussianModel.from_points(*scene.point_arrays(), sh_degree=1)
    settings = dict(output_dir=str(output_dir), max_steps=8, refine_every=4, refine_start_steps=2, reset_every=16,
                    sh_degree_interval=10, seed=0, disable_tqdm=True, logging_steps=4, eval_render_images=1)
    settings.update(overrides)
    if eval_dataset is None:
        eval_dataset = {"test": scene.views["test"], "train_views": scene.views["train"]}
    return trainer_class(model=model, args=SplatTrainingArguments(**settings), train_dataset=scene.views["train"],
                         eval_dataset=eval_dataset)


def test_each_split_of_a_dict_is_evaluated_under_its_key_in_training_and_after(scene, tmp_path):
    trainer = make_trainer(scene, tmp_path, eval_strategy="steps", eval_steps=4)
    trainer.train()
    for key in ("test", "train_views"):
        logged = [entry for entry in trainer.state.log_history if f"eval_{key}_psnr" in entry]
        assert [entry["step"] for entry in logged] == [4, 8]
        assert {f"eval_{key}_{name}" for name in (*EVAL_METRICS, *SPEED)} <= logged[-1].keys()
        assert list((tmp_path / f"eval_{key}_renders").glob("step-*.png"))
    assert not any("eval_psnr" in entry for entry in trainer.state.log_history)
    first = next(entry for entry in trainer.state.log_history if "eval_train_views_psnr" in entry)
    assert train_seconds_to_reach(trainer.state.log_history, 0.0, split="train_views") \
        == first["eval_train_views_train_seconds"]
    metrics = trainer.evaluate()
    assert {f"eval_{key}_{name}" for key in ("test", "train_views") for name in ("psnr", "ssim", *SPEED)} <= metrics.keys()
    # each key is its own split's evaluation
    for key, split in (("test", "test"), ("train_views", "train")):
        alone = trainer.evaluate(scene.views[split])
        assert metrics[f"eval_{key}_psnr"] == pytest.approx(alone["eval_psnr"], abs=1e-6)
        assert trainer.evaluate(key)["eval_psnr"] == pytest.approx(alone["eval_psnr"], abs=1e-6)
    assert metrics["eval_test_psnr"] != pytest.approx(metrics["eval_train_views_psnr"], abs=1e-3)
    given = trainer.evaluate({"held_out": scene.views["test"]}, metric_key_prefix="final")
    assert given["final_held_out_psnr"] == pytest.approx(metrics["eval_test_psnr"], abs=1e-6)
    with pytest.raises(KeyError, match=r"evaluate\('valid'\): the trainer's eval_dataset has the splits 'test', "
                                       "'train_views'"):
        trainer.evaluate("valid")


class PlantedPSNRTrainer(SplatTrainer):
    """Reports a planted PSNR for each split at the first evaluation of a step (the evaluations in training), so the
    best checkpoint does not hang on training dynamics; later evaluations report the rendered one."""

    def _render_views(self, views, prefix, keep):
        metrics, renders, targets = super()._render_views(views, prefix, keep)
        planted = self.planted.pop((prefix, self.state.global_step), None)
        if planted is not None:
            metrics[f"{prefix}_psnr"] = planted
        return metrics, renders, targets


def test_load_best_model_at_end_follows_the_named_splits_metric(scene, tmp_path):
    trainer = make_trainer(scene, tmp_path, max_steps=24, eval_strategy="steps", eval_steps=8, save_strategy="steps",
                           save_steps=8, load_best_model_at_end=True, metric_for_best_model="test_psnr",
                           eval_render_images=0, trainer_class=PlantedPSNRTrainer)
    # test is best at step 8, train_views at 16: following either split's metric picks a certain checkpoint.
    trainer.planted = {("eval_test", 8): 40.0, ("eval_test", 16): 10.0, ("eval_test", 24): 20.0,
                       ("eval_train_views", 8): 10.0, ("eval_train_views", 16): 40.0, ("eval_train_views", 24): 20.0}
    trainer.train()
    assert not trainer.planted  # every planted evaluation took place
    assert trainer.state.best_model_checkpoint == str(tmp_path / "checkpoint-8")
    assert trainer.state.best_metric == 40.0
    best = GaussianModel.from_pretrained(tmp_path / "checkpoint-8").splats
    last = GaussianModel.from_pretrained(tmp_path / "checkpoint-24").splats
    assert not torch.equal(best["means"], last["means"])
    for key, value in trainer.model.splats.items():  # reloaded, not the last
        assert torch.equal(value.detach().cpu(), best[key]), key


@pytest.mark.parametrize("metric", ["valid_psnr", "psnr"])
def test_a_metric_for_best_model_naming_no_split_is_refused_naming_the_valid_ones(scene, tmp_path, metric):
    valid = ", ".join(f"{key}_{name}" for key in ("test", "train_views") for name in EVAL_METRICS)
    with pytest.raises(ValueError, match=re.escape(
            f"metric_for_best_model={metric!r} is not among SplatTrainer's evaluation metrics for the eval_dataset "
            f"splits 'test', 'train_views': {valid}")):
        make_trainer(scene, tmp_path, eval_strategy="steps", eval_steps=4, save_strategy="steps", save_steps=4,
                     load_best_model_at_end=True, metric_for_best_model=metric)
    assert make_trainer(scene, tmp_path, metric_for_best_model="eval_train_views_ssim").args.metric_for_best_model \
        == "eval_train_views_ssim"


@pytest.mark.parametrize("best", [dict(load_best_model_at_end=True), dict(save_strategy="best")])
def test_the_default_metric_for_best_model_is_named_as_the_default_with_the_splits_to_choose(scene, tmp_path, best):
    with pytest.raises(ValueError, match=re.escape(
            "metric_for_best_model was left unset, and its default under load_best_model_at_end or "
            "save_strategy='best', 'psnr', names no split of the dict eval_dataset (splits 'test', 'train_views'): "
            "set it to the split's, 'test_psnr' or 'train_views_psnr'")):
        make_trainer(scene, tmp_path, eval_strategy="steps", eval_steps=4, save_steps=4,
                     **{"save_strategy": "steps", **best})
    # one split: the default is evaluate's own eval_psnr
    alone = make_trainer(scene, tmp_path, eval_dataset=scene.views["test"], eval_strategy="steps", eval_steps=4,
                         save_steps=4, **{"save_strategy": "steps", **best})
    assert alone.args.metric_for_best_model == "psnr"


def test_train_seconds_to_reach_reads_the_split_named_and_asks_for_one_on_a_dict_run():
    history = [{"eval_test_psnr": 19.0, "eval_test_train_seconds": 3.0, "eval_test_train_cpu_seconds": 2.0},
               {"eval_train_views_psnr": 22.0, "eval_train_views_train_seconds": 3.5,
                "eval_train_views_train_cpu_seconds": 2.5},
               {"eval_test_psnr": 21.0, "eval_test_train_seconds": 7.0, "eval_test_train_cpu_seconds": 5.0}]
    assert train_seconds_to_reach(history, 20.0, split="test") == 7.0
    assert train_seconds_to_reach(history, 20.0, clock="train_cpu_seconds", split="test") == 5.0
    assert train_seconds_to_reach(history, 20.0, split="train_views") == 3.5
    assert train_seconds_to_reach(history, 30.0, split="test") == float("inf")
    for split in (None, "valid"):
        prefix = "eval" if split is None else f"eval_{split}"
        with pytest.raises(ValueError, match=re.escape(
                f"train_seconds_to_reach(split={split!r}): the history holds no {prefix}_psnr but the PSNRs of the dict "
                "eval_dataset splits 'test', 'train_views' (eval_<key>_psnr): pass split= one of them")):
            train_seconds_to_reach(history, 20.0, split=split)


def test_a_bad_split_in_the_dict_is_named_by_its_key(scene, tmp_path):
    empty = {"test": scene.views["test"], "valid": scene.views["test"].select([])}
    with pytest.raises(ValueError, match=re.escape("SplatTrainer: eval_dataset['valid'] has no views; leave it out of "
                                                   "eval_dataset")):
        make_trainer(scene, tmp_path, eval_dataset=empty)
    trainer = make_trainer(scene, tmp_path, eval_render_images=0)
    with pytest.raises(ValueError, match=re.escape("eval_dataset['valid'] has no views")):
        trainer.evaluate(empty)
    with pytest.raises(TypeError, match=r"got Scene|got a Scene"):
        make_trainer(scene, tmp_path, eval_dataset={"test": scene})
    with pytest.raises(ValueError, match="eval_dataset is an empty dict; pass eval_dataset=None"):
        make_trainer(scene, tmp_path, eval_dataset={})
    with pytest.raises(TypeError, match=r"must be non-empty strings, got \[0\]"):
        make_trainer(scene, tmp_path, eval_dataset={0: scene.views["test"]})


@pytest.mark.parametrize(("key", "held"), [("a/b", "'/'"), ("x/../../up", "'/' and '..'"), ("a\\b", "'\\\\'"),
                                           ("..", "'..'"), ("held out", "whitespace"), ("test\n", "whitespace")])
def test_a_key_that_is_no_folder_name_is_refused_before_anything_is_written(scene, tmp_path, key, held):
    message = re.escape(f"eval_dataset's key {key!r} holds {held}: a key names its split's metrics (eval_{key}_psnr) "
                        f"and its renders folder (output_dir/eval_{key}_renders)")
    splits = {"test": scene.views["test"], key: scene.views["test"]}
    with pytest.raises(ValueError, match=message):
        make_trainer(scene, tmp_path / "run", eval_dataset=splits)
    trainer = make_trainer(scene, tmp_path / "run", eval_dataset=scene.views["test"])
    with pytest.raises(ValueError, match=message):
        trainer.evaluate(splits)
    assert not list(tmp_path.rglob("*_renders"))
