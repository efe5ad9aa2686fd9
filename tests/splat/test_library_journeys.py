"""A user's own script against the scene and trainer API: what it gets back, and the errors it meets."""

import numpy as np
import pytest
from datasets import DatasetDict

from hf_eff.splat import (
    GaussianModel,
    Scene,
    SplatTrainer,
    SplatTrainingArguments,
    load_scene,
    make_procedural_scene,
    points_dataset,
    views_dataset,
)
from hf_eff.splat.cameras import world_normalization


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=0, num_train=4, num_test=1, width=16, height=12, num_points=60)


def own_capture(scene):
    """The scene's training views as a user holds a capture of their own: arrays."""
    rows = scene.views["train"].with_format("numpy")
    return [np.asarray(image) for image in scene.views["train"]["image"]], list(rows["K"]), list(rows["world_to_camera"])


def test_a_saved_scene_loads_back_equal_and_a_changed_one_is_not(scene, tmp_path):
    images, Ks, poses = own_capture(scene)
    xyz, rgb = scene.point_arrays()
    mine = Scene.from_views(DatasetDict({"train": views_dataset(images, Ks, poses)}), points_dataset(xyz, rgb))
    mine.save(tmp_path / "scene")
    loaded = load_scene(tmp_path / "scene")
    assert loaded == mine and not loaded != mine
    reordered = DatasetDict({"train": mine.views["train"].select([1, 0, 2, 3])})
    assert Scene(reordered, mine.points, mine.center, mine.radius) != mine
    assert Scene(mine.views, None, mine.center, mine.radius) != mine
    assert Scene(mine.views, mine.points, mine.center, mine.radius * 2) != mine
    assert Scene(mine.views, points_dataset(xyz[:-1], rgb[:-1]), mine.center, mine.radius) != mine


@pytest.mark.parametrize("argument", ["train_dataset", "eval_dataset"])
def test_a_split_with_no_views_is_refused_naming_the_argument(scene, tmp_path, argument):
    empty = views_dataset([], [], [])
    splits = {"train_dataset": scene.views["train"], "eval_dataset": scene.views["test"], argument: empty}
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True)
    hint = "; pass eval_dataset=None to train without evaluation" if argument == "eval_dataset" else ""
    with pytest.raises(ValueError, match=f"^SplatTrainer: {argument} has no views{hint}$"):
        SplatTrainer(GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args, **splits)


def test_evaluate_on_a_split_with_no_views_names_eval_dataset(scene, tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True)
    trainer = SplatTrainer(GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args,
                           train_dataset=scene.views["train"])
    with pytest.raises(ValueError, match="^SplatTrainer: eval_dataset has no views"):
        trainer.evaluate(views_dataset([], [], []))


def test_predict_returns_the_renders_and_targets_with_evaluate_metrics(scene, tmp_path):
    import torch

    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True)
    trainer = SplatTrainer(GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args,
                           train_dataset=scene.views["train"], eval_dataset=scene.views["test"])
    trainer.train()
    output = trainer.predict(scene.views["test"])
    test = scene.views["test"].with_format("numpy")
    assert output.predictions.shape == output.label_ids.shape == (1, 12, 16, 3)
    np.testing.assert_allclose(output.label_ids[0], test[0]["image"] / 255.0, atol=1e-6)
    with torch.no_grad():
        render, _, _ = trainer.model.render(torch.as_tensor(np.stack(test["world_to_camera"])),
                                            torch.as_tensor(np.stack(test["K"])), 16, 12)
    np.testing.assert_allclose(output.predictions, render.clamp(0, 1).numpy(), atol=1e-6)
    evaluated = trainer.evaluate()

    def same_in_both(metrics):  # not the training clocks (evaluate's only) nor each call's own speed
        return {key.split("_", 1)[1]: value for key, value in metrics.items()
                if not any(clock in key for clock in ("seconds", "runtime", "per_second"))}

    assert same_in_both(output.metrics) == same_in_both(evaluated)
    with pytest.raises(ValueError, match="^SplatTrainer: test_dataset has no views$"):
        trainer.predict(views_dataset([], [], []))


def test_compute_metrics_is_refused_rather_than_ignored(scene, tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True)
    with pytest.raises(ValueError, match=r"compute_metrics is not used .*trainer.predict\(split\)"):
        SplatTrainer(GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args,
                     train_dataset=scene.views["train"], compute_metrics=lambda prediction: {})


def test_training_a_model_without_gaussians_is_refused_before_any_step(scene, tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True, save_strategy="no")
    trainer = SplatTrainer(GaussianModel(sh_degree=0), args, train_dataset=scene.views["train"])
    with pytest.raises(ValueError, match=r"the model has no Gaussians to fit .*GaussianModel.from_points"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_a_placeholder_model_resumes_from_a_checkpoint(scene, tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True, save_strategy="steps",
                                  save_steps=2)
    SplatTrainer(GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args,
                 train_dataset=scene.views["train"]).train()
    resumed_args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3, disable_tqdm=True)
    resumed = SplatTrainer(GaussianModel(sh_degree=0), resumed_args, train_dataset=scene.views["train"])
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert resumed.state.global_step == 3 and len(resumed.model) == len(scene.points)


def test_coarse_to_fine_trains_views_thinner_than_its_coarsest_factor(tmp_path):
    # 7 px tall: the first, coarsest level renders 1 px tall, whose SSIM failed inside pytorch-msssim.
    thin = make_procedural_scene(seed=0, num_train=3, num_test=1, width=40, height=7, num_points=60)
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3, disable_tqdm=True, save_strategy="no")
    trainer = SplatTrainer(GaussianModel.from_points(*thin.point_arrays(), sh_degree=0), args,
                           train_dataset=thin.views["train"])
    assert 7 // trainer.resolution_factor(0) == 1
    trainer.train()
    assert trainer.state.global_step == 3 and np.isfinite(trainer.state.log_history[-1]["train_loss"])


