import json
import runpy
import sys
from pathlib import Path

from hf_eff.splat.trainer import SplatTrainer

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "splat_train.py"


def run_example(monkeypatch, *flags):
    monkeypatch.setattr(sys, "argv", [
        str(SCRIPT), "--procedural_resolution", "16", "--procedural_num_train", "3", "--procedural_num_test", "1",
        "--sh_degree", "0", "--disable_tqdm", "True", "--eval_render_images", "0", *flags,
    ])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_resume_from_checkpoint_true_resumes_from_the_last_checkpoint(tmp_path, monkeypatch, checkpoint_loads):
    # The trainer's error for a missing folder suggests True, which the script used to pass on as a path.
    out = tmp_path / "run"
    run_example(monkeypatch, "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3",
                "--output_dir", str(out))
    loaded = checkpoint_loads(SplatTrainer)
    run_example(monkeypatch, "--max_steps", "9", "--save_strategy", "steps", "--save_steps", "3",
                "--output_dir", str(out), "--resume_from_checkpoint", "True")
    assert loaded == [str(out / "checkpoint-6")]
    assert (out / "checkpoint-9").is_dir()


def test_masks_reach_load_scene_for_a_colmap_scene(tmp_path, monkeypatch):
    import numpy as np
    import pytest
    from datasets import DatasetDict

    import hf_eff.splat.scene as scene_module
    from hf_eff.splat import Scene, make_procedural_scene, views_dataset
    from hf_eff.splat.converters import write_colmap

    pytest.importorskip("pycolmap")
    procedural = make_procedural_scene(seed=0, num_train=3, num_test=1, width=16, height=16, num_points=100,
                                       supersample=1)
    mask = np.ones((16, 16), dtype=bool)
    mask[:, :8] = False
    train = procedural.views["train"].with_format("numpy")
    masked = views_dataset(list(procedural.views["train"]["image"]), train["K"], train["world_to_camera"],
                           masks=[mask] * 3)
    folder = write_colmap(Scene.from_views(DatasetDict({"train": masked, "test": procedural.views["test"]}),
                                           procedural.points), tmp_path / "colmap")
    loaded = []
    load_scene = scene_module.load_scene

    def recording_load_scene(*args, **kwargs):
        loaded.append(load_scene(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(scene_module, "load_scene", recording_load_scene)
    run_example(monkeypatch, "--scene", str(folder), "--masks", "masks", "--test_every", "4", "--max_steps", "2",
                "--render_trajectory", "none", "--report_to", "none", "--output_dir", str(tmp_path / "run"))
    # --test_every 4 holds out the first image: images 2 and 3 train with their masks, and the
    # unmasked test view, written with an all-white mask, trains on every pixel.
    masks = [np.asarray(m) != 0 for m in loaded[0].views["train"]["mask"]]
    np.testing.assert_array_equal(masks, [mask, mask, np.ones_like(mask)])
    assert (tmp_path / "run" / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="--masks applies to a COLMAP --scene"):
        run_example(monkeypatch, "--masks", "masks", "--max_steps", "2", "--output_dir", str(tmp_path / "procedural"))


def test_normalize_world_space_trains_a_far_capture_and_its_model_keeps_the_frame(tmp_path, monkeypatch):
    import json

    import numpy as np
    import pytest

    from hf_eff.splat import make_procedural_scene
    from tests.splat.test_normalization import OFFSET, write_moved_nerf

    procedural = make_procedural_scene(seed=0, num_train=3, num_test=1, width=16, height=16, num_points=60,
                                       supersample=1)
    folder = write_moved_nerf(procedural, tmp_path / "far", OFFSET)
    common = ("--scene", str(folder), "--render_trajectory", "none", "--init_random_points", "200")
    with pytest.raises(ValueError, match="the cameras lie about .* normalize_world_space"):
        run_example(monkeypatch, *common, "--max_steps", "2", "--output_dir", str(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    run_example(monkeypatch, *common, "--normalize_world_space", "True", "--max_steps", "2",
                "--output_dir", str(tmp_path / "run"))
    recorded = np.asarray(json.loads((tmp_path / "run" / "config.json").read_text())["world_to_normalized"])
    # x_n = s x + b centres the cameras, which sit about OFFSET away
    assert np.linalg.norm(recorded[:3, 3] + recorded[0, 0] * OFFSET) < 1.0
    # the model lives in the normalised frame: evaluating it on a scene in world coordinates is refused by name
    write_moved_nerf(procedural, tmp_path / "near", np.zeros(3))
    with pytest.raises(ValueError, match="the model records world_to_normalized .* train_dataset was stored in the "
                                         "capture's own coordinates: .*--normalize_world_space"):
        run_example(monkeypatch, "--scene", str(tmp_path / "near"), "--model_name_or_path", str(tmp_path / "run"),
                    "--do_train", "False", "--render_trajectory", "none", "--output_dir", str(tmp_path / "eval"))
    run_example(monkeypatch, *common, "--normalize_world_space", "True", "--model_name_or_path",
                str(tmp_path / "run"), "--do_train", "False", "--output_dir", str(tmp_path / "eval"))
    assert (tmp_path / "eval" / "eval_results.json").is_file()
    # and a model trained in the capture's own coordinates is refused on the normalised scene
    run_example(monkeypatch, "--scene", str(tmp_path / "near"), "--render_trajectory", "none", "--init_random_points",
                "200", "--max_steps", "2", "--output_dir", str(tmp_path / "near_run"))
    with pytest.raises(ValueError, match="records no world_to_normalized .* leave out --normalize_world_space"):
        run_example(monkeypatch, "--scene", str(tmp_path / "near"), "--normalize_world_space", "True",
                    "--model_name_or_path", str(tmp_path / "near_run"), "--do_train", "False",
                    "--render_trajectory", "none", "--output_dir", str(tmp_path / "near_eval"))


def test_normalize_world_space_is_refused_for_the_procedural_scene(tmp_path, monkeypatch):
    import pytest

    with pytest.raises(ValueError, match="--normalize_world_space applies to a COLMAP or NeRF --scene"):
        run_example(monkeypatch, "--normalize_world_space", "True", "--max_steps", "2",
                    "--output_dir", str(tmp_path / "run"))


def test_resuming_with_another_strategy_is_refused_naming_both(tmp_path, monkeypatch):
    import pytest

    out = tmp_path / "run"
    run_example(monkeypatch, "--strategy", "default", "--max_steps", "3", "--save_strategy", "steps", "--save_steps", "3",
                "--render_trajectory", "none", "--output_dir", str(out))
    written = {path: path.stat().st_mtime_ns for path in out.rglob("*")}
    with pytest.raises(ValueError, match=r"checkpoint-3'.*'default' in the checkpoint, 'g2l' now.*--model_name_or_path"):
        run_example(monkeypatch, "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3",
                    "--render_trajectory", "none", "--output_dir", str(out), "--resume_from_checkpoint", "True")
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*")} == written


def test_an_evaluation_on_another_scene_or_split_than_the_model_trained_on_warns_naming_both(tmp_path, monkeypatch,
                                                                                            caplog):
    import json

    from hf_eff.splat import make_procedural_scene

    eval_only = ("--do_train", "False", "--render_trajectory", "none", "--model_name_or_path", str(tmp_path / "run"))
    run_example(monkeypatch, "--max_steps", "2", "--render_trajectory", "none", "--output_dir", str(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_split"] == {
        "scene": "procedural (seed 0)", "procedural_num_train": 3, "procedural_num_test": 1,
        "procedural_resolution": 16}
    with caplog.at_level("WARNING"):
        run_example(monkeypatch, *eval_only, "--output_dir", str(tmp_path / "same"))
    assert "differ from the training run" not in caplog.text
    with caplog.at_level("WARNING"):
        run_example(monkeypatch, *eval_only, "--procedural_seed", "1", "--output_dir", str(tmp_path / "other"))
    assert ("--scene procedural (seed 1) (the model's: procedural (seed 0)) differ from the training run of "
            f"--model_name_or_path {tmp_path / 'run'}") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # the same cameras at another size: other test images
        run_example(monkeypatch, *eval_only, "--procedural_resolution", "12", "--output_dir", str(tmp_path / "smaller"))
    assert ("--procedural_resolution 12 (the model's: 16) differ from the training run of "
            f"--model_name_or_path {tmp_path / 'run'}") in caplog.text
    # a model saved before the resolution was recorded is compared on what it records
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    del config["data_split"]["procedural_resolution"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    caplog.clear()
    with caplog.at_level("WARNING"):
        run_example(monkeypatch, *eval_only, "--output_dir", str(tmp_path / "recorded_before"))
    assert "differ from the training run" not in caplog.text

    # a scene folder is recorded by its name, as a card shows it; another folder or split rule warns
    scene = make_procedural_scene(seed=0, num_train=3, num_test=1, width=16, height=16, num_points=60, supersample=1)
    scene.save(tmp_path / "scenes" / "garden")
    scene.save(tmp_path / "scenes" / "bicycle")
    run_example(monkeypatch, "--scene", str(tmp_path / "scenes" / "garden"), "--max_steps", "2",
                "--render_trajectory", "none", "--output_dir", str(tmp_path / "garden_run"))
    assert json.loads((tmp_path / "garden_run" / "config.json").read_text())["data_split"] == {
        "scene": "garden", "scene_revision": None, "test_every": None}
    caplog.clear()
    eval_only = (*eval_only[:-1], str(tmp_path / "garden_run"))
    with caplog.at_level("WARNING"):
        run_example(monkeypatch, *eval_only, "--scene", str(tmp_path / "scenes" / "garden"),
                    "--output_dir", str(tmp_path / "garden_eval"))
    assert "differ from the training run" not in caplog.text
    with caplog.at_level("WARNING"):
        run_example(monkeypatch, *eval_only, "--scene", str(tmp_path / "scenes" / "bicycle"),
                    "--output_dir", str(tmp_path / "bicycle_eval"))
    assert "--scene bicycle (the model's: garden) differ" in caplog.text


def test_a_model_saved_before_its_data_split_was_recorded_is_evaluated_without_a_warning(tmp_path, monkeypatch,
                                                                                          caplog):
    import json

    run_example(monkeypatch, "--max_steps", "2", "--render_trajectory", "none", "--output_dir", str(tmp_path / "run"))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    del config["data_split"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with caplog.at_level("WARNING"):
        run_example(monkeypatch, "--do_train", "False", "--render_trajectory", "none", "--procedural_seed", "1",
                    "--model_name_or_path", str(tmp_path / "run"), "--output_dir", str(tmp_path / "eval"))
    assert "differ from the training run" not in caplog.text
    assert (tmp_path / "eval" / "eval_results.json").is_file()


def test_a_split_is_recorded_and_compared_as_its_flags_resolve(tmp_path, caplog):
    from types import SimpleNamespace

    example = runpy.run_path(str(SCRIPT))
    scene_arguments, data_split = example["SceneArguments"], example["data_split"]
    folder = tmp_path / "capture"
    folder.mkdir()
    (folder / "transforms.json").write_text("{}")  # a single transforms.json: every 8th view is held out
    left_out = data_split(scene_arguments(scene=str(folder)), str(folder))
    assert left_out == {"scene": "capture", "scene_revision": None, "test_every": 8}
    assert data_split(scene_arguments(scene=str(folder), test_every=8), str(folder)) == left_out
    on_hub = data_split(scene_arguments(scene="user/garden"), "user/garden")
    assert on_hub == {"scene": "user/garden", "scene_revision": "main", "test_every": None}
    assert data_split(scene_arguments(scene="user/garden", scene_revision="main"), "user/garden") == on_hub

    # a split recorded as the flags were given compares as they resolve
    model = SimpleNamespace(data_split={"scene": "capture", "scene_revision": None, "test_every": None})
    with caplog.at_level("WARNING"):
        example["warn_unless_trained_split"](model, left_out, "run", str(folder))
    assert "differ from the training run" not in caplog.text
    with caplog.at_level("WARNING"):
        example["warn_unless_trained_split"](
            model, data_split(scene_arguments(scene=str(folder), test_every=4), str(folder)), "run", str(folder))
    assert "--test_every 4 (the model's: 8) differ from the training run of --model_name_or_path run" in caplog.text


def test_cache_dir_reaches_load_scene_and_holds_a_parquet_scene_s_tables(tmp_path, monkeypatch):
    import pytest

    import hf_eff.splat.scene as scene_module
    from hf_eff.splat import make_procedural_scene

    make_procedural_scene(seed=0, num_train=3, num_test=1, width=16, height=16, num_points=60,
                          supersample=1).save(tmp_path / "scene")
    given = []
    load_scene = scene_module.load_scene

    def recording_load_scene(*args, **kwargs):
        given.append(kwargs.get("cache_dir"))
        return load_scene(*args, **kwargs)

    monkeypatch.setattr(scene_module, "load_scene", recording_load_scene)
    cache = tmp_path / "cache"
    run_example(monkeypatch, "--scene", str(tmp_path / "scene"), "--cache_dir", str(cache), "--max_steps", "2",
                "--render_trajectory", "none", "--report_to", "none", "--output_dir", str(tmp_path / "run"))
    assert given == [str(cache)]
    assert any(cache.rglob("*.arrow"))  # datasets prepared the parquet splits there, not in HF_DATASETS_CACHE
    with pytest.raises(ValueError, match="--cache_dir applies to a Hub or parquet --scene"):
        run_example(monkeypatch, "--cache_dir", str(cache), "--max_steps", "2", "--output_dir", str(tmp_path / "proc"))


def test_the_run_prints_its_metrics_and_says_where_it_wrote(tmp_path, monkeypatch, capsys, caplog):
    # Trainer's passive log level hid the script's info lines, and after training the progress bar no longer
    # shows the evaluation's log: a run printed its training loss only, no PSNR and no "Wrote ..." line.
    out = tmp_path / "run"
    run_example(monkeypatch, "--max_steps", "2", "--render_trajectory", "none", "--output_dir", str(out))
    printed = capsys.readouterr().out
    assert "***** train metrics *****" in printed and "***** eval metrics *****" in printed
    assert "eval_psnr" in printed and "eval_ssim" in printed
    results = "train_results.json, eval_results.json, all_results.json, trainer_state.json"
    assert f"Wrote the model, splats.ply, preview.png, {results}, README.md to {out}" in caplog.text
    evaluation = tmp_path / "eval"
    run_example(monkeypatch, "--do_train", "False", "--model_name_or_path", str(out), "--render_trajectory", "none",
                "--output_dir", str(evaluation))
    assert f"Wrote preview.png, eval_results.json, all_results.json to {evaluation}" in caplog.text
    assert sorted(path.name for path in evaluation.iterdir() if path.is_file()) == [
        "all_results.json", "eval_results.json", "preview.png"]


def test_the_closing_line_names_the_eval_renders_the_run_wrote(tmp_path, monkeypatch, caplog):
    out = tmp_path / "run"
    run_example(monkeypatch, "--max_steps", "2", "--render_trajectory", "none", "--report_to", "none",
                "--eval_render_images", "1", "--output_dir", str(out))
    assert "Wrote the model, splats.ply, preview.png, eval_renders/, train_results.json" in caplog.text
    assert [path.name for path in (out / "eval_renders").iterdir()] == ["step-000002.png"]
    evaluation = tmp_path / "eval"
    run_example(monkeypatch, "--do_train", "False", "--model_name_or_path", str(out), "--render_trajectory", "none",
                "--eval_render_images", "1", "--output_dir", str(evaluation))
    assert f"Wrote preview.png, eval_renders/, eval_results.json, all_results.json to {evaluation}" in caplog.text
    assert (evaluation / "eval_renders").is_dir()

def test_the_runs_log_is_saved_with_its_final_evaluation(tmp_path, monkeypatch):
    # as transformers' examples do (trainer.save_state): without it the log was only in checkpoint-N, which was saved
    # before the final evaluation, and nowhere under save_strategy "no"
    out = tmp_path / "run"
    run_example(monkeypatch, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
                "--render_trajectory", "none", "--report_to", "none", "--output_dir", str(out))
    state = json.loads((out / "trainer_state.json").read_text())
    results = json.loads((out / "all_results.json").read_text())
    assert state["global_step"] == 2
    assert [entry for entry in state["log_history"] if "eval_psnr" in entry][-1]["eval_psnr"] == results["eval_psnr"]


def test_a_training_run_into_a_finished_run_is_refused_before_the_scene_is_read(tmp_path, monkeypatch):
    import pytest

    out = tmp_path / "run"
    out.mkdir()
    (out / "train_results.json").write_text("{}")
    # the --scene does not exist: the refusal comes before it is read
    flags = ["--scene", str(tmp_path / "absent"), "--max_steps", "3", "--output_dir", str(out)]
    with pytest.raises(FileExistsError, match="already holds a run \\(train_results.json\\).*--overwrite_output_dir"):
        run_example(monkeypatch, *flags)
    with pytest.raises((FileNotFoundError, ValueError), match="absent"):  # past the refusal
        run_example(monkeypatch, *flags, "--overwrite_output_dir")


def test_all_results_hold_this_runs_results_only_not_an_earlier_runs_it_overwrites(tmp_path, monkeypatch):
    # Trainer.save_metrics' combined all_results.json kept every key of the earlier run's file
    flags = ["--render_trajectory", "none", "--report_to", "none"]
    out = tmp_path / "run"
    out.mkdir()
    (out / "all_results.json").write_text(json.dumps({"earlier_key": 1, "eval_psnr": 0.0}))
    run_example(monkeypatch, "--max_steps", "2", *flags, "--overwrite_output_dir", "--output_dir", str(out))
    trained = json.loads((out / "all_results.json").read_text())
    assert "earlier_key" not in trained
    read = {split: json.loads((out / f"{split}_results.json").read_text()) for split in ("train", "eval")}
    assert {**read["train"], **read["eval"]}.items() <= trained.items() and trained["eval_psnr"] > 0
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "all_results.json").write_text(json.dumps({"earlier_key": 1}))  # an earlier evaluation's
    run_example(monkeypatch, "--do_train", "False", *flags, "--model_name_or_path", str(out),
                "--output_dir", str(evaluation))
    evaluated = json.loads((evaluation / "all_results.json").read_text())
    assert json.loads((evaluation / "eval_results.json").read_text()).items() <= evaluated.items()
    assert "earlier_key" not in evaluated


def test_the_results_files_split_the_train_and_eval_metrics_as_the_other_examples(tmp_path, monkeypatch):
    # train_results.json held every setting (strategy, dataset_name, ...), a training run's eval_results.json had no
    # epoch, and an evaluation's eval_results.json was its all_results.json
    flags = ["--render_trajectory", "none", "--report_to", "none"]
    out = tmp_path / "run"
    run_example(monkeypatch, "--max_steps", "2", *flags, "--output_dir", str(out))
    read = {split: json.loads((out / f"{split}_results.json").read_text()) for split in ("train", "eval", "all")}
    assert set(read["train"]) == {"train_loss", "train_runtime", "train_samples_per_second", "train_steps_per_second",
                                  "total_flos", "epoch"}
    assert {key for key in read["eval"] if not key.startswith("eval_")} == {"epoch"} and "eval_psnr" in read["eval"]
    assert read["eval"]["epoch"] == read["train"]["epoch"] > 0
    assert {**read["train"], **read["eval"]}.items() <= read["all"].items()
    assert {"strategy", "dataset_name", "data_split", "num_gaussians"} <= set(read["all"])  # settings: here only
    evaluation = tmp_path / "eval"
    run_example(monkeypatch, "--do_train", "False", *flags, "--model_name_or_path", str(out),
                "--output_dir", str(evaluation))
    evaluated = {split: json.loads((evaluation / f"{split}_results.json").read_text()) for split in ("eval", "all")}
    assert all(key.startswith("eval_") for key in evaluated["eval"]) and "eval_psnr" in evaluated["eval"]
    assert evaluated["eval"].items() <= evaluated["all"].items()
    assert {"model_name_or_path", "dataset_name", "rasterize_mode"} <= set(evaluated["all"]) - set(evaluated["eval"])
    assert not (evaluation / "train_results.json").exists()


def test_a_run_whose_results_cannot_be_carded_does_not_claim_an_earlier_runs_card(tmp_path, monkeypatch, caplog):
    from hf_eff.hub.cards import NonFiniteMetricError

    def refuse(self, *args, **kwargs):
        raise NonFiniteMetricError("eval_psnr is nan")

    out = tmp_path / "run"
    out.mkdir()
    (out / "README.md").write_text("an earlier run's card")
    monkeypatch.setattr(SplatTrainer, "create_model_card", refuse)
    run_example(monkeypatch, "--max_steps", "2", "--render_trajectory", "none", "--report_to", "none",
                "--output_dir", str(out))
    assert "No model card written: eval_psnr is nan" in caplog.text
    assert (f"Wrote the model, splats.ply, preview.png, train_results.json, eval_results.json, all_results.json, "
            f"trainer_state.json to {out}") in caplog.text
    assert (out / "README.md").read_text() == "an earlier run's card"


def test_the_results_name_the_data_and_its_split_under_the_other_examples_keys(tmp_path, monkeypatch):
    # dataset_name, data_split and epoch, as the HaLoRA and GraNT examples record them (it wrote `dataset`, no split
    # and no epoch)
    run_example(monkeypatch, "--max_steps", "2", "--render_trajectory", "none", "--report_to", "none",
                "--output_dir", str(tmp_path / "run"))
    trained = json.loads((tmp_path / "run" / "all_results.json").read_text())
    assert trained["dataset_name"] == "procedural (seed 0)" and "dataset" not in trained
    assert trained["data_split"] == json.loads((tmp_path / "run" / "config.json").read_text())["data_split"]
    assert trained["epoch"] == json.loads((tmp_path / "run" / "trainer_state.json").read_text())["epoch"] > 0
    run_example(monkeypatch, "--do_train", "False", "--render_trajectory", "none", "--procedural_seed", "1",
                "--model_name_or_path", str(tmp_path / "run"), "--output_dir", str(tmp_path / "eval"))
    evaluated = json.loads((tmp_path / "eval" / "all_results.json").read_text())
    assert evaluated["dataset_name"] == evaluated["data_split"]["scene"] == "procedural (seed 1)"
    assert "epoch" not in evaluated  # the evaluated model's training is not this run's
