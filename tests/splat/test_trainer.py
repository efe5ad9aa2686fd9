import dataclasses
import re
import time

import numpy as np
import pytest
import torch
from datasets import DatasetDict
from gsplat.strategy import DefaultStrategy

from hf_eff.splat.coarse_to_fine import downscale_images, energy_schedule, scale_intrinsics
from hf_eff.splat.config import SplatTrainingArguments
from hf_eff.splat.losses import photometric_loss, psnr, ssim
from hf_eff.splat.model import GaussianModel
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.strategy import FixedDefaultStrategy, GlobalToLocalStrategy
from hf_eff.splat.trainer import (
    RENDER_KEYWORDS,
    GaussianOptimizers,
    SplatTrainer,
    train_seconds_to_reach,
)


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=1, num_train=6, num_test=2, width=32, height=32, num_points=300)


def make_trainer(scene, output_dir, custom_strategy=None, callbacks=None, sh_degree=1, **overrides):
    torch.manual_seed(0)
    xyz, rgb = scene.point_arrays()
    model = GaussianModel.from_points(xyz, rgb, sh_degree=sh_degree)
    settings = dict(output_dir=str(output_dir), max_steps=40, refine_every=4, refine_start_steps=2,
                    reset_every=16, sh_degree_interval=10, seed=0, disable_tqdm=True, logging_steps=10,
                    eval_render_images=1)
    settings.update(overrides)
    args = SplatTrainingArguments(**settings)
    return SplatTrainer(model=model, args=args, train_dataset=scene.views["train"],
                        eval_dataset=scene.views["test"], strategy=custom_strategy, callbacks=callbacks)


def test_g2l_training_fits_the_views_and_follows_the_schedules(scene, tmp_path):
    # No opacity reset here: 40 steps cannot recover from one (the resume test covers it).
    trainer = make_trainer(scene, tmp_path, reset_every=1000)
    assert isinstance(trainer.strategy, GlobalToLocalStrategy)
    t2 = trainer.coarse_to_fine.full_resolution_step
    assert trainer.strategy.global_stop_iter == t2 > 0
    assert trainer.resolution_factor(0) == 8 and trainer.resolution_factor(t2) == 1
    before = trainer.evaluate()
    start = len(trainer.model)
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_psnr"] > before["eval_psnr"] + 1.0
    assert len(trainer.model) != start
    assert isinstance(trainer.optimizer.optimizer, GaussianOptimizers)
    for key, param in trainer.model.splats.items():
        assert trainer.optimizers_by_key[key].param_groups[0]["params"][0] is param
    factors = [entry["resolution_factor"] for entry in trainer.state.log_history if "resolution_factor" in entry]
    assert factors[0] > 1 and factors[-1] == 1
    # Means LR: held while downsampled, then along the 3DGS decay with its clock paused while coarse.
    assert trainer.means_lr_factor(t2 - 1) == 1.0
    assert trainer.means_lr_factor(40) == pytest.approx(0.01 ** ((40 - t2) / 40))
    assert list((tmp_path / "eval_renders").glob("step-*.png"))