def test_a_metric_for_best_model_evaluate_does_not_report_is_refused_before_training(scene, tmp_path):
    def trainer(metric, trainer_class=SplatTrainer):
        args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True, eval_strategy="steps",
                                      eval_steps=1, save_strategy="steps", save_steps=1, load_best_model_at_end=True,
                                      metric_for_best_model=metric)
        return trainer_class(GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args,
                             train_dataset=scene.views["train"], eval_dataset=scene.views["test"])

    with pytest.raises(ValueError, match=r"metric_for_best_model='lpips' is not among .*: psnr, ssim, num_gaussians"):
        trainer("lpips")
    assert trainer("eval_ssim").args.metric_for_best_model == "eval_ssim"

    class WithLPIPS(SplatTrainer):  # a subclass that reports more metrics chooses among them
        def evaluate(self, *args, **kwargs):
            return {**super().evaluate(*args, **kwargs), "eval_lpips": 0.5}

    trainer("lpips", WithLPIPS)


def test_one_intrinsics_matrix_is_shared_by_every_view(scene):
    import torch

    images, Ks, poses = own_capture(scene)
    for shared in (Ks[0], torch.as_tensor(Ks[0])):
        views = views_dataset(images[:3], shared, poses[:3]).with_format("numpy")
        np.testing.assert_array_equal(np.stack(views["K"]), np.stack([Ks[0]] * 3))
    # a stack of Ks stays one per view
    with pytest.raises(ValueError, match=r"2 images, 3 intrinsics and 2 poses"):
        views_dataset(images[:2], np.stack(Ks[:3]), poses[:2])


def test_float_images_a_rounding_error_past_0_or_1_are_stored_as_0_and_255(scene):
    # A render composited onto white can exceed 1 by float rounding; 8-bit storage cannot tell.
    images, Ks, poses = own_capture(scene)
    image = np.full(images[0].shape, 0.5, np.float32)
    image[0, 0] = [1 + 1e-6, -1e-7, 0.5 / 255 - 1e-4]
    stored = np.asarray(views_dataset([image], Ks[:1], poses[:1])[0]["image"])
    assert stored[0, 0].tolist() == [255, 0, 0] and (stored[1:] == 128).all()


def test_from_ply_names_what_a_ply_of_another_kind_is(scene, tmp_path):
    from plyfile import PlyData, PlyElement

    model = GaussianModel.from_points(*scene.point_arrays(), sh_degree=1)
    model.export(tmp_path / "scene.compressed.ply")
    with pytest.raises(ValueError, match=r"missing 3DGS vertex properties .* it is a compressed PLY"):
        GaussianModel.from_ply(tmp_path / "scene.compressed.ply")
    xyz, rgb = scene.point_arrays()
    cloud = np.empty(len(xyz), dtype=[(name, "f4") for name in "xyz"] + [(name, "u1") for name in ("red", "green", "blue")])
    for index, name in enumerate("xyz"):
        cloud[name] = xyz[:, index]
    for index, name in enumerate(("red", "green", "blue")):
        cloud[name] = rgb[:, index]
    PlyData([PlyElement.describe(cloud, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(ValueError, match=r"it looks like a point cloud: GaussianModel.from_points\(xyz, rgb\)"):
        GaussianModel.from_ply(tmp_path / "points.ply")


def test_the_scene_card_s_datasets_snippet_loads_a_saved_scene(scene, tmp_path):
    from datasets import load_dataset

    from hf_eff.hub.cards import scene_card

    card = str(scene_card("me/scene", {}, revision="v2"))
    assert 'load_dataset("me/scene", "views", revision="v2")' in card
    assert 'load_dataset("me/scene", "points", split="train", revision="v2")' in card
    folder = scene.save(tmp_path / "scene")  # the layout a push uploads
    views = load_dataset(str(folder), "views")
    points = load_dataset(str(folder), "points", split="train")
    assert load_scene(folder) == Scene(views, points, scene.center, scene.radius)


def test_a_strategy_named_to_the_trainer_points_to_the_arguments(scene, tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True)
    with pytest.raises(TypeError, match=r"SplatTrainer\(strategy='default'\): .*SplatTrainingArguments\(strategy="):
        SplatTrainer(GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args,
                     train_dataset=scene.views["train"], strategy="default")


@pytest.mark.parametrize("offset, error", [
    # 4 m apart, 6e6 m out: float32 moves them by ~0.2 m
    (np.array([5e6, 4e6, 100.0]), "views_dataset: the cameras lie about 6.4e[+]06 from the world origin"),
    # further out they round onto one point, which the scene names
    (np.array([5e8, 4e8, 100.0]), "scene: the 4 training cameras all sit at one point .* normalize_world_space=True"),
])
def test_cameras_far_from_the_origin_are_refused_before_float32_rounds_them(scene, offset, error):
    images, Ks, poses = own_capture(scene)
    camera_to_world = np.linalg.inv(np.stack(poses).astype(np.float64))
    camera_to_world[:, :3, 3] += offset
    far = list(np.linalg.inv(camera_to_world))
    with pytest.raises(ValueError, match=error):
        Scene.from_views(DatasetDict({"train": views_dataset(images, Ks, far)}))
    transform = world_normalization(far)  # the fix the error names
    normalized = Scene.from_views(DatasetDict({"train": views_dataset(images, Ks, far, world_to_normalized=transform)}),
                                  world_to_normalized=transform)
    assert normalized.radius == pytest.approx(1.0) and np.array_equal(normalized.world_to_normalized, transform)
