"""pose_opt and pose_noise (gsplat simple_trainer's): per-view pose corrections learned with the Gaussians."""

import copy
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from datasets import concatenate_datasets
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from hf_eff.splat.config import SplatTrainingArguments
from hf_eff.splat.losses import psnr
from hf_eff.splat.model import GaussianModel
from hf_eff.splat.pose_adjustment import (
    POSE_ADJUSTMENT_NAME,
    PoseAdjustment,
    gaussians_sha256,
    pose_lr,
    rotation_6d_to_matrix,
)
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.scene import views_dataset
from hf_eff.splat.trainer import SceneViews, SplatTrainer

SIZE = 32
# Gaussians frozen (a learning rate of 0 for every parameter, no densification): only the poses can lower the loss.
FROZEN = dict(means_lr=0.0, scales_lr=0.0, quats_lr=0.0, opacities_lr=0.0, sh0_lr=0.0, shN_lr=0.0,
              refine_start_steps=10**6)


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=1, num_train=6, num_test=2, width=SIZE, height=SIZE, num_points=300)


def points_model(scene) -> GaussianModel:
    torch.manual_seed(0)
    return GaussianModel.from_points(*scene.point_arrays(), sh_degree=0)


@pytest.fixture(scope="module")
def rendered_splits(scene):
    """The scene's cameras with images rendered from `points_model`'s Gaussians: those Gaussians at the
    given poses reproduce the views (to 8-bit rounding), so the given poses are the true ones."""
    model = points_model(scene)
    splits = {}
    for name in ("train", "test"):
        views = SceneViews(scene.views[name])
        with torch.no_grad():
            renders = model.render(views.viewmats, views.Ks, SIZE, SIZE)[0].clamp(0, 1)
        splits[name] = views_dataset(list(renders), views.Ks, views.viewmats)
    return splits


def make_trainer(scene, splits, output_dir, **overrides):
    settings = dict(output_dir=str(output_dir), max_steps=8, strategy="default", refine_start_steps=2,
                    refine_every=4, reset_stop_fraction=0, seed=0, disable_tqdm=True, logging_steps=4,
                    eval_render_images=0, report_to=[])
    settings.update(overrides)
    return SplatTrainer(model=points_model(scene), args=SplatTrainingArguments(**settings),
                        train_dataset=splits["train"], eval_dataset=splits["test"])