def flipped_views(views, indices):
    """The views with the poses of ``indices`` in the OpenGL convention, a user's usual mistake."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])

    def pose(row, index):
        pose = np.asarray(row["world_to_camera"], dtype=np.float32)
        return {"world_to_camera": flip @ pose if index in indices else pose}

    return views.map(pose, with_indices=True, features=views.features)


def test_poses_in_another_convention_are_named_before_training(scene, tmp_path):
    from transformers.testing_utils import CaptureLogger

    from hf_eff.splat import trainer as trainer_module

    def with_flipped(indices):
        train = flipped_views(scene.views["train"], indices)
        return dataclasses.replace(scene, views=DatasetDict({"train": train, "test": scene.views["test"]}))

    with pytest.raises(ValueError, match="none of the 6 training views sees any of the model's 300 Gaussians.*"
                                         r"OpenCV's convention .*inv\(c2w @ OPENGL_TO_OPENCV\)"):
        make_trainer(with_flipped(range(6)), tmp_path)
    # One view off: a warning naming it (a view may legitimately look away from the initial points).
    with CaptureLogger(trainer_module.logger) as captured:
        make_trainer(with_flipped([4]), tmp_path)
    assert "training views [4] (1 of 6) see none of the model's 300 Gaussians" in captured.out
    with CaptureLogger(trainer_module.logger) as captured:
        make_trainer(scene, tmp_path)
    assert "see none" not in captured.out


def test_a_whole_scene_or_a_split_without_the_view_columns_is_refused_with_the_fix(scene, tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5)
    model = GaussianModel.from_points(*scene.point_arrays())
    for whole in (scene, scene.views):  # a bare KeyError 'width' / TypeError before
        with pytest.raises(TypeError, match=re.escape(f"got a {type(whole).__name__}: pass "
                                                      "train_dataset=scene.views['train']")):
            SplatTrainer(model=model, args=args, train_dataset=whole)
    with pytest.raises(ValueError, match=r"scene views \(train_dataset\): missing column\(s\) \['K'\]"):
        SplatTrainer(model=model, args=args, train_dataset=scene.views["train"].remove_columns("K"))


def test_errors_about_a_split_given_to_the_trainer_name_the_argument_it_came_in_as(scene, tmp_path):
    import PIL.Image
    from datasets import Dataset

    from hf_eff.splat.scene import VIEW_FEATURES

    # Built by hand (not through load_scene, whose errors name the scene's split): "scene view 1" said no more.
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5)
    model = GaussianModel.from_points(*scene.point_arrays())
    train = scene.views["train"]
    columns = {name: list(train[name]) for name in ("image", "K", "world_to_camera", "width", "height")}
    columns["world_to_camera"][1] = np.full((4, 4), np.nan).tolist()
    nan_pose = Dataset.from_dict(columns, features=VIEW_FEATURES)
    columns["world_to_camera"] = list(train["world_to_camera"])
    columns["image"][1] = columns["image"][1].resize((16, 16), PIL.Image.BILINEAR)  # K halved alike: a valid view
    columns["K"][1] = (np.asarray(columns["K"][1]) * [[0.5], [0.5], [1]]).tolist()
    columns["width"][1] = columns["height"][1] = 16
    mixed_sizes = Dataset.from_dict(columns, features=VIEW_FEATURES)
    for given, name in ((dict(train_dataset=nan_pose), "train_dataset"),
                        (dict(train_dataset=train, eval_dataset=nan_pose), "eval_dataset"),
                        (dict(train_dataset=train, eval_dataset={"test": nan_pose}), "eval_dataset['test']")):
        with pytest.raises(ValueError, match=re.escape(f"scene view 1 ({name}): world_to_camera contains NaN")):
            SplatTrainer(model=model, args=args, **given)
    for given, name in ((dict(train_dataset=mixed_sizes), "train_dataset"),
                        (dict(train_dataset=train, eval_dataset=mixed_sizes), "eval_dataset")):
        with pytest.raises(ValueError, match=re.escape(f"scene view 1 ({name}) is 16x16 but view 0 is 32x32")):
            SplatTrainer(model=model, args=args, **given)


def test_arguments_after_args_are_keyword_only_as_trainers_third_is_data_collator(scene, tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5)
    model = GaussianModel.from_points(*scene.point_arrays())
    with pytest.raises(TypeError, match="positional argument"):
        SplatTrainer(model, args, scene.views["train"])
    assert SplatTrainer(model, args, train_dataset=scene.views["train"]).args.max_steps == 5


def test_a_split_passed_to_the_trainer_gets_the_checks_of_a_scenes_split(scene, tmp_path):
    import io

    import PIL.Image
    from datasets import Dataset

    from hf_eff.splat.scene import VIEW_FEATURES

    # A split built by hand with Dataset.from_dict goes to the trainer without a Scene.
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5)
    model = GaussianModel.from_points(*scene.point_arrays())
    train = scene.views["train"]
    columns = {name: list(train[name]) for name in ("K", "world_to_camera", "width", "height")}
    columns["K"][1] = [[200.0, 0, 64], [0, 200, 64], [0, 0, 1]]  # K of 4x larger images
    with pytest.raises(ValueError, match=r"scene view 1 \(train_dataset\): K's principal point \(cx, cy\) = \(64, 64\) lies outside"):
        SplatTrainer(model=model, args=args, train_dataset=Dataset.from_dict(
            {"image": train["image"], **columns}, features=VIEW_FEATURES))
    columns["K"] = list(train["K"])
    rgba = np.asarray(train[2]["image"].convert("RGBA")).copy()
    rgba[:16, :, 3] = 0
    encoded = io.BytesIO()
    PIL.Image.fromarray(rgba).save(encoded, format="PNG")
    images = [*train["image"][:2], {"bytes": encoded.getvalue(), "path": None}, *train["image"][3:]]
    with pytest.raises(ValueError, match=r"scene view 2 \(train_dataset\): image has transparent pixels"):
        SplatTrainer(model=model, args=args, train_dataset=Dataset.from_dict(
            {"image": images, **columns}, features=VIEW_FEATURES))


def test_views_are_held_as_uint8_and_batches_get_the_old_float_values(scene, tmp_path):
    trainer = make_trainer(scene, tmp_path, per_device_train_batch_size=3)
    views = trainer.train_dataset
    assert views.images.dtype == torch.uint8 and views.images.shape == (6, 32, 32, 3)
    # What the whole stack used to be: every image as float32 / 255 up front.
    pixels = np.stack([np.asarray(image.convert("RGB")) for image in scene.views["train"]["image"]])
    old_floats = torch.as_tensor(pixels).float() / 255.0
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (3, 32, 32, 3)
    for image, viewmat in zip(batch["image"], batch["viewmat"]):
        index = next(i for i in range(len(views)) if torch.equal(views.viewmats[i], viewmat))
        assert torch.equal(image, old_floats[index])
    # The energy schedule reads the uint8 stack chunk by chunk, with the same values.
    densify_steps = trainer.strategy.refine_stop_iter
    assert trainer.coarse_to_fine.thresholds == energy_schedule(old_floats, densify_steps, trainer.args.c2f_levels)
    assert energy_schedule(views.images, 1000, 4, chunk_size=4) == energy_schedule(old_floats, 1000, 4)


def test_resume_mid_densification_continues_the_same_run(scene, tmp_path, monkeypatch):
    full = make_trainer(scene, tmp_path / "full", save_strategy="steps", save_steps=20)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-20"
    assert (checkpoint / "densification_state.pt").is_file()
    assert full.strategy.refine_stop_iter > 20  # the checkpoint is in the middle of densification
    resumed = make_trainer(scene, tmp_path / "resumed", save_strategy="no")
    loads, load = [], torch.load

    def counting_load(path, *args, **kwargs):
        loads.append(str(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    # the resume check reads the state's record from the one load that restores it
    assert loads.count(str(checkpoint / "densification_state.pt")) == 1
    assert len(resumed.model) == len(full.model)
    for key in full.model.splats:
        torch.testing.assert_close(resumed.model.splats[key], full.model.splats[key], rtol=1e-5, atol=1e-6)


def test_load_best_model_at_end_ends_with_the_best_checkpoints_gaussians(scene, tmp_path):
    # The opacity reset at step 16 costs PSNR that 24 steps do not win back: the best checkpoint is an early one.
    trainer = make_trainer(scene, tmp_path, max_steps=24, eval_strategy="steps", eval_steps=8, save_strategy="steps",
                           save_steps=8, load_best_model_at_end=True, metric_for_best_model="psnr", eval_render_images=0)
    trainer.train()
    evals = {entry["step"]: entry for entry in trainer.state.log_history if "eval_psnr" in entry}
    best = max(evals, key=lambda step: evals[step]["eval_psnr"])
    assert trainer.state.best_model_checkpoint == str(tmp_path / f"checkpoint-{best}")
    # What Trainer's own reload failed on: the number of Gaussians changed after the best checkpoint.
    assert evals[best]["eval_num_gaussians"] != evals[24]["eval_num_gaussians"]
    assert len(trainer.model) == evals[best]["eval_num_gaussians"]
    saved = GaussianModel.from_pretrained(trainer.state.best_model_checkpoint)
    for key, value in saved.splats.items():
        assert torch.equal(trainer.model.splats[key], value)
    assert len(trainer.strategy_state["grad2d"]) == len(trainer.model)  # its densification state came along
    assert trainer.evaluate()["eval_psnr"] == pytest.approx(evals[best]["eval_psnr"], abs=1e-6)


def test_any_gsplat_strategy_plugs_in(scene, tmp_path):
    strategy = DefaultStrategy(refine_start_iter=2, refine_every=4, refine_stop_iter=10)
    trainer = make_trainer(scene, tmp_path, custom_strategy=strategy, max_steps=10, strategy="default")
    trainer.train()
    assert trainer.strategy == strategy and trainer.coarse_to_fine is None  # a copy (see the test below)
    assert trainer.strategy_state["grad2d"] is not None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for CPU training")
def test_mcmc_is_refused_on_a_cpu_before_training(scene, tmp_path):
    from gsplat.strategy import MCMCStrategy

    # Its noise injection and relocation call gsplat's CUDA kernels directly: it used to fail at the
    # first refine step, after trying to JIT-compile them.
    with pytest.raises(ValueError, match="MCMCStrategy needs gsplat's CUDA kernels .* training runs on cpu"):
        make_trainer(scene, tmp_path, custom_strategy=MCMCStrategy(), strategy="default")


def test_a_strategy_object_shared_by_the_trainers_of_two_scenes_is_not_changed(tmp_path):
    strategy = GlobalToLocalStrategy(refine_start_iter=50, refine_every=10, refine_stop_iter=2500, reset_every=300)
    t2 = []
    for seed in (1, 5):
        scene = make_procedural_scene(seed=seed, num_train=4, num_test=1, width=32, height=32, num_points=300)
        trainer = make_trainer(scene, tmp_path / str(seed), custom_strategy=strategy, max_steps=3000)
        assert trainer.strategy.global_stop_iter == trainer.coarse_to_fine.full_resolution_step
        assert strategy.global_stop_iter is None  # the caller's object keeps no scene's T_2
        t2.append(trainer.strategy.global_stop_iter)
    assert t2[0] != t2[1]  # the two scenes' schedules differ


@pytest.mark.parametrize("strategy", [DefaultStrategy(absgrad=True), FixedDefaultStrategy()])
def test_a_custom_strategy_under_the_g2l_arguments_trains_as_default(scene, tmp_path, strategy):
    # It needed strategy="default" in the arguments too (refused otherwise); before the refusal it got
    # coarse-to-fine and the held means LR of the default strategy="g2l" silently.
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, refine_every=4, refine_start_steps=2,
                                  disable_tqdm=True, eval_render_images=0)
    model = GaussianModel.from_points(*scene.point_arrays(), sh_degree=0)
    trainer = SplatTrainer(model=model, args=args, train_dataset=scene.views["train"], strategy=strategy)
    assert trainer.args.strategy == "default" and args.strategy == "g2l"  # the caller's arguments are left as given
    assert trainer.coarse_to_fine is None and trainer.means_lr_factor(1) < 1.0  # no c2f, no means LR hold
    assert trainer.strategy_name() == type(strategy).__name__
    trainer.train()


def test_an_absgrad_strategy_gets_absolute_gradients(scene, tmp_path):
    strategy = DefaultStrategy(absgrad=True, grow_grad2d=0.0008, refine_start_iter=2, refine_every=4, refine_stop_iter=10)
    trainer = make_trainer(scene, tmp_path, custom_strategy=strategy, max_steps=10, strategy="default")
    trainer.train()  # gsplat's strategy reads info["means2d"].absgrad, set only when rendering asks for it
    assert trainer.strategy_state["grad2d"] is not None and float(trainer.strategy_state["grad2d"].sum()) > 0


def test_schedules_after_coarse_to_fine_options(scene, tmp_path):
    remaining = make_trainer(scene, tmp_path / "remaining", means_lr_decay="remaining")
    t2 = remaining.coarse_to_fine.full_resolution_step
    assert 10 < t2 < 40  # SH steps every 10 under coarse-to-fine
    assert remaining.means_lr_factor(40) == pytest.approx(0.01)
    assert remaining.active_sh_degree(t2 - 1) == 1
    paused = make_trainer(scene, tmp_path / "paused", means_lr_decay="paused", sh_degree_start="full_resolution")
    assert paused.means_lr_factor(t2 - 1) == 1.0
    assert paused.means_lr_factor(40) == pytest.approx(0.01 ** ((40 - t2) / 40))
    assert paused.active_sh_degree(t2 - 1) == 0 and paused.active_sh_degree(t2 + 10) == 1
    # Without coarse-to-fine there is no hold: both options are the 3DGS schedules.
    flat = make_trainer(scene, tmp_path / "flat", c2f=False, g2l=False, means_lr_decay="paused",
                        sh_degree_start="full_resolution")
    assert flat.means_lr_factor(20) == pytest.approx(0.01 ** 0.5) and flat.active_sh_degree(10) == 1


@pytest.mark.parametrize("overrides, message", [
    (dict(max_steps=-1), "max_steps"),
    (dict(gradient_accumulation_steps=2), "gradient_accumulation_steps"),
    (dict(strategy="mcmc"), "strategy"),
    (dict(prune_stop_fraction=1.5), "prune_stop_fraction"),
    (dict(prune_pause_after_reset=-1), "prune_pause_after_reset"),
    (dict(clone_grad2d_factor=0), "clone_grad2d_factor"),
    (dict(means_lr_decay="linear"), "means_lr_decay"),
    (dict(sh_degree_start="end"), "sh_degree_start"),
    (dict(eval_render_images=-1), r"eval_render_images must be >= 0 \(0 renders none\), got -1"),
    (dict(prune_opa=0.5), r"prune_opa must be in \(0, 0.5\), got 0.5"),
    (dict(prune_opa=0.0), r"prune_opa must be in \(0, 0.5\), got 0.0"),
])
def test_bad_arguments_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        SplatTrainingArguments(output_dir=str(tmp_path), **{"max_steps": 10, **overrides})


@pytest.mark.parametrize(("cuda", "overrides", "pinned", "non_blocking"), [
    (False, {}, False, False),
    (True, {}, True, True),
    (True, dict(use_cpu=True), False, False),
    (True, dict(dataloader_pin_memory=False), False, False),
    (True, dict(accelerator_config={"non_blocking": False}), True, False),
])
def test_batches_are_pinned_and_copied_without_waiting_only_on_cuda(tmp_path, monkeypatch, cuda, overrides,
                                                                    pinned, non_blocking):
    device = torch.device("cuda" if cuda else "cpu")
    monkeypatch.setattr(SplatTrainingArguments, "device", property(lambda args: torch.device("cpu") if args.use_cpu else device))
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, **overrides)
    assert args.dataloader_pin_memory is pinned
    assert args.accelerator_config.non_blocking is non_blocking


def test_a_model_whose_render_lacks_the_trainers_keywords_is_refused_by_name(scene, tmp_path):
    class FixedBackendModel(GaussianModel):
        def render(self, viewmats, Ks, width, height, sh_degree=None, backgrounds=None, packed=False):
            return super().render(viewmats, Ks, width, height, sh_degree, backgrounds, packed=packed)

    xyz, rgb = scene.point_arrays()
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10)
    with pytest.raises(TypeError, match="model.render must accept the keywords backend, absgrad, check_finite, rasterize_mode"):
        SplatTrainer(model=FixedBackendModel.from_points(xyz, rgb), args=args, train_dataset=scene.views["train"])

    # The keywords checked are exactly those the trainer passes.
    passed = []

    class RecordingModel(GaussianModel):
        def render(self, viewmats, Ks, width, height, **kwargs):
            passed.append(set(kwargs))
            return super().render(viewmats, Ks, width, height, **kwargs)

    trainer = SplatTrainer(model=RecordingModel.from_points(xyz, rgb), args=args, train_dataset=scene.views["train"])
    views = trainer.train_dataset
    trainer.render(trainer.model, views.viewmats[:1], views.Ks[:1], views.width, views.height)
    assert passed == [set(RENDER_KEYWORDS)]


def test_training_stops_with_a_named_error_when_pruning_leaves_no_gaussian(scene, tmp_path):
    # Every Gaussian starts at opacity 0.1, under prune_opa: the first refinement prunes them all.
    trainer = make_trainer(scene, tmp_path, strategy="default", prune_opa=0.45, max_steps=20)
    with pytest.raises(RuntimeError, match=r"step 4: densification and pruning left no Gaussian "
                                           r"\(FixedDefaultStrategy: prune_opa=0.45, .*What the trainer saw: "
                                           r"(\d+) of the \1 Gaussians before this step had an opacity under "
                                           r"prune_opa=0.45.*lower prune_opa"):
        trainer.train()


def inverted_poses(views):
    """The views with camera-to-world matrices where world_to_camera belongs, a user's usual mistake."""
    def pose(row):
        return {"world_to_camera": np.linalg.inv(np.asarray(row["world_to_camera"], dtype=np.float64))}

    return views.map(pose, features=views.features)


