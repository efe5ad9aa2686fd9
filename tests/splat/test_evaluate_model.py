"""examples/splat_train.py with --model_name_or_path: evaluating a trained model (--do_train False), or
training from its Gaussians."""

import json
import logging
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from hf_eff.splat import GaussianModel, SplatTrainer, SplatTrainingArguments, make_procedural_scene
from tests.hub.conftest import OWNER, local_hub  # noqa: F401 (the fixture)
from tests.splat.test_example import SCRIPT, run_example

# run_example's tiny procedural scene; every run here evaluates on it.
SCENE_FLAGS = ["--procedural_resolution", "16", "--procedural_num_train", "3", "--procedural_num_test", "1",
               "--sh_degree", "0", "--disable_tqdm", "True", "--eval_render_images", "0"]
FEW_FRAMES = ["--trajectory_frames", "2", "--trajectory_size", "16"]
MODEL_FILES = ("model.safetensors", "config.json", "splats.ply", "README.md", "training_args.bin")


def results(folder):
    return json.loads((folder / "all_results.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three trained runs of the tiny scene: 'run', 'other' (fewer steps) and 'antialiased'."""
    root = tmp_path_factory.mktemp("runs")
    flags = {"run": ["--max_steps", "12"], "other": ["--max_steps", "6"],
             "antialiased": ["--max_steps", "12", "--rasterize_mode", "antialiased"]}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, extra in flags.items():
            run_example(monkeypatch, *extra, *FEW_FRAMES, "--output_dir", str(root / name))
    return root


def test_evaluating_a_saved_run_reports_its_numbers_and_saves_no_model(runs, tmp_path, monkeypatch):
    for name, do_train in (("run", ["--do_train", "False"]), ("other", ["--no_do_train"])):
        out = tmp_path / name
        run_example(monkeypatch, *do_train, "--model_name_or_path", str(runs / name), *FEW_FRAMES,
                    "--output_dir", str(out))
        reported, evaluated = results(runs / name), results(out)
        assert evaluated["eval_psnr"] == pytest.approx(reported["eval_psnr"], rel=1e-6)
        assert evaluated["eval_ssim"] == pytest.approx(reported["eval_ssim"], rel=1e-6)
        assert evaluated["eval_num_gaussians"] == reported["num_gaussians"]
        assert {key: evaluated[key] for key in ("model_name_or_path", "model_revision", "dataset_name", "rasterize_mode")} == {
            "model_name_or_path": str(runs / name), "model_revision": None, "dataset_name": "procedural (seed 0)",
            "rasterize_mode": "classic"}
        # nothing trained: no train metrics, nor the training clocks evaluate reports during a run
        assert not [key for key in evaluated if "train" in key]
        assert not [file for file in MODEL_FILES if (out / file).exists()]
        assert (out / "preview.png").is_file() and (out / "trajectory.gif").is_file()
    # the Gaussians were loaded: the two models score differently
    assert results(tmp_path / "run")["eval_psnr"] != pytest.approx(results(tmp_path / "other")["eval_psnr"], rel=1e-3)


def test_evaluation_renders_in_the_mode_the_model_was_trained_in(runs, tmp_path, monkeypatch):
    # --rasterize_mode is left at its default, classic; config.json says antialiased.
    run_example(monkeypatch, "--do_train", "False", "--model_name_or_path", str(runs / "antialiased"),
                "--render_trajectory", "none", "--output_dir", str(tmp_path / "eval"))
    evaluated, reported = results(tmp_path / "eval"), results(runs / "antialiased")
    assert evaluated["rasterize_mode"] == "antialiased"
    assert evaluated["eval_psnr"] == pytest.approx(reported["eval_psnr"], rel=1e-6)


def test_training_from_a_model_starts_from_its_gaussians_and_keeps_its_sh_degree(runs, tmp_path, monkeypatch,
                                                                                   caplog):
    started_from = []
    init = SplatTrainer.__init__

    def recording_init(self, model, *args, **kwargs):
        started_from.append({key: value.detach().clone() for key, value in model.splats.items()})
        init(self, model, *args, **kwargs)

    monkeypatch.setattr(SplatTrainer, "__init__", recording_init)
    out = tmp_path / "further"
    with caplog.at_level(logging.WARNING):
        run_example(monkeypatch, "--model_name_or_path", str(runs / "run"), "--sh_degree", "2", "--max_steps", "2",
                    "--render_trajectory", "none", "--output_dir", str(out))
    pretrained = GaussianModel.from_pretrained(runs / "run")
    assert started_from[0].keys() == pretrained.splats.keys()
    for key, value in pretrained.splats.items():
        torch.testing.assert_close(started_from[0][key], value, rtol=0, atol=0)
    assert "--sh_degree 2 ignored" in caplog.text
    assert GaussianModel.from_pretrained(out).sh_degree == 0 == pretrained.sh_degree
    trained = results(out)
    assert trained["base_model"] == str(runs / "run") and "train_runtime" in trained
    assert (out / "model.safetensors").is_file()
    # the card names the start by its folder's name only (a Hub id gets a link: the test below)
    card = (out / "README.md").read_text()
    assert "It is a fine-tuned version of a local model (`run`)" in card and str(runs) not in card


def test_the_card_of_a_model_trained_from_a_hub_model_links_it_at_its_revision():
    from hf_eff.hub.cards import splat_card

    card = splat_card({"eval_psnr": 25.0, "base_model": "me/start", "model_revision": "v2"}, "me/further")
    assert ("It is a fine-tuned version of [`me/start`](https://huggingface.co/me/start) (revision `v2`)"
            in card.text)
    assert card.data.base_model == "me/start"
    assert "fine-tuned" not in splat_card({"eval_psnr": 25.0}, "me/splats").text


def test_refused_evaluations_fail_before_any_work(runs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    refusals = [
        (["--do_train", "False"], ValueError, "--do_train False evaluates a trained model: name it with "
                                              "--model_name_or_path"),
        (["--do_train", "False", "--model_name_or_path", str(runs / "run"), "--push_to_hub", "True",
          "--hub_model_id", f"{OWNER}/never"], ValueError, "--push_to_hub with --do_train False: an evaluation writes "
                                                           "no model to push"),
        (["--do_train", "False", "--model_name_or_path", str(runs / "run"), "--resume_from_checkpoint", "True"],
         ValueError, "--resume_from_checkpoint resumes training"),
        (["--max_steps", "2", "--model_revision", "v2"], ValueError, "--model_revision v2 is a Hub revision of "
                                                                         "--model_name_or_path, which is not given"),
    ]
    for flags, error, message in refusals:
        with pytest.raises(error, match=message):
            run_example(monkeypatch, *flags, "--output_dir", str(out))
        assert not out.exists()


def test_an_evaluation_into_a_training_runs_folder_is_refused_before_it_writes(runs, tmp_path, monkeypatch):
    # A recipe's --output_dir is its training run's folder, and save_metrics merges into its all_results.json.
    run = tmp_path / "run"
    shutil.copytree(runs / "run", run)
    shutil.copytree(runs / "run", run / "checkpoint-12")
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    for model in (run, run / "checkpoint-12"):
        with pytest.raises(ValueError, match=rf"--output_dir {run} holds a training run \(train metrics in its results\), which an evaluation would "
                                             "overwrite"):
            run_example(monkeypatch, "--do_train", "False", "--model_name_or_path", str(model), "--output_dir",
                        str(run))
        assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_a_model_folder_without_weights_is_named(runs, tmp_path, monkeypatch):
    folder = tmp_path / "crashed"
    folder.mkdir()
    shutil.copy(runs / "run" / "config.json", folder)
    for checkpoint in ("checkpoint-9", "checkpoint-10"):
        shutil.copytree(runs / "run", folder / checkpoint)
    for do_train in ("True", "False"):
        with pytest.raises(FileNotFoundError, match=rf"--model_name_or_path {folder}: the folder {folder} holds no "
                                                    rf"GaussianModel weights: it has no model.safetensors .*its last "
                                                    rf"checkpoint that holds one: {folder}/checkpoint-10"):
            run_example(monkeypatch, "--do_train", do_train, "--max_steps", "2", "--model_name_or_path", str(folder),
                        "--output_dir", str(tmp_path / "out"))
    not_splats = tmp_path / "not_splats"
    not_splats.mkdir()
    shutil.copy(runs / "run" / "config.json", not_splats)
    save_file({"weight": torch.zeros(2)}, not_splats / "model.safetensors")
    with pytest.raises(ValueError, match=rf"--model_name_or_path {not_splats}: .*model.safetensors: expected tensors "
                                         r"\['splats.means'"):
        run_example(monkeypatch, "--do_train", "False", "--model_name_or_path", str(not_splats), "--output_dir",
                    str(tmp_path / "out"))
    with pytest.raises(ValueError, match=f"--model_revision v2 is a Hub revision, and --model_name_or_path "
                                         f"{runs / 'run'} is a local folder"):
        run_example(monkeypatch, "--do_train", "False", "--model_name_or_path", str(runs / "run"),
                    "--model_revision", "v2", "--output_dir", str(tmp_path / "out"))


def test_max_steps_is_needed_to_train_only(tmp_path):
    scene = make_procedural_scene(seed=0, num_train=2, num_test=1, width=16, height=16, num_points=50, supersample=1)
    with pytest.raises(ValueError, match="max_steps must be > 0"):
        SplatTrainingArguments(output_dir=str(tmp_path), report_to="none")
    args = SplatTrainingArguments(output_dir=str(tmp_path), report_to="none", do_train=False, eval_render_images=0)
    xyz, rgb = scene.point_arrays()
    trainer = SplatTrainer(GaussianModel.from_points(xyz, rgb, sh_degree=0), args, train_dataset=scene.views["train"],
                           eval_dataset=scene.views["test"])
    assert trainer.evaluate()["eval_psnr"] > 0
    with pytest.raises(ValueError, match="SplatTrainer.train needs max_steps > 0 .* got -1"):
        trainer.train()


def test_an_evaluation_only_trainer_builds_no_training_schedule(tmp_path, monkeypatch):
    # The energy schedule reads every training image (seconds for tens of large views).
    from hf_eff.splat.coarse_to_fine import EnergyCoarseToFine

    scene = make_procedural_scene(seed=0, num_train=2, num_test=1, width=16, height=16, num_points=50, supersample=1)
    xyz, rgb = scene.point_arrays()
    built = []
    from_images = EnergyCoarseToFine.from_images.__func__
    monkeypatch.setattr(EnergyCoarseToFine, "from_images",
                        classmethod(lambda cls, *args, **kwargs: built.append(1) or from_images(cls, *args, **kwargs)))
    args = SplatTrainingArguments(output_dir=str(tmp_path), report_to="none", do_train=False, max_steps=4,
                                  eval_render_images=0, disable_tqdm=True)
    trainer = SplatTrainer(GaussianModel.from_points(xyz, rgb, sh_degree=0), args, train_dataset=scene.views["train"],
                           eval_dataset=scene.views["test"])
    trainer.evaluate()
    assert not built and trainer.coarse_to_fine is None and trainer.strategy.global_stop_iter is None
    trainer.train()  # called anyway: it trains on the schedule
    assert built == [1] and trainer.strategy.global_stop_iter == trainer.coarse_to_fine.full_resolution_step


@pytest.fixture
def decoded_images(monkeypatch):
    """The stored bytes of each image (or mask) datasets decodes in this process from now on."""
    from datasets import Image

    decoded = []
    decode = Image.decode_example

    def recording(self, value, *args, **kwargs):
        decoded.append(value["bytes"])
        return decode(self, value, *args, **kwargs)

    monkeypatch.setattr(Image, "decode_example", recording)
    return decoded


def stored_images(split) -> list[bytes]:
    from datasets import Image

    return [image["bytes"] for image in split.cast_column("image", Image(decode=False))["image"]]


def test_an_evaluation_only_run_decodes_the_test_images_alone(runs, tmp_path, monkeypatch, decoded_images):
    # The trajectory and the trainer read the training cameras only; decoding the training images cost 0.45 s
    # of an evaluation's 0.8 s of setup for 50 views at 800x600, and 1.7 GB for 300 views at 1600x1200.
    scene = make_procedural_scene(seed=0, num_train=3, num_test=1, width=16, height=16)  # run_example's
    decoded_images.clear()
    run_example(monkeypatch, "--do_train", "False", "--model_name_or_path", str(runs / "run"), *FEW_FRAMES,
                "--output_dir", str(tmp_path / "eval"))
    assert (tmp_path / "eval" / "trajectory.gif").is_file()
    assert sorted(decoded_images) == sorted(stored_images(scene.views["test"]))
    assert not set(decoded_images) & set(stored_images(scene.views["train"]))


def test_the_training_images_are_decoded_once_where_training_needs_them(tmp_path, decoded_images):
    scene = make_procedural_scene(seed=0, num_train=2, num_test=1, width=16, height=16, num_points=50, supersample=1)
    train_images, test_images = stored_images(scene.views["train"]), stored_images(scene.views["test"])
    xyz, rgb = scene.point_arrays()

    def trainer(do_train):
        # default: no energy schedule, which would read the training images itself; a dataloader worker, which
        # would decode them in its own process were they not decoded before
        args = SplatTrainingArguments(output_dir=str(tmp_path / str(do_train)), report_to="none", do_train=do_train,
                                      strategy="default", max_steps=2, eval_render_images=0, disable_tqdm=True,
                                      dataloader_num_workers=1)
        return SplatTrainer(GaussianModel.from_points(xyz, rgb, sh_degree=0), args,
                            train_dataset=scene.views["train"], eval_dataset=scene.views["test"])

    training = trainer(True)  # a training run decodes every view when it is built, as before
    assert sorted(decoded_images) == sorted(train_images + test_images)
    decoded_images.clear()
    evaluating = trainer(False)
    evaluating.evaluate()
    assert sorted(decoded_images) == sorted(test_images)
    decoded_images.clear()
    evaluating.train()  # called anyway: decoded here, once, and trained on as a training run's
    assert sorted(decoded_images) == sorted(train_images)
    assert torch.equal(evaluating.train_dataset.images, training.train_dataset.images)


def test_lazy_views_decode_what_eager_ones_hold(tmp_path, decoded_images):
    import numpy as np

    from hf_eff.splat import views_dataset
    from hf_eff.splat.trainer import SceneViews

    scene = make_procedural_scene(seed=0, num_train=2, num_test=1, width=16, height=16, num_points=50, supersample=1)
    arrays = scene.views["train"].with_format("numpy")
    mask = np.ones((16, 16), dtype=bool)
    mask[:, :4] = False
    masked = views_dataset(list(scene.views["train"]["image"]), arrays["K"], arrays["world_to_camera"],
                           masks=[mask, None])
    eager = SceneViews(masked)
    decoded_images.clear()
    lazy = SceneViews(masked, lazy=True)
    assert (len(lazy), lazy.width, lazy.height) == (2, 16, 16) and torch.equal(lazy.viewmats, eager.viewmats)
    assert not decoded_images
    copied = SceneViews(lazy, lazy=True)
    assert torch.equal(lazy.masks, eager.masks) and torch.equal(lazy.images, eager.images)
    assert not lazy.images[0, :, :4].any()  # the ignored pixels zeroed, as eager views do
    assert len(decoded_images) == 3  # two images and one mask (a None decodes nothing), once
    assert torch.equal(copied[1]["image"], eager[1]["image"])  # a copy made before decoding decodes its own


def test_a_model_on_the_hub_is_evaluated_at_its_revision(runs, tmp_path, local_hub):  # noqa: F811
    repo_id = local_hub.repo_id("splats")
    api = local_hub.api()
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=str(runs / "run"), allow_patterns=["*.json", "*.safetensors"])
    api.create_branch(repo_id, branch="v2")
    api.upload_folder(repo_id=repo_id, folder_path=str(runs / "other"), revision="v2",
                      allow_patterns=["*.json", "*.safetensors"])
    # A fresh process: huggingface_hub reads the endpoint when first imported.
    for revision, trained in ((None, "run"), ("v2", "other")):
        out = tmp_path / (revision or "main")
        revision_flags = ["--model_revision", revision] if revision else []
        process = subprocess.run(
            [sys.executable, str(SCRIPT), *SCENE_FLAGS, *FEW_FRAMES, "--do_train", "False", "--model_name_or_path",
             repo_id, *revision_flags, "--output_dir", str(out)],
            env=local_hub.env(), capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
        assert process.returncode == 0, process.stderr[-4000:]
        evaluated = results(out)
        assert evaluated["eval_psnr"] == pytest.approx(results(runs / trained)["eval_psnr"], rel=1e-6)
        assert (evaluated["model_name_or_path"], evaluated["model_revision"]) == (repo_id, revision)
        assert not [file for file in MODEL_FILES if (out / file).exists()]
    process = subprocess.run(
        [sys.executable, str(SCRIPT), *SCENE_FLAGS, "--do_train", "False", "--model_name_or_path", repo_id,
         "--model_revision", "v3", "--output_dir", str(tmp_path / "v3")],
        env=local_hub.env(), capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert process.returncode != 0
    assert f"FileNotFoundError: --model_revision v3: the Hub repo {repo_id} has no such branch" in process.stderr
    assert not (tmp_path / "v3").exists()


def test_an_evaluation_before_training_reports_no_training_time(tmp_path):
    # The console line and all_results.json of an evaluate-only run showed the time since the trainer was built.
    scene = make_procedural_scene(seed=0, num_train=2, num_test=1, width=16, height=16, num_points=50, supersample=1)
    args = SplatTrainingArguments(output_dir=str(tmp_path), report_to="none", max_steps=2, eval_render_images=0,
                                  disable_tqdm=True)
    xyz, rgb = scene.point_arrays()
    trainer = SplatTrainer(GaussianModel.from_points(xyz, rgb, sh_degree=0), args, train_dataset=scene.views["train"],
                           eval_dataset=scene.views["test"])
    clocks = {"eval_train_seconds", "eval_train_cpu_seconds"}
    assert not clocks & trainer.evaluate().keys()
    assert not clocks & trainer.state.log_history[-1].keys()  # what the console shows
    trainer.train()
    assert clocks <= trainer.evaluate().keys()


@pytest.fixture(scope="module")
def white_scene(tmp_path_factory):
    """A NeRF folder whose frames are transparent in their lower half and masked in their left quarter."""
    import numpy as np
    from datasets import DatasetDict
    from PIL import Image

    from hf_eff.splat import Scene, views_dataset
    from hf_eff.splat.converters import write_nerf_synthetic

    procedural = make_procedural_scene(seed=0, num_train=3, num_test=1, width=16, height=16, num_points=100,
                                       supersample=1)
    mask = np.ones((16, 16), dtype=bool)
    mask[:, :4] = False
    splits = {}
    for name, split in procedural.views.items():
        arrays = split.with_format("numpy")
        splits[name] = views_dataset(list(split["image"]), arrays["K"], arrays["world_to_camera"],
                                     masks=[mask] * len(split))
    folder = write_nerf_synthetic(Scene.from_views(DatasetDict(splits), procedural.points),
                                  tmp_path_factory.mktemp("white") / "nerf")
    for frame in folder.glob("t*/r_*.png"):  # train/, test/: not masks/
        rgba = np.asarray(Image.open(frame).convert("RGBA")).copy()
        rgba[8:, :, 3] = 0
        Image.fromarray(rgba).save(frame)
    return folder


def test_an_evaluation_composites_and_renders_onto_the_background_the_model_was_trained_on(white_scene, tmp_path,
                                                                                          monkeypatch, caplog):
    # Trained on white, masked and antialiased; evaluated with none of those flags.
    scene_flags = ["--scene", str(white_scene), *FEW_FRAMES]
    trained = tmp_path / "trained"
    run_example(monkeypatch, *scene_flags, "--white_background", "True", "--rasterize_mode", "antialiased",
                "--max_steps", "6", "--output_dir", str(trained))
    assert json.loads((trained / "config.json").read_text())["white_background"] is True
    out = tmp_path / "eval"
    run_example(monkeypatch, *scene_flags, "--do_train", "False", "--model_name_or_path", str(trained),
                "--output_dir", str(out))
    evaluated, reported = results(out), results(trained)
    assert evaluated["eval_psnr"] == pytest.approx(reported["eval_psnr"], rel=1e-6)
    assert evaluated["eval_ssim"] == pytest.approx(reported["eval_ssim"], rel=1e-6)
    assert (evaluated["white_background"], evaluated["rasterize_mode"]) == (True, "antialiased")
    # Training it further keeps its mode and background unless the flags say otherwise, which is named.
    run_example(monkeypatch, *scene_flags, "--model_name_or_path", str(trained), "--max_steps", "2",
                "--output_dir", str(tmp_path / "kept"))
    kept = json.loads((tmp_path / "kept" / "config.json").read_text())
    assert (kept["white_background"], kept["rasterize_mode"]) == (True, "antialiased")
    with caplog.at_level(logging.WARNING):
        run_example(monkeypatch, *scene_flags, "--model_name_or_path", str(trained), "--white_background", "False",
                    "--rasterize_mode", "classic", "--max_steps", "2", "--output_dir", str(tmp_path / "black"))
    assert "the model renders onto white" in caplog.text and "the model renders 'antialiased'" in caplog.text
    black = json.loads((tmp_path / "black" / "config.json").read_text())
    assert (black["white_background"], black["rasterize_mode"]) == (False, "classic")