def pose_error(poses: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean absolute difference of the [R | t] parts of world-to-camera poses."""
    return (poses[:, :3] - truth[:, :3]).abs().mean().item()


# ------------------------------------------------------------------ the correction module
def test_a_zero_correction_is_the_identity_exactly():
    viewmats = torch.linalg.inv(torch.randn(5, 4, 4))
    adjustment = PoseAdjustment(5)
    assert torch.equal(adjustment.embeds.weight, torch.zeros(5, 9))
    assert torch.equal(adjustment(viewmats, torch.arange(5)), viewmats)


def test_a_known_translation_and_rotation_move_the_camera_in_its_own_frame():
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[:3, :3] = rotation_6d_to_matrix(torch.tensor([0.3, 0.5, -0.2, -0.4, 0.1, 0.9], dtype=torch.float64))
    viewmat[:3, 3] = torch.tensor([0.5, -1.0, 4.0], dtype=torch.float64)
    angle, shift = 0.3, torch.tensor([0.1, -0.2, 0.3])
    # A rotation by `angle` about the camera's z axis: its 6D form is its first two rows.
    rows = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]])
    adjustment = PoseAdjustment(2)
    with torch.no_grad():
        adjustment.embeds.weight[1] = torch.cat([shift, rows.flatten() - torch.tensor([1.0, 0, 0, 0, 1, 0])])
    corrected = adjustment(viewmat[None], torch.tensor([1]))[0]
    # gsplat: camtoworld @ T, with T = [Rz | shift]
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = torch.tensor([[*rows[0], ], [*rows[1]], [0.0, 0.0, 1.0]], dtype=torch.float64)
    transform[:3, 3] = shift.double()
    torch.testing.assert_close(corrected, torch.linalg.inv(torch.linalg.inv(viewmat) @ transform), atol=1e-6, rtol=0)
    # The camera centre moved by `shift` along the camera's own axes; it turned about its viewing axis.
    centre = -viewmat[:3, :3].T @ viewmat[:3, 3]
    torch.testing.assert_close(-corrected[:3, :3].T @ corrected[:3, 3], centre + viewmat[:3, :3].T @ shift.double(),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(corrected[2, :3], viewmat[2, :3], atol=1e-6, rtol=0)
    # View 0 has no correction.
    assert torch.equal(adjustment(viewmat[None], torch.tensor([0]))[0], viewmat)


def test_pose_noise_is_seeded_and_scaled_by_its_std():
    first, again = PoseAdjustment.random(400, 0.05, seed=3), PoseAdjustment.random(400, 0.05, seed=3)
    assert torch.equal(first.embeds.weight, again.embeds.weight)
    assert not torch.equal(first.embeds.weight, PoseAdjustment.random(400, 0.05, seed=4).embeds.weight)
    assert first.embeds.weight.std().item() == pytest.approx(0.05, rel=0.05)



def test_a_saved_correction_loads_back_with_its_poses_and_the_runs_record(tmp_path):
    adjustment = PoseAdjustment.random(3, 0.1, seed=0)
    poses = torch.linalg.inv(torch.randn(3, 4, 4))
    adjustment.save(tmp_path / POSE_ADJUSTMENT_NAME, poses, {"seed": "7"})
    loaded, metadata = PoseAdjustment.load(tmp_path / POSE_ADJUSTMENT_NAME)
    assert torch.equal(loaded.embeds.weight, adjustment.embeds.weight)
    assert torch.equal(load_file(tmp_path / POSE_ADJUSTMENT_NAME)["world_to_camera"], poses)
    assert metadata["seed"] == "7" and "6D rotation delta" in metadata["pose_deltas"]


def test_the_gaussians_fingerprint_survives_save_pretrained_and_from_pretrained(scene, tmp_path):
    model = points_model(scene)
    model.save_pretrained(tmp_path)
    loaded = GaussianModel.from_pretrained(tmp_path)
    assert gaussians_sha256(loaded.splats) == gaussians_sha256(model.splats)
    with torch.no_grad():
        loaded.splats["opacities"][0] += 1e-3
    assert gaussians_sha256(loaded.splats) != gaussians_sha256(model.splats)


@pytest.mark.gpu
def test_pose_gradients_through_gsplat_cuda_match_the_cpu_backend():
    """The corrections learn through gsplat's projection backward (its viewmats gradient) on CUDA, and
    through gsplat's torch projection in the CPU backend: both must give the corrections one gradient."""
    model = GaussianModel.random((0.0, 0.0, 0.0), 0.5, 300, sh_degree=1, generator=torch.Generator().manual_seed(0))
    viewmats = torch.eye(4).repeat(3, 1, 1)
    viewmats[:, 2, 3] = torch.tensor([3.0, 3.2, 2.8])
    Ks = torch.tensor([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]).repeat(3, 1, 1)
    weights = torch.rand(3, 24, 32, 3, generator=torch.Generator().manual_seed(1))

    def correction_gradient(device: str) -> torch.Tensor:
        adjustment = PoseAdjustment.random(3, 0.01, seed=2).to(device)
        on_device = copy.deepcopy(model).to(device)
        colors, _, _ = on_device.render(adjustment(viewmats.to(device), torch.arange(3, device=device)),
                                        Ks.to(device), 32, 24)
        (colors * weights.to(device)).sum().backward()
        return adjustment.embeds.weight.grad.cpu()

    cpu, cuda = correction_gradient("cpu"), correction_gradient("cuda")
    assert cpu.abs().sum() > 0
    assert ((cuda - cpu).norm() / cpu.norm()).item() < 2e-2


# ------------------------------------------------------------------ the trainer
def test_without_pose_opt_there_are_no_corrections_and_training_is_unchanged(scene, rendered_splits, tmp_path):
    # On the CPU backend, whose gradients are deterministic (gsplat's backward adds atomically on CUDA).
    plain = make_trainer(scene, rendered_splits, tmp_path / "plain", use_cpu=True)
    assert plain.pose_adjustment is None
    plain.train()
    assert torch.equal(plain.training_poses(), plain.train_dataset.viewmats)
    plain.save_model()
    assert not (tmp_path / "plain" / POSE_ADJUSTMENT_NAME).exists()
    assert plain.card_run_settings()["pose_opt"] is False
    # Corrections that cannot move (no learning rate, no decay) render exactly what no corrections render.
    still = make_trainer(scene, rendered_splits, tmp_path / "still", pose_opt=True, pose_opt_lr=0.0, pose_opt_reg=0.0,
                         use_cpu=True)
    still.train()
    assert still.card_run_settings()["pose_opt"] is True
    for key, value in plain.model.splats.items():
        assert torch.equal(still.model.splats[key], value), key


def test_pose_opt_undoes_pose_noise(scene, rendered_splits, tmp_path):
    # Every view in each step; the Gaussians frozen at the ones that rendered the views.
    settings = dict(max_steps=30, per_device_train_batch_size=6, pose_noise=0.05, pose_opt_lr=4e-3, **FROZEN)
    noisy = make_trainer(scene, rendered_splits, tmp_path / "noisy", **settings)
    truth = SceneViews(rendered_splits["train"]).viewmats
    start = pose_error(noisy.training_poses(), truth)
    assert start > 0.02  # the training poses are perturbed, by the same draw in both runs
    noisy.train()
    corrected = make_trainer(scene, rendered_splits, tmp_path / "corrected", pose_opt=True, **settings)
    assert torch.equal(corrected.train_dataset.viewmats, noisy.train_dataset.viewmats)
    corrected.train()
    assert pose_error(corrected.training_poses(), truth) < 0.5 * start
    final_loss = {run: [entry["loss"] for entry in trainer.state.log_history if "loss" in entry][-1]
                  for run, trainer in (("noisy", noisy), ("corrected", corrected))}
    assert final_loss["corrected"] < 0.3 * final_loss["noisy"]
    # The corrections got their own Adam, decayed as gsplat's.
    assert corrected.pose_optimizer.param_groups[0]["weight_decay"] == 1e-6
    assert pose_lr(0, 4e-3, 6, 30) == pytest.approx(4e-3 * math.sqrt(6))
    assert pose_lr(30, 4e-3, 6, 30) == pytest.approx(4e-3 * math.sqrt(6) * 0.01)
    # each step set it: the last one (step 29) trained at the schedule's value there
    assert corrected.pose_optimizer.param_groups[0]["lr"] == pytest.approx(pose_lr(29, 4e-3, 6, 30), rel=1e-12)


def test_evaluation_renders_the_training_split_with_its_training_poses_and_others_with_theirs(
        scene, rendered_splits, tmp_path):
    trainer = make_trainer(scene, rendered_splits, tmp_path, max_steps=6, per_device_train_batch_size=6,
                           pose_noise=0.05, pose_opt=True, pose_opt_lr=4e-3, **FROZEN)
    trainer.train()
    model = trainer.model
    for name, poses in (("train", trainer.training_poses()), ("test", SceneViews(rendered_splits["test"]).viewmats)):
        views = SceneViews(rendered_splits[name])
        with torch.no_grad():
            expected = model.render(poses, views.Ks, SIZE, SIZE)[0].clamp(0, 1).cpu()
        predicted = trainer.predict(rendered_splits[name])
        torch.testing.assert_close(torch.as_tensor(predicted.predictions), expected)
        metrics = trainer.evaluate(rendered_splits[name])
        assert metrics["eval_psnr"] == pytest.approx(
            sum(psnr(render[None], image[None]).item() for render, image in zip(expected, views.images.float() / 255))
            / len(views), rel=1e-5)
    # The test views are rendered at their given (true) poses: the frozen Gaussians reproduce them.
    assert trainer.evaluate()["eval_psnr"] > 40


def test_evaluation_finds_training_views_by_camera_in_a_part_of_the_split_or_another_order(
        scene, rendered_splits, tmp_path):
    trainer = make_trainer(scene, rendered_splits, tmp_path, max_steps=4, per_device_train_batch_size=6,
                           pose_noise=0.05, pose_opt=True, pose_opt_lr=4e-3, **FROZEN)
    trainer.train()
    train, test = rendered_splits["train"], rendered_splits["test"]
    training_poses, test_poses = trainer.training_poses(), SceneViews(test).viewmats
    # (split, the poses its views must be rendered with): training views by their training index, test views as given
    cases = {
        "first three": (train.select(range(3)), training_poses[:3]),
        "reordered": (train.select([4, 0, 5, 2, 1, 3]), training_poses[[4, 0, 5, 2, 1, 3]]),
        "mixed": (concatenate_datasets([test.select([1]), train.select([3])]), torch.stack([test_poses[1],
                                                                                            training_poses[3]])),
    }
    for name, (split, poses) in cases.items():
        views = SceneViews(split)
        with torch.no_grad():
            expected = trainer.model.render(poses, views.Ks, SIZE, SIZE)[0].clamp(0, 1).cpu()
        predicted = torch.as_tensor(trainer.predict(split).predictions)
        torch.testing.assert_close(predicted, expected, msg=name)


def test_checkpoints_keep_the_corrections_and_a_resume_restores_them_with_their_optimizer(
        scene, rendered_splits, tmp_path):
    # On the CPU backend: a resume matches the uninterrupted run only where gradients are deterministic.
    settings = dict(pose_noise=0.05, pose_opt=True, pose_opt_lr=4e-3, use_cpu=True)
    full = make_trainer(scene, rendered_splits, tmp_path / "full", save_strategy="steps", save_steps=4, **settings)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-4"
    saved = load_file(checkpoint / POSE_ADJUSTMENT_NAME)
    assert saved["pose_deltas"].shape == (6, 9) and saved["pose_deltas"].abs().sum() > 0
    assert saved["world_to_camera"].shape == (6, 4, 4)
    assert "pose_adjustment" in torch.load(checkpoint / "optimizer.pt", weights_only=True)
    # the file names the Gaussians saved beside it at that step
    assert (PoseAdjustment.load(checkpoint / POSE_ADJUSTMENT_NAME)[1]["model_sha256"]
            == gaussians_sha256(GaussianModel.from_pretrained(checkpoint).splats))
    # the final output_dir keeps them too, with the corrected training poses
    full.save_model()
    final = load_file(tmp_path / "full" / POSE_ADJUSTMENT_NAME)
    assert torch.equal(final["pose_deltas"], full.pose_adjustment.embeds.weight.detach())
    assert torch.equal(final["world_to_camera"], full.training_poses())
    # PoseAdjustment.from_file reads them back: they correct the run's (noisy) training poses into the saved ones
    loaded = PoseAdjustment.from_file(tmp_path / "full" / POSE_ADJUSTMENT_NAME)
    assert torch.equal(loaded.embeds.weight, final["pose_deltas"])
    with torch.no_grad():
        assert torch.equal(loaded(full.train_dataset.viewmats, torch.arange(6)), final["world_to_camera"])

    resumed = make_trainer(scene, rendered_splits, tmp_path / "resumed", **settings)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    torch.testing.assert_close(resumed.pose_adjustment.embeds.weight, full.pose_adjustment.embeds.weight,
                               rtol=1e-5, atol=1e-7)
    for key in full.model.splats:
        torch.testing.assert_close(resumed.model.splats[key], full.model.splats[key], rtol=1e-5, atol=1e-6)
    # Their Adam went on from the checkpoint's state (4 steps), not from a fresh one.
    assert int(resumed.pose_optimizer.state[resumed.pose_adjustment.embeds.weight]["step"]) == 8


def test_resuming_without_the_corrections_or_without_pose_opt_is_refused_by_name(scene, rendered_splits, tmp_path):
    plain_run, pose_run = tmp_path / "plain", tmp_path / "pose"
    make_trainer(scene, rendered_splits, plain_run, max_steps=4, save_strategy="steps", save_steps=4).train()
    make_trainer(scene, rendered_splits, pose_run, max_steps=4, save_strategy="steps", save_steps=4,
                 pose_opt=True).train()
    plain_checkpoint, pose_checkpoint = str(plain_run / "checkpoint-4"), str(pose_run / "checkpoint-4")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"resume_from_checkpoint {plain_checkpoint!r}: pose_opt=True and the checkpoint holds no pose corrections "
            f"({plain_checkpoint}/{POSE_ADJUSTMENT_NAME} is missing")):
        make_trainer(scene, rendered_splits, tmp_path / "a", pose_opt=True).train(resume_from_checkpoint=plain_checkpoint)
    with pytest.raises(ValueError, match=re.escape(
            f"resume_from_checkpoint {pose_checkpoint!r}: it was trained with pose_opt=True")):
        make_trainer(scene, rendered_splits, tmp_path / "b").train(resume_from_checkpoint=pose_checkpoint)
    corrections = pose_run / "checkpoint-4" / POSE_ADJUSTMENT_NAME
    corrections.write_bytes(corrections.read_bytes()[:40])
    with pytest.raises(ValueError, match=re.escape(f"{corrections} does not load")):
        make_trainer(scene, rendered_splits, tmp_path / "c", pose_opt=True).train(resume_from_checkpoint=pose_checkpoint)