def test_pruning_everything_after_wrong_poses_names_the_poses_and_the_scene_scale(scene, tmp_path):
    from hf_eff.splat.trainer import camera_scene_scale

    wrong = dataclasses.replace(scene, views=DatasetDict({"train": inverted_poses(scene.views["train"]),
                                                          "test": scene.views["test"]}))
    # Two views see no Gaussian: a warning, then (at the first prune after the reset at 16) an error that used to
    # point at prune_opa only. The inverted poses' scene scale is ~40x too small, so every Gaussian is "too big".
    trainer = make_trainer(wrong, tmp_path)
    assert trainer.scene_scale < camera_scene_scale(trainer.eval_dataset.viewmats) / 10
    with pytest.raises(RuntimeError, match=r"step 20: densification and pruning left no Gaussian .*What the trainer "
                                           r"saw: training views \[0, 5\] \(2 of 6\) saw none of the Gaussians at "
                                           r"the start .*camera-to-world poses given as world_to_camera; check the "
                                           r"poses.*; (\d+) of the \1 Gaussians before this step were larger than "
                                           r"prune_scale3d x the scene scale \(0.1 x 0.113;.*wrong poses shrink it"):
        trainer.train()


def test_empty_model_causes_names_what_it_sees(scene):
    from hf_eff.splat.trainer import SceneViews, empty_model_causes

    views = SceneViews(scene.views["train"])
    xyz, rgb = scene.point_arrays()
    splats = GaussianModel.from_points(xyz, rgb, sh_degree=0).splats
    before = {key: splats[key].detach() for key in ("means", "scales", "opacities")}
    strategy = FixedDefaultStrategy()  # prune_opa 0.005, prune_scale3d 0.1
    assert empty_model_causes(before, 20, strategy, 1e6, views, []) == []  # nothing the trainer can point at
    behind = {**before, "means": before["means"] + 1e4}  # far outside every view
    assert empty_model_causes(behind, 20, strategy, 1e6, views, []) == [
        "no training view saw any of the 300 Gaussians before this step (every centre behind the camera or outside "
        "the image), so none got a gradient"]
    faint = {**before, "opacities": torch.full_like(before["opacities"], -10.0)}
    assert empty_model_causes(faint, 20, strategy, 1e6, views, []) == [
        "300 of the 300 Gaussians before this step had an opacity under prune_opa=0.005"]
    (blind,) = empty_model_causes(before, 20, strategy, 1e6, views, [3])
    assert blind.startswith("training views [3] (1 of 6) saw none of the Gaussians at the start")
    assert empty_model_causes(before, 20, strategy, 1e-3, views, []) == []  # not pruned by size before reset_every
    (big,) = empty_model_causes(before, 20, FixedDefaultStrategy(reset_every=10), 1e-3, views, [])
    assert big.startswith("300 of the 300 Gaussians before this step were larger than prune_scale3d x the scene "
                          "scale (0.1 x 0.001;")


def test_white_background_renders_onto_white(scene, tmp_path):
    trainer = make_trainer(scene, tmp_path, white_background=True)
    with torch.no_grad():
        trainer.model.splats["opacities"].fill_(-30.0)  # every Gaussian transparent
    viewmats, Ks = (trainer.train_dataset[0][key][None] for key in ("viewmat", "K"))
    render, _, _ = trainer.render(trainer.model, viewmats, Ks, 32, 32, 0)
    torch.testing.assert_close(render, torch.ones_like(render))


def test_a_resumed_run_continues_the_training_clocks_saved_with_its_checkpoint(scene, tmp_path):
    # Evaluated every 4 steps, saved at 18: the steps after the last evaluation (16) count too.
    settings = dict(max_steps=20, eval_strategy="steps", eval_steps=4, eval_render_images=0)
    full = make_trainer(scene, tmp_path / "full", save_strategy="steps", save_steps=18, **settings)
    full.train()
    clocks = ("eval_train_seconds", "eval_train_cpu_seconds")
    at_16 = next(entry for entry in full.state.log_history if entry["step"] == 16 and clocks[0] in entry)
    state_file = tmp_path / "full" / "checkpoint-18" / "densification_state.pt"
    state = torch.load(state_file, weights_only=True)
    saved = state["train_clocks"]
    assert all(saved[i] > at_16[clock] for i, clock in enumerate(clocks))

    def resumed_times(**overrides):
        resumed = make_trainer(scene, tmp_path / "resumed", save_strategy="no", **{**settings, **overrides})
        resumed.train(resume_from_checkpoint=str(state_file.parent))
        return {clock: [entry[clock] for entry in resumed.state.log_history if clock in entry] for clock in clocks}

    # An hour added to the saved clocks shows that the resumed run goes on from them.
    torch.save({**state, "train_clocks": (saved[0] + 3600, saved[1] + 3600)}, state_file)
    for i, (clock, times) in enumerate(resumed_times().items()):
        assert len(times) == 5 and times[:4] == sorted(times[:4]), clock  # steps 4..16 from the checkpoint
        assert saved[i] + 3600 < times[4] < saved[i] + 3600 + 600, clock
    # A checkpoint saved before the clocks were goes on from its last evaluation.
    torch.save({key: value for key, value in state.items() if key != "train_clocks"}, state_file)
    for clock, times in resumed_times().items():
        assert len(times) == 5 and times == sorted(times), clock


def test_train_seconds_to_reach_reads_the_first_evaluation_at_the_target_on_the_clock_named():
    history = [{"loss": 0.5, "step": 2},
               {"eval_psnr": 18.0, "eval_train_seconds": 3.0, "eval_train_cpu_seconds": 2.0},
               {"eval_psnr": 21.0, "eval_train_seconds": 7.0, "eval_train_cpu_seconds": 5.0},
               {"eval_psnr": 20.0, "eval_train_seconds": 9.0, "eval_train_cpu_seconds": 6.0}]
    assert train_seconds_to_reach(history, 20.0) == 7.0
    assert train_seconds_to_reach(history, 20.0, clock="train_cpu_seconds") == 5.0
    assert train_seconds_to_reach(history, 17.0) == 3.0
    assert train_seconds_to_reach(history, 25.0) == float("inf")
    assert train_seconds_to_reach([{"loss": 0.5}], 20.0) == float("inf")  # not evaluated yet
    assert train_seconds_to_reach([{"eval_psnr": 22.0}, *history], 20.0) == 0.0  # evaluated before training
    with pytest.raises(ValueError, match="clock must be one of train_seconds, train_cpu_seconds, got 'eval_train_seconds'"):
        train_seconds_to_reach(history, 20.0, clock="eval_train_seconds")
    with pytest.raises(ValueError, match=re.escape("train_seconds_to_reach(split='test'): the history holds no "
                                                   "eval_test_psnr but eval_psnr, of an eval_dataset that was not a "
                                                   "dict: leave split=None")):
        train_seconds_to_reach(history, 20.0, split="test")