def test_another_trainers_checkpoint_is_named_by_its_weights_not_by_the_pose_corrections_it_lacks(
        scene, rendered_splits, tmp_path):
    adapter, gcn = tmp_path / "adapter" / "checkpoint-2", tmp_path / "gcn" / "checkpoint-2"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    save_file({"base_model.model.lora_A.weight": torch.zeros(2, 2)}, adapter / "adapter_model.safetensors")
    gcn.mkdir(parents=True)
    (gcn / "config.json").write_text("{}")
    save_file({"convs.0.bias": torch.zeros(2)}, gcn / "model.safetensors")
    with pytest.raises(FileNotFoundError, match=re.escape(f"the folder {adapter} holds no GaussianModel weights")):
        make_trainer(scene, rendered_splits, tmp_path / "a", pose_opt=True).train(resume_from_checkpoint=str(adapter))
    with pytest.raises(ValueError, match=re.escape(f"{gcn}/model.safetensors: expected tensors ['splats.means'")):
        make_trainer(scene, rendered_splits, tmp_path / "b", pose_opt=True).train(resume_from_checkpoint=str(gcn))


def test_a_saved_file_that_is_not_pose_corrections_is_named(tmp_path):
    truncated, other, misshapen = tmp_path / "truncated.safetensors", tmp_path / "other.safetensors", tmp_path / "9.st"
    save_file({"pose_deltas": torch.zeros(3, 9)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    save_file({"world_to_camera": torch.zeros(3, 4, 4)}, other)
    save_file({"pose_deltas": torch.zeros(3, 6)}, misshapen)
    with pytest.raises(ValueError, match=re.escape(f"{truncated} does not load")):
        PoseAdjustment.from_file(truncated)
    with pytest.raises(ValueError, match=re.escape(f"{other} does not load (KeyError")):
        PoseAdjustment.from_file(other)
    with pytest.raises(ValueError, match=re.escape(f"{misshapen}: pose_deltas must be float [num_views, 9] (translation "
                                                   "and 6D rotation delta per view), got torch.float32 [3, 6]")):
        PoseAdjustment.from_file(misshapen)


def test_a_resume_on_other_training_views_or_other_noise_is_refused_by_name(scene, rendered_splits, tmp_path):
    settings = dict(max_steps=8, pose_noise=0.05, pose_opt=True, pose_opt_lr=4e-3)
    make_trainer(scene, rendered_splits, tmp_path / "run", save_strategy="steps", save_steps=4, **settings).train()
    checkpoint = str(tmp_path / "run" / "checkpoint-4")
    saved = (tmp_path / "run" / "checkpoint-4" / POSE_ADJUSTMENT_NAME).read_bytes()
    source = f"resume_from_checkpoint {checkpoint!r}: {checkpoint}/{POSE_ADJUSTMENT_NAME} corrects other training " \
             "poses than this run's: "
    reordered = {**rendered_splits, "train": rendered_splits["train"].select([1, 0, 2, 3, 4, 5])}
    cases = [
        (reordered, {}, "train_dataset: its views' cameras (world_to_camera and K, in order) are not the checkpoint's"),
        (rendered_splits, {"pose_noise": 0.1}, "pose_noise: 0.05 in the checkpoint, 0.1 now"),
        (rendered_splits, {"seed": 1}, "seed (which draws pose_noise): 0 in the checkpoint, 1 now"),
    ]
    for splits, changed, difference in cases:
        resumed = make_trainer(scene, splits, tmp_path / "resumed", **{**settings, **changed})
        with pytest.raises(ValueError, match=re.escape(source + difference)):
            resumed.train(resume_from_checkpoint=checkpoint)
    assert (tmp_path / "run" / "checkpoint-4" / POSE_ADJUSTMENT_NAME).read_bytes() == saved


class _RemovePoseFiles(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        for path in Path(args.output_dir).glob(f"checkpoint-*/{POSE_ADJUSTMENT_NAME}"):
            path.unlink()


def test_a_best_checkpoint_that_lost_its_corrections_is_named_with_advice_for_the_best_model_load(
        scene, rendered_splits, tmp_path):
    trainer = make_trainer(scene, rendered_splits, tmp_path, max_steps=8, eval_strategy="steps", eval_steps=4,
                           save_strategy="steps", save_steps=4, load_best_model_at_end=True, pose_opt=True)
    trainer.add_callback(_RemovePoseFiles())
    with pytest.raises(FileNotFoundError) as error:
        trainer.train()
    message = str(error.value)
    assert message.startswith(f"load_best_model_at_end: the best checkpoint {trainer.state.best_model_checkpoint!r}: "
                              f"{trainer.state.best_model_checkpoint}/{POSE_ADJUSTMENT_NAME} is missing (removed?)")
    assert message.endswith("restore it, or train with load_best_model_at_end=False to keep the last step's model and "
                            "corrections")
    assert "pose_opt=False" not in message


class _LeaveStalePoseFiles(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        for folder in Path(args.output_dir).glob("checkpoint-*"):
            save_file({"pose_deltas": torch.zeros(6, 9)}, folder / POSE_ADJUSTMENT_NAME)


def test_a_best_checkpoint_holding_another_runs_corrections_is_named_without_pose_opt(scene, rendered_splits,
                                                                                      tmp_path):
    trainer = make_trainer(scene, rendered_splits, tmp_path, max_steps=8, eval_strategy="steps", eval_steps=4,
                           save_strategy="steps", save_steps=4, load_best_model_at_end=True)
    trainer.add_callback(_LeaveStalePoseFiles())
    with pytest.raises(ValueError) as error:
        trainer.train()
    assert str(error.value) == (
        f"load_best_model_at_end: the best checkpoint {trainer.state.best_model_checkpoint!r} holds "
        f"{POSE_ADJUSTMENT_NAME}, and this run has pose_opt=False: an earlier pose_opt run's file in the same folder? "
        "Train into an output_dir of its own")


class _PoisonCorrections(TrainerCallback):
    """Makes view 0's correction NaN after the second step."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            with torch.no_grad():
                self.trainer.pose_adjustment.embeds.weight[0, 0] = float("nan")


def test_non_finite_corrections_stop_training_and_are_not_saved_naming_pose_opt(scene, rendered_splits, tmp_path):
    diverging = make_trainer(scene, rendered_splits, tmp_path / "diverging", per_device_train_batch_size=6,
                             pose_opt=True)
    diverging.add_callback(_PoisonCorrections(diverging))
    with pytest.raises(RuntimeError, match=r"step 2: pose_opt's camera corrections diverged: pose_adjustment\b.* went "
                                           r"NaN or inf at this step .*Lower pose_opt_lr, or train with "
                                           r"pose_opt=False$"):
        diverging.train()
    trained = make_trainer(scene, rendered_splits, tmp_path / "trained", max_steps=2, pose_opt=True)
    trained.train()
    with torch.no_grad():
        trained.pose_adjustment.embeds.weight[1, 4] = float("inf")
    folder = tmp_path / "saved"
    with pytest.raises(RuntimeError, match=re.escape(f"not saved to {folder}: pose_opt's camera corrections contain "
                                                     "NaN or inf; lower pose_opt_lr, or train with pose_opt=False")):
        trained.save_model(str(folder))
    assert not folder.exists()
    with pytest.raises(RuntimeError, match="step 2: pose_opt's camera corrections diverged: pose_adjustment went NaN"):
        trained.evaluate()


def test_a_model_save_that_fails_leaves_no_new_corrections_beside_the_older_model(scene, rendered_splits, tmp_path,
                                                                                    monkeypatch):
    trainer = make_trainer(scene, rendered_splits, tmp_path / "run", max_steps=2, pose_opt=True)
    trainer.train()
    folder = tmp_path / "saved"

    def refusing_save(self, *args, **kwargs):
        raise ValueError("the model refuses to save")

    monkeypatch.setattr(type(trainer.model), "save_pretrained", refusing_save)
    with pytest.raises(ValueError, match="the model refuses to save"):
        trainer.save_model(str(folder))
    assert not (folder / "pose_adjustment.safetensors").exists()


def test_the_example_writes_the_corrections_with_the_model_before_evaluating(tmp_path, monkeypatch):
    from tests.splat.test_example import run_example

    def failing_evaluate(self, *args, **kwargs):
        raise RuntimeError("the evaluation failed")

    monkeypatch.setattr(SplatTrainer, "evaluate", failing_evaluate)
    with pytest.raises(RuntimeError, match="the evaluation failed"):
        run_example(monkeypatch, "--max_steps", "2", "--render_trajectory", "none", "--pose_opt", "True",
                    "--report_to", "none", "--output_dir", str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file()
    assert len(PoseAdjustment.from_file(tmp_path / POSE_ADJUSTMENT_NAME).embeds.weight) == 3


def test_load_best_model_at_end_restores_the_best_checkpoints_corrections(scene, rendered_splits, tmp_path):
    trainer = make_trainer(scene, rendered_splits, tmp_path, max_steps=8, eval_strategy="steps", eval_steps=4,
                           save_strategy="steps", save_steps=4, load_best_model_at_end=True, pose_opt=True,
                           pose_noise=0.05, pose_opt_lr=4e-3)
    trainer.train()
    assert trainer.state.best_model_checkpoint == str(tmp_path / "checkpoint-4")  # not the last step's
    best = load_file(f"{trainer.state.best_model_checkpoint}/{POSE_ADJUSTMENT_NAME}")["pose_deltas"]
    assert torch.equal(trainer.pose_adjustment.embeds.weight.detach().cpu(), best)


@pytest.mark.parametrize("name, value", [
    ("pose_opt_lr", -1e-5), ("pose_opt_lr", float("nan")), ("pose_opt_reg", -1.0), ("pose_noise", -0.1),
    ("pose_noise", float("inf")),
])
def test_bad_pose_settings_are_named(tmp_path, name, value):
    with pytest.raises(ValueError, match=re.escape(f"SplatTrainingArguments.{name} must be a finite number >= 0, "
                                                   f"got {value}")):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, **{name: value})


# ------------------------------------------------------------------ a reused folder, resumes without pose_opt, cards
def test_a_save_without_pose_opt_removes_an_earlier_runs_corrections_from_its_folder_only(
        scene, rendered_splits, tmp_path, monkeypatch):
    reused, elsewhere = tmp_path / "reused", tmp_path / "elsewhere"
    pose_run = make_trainer(scene, rendered_splits, reused, max_steps=2, pose_opt=True)
    pose_run.train()
    pose_run.save_model()
    pose_run.save_model(str(elsewhere))
    plain = make_trainer(scene, rendered_splits, reused, max_steps=2)
    plain.train()
    # a model save that fails leaves the folder as it was
    monkeypatch.setattr(type(plain.model), "save_pretrained", lambda self, *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        plain.save_model()
    assert (reused / POSE_ADJUSTMENT_NAME).is_file()
    monkeypatch.undo()
    plain.save_model()
    assert not (reused / POSE_ADJUSTMENT_NAME).exists()
    assert GaussianModel.from_pretrained(reused).num_gaussians == plain.model.num_gaussians
    assert (elsewhere / POSE_ADJUSTMENT_NAME).is_file()  # another folder keeps its own
    # a checkpoint saved into a checkpoint folder an earlier run left too
    stale_checkpoint = reused / "checkpoint-2"
    stale_checkpoint.mkdir()
    (stale_checkpoint / POSE_ADJUSTMENT_NAME).write_bytes((elsewhere / POSE_ADJUSTMENT_NAME).read_bytes())
    make_trainer(scene, rendered_splits, reused, max_steps=2, save_strategy="steps", save_steps=2).train()
    assert (stale_checkpoint / "model.safetensors").is_file()
    assert not (stale_checkpoint / POSE_ADJUSTMENT_NAME).exists()


def test_a_resume_without_pose_opt_on_other_pose_noise_is_refused_by_name(scene, rendered_splits, tmp_path):
    checkpoints = {}
    for name, noise in (("noisy", 0.05), ("clean", 0.0)):
        make_trainer(scene, rendered_splits, tmp_path / name, max_steps=4, save_strategy="steps", save_steps=4,
                     pose_noise=noise).train()
        checkpoints[name] = str(tmp_path / name / "checkpoint-4")
    cases = [
        ("noisy", {"pose_noise": 0.1}, "pose_noise: 0.05 in the checkpoint, 0.1 now"),
        ("noisy", {"seed": 1, "pose_noise": 0.05}, "seed (which draws pose_noise): 0 in the checkpoint, 1 now"),
        ("noisy", {}, "pose_noise: 0.05 in the checkpoint, 0.0 now"),
        ("clean", {"pose_noise": 0.05}, "pose_noise: 0.0 in the checkpoint, 0.05 now"),
    ]
    for name, changed, difference in cases:
        checkpoint = checkpoints[name]
        resumed = make_trainer(scene, rendered_splits, tmp_path / "resumed", max_steps=8, **changed)
        with pytest.raises(ValueError, match=re.escape(
                f"resume_from_checkpoint {checkpoint!r}: it was trained on other training poses than this run's: "
                f"{difference}. Resume with the pose_noise and seed it was trained with")):
            resumed.train(resume_from_checkpoint=checkpoint)
        assert resumed.state.global_step == 0
    # The same noise resumes; without noise another seed perturbs nothing and resumes too.
    for name, settings in (("noisy", {"pose_noise": 0.05}), ("clean", {"seed": 1, "pose_noise": 0})):
        resumed = make_trainer(scene, rendered_splits, tmp_path / f"resumed-{name}", max_steps=8, **settings)
        resumed.train(resume_from_checkpoint=checkpoints[name])
        assert resumed.state.global_step == 8
    # The record is read from the densification state (loaded with weights_only=True): training_args.bin, a
    # pickle, is never unpickled by a resume.
    (Path(checkpoints["noisy"]) / "training_args.bin").write_bytes(b"not a pickle")
    resumed = make_trainer(scene, rendered_splits, tmp_path / "without-args", max_steps=8, pose_noise=0.05)
    resumed.train(resume_from_checkpoint=checkpoints["noisy"])
    assert resumed.state.global_step == 8


def test_a_card_built_from_a_saved_folder_without_results_says_the_poses_were_refined(
        scene, rendered_splits, tmp_path):
    from hf_eff.hub import push

    refined = "The training cameras' poses were refined with the splats (gsplat's `pose_opt`)"
    for pose_opt in (True, False):
        folder = tmp_path / f"pose_opt-{pose_opt}"
        trainer = make_trainer(scene, rendered_splits, folder, max_steps=2, pose_opt=pose_opt)
        trainer.train()
        trainer.save_model()
        assert not (folder / push.RESULTS_FILE).exists()
        card = push.build_card("splat_model", folder, "me/splats")
        assert push.NO_RESULTS_NOTE in card.text
        assert (refined in card.text) is pose_opt


# ------------------------------------------------------------------ evaluating a trained model (do_train=False)
def evaluating_trainer(folder, splits, output_dir, train=None, **overrides):
    """A trainer that only evaluates the model saved in ``folder``, on ``splits`` (``train`` replaces their train
    split)."""
    args = SplatTrainingArguments(output_dir=str(output_dir), do_train=False, eval_render_images=0, disable_tqdm=True,
                                  report_to=[], **overrides)
    return SplatTrainer(model=GaussianModel.from_pretrained(folder), args=args,
                        train_dataset=splits["train"] if train is None else train, eval_dataset=splits["test"])


@pytest.fixture(scope="module")
def pose_opt_model(scene, rendered_splits, tmp_path_factory):
    """A pose_noise + pose_opt run's saved folder, with its trainer's metrics on the training split."""
    folder = tmp_path_factory.mktemp("pose_opt_model")
    trained = make_trainer(scene, rendered_splits, folder, max_steps=6, per_device_train_batch_size=6, pose_noise=0.05,
                           pose_opt=True, pose_opt_lr=4e-3)
    trained.train()
    trained.save_model()
    return folder, trained.evaluate(rendered_splits["train"]), trained.predict(rendered_splits["train"]).predictions


@pytest.mark.parametrize("flags", [{}, {"pose_noise": 0.05, "pose_opt": True, "seed": 3}])
def test_an_evaluation_only_trainer_renders_the_training_views_at_the_models_corrected_poses(
        rendered_splits, pose_opt_model, tmp_path, flags):
    # without the training run's flags, or with a recipe's (another seed draws other noise: the file's poses win)
    folder, trained_metrics, trained_renders = pose_opt_model
    evaluating = evaluating_trainer(folder, rendered_splits, tmp_path, **flags)
    assert evaluating.evaluate(rendered_splits["train"])["eval_psnr"] != pytest.approx(trained_metrics["eval_psnr"])
    assert evaluating.load_pose_adjustment(folder) is True
    metrics = evaluating.evaluate(rendered_splits["train"])
    assert metrics["eval_psnr"] == pytest.approx(trained_metrics["eval_psnr"], rel=1e-6)
    assert metrics["eval_ssim"] == pytest.approx(trained_metrics["eval_ssim"], rel=1e-6)
    torch.testing.assert_close(evaluating.predict(rendered_splits["train"]).predictions, trained_renders)
    assert torch.equal(evaluating.training_poses(), load_file(folder / POSE_ADJUSTMENT_NAME)["world_to_camera"])
    # its test views keep their given poses
    test_poses = SceneViews(rendered_splits["test"]).viewmats
    assert torch.equal(evaluating.evaluation_poses(SceneViews(rendered_splits["test"])), test_poses)
    with pytest.raises(ValueError, match="SplatTrainer.train: load_pose_adjustment gave this trainer a trained model's "
                                         "corrected training poses"):
        evaluating.train()
    # nor saves (a push saves first): the model's own corrections stay as they are, in its folder or any other
    saved = (folder / POSE_ADJUSTMENT_NAME).read_bytes()
    for target in (folder, tmp_path / "copy"):
        with pytest.raises(ValueError, match=f"not saved to {target}: load_pose_adjustment gave this trainer"):
            evaluating.save_model(str(target))
    assert (folder / POSE_ADJUSTMENT_NAME).read_bytes() == saved and not (tmp_path / "copy").exists()


def test_corrections_of_other_training_views_are_warned_of_and_not_used(rendered_splits, pose_opt_model, tmp_path):
    from transformers.testing_utils import CaptureLogger

    import hf_eff.splat.trainer as trainer_module

    folder, _, _ = pose_opt_model
    reordered = rendered_splits["train"].select([1, 0, 2, 3, 4, 5])
    evaluating = evaluating_trainer(folder, rendered_splits, tmp_path, train=reordered)
    given = evaluating.evaluate(rendered_splits["train"])["eval_psnr"]
    with CaptureLogger(trainer_module.logger) as captured:
        assert evaluating.load_pose_adjustment(folder) is False
    assert (f"load_pose_adjustment: {folder / POSE_ADJUSTMENT_NAME} corrects other training views than "
            "train_dataset's") in captured.out
    assert evaluating.evaluate(rendered_splits["train"])["eval_psnr"] == given
    # a file without the corrections, or with a count its record does not match, is named
    with pytest.raises(FileNotFoundError, match=re.escape(f"load_pose_adjustment: {tmp_path / POSE_ADJUSTMENT_NAME} "
                                                          "is missing")):
        evaluating.load_pose_adjustment(tmp_path)
    saved = load_file(folder / POSE_ADJUSTMENT_NAME)
    record = PoseAdjustment.load(folder / POSE_ADJUSTMENT_NAME)[1]
    save_file({**saved, "world_to_camera": saved["world_to_camera"][:5]}, tmp_path / POSE_ADJUSTMENT_NAME, record)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / POSE_ADJUSTMENT_NAME} holds 5 corrected poses for the "
                                                   "6 training views its record names")):
        evaluating_trainer(folder, rendered_splits, tmp_path).load_pose_adjustment(tmp_path)


def test_corrections_of_a_model_that_another_saved_over_was_fitted_with_are_warned_of_and_not_used(
        scene, rendered_splits, pose_opt_model, tmp_path):
    from transformers.testing_utils import CaptureLogger

    import hf_eff.splat.trainer as trainer_module

    folder = tmp_path / "replaced"
    shutil.copytree(pose_opt_model[0], folder)
    record = PoseAdjustment.load(folder / POSE_ADJUSTMENT_NAME)[1]
    assert record["model_sha256"] == gaussians_sha256(GaussianModel.from_pretrained(folder).splats)
    points_model(scene).save_pretrained(folder)  # another model over it, alone: the run's corrections stay
    evaluating = evaluating_trainer(folder, rendered_splits, tmp_path / "eval")
    given = evaluating.evaluate(rendered_splits["train"])["eval_psnr"]
    with CaptureLogger(trainer_module.logger) as captured:
        assert evaluating.load_pose_adjustment(folder) is False
    assert (f"load_pose_adjustment: {folder / POSE_ADJUSTMENT_NAME} corrects the poses of another model than this "
            "trainer's") in captured.out
    assert torch.equal(evaluating.training_poses(), SceneViews(rendered_splits["train"]).viewmats)
    assert evaluating.evaluate(rendered_splits["train"])["eval_psnr"] == given
    # a file written before the record, which names no model, is taken as it was
    del record["model_sha256"]
    save_file(load_file(folder / POSE_ADJUSTMENT_NAME), folder / POSE_ADJUSTMENT_NAME, metadata=record)
    assert evaluating.load_pose_adjustment(folder) is True


@pytest.fixture(scope="module")
def example_pose_opt_run(tmp_path_factory):
    """The example's tiny procedural scene saved with a test split that holds a training camera (first) and a test
    view, and the example's pose_noise + pose_opt run on it."""
    from datasets import DatasetDict

    from hf_eff.splat import Scene
    from tests.splat.test_example import run_example

    root = tmp_path_factory.mktemp("example_pose_opt")
    procedural = make_procedural_scene(seed=0, num_train=3, num_test=1, width=16, height=16)
    train = procedural.views["train"]
    views = DatasetDict({"train": train, "test": concatenate_datasets([train.select([0]), procedural.views["test"]])})
    scene_folder = Scene.from_views(views, procedural.points).save(root / "scene")
    flags = ["--scene", str(scene_folder), "--render_trajectory", "none", "--report_to", "none",
             "--eval_render_images", "1"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_example(monkeypatch, *flags, "--max_steps", "6", "--pose_noise", "0.05", "--pose_opt", "True",
                    "--pose_opt_lr", "4e-3", "--output_dir", str(root / "run"))
    return root / "run", flags


def example_results(folder):
    import json

    return json.loads((folder / "all_results.json").read_text())


def preview_is_the_first_evaluation_pair(folder) -> bool:
    import numpy as np
    from PIL import Image

    last_renders = sorted((folder / "eval_renders").glob("*.png"))[-1]
    with Image.open(folder / "preview.png") as preview, Image.open(last_renders) as renders:
        return np.array_equal(np.asarray(preview), np.asarray(renders))


def test_the_example_evaluates_a_pose_opt_models_training_cameras_at_their_corrected_poses(
        example_pose_opt_run, tmp_path, monkeypatch):
    from tests.splat.test_example import run_example

    run, flags = example_pose_opt_run
    run_example(monkeypatch, *flags, "--do_train", "False", "--model_name_or_path", str(run),
                "--output_dir", str(tmp_path))
    evaluated, trained = example_results(tmp_path), example_results(run)
    assert evaluated["eval_psnr"] == pytest.approx(trained["eval_psnr"], rel=1e-6)
    assert evaluated["eval_ssim"] == pytest.approx(trained["eval_ssim"], rel=1e-6)
    # preview.png is the first test view (a training camera) as evaluation rendered it, in both runs
    assert preview_is_the_first_evaluation_pair(run) and preview_is_the_first_evaluation_pair(tmp_path)


def pushed_run(hub, name: str, run, files=("*.json", "*.safetensors")):
    """A new repo ``name`` on the test Hub holding the run folder's ``files`` (its model and corrections by default)."""
    repo_id = hub.repo_id(name)
    api = hub.api()
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=str(run), allow_patterns=list(files))
    return api, repo_id


def test_the_example_downloads_a_hub_models_corrected_poses(example_pose_opt_run, tmp_path, local_hub):
    import subprocess
    import sys

    from tests.splat.test_example import SCRIPT

    run, flags = example_pose_opt_run
    _, repo_id = pushed_run(local_hub, "pose-opt-splats", run)
    # A fresh process: huggingface_hub reads the endpoint when first imported. run_example's flags, then the run's.
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--procedural_resolution", "16", "--procedural_num_train", "3",
         "--procedural_num_test", "1", "--sh_degree", "0", "--disable_tqdm", "True", *flags, "--do_train", "False",
         "--model_name_or_path", repo_id, "--output_dir", str(tmp_path / "eval")],
        env=local_hub.env(), capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    assert example_results(tmp_path / "eval")["eval_psnr"] == pytest.approx(example_results(run)["eval_psnr"],
                                                                            rel=1e-6)
    assert "Training cameras are evaluated at the corrected poses of " in process.stderr


def test_a_resume_without_pose_opt_on_reordered_views_under_pose_noise_is_refused_by_name(
        scene, rendered_splits, tmp_path):
    # pose_noise draws one perturbation per view index: the same views in another order train on other poses
    make_trainer(scene, rendered_splits, tmp_path / "noisy", max_steps=4, save_strategy="steps", save_steps=4,
                 pose_noise=0.05).train()
    checkpoint = str(tmp_path / "noisy" / "checkpoint-4")
    reordered = {**rendered_splits, "train": rendered_splits["train"].select([1, 0, 2, 3, 4, 5])}
    resumed = make_trainer(scene, reordered, tmp_path / "resumed", max_steps=8, pose_noise=0.05)
    with pytest.raises(ValueError, match=re.escape(
            f"resume_from_checkpoint {checkpoint!r}: it was trained on other training poses than this run's: "
            "train_dataset: its views' cameras (world_to_camera and K, in order) are not the checkpoint's")):
        resumed.train(resume_from_checkpoint=checkpoint)
    # without pose_noise the order changes no pose: it resumes
    make_trainer(scene, rendered_splits, tmp_path / "clean", max_steps=4, save_strategy="steps", save_steps=4).train()
    resumed = make_trainer(scene, reordered, tmp_path / "resumed-clean", max_steps=8)
    resumed.train(resume_from_checkpoint=str(tmp_path / "clean" / "checkpoint-4"))
    assert resumed.state.global_step == 8


def test_a_hub_model_without_corrections_is_evaluated_offline_without_a_warning(example_pose_opt_run, tmp_path,
                                                                                   local_hub):
    import subprocess
    import sys

    from tests.splat.test_example import SCRIPT

    run, flags = example_pose_opt_run
    _, repo_id = pushed_run(local_hub, "plain-splats", run, files=["*.json", "model.safetensors"])

    def evaluate(name: str, **env: str) -> str:
        process = subprocess.run(
            [sys.executable, str(SCRIPT), "--procedural_resolution", "16", "--procedural_num_train", "3",
             "--procedural_num_test", "1", "--sh_degree", "0", "--disable_tqdm", "True", *flags, "--do_train", "False",
             "--model_name_or_path", repo_id, "--output_dir", str(tmp_path / name)],
            env=local_hub.env(**env), capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
        assert process.returncode == 0, process.stderr[-4000:]
        return process.stderr

    # online the Hub answers that the repo has no corrections; offline the cache keeps that answer, and the commit
    for name, env in (("online", {}), ("offline", {"HF_HUB_OFFLINE": "1"})):
        logs = evaluate(name, **env)
        assert " - WARNING - " not in logs and "corrected poses of" not in logs, name


@pytest.fixture
def in_process_hub(local_hub, tmp_path, monkeypatch):
    """This process's huggingface_hub pointed at the local Hub (it read its endpoint when first imported, also into its
    module-level HfApi, whose methods it exports as functions), with a cache of its own."""
    from huggingface_hub import constants, hf_api

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    monkeypatch.setattr(hf_api.api, "endpoint", local_hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        local_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_TOKEN", local_hub.token)
    return local_hub


def test_the_example_reads_a_hub_models_corrected_poses_at_the_commit_it_read_the_model_at(
        example_pose_opt_run, tmp_path, monkeypatch, in_process_hub):
    from safetensors import safe_open

    from tests.splat.test_example import run_example

    run, flags = example_pose_opt_run
    api, repo_id = pushed_run(in_process_hub, "moving-splats", run)
    # The branch's next push: other corrected poses of the same training views, which an evaluation would take.
    with safe_open(run / POSE_ADJUSTMENT_NAME, "pt") as saved:
        tensors, record = {name: saved.get_tensor(name) for name in saved.keys()}, saved.metadata()
    tensors["world_to_camera"][:, :3, 3] += 0.5
    save_file(tensors, tmp_path / "moved.safetensors", metadata=record)
    read_model = GaussianModel.from_pretrained

    def read_model_then_push(*args, **kwargs):
        model = read_model(*args, **kwargs)
        api.upload_file(path_or_fileobj=tmp_path / "moved.safetensors", path_in_repo=POSE_ADJUSTMENT_NAME,
                        repo_id=repo_id, commit_message="Other corrections")
        return model

    evaluate = [*flags, "--do_train", "False", "--model_name_or_path", repo_id, "--output_dir"]
    with monkeypatch.context() as pushing:
        pushing.setattr(GaussianModel, "from_pretrained", read_model_then_push)
        run_example(monkeypatch, *evaluate, str(tmp_path / "pushed-meanwhile"))
    assert example_results(tmp_path / "pushed-meanwhile")["eval_psnr"] == pytest.approx(
        example_results(run)["eval_psnr"], rel=1e-6)
    # the later push's poses, read with the model they were not fitted with, evaluate otherwise
    run_example(monkeypatch, *evaluate, str(tmp_path / "later"))
    assert example_results(tmp_path / "later")["eval_psnr"] != pytest.approx(example_results(run)["eval_psnr"],
                                                                               rel=1e-3)


def test_a_hub_model_that_cannot_be_read_is_named_by_its_flag(example_pose_opt_run, tmp_path, monkeypatch,
                                                              in_process_hub):
    from huggingface_hub import constants

    from tests.splat.test_example import run_example

    _, flags = example_pose_opt_run
    missing = in_process_hub.repo_id("never-pushed")
    named = f"--model_name_or_path {missing}: cannot load a GaussianModel: there is no such folder {missing} "
    for reason, offline in ((f"no Hub repo {missing} that this token can read", False),
                            (f"the Hub could not be reached to look for a repo {missing}, which is not in the local "
                             "cache (offline (HF_HUB_OFFLINE): ", True)):
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        with pytest.raises(FileNotFoundError, match=re.escape(named) + r"\(.*\), and " + re.escape(reason)):
            run_example(monkeypatch, *flags, "--do_train", "False", "--model_name_or_path", missing, "--output_dir",
                        str(tmp_path / "eval"))
        assert not (tmp_path / "eval").exists()


def test_the_example_does_not_take_an_older_pushs_corrections_for_a_model_pushed_alone_to_the_repo(
        example_pose_opt_run, tmp_path, monkeypatch, in_process_hub):
    from transformers.testing_utils import CaptureLogger

    import hf_eff.splat.trainer as trainer_module
    from tests.splat.test_example import run_example

    run, flags = example_pose_opt_run
    api, repo_id = pushed_run(in_process_hub, "replaced-splats", run)
    replacement = GaussianModel.from_pretrained(run)
    with torch.no_grad():
        replacement.splats["means"] += 0.01
    replacement.push_to_hub(repo_id)  # the model alone: the earlier push's corrections stay in the repo
    assert POSE_ADJUSTMENT_NAME in api.list_repo_files(repo_id)
    replacement.save_pretrained(tmp_path / "alone")
    evaluate = [*flags, "--do_train", "False", "--output_dir"]
    with CaptureLogger(trainer_module.logger) as captured:
        run_example(monkeypatch, *evaluate, str(tmp_path / "hub"), "--model_name_or_path", repo_id)
    assert "corrects the poses of another model than this trainer's" in captured.out
    # evaluated as the same model without corrections is: every view at its given pose
    run_example(monkeypatch, *evaluate, str(tmp_path / "local"), "--model_name_or_path", str(tmp_path / "alone"))
    assert example_results(tmp_path / "hub")["eval_psnr"] == example_results(tmp_path / "local")["eval_psnr"]