def test_the_training_clocks_stop_when_training_ends(scene, tmp_path):
    # An example saves the model and its PLY before its final evaluate: that is not training time.
    trainer = make_trainer(scene, tmp_path, max_steps=4, eval_render_images=0)
    trainer.train()
    first = trainer.evaluate()
    started = time.process_time()
    time.sleep(0.2)
    while time.process_time() - started < 0.2:  # CPU time too
        pass
    second = trainer.evaluate()
    for clock in ("eval_train_seconds", "eval_train_cpu_seconds"):
        assert second[clock] == first[clock], clock


def test_an_evaluations_training_clocks_leave_out_its_own_rendering(scene, tmp_path, monkeypatch):
    # A slow evaluation (0.2 s) at the last step: the clocks it reports stop where it starts, so they are no
    # later than the clocks that stop with training just after it (they included its rendering). Both leave
    # that evaluation out and differ by the few steps' bookkeeping after it, so a loaded machine's timer noise
    # gets 0.1 s, half of what a clock that counted the rendering would be over.
    from hf_eff.splat import trainer as trainer_module

    def slow_psnr(render, target):
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - started_wall < 0.2 or time.process_time() - started_cpu < 0.2:
            pass
        return psnr(render, target)

    monkeypatch.setattr(trainer_module, "psnr", slow_psnr)
    trainer = make_trainer(scene, tmp_path, max_steps=4, eval_strategy="steps", eval_steps=4,
                           eval_render_images=0, save_strategy="no")
    trainer.train()
    in_training = next(entry for entry in trainer.state.log_history if "eval_train_seconds" in entry)
    after = trainer.evaluate()
    for clock in ("eval_train_seconds", "eval_train_cpu_seconds"):
        assert in_training[clock] <= after[clock] + 0.1, clock


@pytest.mark.parametrize("saved, resumed, named", [
    ({"strategy": "default"}, {}, r"strategy \(.*\): 'default' in the checkpoint, 'g2l' now; coarse-to-fine levels "
                                  r"\(.*\): None in the checkpoint, 8 now\. Resume with the settings it was trained with"),
    ({}, {"strategy": "default"}, r"'g2l' in the checkpoint, 'default' now; coarse-to-fine levels .*: 8 in the checkpoint"),
    ({}, {"c2f": False}, r"'g2l' in the checkpoint, 'g2l \(no c2f\)' now"),
    ({}, {"c2f_levels": 4}, r"coarse-to-fine levels .*: 8 in the checkpoint, 4 now"),
    ({"strategy": "default", "custom_strategy": FixedDefaultStrategy(absgrad=True, grow_grad2d=8e-4)},
     {"strategy": "default", "custom_strategy": FixedDefaultStrategy()},
     r"densification gradient .*: 'absgrad' in the checkpoint, 'grad' now"),
])
def test_resuming_another_strategys_checkpoint_is_refused_before_anything_is_written(scene, tmp_path, saved, resumed,
                                                                                   named):
    run = tmp_path / "run"
    make_trainer(scene, run, max_steps=4, save_strategy="steps", save_steps=4, **saved).train()
    checkpoint = str(run / "checkpoint-4")
    written = {path: path.stat().st_mtime_ns for path in run.rglob("*")}
    trainer = make_trainer(scene, run, max_steps=8, save_strategy="steps", save_steps=4, **resumed)
    with pytest.raises(ValueError, match=re.escape(f"resume_from_checkpoint {checkpoint!r}: ") + ".*" + named):
        trainer.train(resume_from_checkpoint=checkpoint)
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*")} == written
    assert trainer.state.global_step == 0
    # the same arguments resume, with max_steps extended (the schedules scaled by it may change)
    make_trainer(scene, run, max_steps=8, save_strategy="no", **saved).train(resume_from_checkpoint=checkpoint)


def test_resuming_from_a_save_only_model_checkpoint_names_the_cause(scene, tmp_path):
    make_trainer(scene, tmp_path / "run", max_steps=4, save_strategy="steps", save_steps=4, save_only_model=True).train()
    checkpoint = str(tmp_path / "run" / "checkpoint-4")
    message = (f"checkpoint {checkpoint} holds no optimizer or densification state (densification_state.pt is "
               "missing; saved with save_only_model=True?), so training cannot resume from it; to start a new run "
               f"from its Gaussians, load the model with GaussianModel.from_pretrained('{checkpoint}') instead")
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        make_trainer(scene, tmp_path / "resumed", max_steps=4).train(resume_from_checkpoint=checkpoint)


def test_resuming_from_a_checkpoint_with_truncated_weights_names_the_file_and_leaves_it(scene, tmp_path):
    # was a bare SafetensorError naming no file
    run = tmp_path / "run"
    make_trainer(scene, run, max_steps=4, save_strategy="steps", save_steps=4).train()
    weights = run / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    written = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    trainer = make_trainer(scene, run, max_steps=8, save_strategy="steps", save_steps=4)
    message = f"--resume_from_checkpoint: {weights} does not load (SafetensorError: "
    with pytest.raises(ValueError, match=re.escape(message) + r".*\); it is left as it is\. Resume from an earlier"):
        trainer.train(resume_from_checkpoint=str(run / "checkpoint-4"))
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == written


def test_load_best_model_at_end_from_truncated_best_weights_names_the_file_and_keeps_the_last_gaussians(scene, tmp_path):
    # was a bare SafetensorError naming no file, after the whole run
    run = tmp_path / "run"
    trainer = make_trainer(scene, run, max_steps=4, save_strategy="steps", save_steps=4)
    trainer.train()
    weights = run / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    written = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    last = {key: value.detach().clone() for key, value in trainer.model.splats.items()}
    trainer.state.best_model_checkpoint = str(weights.parent)
    message = f"load_best_model_at_end: the best checkpoint's {weights} does not load (SafetensorError: "
    with pytest.raises(ValueError, match=re.escape(message) + r".*\); it is left as it is\. Training finished and its "
                                         r"checkpoints are kept; the model in memory is the last step's"):
        trainer._load_best_model()
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == written
    assert all(torch.equal(trainer.model.splats[key], value) for key, value in last.items())


@pytest.mark.parametrize("checkpoint", ["{tmp}/run/checkpoint-15", "someone/splat-checkpoint"])
def test_resuming_from_a_missing_checkpoint_names_it(scene, tmp_path, checkpoint):
    # A wrong local path used to reach the Hub client ("Repo id must be in the form ...").
    checkpoint = checkpoint.format(tmp=tmp_path)
    trainer = make_trainer(scene, tmp_path / "out", save_strategy="no")
    with pytest.raises(FileNotFoundError, match=re.escape(f"resume_from_checkpoint '{checkpoint}': no such checkpoint folder")):
        trainer.train(resume_from_checkpoint=checkpoint)


def mean_psnr(trainer, sh_degree):
    views = trainer.eval_dataset
    values = []
    with torch.no_grad():
        for index in range(len(views)):
            item = views[index]
            render, _, _ = trainer.render(trainer.model, item["viewmat"][None], item["K"][None], views.width,
                                          views.height, sh_degree)
            values.append(psnr(render.clamp(0, 1), item["image"][None]).item())
    return sum(values) / len(values)


def test_evaluation_renders_every_sh_degree_which_in_training_equals_the_active_one(scene, tmp_path):
    # Degree 1 is active from step 10, degree 2 would be from step 20: still inactive at the end.
    trainer = make_trainer(scene, tmp_path / "train", sh_degree=2, max_steps=15, eval_render_images=0)
    start = len(trainer.model)
    trainer.train()
    assert trainer.active_sh_degree(15) == 1 and len(trainer.model) != start  # Gaussians were split and cloned
    shN = trainer.model.splats["shN"]  # [N, 8, 3]: degree 1 in [:, :3], degree 2 in [:, 3:]
    assert shN[:, :3].abs().sum() > 0
    assert torch.equal(shN[:, 3:], torch.zeros_like(shN[:, 3:]))  # no gradient, no Adam step, copied zeros
    assert trainer.evaluate()["eval_psnr"] == mean_psnr(trainer, 1)
    # A fresh trainer (step 0, where degree 0 is active) measures the trained model with its view-dependent colour.
    fresh = SplatTrainer(model=trainer.model, args=trainer.args, train_dataset=scene.views["train"],
                         eval_dataset=scene.views["test"])
    assert fresh.active_sh_degree(0) == 0 and mean_psnr(fresh, 0) != mean_psnr(fresh, 1)
    assert fresh.evaluate()["eval_psnr"] == mean_psnr(fresh, 1)


def test_zero_eval_render_images_evaluates_without_renders(scene, tmp_path):
    metrics = make_trainer(scene, tmp_path, eval_render_images=0).evaluate()
    assert "eval_psnr" in metrics and not (tmp_path / "eval_renders").exists()


def test_evaluate_and_predict_report_trainers_speed_metrics(scene, tmp_path):
    trainer = make_trainer(scene, tmp_path)
    speed = ("runtime", "samples_per_second", "steps_per_second")
    metrics = trainer.evaluate()
    assert {f"eval_{name}" for name in speed} <= metrics.keys() <= trainer.state.log_history[-1].keys()
    assert {f"test_{name}" for name in speed} <= trainer.predict(scene.views["test"]).metrics.keys()


def test_paper_schedule_scales_with_max_steps(tmp_path):
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000)
    strategy = args.build_strategy()
    assert (strategy.refine_start_iter, strategy.refine_every, strategy.reset_every) == (50, 10, 300)
    assert strategy.refine_stop_iter == 2500 and args.active_sh_interval == 100
    # Opacity resets stop at 21k of 30k under g2l (the last at 18k), and with densification (15k) under default.
    assert strategy.reset_stop_iter == 2100
    default = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, strategy="default").build_strategy()
    assert default.refine_stop_iter == 1500 and default.reset_stop_iter is None
    capped = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, reset_stop_fraction=0.5).build_strategy()
    assert capped.reset_stop_iter == 1500
    # Adaptive pruning runs to the end, and waits 100 steps after each reset at any max_steps.
    assert (strategy.prune_stop_iter, strategy.prune_pause_after_reset) == (3000, 100)
    # The pruning schedule: the stop is scaled, the pause after a reset is not.
    pruning = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, prune_stop_fraction=0.9,
                                     prune_pause_after_reset=40).build_strategy()
    assert (pruning.prune_stop_iter, pruning.prune_pause_after_reset) == (2700, 40)
    # Cloning's own threshold in the local phase is a multiple of grow_grad2d, and part of G2L.
    clone = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, grow_grad2d=0.001, clone_grad2d_factor=3)
    assert clone.build_strategy().clone_grad2d == pytest.approx(0.003)
    for off in (dict(g2l=False), dict(clone_grad2d_factor=1.0)):
        kwargs = {"clone_grad2d_factor": 3, **off}
        assert SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, **kwargs).build_strategy().clone_grad2d is None


def test_example_script_writes_model_ply_preview_and_results(tmp_path, monkeypatch):
    import json
    import runpy
    import sys
    from pathlib import Path

    out = tmp_path / "run"
    script = Path(__file__).resolve().parents[2] / "examples" / "splat_train.py"
    monkeypatch.setattr(sys, "argv", [
        str(script), "--procedural_resolution", "16", "--procedural_num_train", "3", "--procedural_num_test", "1",
        "--sh_degree", "0", "--max_steps", "6", "--output_dir", str(out), "--disable_tqdm", "True",
    ])
    runpy.run_path(str(script), run_name="__main__")
    results = json.loads((out / "all_results.json").read_text())
    assert {"train_runtime", "eval_psnr", "eval_ssim", "num_gaussians"} <= set(results)
    assert results["strategy"] == "g2l"
    assert (results["ssim_padding"], results["eval_ssim_padding"]) == ("valid", "same")  # the conventions used
    assert GaussianModel.from_pretrained(str(out)).num_gaussians == results["num_gaussians"]
    assert GaussianModel.from_ply(out / "splats.ply").num_gaussians == results["num_gaussians"]
    assert (out / "preview.png").is_file()
    card = (out / "README.md").read_text()  # the card a push writes, not the mixin's template
    assert f"| g2l | {results['eval_psnr']:.4g} |" in card and "![preview](preview.png)" in card


def test_example_script_trains_a_single_transforms_json_on_white(tmp_path, monkeypatch):
    import json
    import runpy
    import sys
    from pathlib import Path

    from PIL import Image

    from hf_eff.splat.converters import write_nerf_synthetic

    small = make_procedural_scene(seed=2, num_train=5, num_test=0, width=16, height=16, num_points=20)
    write_nerf_synthetic(small, tmp_path / "nerf")
    (tmp_path / "nerf" / "transforms_train.json").rename(tmp_path / "nerf" / "transforms.json")
    (tmp_path / "nerf" / "transforms_test.json").unlink()
    frame_1 = tmp_path / "nerf" / json.loads((tmp_path / "nerf" / "transforms.json").read_text())["frames"][1]["file_path"]
    frame_1 = frame_1.with_suffix(".png")
    rgba = Image.open(frame_1).convert("RGBA")
    rgba.putpixel((0, 0), (10, 20, 30, 0))
    rgba.save(frame_1)
    out = tmp_path / "run"
    script = Path(__file__).resolve().parents[2] / "examples" / "splat_train.py"
    monkeypatch.setattr(sys, "argv", [
        str(script), "--scene", str(tmp_path / "nerf"), "--test_every", "2", "--white_background", "True",
        "--init_random_points", "50", "--sh_degree", "0", "--max_steps", "2", "--output_dir", str(out),
        "--disable_tqdm", "True", "--c2f", "False",
    ])
    import hf_eff.splat

    loaded = []

    def recording_load_scene(*args, **kwargs):
        loaded.append(load_scene(*args, **kwargs))
        return loaded[-1]

    load_scene = hf_eff.splat.load_scene
    monkeypatch.setattr(hf_eff.splat, "load_scene", recording_load_scene)
    runpy.run_path(str(script), run_name="__main__")
    assert "eval_psnr" in json.loads((out / "all_results.json").read_text())
    scene = loaded[0]
    assert (len(scene.views["train"]), len(scene.views["test"])) == (2, 3)  # frames 0, 2 and 4 held out
    assert scene.views["train"][0]["image"].getpixel((0, 0)) == (255, 255, 255)  # frame 1's transparent corner


def test_example_script_saves_the_model_before_anything_that_can_fail(tmp_path, monkeypatch):
    import runpy
    import sys
    from pathlib import Path

    def broken_save_ply(self, path):
        raise ValueError("save_ply failed")

    monkeypatch.setattr(GaussianModel, "save_ply", broken_save_ply)
    out = tmp_path / "run"
    script = Path(__file__).resolve().parents[2] / "examples" / "splat_train.py"
    monkeypatch.setattr(sys, "argv", [
        str(script), "--procedural_resolution", "16", "--procedural_num_train", "3", "--procedural_num_test", "1",
        "--sh_degree", "0", "--max_steps", "4", "--output_dir", str(out), "--disable_tqdm", "True",
    ])
    with pytest.raises(ValueError, match="save_ply failed"):
        runpy.run_path(str(script), run_name="__main__")
    assert GaussianModel.from_pretrained(str(out)).num_gaussians > 0


def test_evaluation_logs_the_renders_to_tensorboard(scene, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(scene, tmp_path, max_steps=8, eval_strategy="steps", eval_steps=4,
                           report_to="tensorboard", eval_render_images=2)
    trainer.train()
    trainer.evaluate()  # after training, when TensorBoardCallback has closed its writer
    height, width = scene.views["test"][0]["height"], scene.views["test"][0]["width"]
    images = []
    for events in tmp_path.glob("runs/*"):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        if "eval/renders" in accumulator.Tags()["images"]:
            images += accumulator.Images("eval/renders")
        assert "eval/psnr" in accumulator.Tags()["scalars"]
    assert [image.step for image in images] == [4, 8, 8]
    assert {(image.height, image.width) for image in images} == {(2 * height, 2 * width)}


def test_the_gaussian_count_is_logged_with_training_logs_and_evaluations_under_their_prefix(scene, tmp_path):
    # Evaluation logs carried num_gaussians too, which TensorBoard plotted as extra train/num_gaussians points.
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(scene, tmp_path, max_steps=8, logging_steps=4, eval_strategy="steps", eval_steps=4,
                           report_to="tensorboard", eval_render_images=0)
    trainer.train()
    trainer.evaluate()
    steps = {"train/num_gaussians": [], "eval/num_gaussians": []}
    for events in tmp_path.glob("runs/*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in steps.keys() & set(accumulator.Tags()["scalars"]):
            steps[tag] += [event.step for event in accumulator.Scalars(tag)]
    # the logs at steps 4 and 8, then train()'s summary; the evaluations at 4 and 8, then the one after training
    assert steps == {"train/num_gaussians": [4, 8, 8], "eval/num_gaussians": [4, 8, 8]}
    summary = next(entry for entry in trainer.state.log_history if "train_runtime" in entry)
    assert summary["num_gaussians"] == len(trainer.model)  # what a card built from the log history reports


def test_evaluation_logs_the_renders_to_wandb(scene, tmp_path):
    from types import SimpleNamespace

    from transformers.integrations import WandbCallback

    class FakeWandb:  # wandb's module interface that WandbCallback and the trainer use
        def __init__(self):
            self.run, self.logged = SimpleNamespace(summary={}), []
            self.Image = lambda pixels, caption: ("image", pixels.shape)

        def log(self, values):
            self.logged.append(values)

    callback = WandbCallback.__new__(WandbCallback)  # its __init__ needs wandb installed
    callback._wandb, callback._initialized = FakeWandb(), True
    trainer = make_trainer(scene, tmp_path, callbacks=[callback], eval_render_images=1)
    trainer.evaluate()
    images = [values["eval/renders"] for values in callback._wandb.logged if "eval/renders" in values]
    assert images == [("image", (32, 64, 3))]


def test_fp16_is_refused_with_the_reason(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="fp16 mixed precision is not supported: its loss scaling"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, fp16=True)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # accelerate launch --mixed_precision fp16
    with pytest.raises(ValueError, match="fp16 mixed precision is not supported"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10)


def test_bf16_is_refused_with_the_reason(tmp_path, monkeypatch):
    # It was accepted and changed nothing (use_cpu runs logged the same losses with and without it).
    with pytest.raises(ValueError, match="bf16 mixed precision is not supported: it would change nothing, as "
                                         "accelerate's autocast wraps the model's forward, which SplatTrainer never"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, bf16=True, use_cpu=True)
    # a shared launch configuration's (trainers/accelerate/gpu_1.yaml, which docs/scaling.md runs splat_train.py with)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10).mixed_precision == "bf16"


@pytest.mark.parametrize("name", ["bf16_full_eval", "fp16_full_eval"])
def test_a_half_precision_evaluation_is_refused_with_the_reason(tmp_path, name):
    # It was accepted and changed nothing: Trainer casts the model in evaluation_loop, which SplatTrainer never runs.
    with pytest.raises(ValueError, match=f"{name} is not supported: it would change nothing, as Trainer casts the "
                                         "model in its evaluation_loop, which SplatTrainer's evaluate and predict"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, use_cpu=True, **{name: True})


@pytest.mark.parametrize("name", ["ssim_padding", "eval_ssim_padding"])
def test_unknown_ssim_convention_is_named(tmp_path, name):
    with pytest.raises(ValueError, match=rf"{name} must be 'same' \(3DGS\) or 'valid' \(gsplat\), got 'reflect'"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, **{name: "reflect"})


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_loss_and_evaluation_follow_their_ssim_conventions(scene, tmp_path, padding):
    other = "valid" if padding == "same" else "same"
    trainer = make_trainer(scene, tmp_path, ssim_padding=padding, eval_ssim_padding=other, eval_render_images=0)
    batch = next(iter(trainer.get_train_dataloader()))
    loss = trainer.compute_loss(trainer.model, batch)  # with gradients: the strategy retains them
    factor = trainer.resolution_factor(0)
    images, Ks = downscale_images(batch["image"], factor), batch["K"]
    Ks, width, height = scale_intrinsics(Ks, 32, 32, factor)
    renders, _, _ = trainer.render(trainer.model, batch["viewmat"], Ks, width, height, 0)
    assert loss.item() == pytest.approx(photometric_loss(renders, images, ssim_padding=padding).item(), rel=1e-5)
    assert loss.item() != pytest.approx(photometric_loss(renders, images, ssim_padding=other).item(), rel=1e-5)

    metrics = trainer.evaluate()
    views = trainer.eval_dataset
    expected = []
    for index in range(len(views)):
        item = views[index]
        render, _, _ = trainer.render(trainer.model, item["viewmat"][None], item["K"][None], 32, 32, 0)
        expected.append(ssim(render.clamp(0, 1), item["image"][None], other).item())
    assert metrics["eval_ssim"] == pytest.approx(sum(expected) / len(expected), abs=1e-6)
    # LPIPS needs pretrained weights the library does not download: no value is made up.
    assert not [key for key in metrics if "lpips" in key]


def test_one_model_render_settings_stay_out_of_arguments_shared_with_another(scene, tmp_path):
    xyz, rgb = scene.point_arrays()
    trained = GaussianModel.from_points(xyz, rgb, sh_degree=1)
    trained.rasterize_mode, trained.white_background = "antialiased", True
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True)
    first = SplatTrainer(model=trained, args=args, train_dataset=scene.views["train"])
    fresh = GaussianModel.from_points(xyz, rgb, sh_degree=1)
    second = SplatTrainer(model=fresh, args=args, train_dataset=scene.views["train"])
    assert (first.args.rasterize_mode, first.args.white_background) == ("antialiased", True)
    assert (second.args.rasterize_mode, second.args.white_background) == ("classic", False)
    assert (fresh.rasterize_mode, fresh.white_background) == ("classic", False)
    assert (args.rasterize_mode, args.white_background) == (None, None)  # still the models' to fill


def first_view_loss(trainer, seed=0):
    """compute_loss on the first training view (step 0), its gradients, and its renders."""
    inputs = {key: value[None] for key, value in trainer.train_dataset[0].items()}
    trainer.model.zero_grad()
    torch.manual_seed(seed)
    loss, outputs = trainer.compute_loss(trainer.model, inputs, return_outputs=True)
    loss.backward()
    return loss.detach(), {key: param.grad.clone() for key, param in trainer.model.splats.items()}, outputs["renders"]


@pytest.mark.parametrize("name, term, key", [
    ("opacity_reg", lambda splats: torch.sigmoid(splats["opacities"]).mean(), "opacities"),
    ("scale_reg", lambda splats: torch.exp(splats["scales"]).mean(), "scales"),
])
def test_gaussian_regularisers_add_gsplats_terms_to_the_loss_and_their_gradients(scene, tmp_path, name, term, key):
    plain = make_trainer(scene, tmp_path / "plain", strategy="default")
    regularised = make_trainer(scene, tmp_path / name, strategy="default", **{name: 0.5})
    loss, grads, _ = first_view_loss(plain)
    reg_loss, reg_grads, _ = first_view_loss(regularised)
    splats = regularised.model.splats
    assert reg_loss.item() == pytest.approx(loss.item() + 0.5 * term(splats).item(), rel=1e-6)
    with torch.enable_grad():
        (expected,) = torch.autograd.grad(0.5 * term(splats), splats[key])
    torch.testing.assert_close(reg_grads[key] - grads[key], expected, rtol=1e-4, atol=1e-9)
    for other in grads.keys() - {key}:  # the term reaches its own parameter only
        torch.testing.assert_close(reg_grads[other], grads[other])


def test_random_bkgd_composites_the_training_render_onto_a_random_colour(scene, tmp_path):
    plain = make_trainer(scene, tmp_path / "plain", strategy="default")
    random = make_trainer(scene, tmp_path / "random", strategy="default", random_bkgd=True)
    views = random.train_dataset
    with torch.no_grad():
        _, alphas, _ = random.render(random.model, views.viewmats[:1], views.Ks[:1], views.width, views.height, 0)
    assert alphas.min() < 0.9  # some of the view is see-through, where the background shows
    loss, grads, renders = first_view_loss(plain, seed=7)
    random_loss, random_grads, random_renders = first_view_loss(random, seed=7)
    torch.manual_seed(7)
    colour = torch.rand(1, 3)  # gsplat's draw: one colour a step, behind every view of the batch
    torch.testing.assert_close(random_renders, renders + colour * (1 - alphas))
    assert random_loss.item() != loss.item() and not torch.equal(random_grads["opacities"], grads["opacities"])
    _, _, other_renders = first_view_loss(random, seed=8)
    assert not torch.equal(other_renders, random_renders)  # another step, another colour
    # evaluation renders onto the fixed background
    assert random.evaluate()["eval_psnr"] == plain.evaluate()["eval_psnr"]


def test_random_bkgd_puts_one_colour_behind_every_view_of_a_batch(scene, tmp_path):
    plain = make_trainer(scene, tmp_path / "plain", strategy="default")
    random = make_trainer(scene, tmp_path / "random", strategy="default", random_bkgd=True)
    views = random.train_dataset
    inputs = {key: torch.stack([views[0][key], views[1][key]]) for key in ("image", "viewmat", "K")}
    with torch.no_grad():
        _, alphas, _ = plain.render(plain.model, inputs["viewmat"], inputs["K"], views.width, views.height, 0)
    _, plain_outputs = plain.compute_loss(plain.model, inputs, return_outputs=True)
    torch.manual_seed(3)
    _, random_outputs = random.compute_loss(random.model, inputs, return_outputs=True)
    torch.manual_seed(3)
    colour = torch.rand(1, 3)
    torch.testing.assert_close(random_outputs["renders"], plain_outputs["renders"] + colour * (1 - alphas))


def test_random_bkgd_is_refused_for_a_model_that_renders_onto_white(scene, tmp_path):
    model = GaussianModel.from_points(*scene.point_arrays(), sh_degree=0)
    model.white_background = True  # trained on a white-background scene: white_background left None follows it
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5, random_bkgd=True)
    with pytest.raises(ValueError, match=r"random_bkgd with white_background.*\(white_background is the model's: it "
                                         r"renders onto white; pass white_background=False to train it onto black\)"):
        SplatTrainer(model=model, args=args, train_dataset=scene.views["train"])
