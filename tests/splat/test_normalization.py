"""Georegistered captures, far from the world origin: normalised in float64 before float32 storage."""

import copy
import json

import numpy as np
import pytest
import torch
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
from hf_eff.splat.cameras import camera_centres, check_world_to_normalized, world_normalization
from hf_eff.splat.scene import FRAME_LINE_PREFIX, data_world_to_normalized

# 4e6 m out: float32 rounds a coordinate there to 0.25 m, the procedural cameras are ~8 apart.
OFFSET = np.array([3e6, -2e6, 1e6])


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=0, num_train=4, num_test=1, width=24, height=24, num_points=80)


def capture(scene, offset):
    """The scene's views and points as a user's arrays (float64), its world moved by ``offset``."""
    splits = {}
    for name, views in scene.views.items():
        rows = views.with_format("numpy")
        camera_to_world = np.linalg.inv(np.asarray(rows["world_to_camera"], dtype=np.float64))
        camera_to_world[:, :3, 3] += offset
        splits[name] = ([np.asarray(image) for image in views["image"]], list(rows["K"]),
                        list(np.linalg.inv(camera_to_world)))
    xyz, rgb = scene.point_arrays()
    return splits, xyz.astype(np.float64) + offset, rgb


def normalized_scene(scene, offset):
    splits, xyz, rgb = capture(scene, offset)
    transform = world_normalization(splits["train"][2])
    views = DatasetDict({name: views_dataset(*arrays, world_to_normalized=transform) for name, arrays in splits.items()})
    return Scene.from_views(views, points_dataset(xyz, rgb, world_to_normalized=transform))


def assert_offset_apart(far, near):
    """x_n = s x + b maps x + OFFSET by ``far`` where ``near`` maps x: b_far + s OFFSET = b_near."""
    np.testing.assert_allclose(far[:3, 3] + far[0, 0] * OFFSET, near[:3, 3], rtol=0, atol=1e-6)


def stored_poses(scene, split="train"):
    return np.asarray(scene.views[split].with_format("numpy")["world_to_camera"], dtype=np.float64)


def test_world_normalization_centres_the_cameras_at_unit_spread(scene):
    poses = capture(scene, OFFSET)[0]["train"][2]
    transform = world_normalization(poses)
    centres = camera_centres(poses) @ transform[:3, :3].T + transform[:3, 3]
    np.testing.assert_allclose(centres.mean(0), 0, atol=1e-9)
    assert np.linalg.norm(centres, axis=1).max() == pytest.approx(1.0)
    assert transform.dtype == np.float64 and np.array_equal(transform[3], [0, 0, 0, 1])


def test_a_far_capture_refused_as_it_is_trains_normalised_like_the_same_capture_at_the_origin(scene, tmp_path):
    splits, _, _ = capture(scene, OFFSET)
    with pytest.raises(ValueError, match="normalize_world_space=True.*world_to_normalized=world_normalization"):
        views_dataset(*splits["train"])
    far, near = normalized_scene(scene, OFFSET), normalized_scene(scene, np.zeros(3))
    # The same stored scene, up to the float64 rounding of the offset (far below float32's)...
    for split in ("train", "test"):
        np.testing.assert_allclose(stored_poses(far, split), stored_poses(near, split), rtol=0, atol=1e-6)
    np.testing.assert_allclose(far.point_arrays()[0], near.point_arrays()[0], rtol=0, atol=1e-6)
    assert far.radius == pytest.approx(1.0) and np.allclose(far.center, 0, atol=1e-6)
    # ... and the recorded transforms differ by the offset.
    scale = near.world_to_normalized[0, 0]
    assert far.world_to_normalized[0, 0] == pytest.approx(scale, rel=1e-9)
    assert_offset_apart(far.world_to_normalized, near.world_to_normalized)
    far.save(tmp_path / "far")
    loaded = load_scene(tmp_path / "far")
    assert loaded == far and np.array_equal(loaded.world_to_normalized, far.world_to_normalized)
    assert json.loads((tmp_path / "far" / "scene.json").read_text())["world_to_normalized"] == \
        far.world_to_normalized.tolist()

    models = {}
    for name, normalized in (("far", loaded), ("near", near)):
        model = GaussianModel.from_points(*normalized.point_arrays(), sh_degree=0,
                                          generator=torch.Generator().manual_seed(0))
        args = SplatTrainingArguments(output_dir=str(tmp_path / name), max_steps=6, strategy="default",
                                      disable_tqdm=True, seed=0, report_to="none")
        trainer = SplatTrainer(model, args, train_dataset=normalized.views["train"])
        trainer.train()
        trainer.save_model()
        models[name] = GaussianModel.from_pretrained(tmp_path / name)
    np.testing.assert_array_equal(models["far"].world_to_normalized, far.world_to_normalized)
    means = {name: model.splats["means"].detach().numpy() for name, model in models.items()}
    np.testing.assert_allclose(means["far"], means["near"], rtol=0, atol=1e-4)
    # Back in the capture's frame the two models lie the offset apart (the .ply's float32 rounds at 4e6 m).
    for name in models:
        models[name].save_ply(tmp_path / f"{name}.ply", original_frame=True)
    original = {name: GaussianModel.from_ply(tmp_path / f"{name}.ply") for name in models}
    np.testing.assert_allclose(original["far"].splats["means"].detach().numpy().astype(np.float64) - OFFSET,
                               original["near"].splats["means"].detach().numpy(), rtol=0, atol=0.25)
    # Six small steps from the scene's points: back where they started, in the capture's frame.
    np.testing.assert_allclose(original["near"].splats["means"].detach().numpy(), scene.point_arrays()[0],
                               rtol=0, atol=0.01 * scene.radius)
    np.testing.assert_allclose(original["near"].splats["scales"].detach().numpy(),
                               models["near"].splats["scales"].detach().numpy() + np.log(1 / scale), atol=1e-5)


def tiny_args(tmp_path, **kwargs):
    return SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, strategy="default", disable_tqdm=True,
                                  report_to="none", **kwargs)


def test_the_frame_travels_with_the_views_and_points_into_the_scene_and_the_model(scene, tmp_path):
    splits, xyz, rgb = capture(scene, OFFSET)
    transform = world_normalization(splits["train"][2])
    views = DatasetDict({name: views_dataset(*arrays, world_to_normalized=transform) for name, arrays in splits.items()})
    points = points_dataset(xyz, rgb, world_to_normalized=transform)
    assert all(np.array_equal(data_world_to_normalized(part), transform) for part in (*views.values(), points))
    # kept by what one does to a split
    assert np.array_equal(data_world_to_normalized(views["train"].select([0, 1]).shuffle(seed=0)), transform)
    far = Scene.from_views(views, points)  # no world_to_normalized given: the data's
    np.testing.assert_array_equal(far.world_to_normalized, transform)
    # a script of one's own: from_points knows nothing of the frame, the trainer gives it the views'
    model = GaussianModel.from_points(*far.point_arrays(), sh_degree=0)
    assert model.world_to_normalized is None
    SplatTrainer(model, tiny_args(tmp_path / "run"), train_dataset=far.views["train"], eval_dataset=far.views["test"])
    np.testing.assert_array_equal(model.world_to_normalized, transform)
    # or from_points is told it
    told = GaussianModel.from_points(*far.point_arrays(), sh_degree=0, world_to_normalized=far.world_to_normalized)
    np.testing.assert_array_equal(told.world_to_normalized, transform)
    # saved as parquet (which keeps no description) and loaded: scene.json's frame is named in the splits again
    far.save(tmp_path / "far")
    loaded = load_scene(tmp_path / "far")
    assert np.array_equal(data_world_to_normalized(loaded.views["train"]), transform)
    reloaded_model = GaussianModel.from_points(*loaded.point_arrays(), sh_degree=0)
    SplatTrainer(reloaded_model, tiny_args(tmp_path / "again"), train_dataset=loaded.views["train"])
    np.testing.assert_array_equal(reloaded_model.world_to_normalized, transform)


def test_a_converted_folder_names_its_frame_in_its_splits(scene, tmp_path):
    write_moved_nerf(scene, tmp_path / "far", OFFSET)
    far = load_scene(tmp_path / "far", normalize_world_space=True)
    for split in far.views.values():
        np.testing.assert_array_equal(data_world_to_normalized(split), far.world_to_normalized)


def test_parts_stored_in_other_frames_or_given_another_are_refused(scene):
    splits, xyz, rgb = capture(scene, OFFSET)
    transform = world_normalization(splits["train"][2])
    other = transform.copy()
    other[:3, 3] += 1.0
    train = views_dataset(*splits["train"], world_to_normalized=transform)
    views = DatasetDict({"train": train})
    with pytest.raises(ValueError, match="views split 'train' is stored normalised by .* but the point set in the "
                                         "capture's own coordinates"):
        Scene.from_views(views, points_dataset(xyz - OFFSET, rgb))
    with pytest.raises(ValueError, match="views split 'test' normalised by"):
        Scene.from_views(DatasetDict({"train": train,
                                      "test": views_dataset(*splits["test"], world_to_normalized=other)}))
    with pytest.raises(ValueError, match=r"world_to_normalized=\[\[.* was given, but the views were stored normalised"):
        Scene.from_views(views, world_to_normalized=other)
    np.testing.assert_array_equal(Scene.from_views(views, world_to_normalized=transform).world_to_normalized,
                                  transform)


def test_a_frame_given_for_views_that_name_none_is_refused_and_marks_nothing(scene):
    """The frame is applied by views_dataset / points_dataset; given only to the scene it would be recorded for data
    in another frame (save_ply(original_frame=True) would map it wrongly). Nothing the caller holds is marked."""
    transform = world_normalization(stored_poses(scene))
    with pytest.raises(ValueError, match="was given for views stored in the capture's own coordinates .* pass it to "
                                         "views_dataset .* and points_dataset"):
        Scene.from_views(scene.views, scene.points, world_to_normalized=transform)
    with pytest.raises(ValueError, match="was given for views stored in the capture's own coordinates"):
        Scene(views=scene.views, points=None, center=scene.center, radius=scene.radius, world_to_normalized=transform)
    assert all(data_world_to_normalized(part) is None for part in [*scene.views.values(), scene.points])
    assert Scene.from_views(scene.views, scene.points).world_to_normalized is None


def test_a_saved_scene_loads_with_its_frame_named_in_each_split(scene, tmp_path):
    """Parquet keeps no dataset description: scene.json's frame names the loaded rows."""
    far = normalized_scene(scene, OFFSET)
    far.save(tmp_path / "far")
    loaded = load_scene(tmp_path / "far")
    assert loaded == far
    for part in [*loaded.views.values(), loaded.points]:
        np.testing.assert_array_equal(data_world_to_normalized(part), far.world_to_normalized)


def test_the_trainer_refuses_a_model_or_an_evaluation_split_of_another_frame(scene, tmp_path):
    far = normalized_scene(scene, OFFSET)
    model = GaussianModel.from_points(*far.point_arrays(), sh_degree=0)
    other = far.world_to_normalized.copy()
    other[:3, 3] += 1.0
    model.world_to_normalized = other
    with pytest.raises(ValueError, match="the model records world_to_normalized .* and train_dataset was stored "
                                         "normalised by"):
        SplatTrainer(model, tiny_args(tmp_path / "model"), train_dataset=far.views["train"])
    # a model trained normalised is refused on views in the capture's own coordinates, not taken as theirs
    with pytest.raises(ValueError, match="the model records world_to_normalized .* and train_dataset was stored in "
                                         "the capture's own coordinates: .*views_dataset's world_to_normalized"):
        SplatTrainer(model, tiny_args(tmp_path / "own"), train_dataset=scene.views["train"])
    model.world_to_normalized = None
    with pytest.raises(ValueError, match="eval_dataset is stored in the capture's own coordinates but train_dataset "
                                         "normalised by"):
        SplatTrainer(model, tiny_args(tmp_path / "eval"), train_dataset=far.views["train"],
                     eval_dataset=scene.views["test"])
    trainer = SplatTrainer(model, tiny_args(tmp_path / "ok"), train_dataset=far.views["train"])
    with pytest.raises(ValueError, match="test_dataset is stored in the capture's own coordinates"):
        trainer.predict(scene.views["test"])


def test_a_scene_without_normalisation_names_no_frame_and_its_model_gets_none(scene, tmp_path):
    assert all(data_world_to_normalized(split) is None for split in scene.views.values())
    assert not scene.views["train"].info.description
    model = GaussianModel.from_points(*scene.point_arrays(), sh_degree=0)
    SplatTrainer(model, tiny_args(tmp_path), train_dataset=scene.views["train"], eval_dataset=scene.views["test"])
    assert model.world_to_normalized is None


def test_save_ply_in_the_original_frame_needs_the_transform(tmp_path):
    model = GaussianModel.random((0, 0, 0), 1.0, 8, sh_degree=0)
    with pytest.raises(ValueError, match="records no world_to_normalized"):
        model.save_ply(tmp_path / "x.ply", original_frame=True)
    assert not (tmp_path / "x.ply").exists()


def test_a_transform_that_rotates_or_shears_is_refused_by_name():
    rotation = np.eye(4)
    rotation[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    for transform in (rotation, np.diag([1.0, 2.0, 1.0, 1.0]), np.diag([-1.0, -1.0, -1.0, 1.0])):
        with pytest.raises(ValueError, match=r"views_dataset: world_to_normalized must be a uniform scale"):
            check_world_to_normalized(transform, "views_dataset")
    with pytest.raises(ValueError, match="scene: world_to_normalized must be a finite 4x4"):
        check_world_to_normalized(np.eye(3), "scene")


def test_a_stored_scene_is_not_normalised_again(scene, tmp_path):
    scene.save(tmp_path / "stored")
    with pytest.raises(ValueError, match="is a stored scene, whose poses are float32 already"):
        load_scene(tmp_path / "stored", normalize_world_space=True)


def write_moved_nerf(scene, folder, offset):
    """``scene`` as a NeRF folder (without its point set: a float32 .ply cannot hold a far one) whose
    world is moved by ``offset``, in the JSON's float64 as a georegistered export writes it."""
    from hf_eff.splat.converters import write_nerf_synthetic

    folder = write_nerf_synthetic(scene, folder)
    for split in ("train", "test"):
        path = folder / f"transforms_{split}.json"
        meta = json.loads(path.read_text())
        meta.pop("ply_file_path", None)
        for frame in meta["frames"]:
            camera_to_world = np.asarray(frame["transform_matrix"], dtype=np.float64)
            camera_to_world[:3, 3] += offset
            frame["transform_matrix"] = camera_to_world.tolist()
        path.write_text(json.dumps(meta))
    return folder


def test_a_far_nerf_folder_loads_normalised(scene, tmp_path):
    for name, offset in (("far", OFFSET), ("near", np.zeros(3))):
        write_moved_nerf(scene, tmp_path / name, offset)
    with pytest.raises(ValueError, match="the cameras lie about .* from the world origin"):
        load_scene(tmp_path / "far")
    far = load_scene(tmp_path / "far", normalize_world_space=True)
    near = load_scene(tmp_path / "near", normalize_world_space=True)
    for split in ("train", "test"):
        np.testing.assert_allclose(stored_poses(far, split), stored_poses(near, split), rtol=0, atol=1e-6)
    assert_offset_apart(far.world_to_normalized, near.world_to_normalized)


def move_colmap_world(sparse, offset):
    """Moves a COLMAP text model's world by ``offset`` in float64 (pycolmap's Reconstruction.transform
    loses centimetres at 4e6 m): each pose [R | t] becomes [R | t - R offset], each point x + offset.
    Poses are rig_from_world in frames.txt (COLMAP 3.12+) and cam_from_world in images.txt (older)."""

    def edit(file, is_pose_line, quaternion_at, translation_at):
        if not (sparse / file).exists():
            return
        lines = (sparse / file).read_text().splitlines()
        for index, line in enumerate(lines):
            fields = line.split()
            if line.startswith("#") or not is_pose_line(fields):
                continue
            if quaternion_at is None:
                moved = np.asarray(fields[translation_at], dtype=np.float64) + offset
            else:
                w, x, y, z = map(float, fields[quaternion_at])
                rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
                moved = np.asarray(fields[translation_at], dtype=np.float64) - rotation @ offset
            fields[translation_at] = [repr(float(value)) for value in moved]
            lines[index] = " ".join(fields)
        (sparse / file).write_text("\n".join(lines) + "\n")

    edit("frames.txt", lambda fields: len(fields) >= 9, slice(2, 6), slice(6, 9))
    edit("images.txt", lambda fields: len(fields) == 10, slice(1, 5), slice(5, 8))
    edit("points3D.txt", lambda fields: len(fields) >= 4, None, slice(1, 4))


def test_a_far_colmap_project_loads_normalised(scene, tmp_path):
    pytest.importorskip("pycolmap")
    from hf_eff.splat.converters import write_colmap

    for name, offset in (("far", OFFSET), ("near", np.zeros(3))):
        move_colmap_world(write_colmap(scene, tmp_path / name, binary=False) / "sparse" / "0", offset)
    with pytest.raises(ValueError, match="the cameras lie about .* from the world origin"):
        load_scene(tmp_path / "far", test_every=4)
    far = load_scene(tmp_path / "far", test_every=4, normalize_world_space=True)
    near = load_scene(tmp_path / "near", test_every=4, normalize_world_space=True)
    for split in ("train", "test"):
        np.testing.assert_allclose(stored_poses(far, split), stored_poses(near, split), rtol=0, atol=1e-6)
    np.testing.assert_allclose(far.point_arrays()[0], near.point_arrays()[0], rtol=0, atol=1e-6)
    assert_offset_apart(far.world_to_normalized, near.world_to_normalized)


def test_a_model_keeps_its_frame_in_config_json_and_refuses_a_rotating_one_before_writing(tmp_path):
    far = np.eye(4)
    far[0, 3] = 5e6
    transform = world_normalization([np.eye(4), far])
    model = GaussianModel.random((0, 0, 0), 1.0, 8, sh_degree=0)
    model.world_to_normalized = transform.tolist()  # as read from a scene.json
    model.save_pretrained(tmp_path / "model")
    np.testing.assert_array_equal(GaussianModel.from_pretrained(tmp_path / "model").world_to_normalized, transform)
    model.world_to_normalized = np.eye(4)[[1, 0, 2, 3]]
    with pytest.raises(ValueError, match="GaussianModel: world_to_normalized must be a uniform scale"):
        model.save_pretrained(tmp_path / "other")
    assert not (tmp_path / "other" / "model.safetensors").exists()


HUB_ROUND_TRIP = """
import json, sys
from huggingface_hub import DatasetCard
from hf_eff.splat.scene import load_scene
folder, repo_id = sys.argv[1], sys.argv[2]
load_scene(folder).push_to_hub(repo_id)
print("FRAME " + json.dumps(load_scene(repo_id).world_to_normalized.tolist()))
print("CARD " + json.dumps(DatasetCard.load(repo_id).text))
"""


def test_a_normalised_scene_keeps_its_transform_through_the_hub(scene, tmp_path, local_hub):
    far = normalized_scene(scene, OFFSET)
    far.save(tmp_path / "scene")
    process = local_hub.run_code(HUB_ROUND_TRIP, str(tmp_path / "scene"), local_hub.repo_id("far-scene"))
    printed = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in process.stdout.splitlines()
               if line.startswith(("FRAME ", "CARD "))}
    assert process.returncode == 0 and len(printed) == 2, process.stderr[-4000:]
    np.testing.assert_array_equal(printed["FRAME"], far.world_to_normalized)
    unit = 1 / far.world_to_normalized[0, 0]
    assert f"| one unit, in the capture's world units (normalised) | {unit:.4g} |" in printed["CARD"], printed["CARD"]


def test_rows_of_another_frame_concatenated_into_a_split_are_refused(scene, tmp_path):
    """concatenate_datasets keeps a normalised part's description for the rows of an unmarked part too."""
    from datasets import concatenate_datasets

    splits, _, _ = capture(scene, OFFSET)
    transform = world_normalization(splits["train"][2])
    train = views_dataset(*splits["train"], world_to_normalized=transform)
    test = views_dataset(*splits["test"], world_to_normalized=transform)
    own = scene.views["test"]  # the capture's own coordinates, near the origin: no frame line
    # parts of one frame, whatever one selects and concatenates of them, keep it
    same = concatenate_datasets([train.select([2, 0]), test, train.select([1])])
    np.testing.assert_array_equal(data_world_to_normalized(same), transform)
    mixed = concatenate_datasets([train.select([0, 1, 2]), own])
    assert mixed.info.description == train.info.description  # what datasets does: the frame seems the whole's
    with pytest.raises(ValueError, match=r"a dataset of 4 rows: its description says its rows are stored "
                                         r"normalised by \[\[.*but 1 of its 4 rows \(row\(s\) \[3\]\) are not among"):
        data_world_to_normalized(mixed)
    with pytest.raises(ValueError, match=r"views split 'train': .*\(row\(s\) \[0\]\) are not among .* "
                                         "concatenate_datasets"):
        Scene.from_views(DatasetDict({"train": concatenate_datasets([own, train]), "test": test}))
    # the trainer's errors name the argument that holds the mixed split, not "a dataset of N rows"
    with pytest.raises(ValueError, match=r"^eval_dataset: .*\(row\(s\) \[0\]\) are not among"):
        SplatTrainer(GaussianModel.random((0, 0, 0), 1.0, 8, sh_degree=0), tiny_args(tmp_path),
                     train_dataset=train, eval_dataset=concatenate_datasets([own, test]))
    with pytest.raises(ValueError, match=r"^train_dataset: .*\(row\(s\) \[3\]\) are not among"):
        SplatTrainer(GaussianModel.random((0, 0, 0), 1.0, 8, sh_degree=0), tiny_args(tmp_path),
                     train_dataset=mixed, eval_dataset=test)
    # a split marked before the frame line listed its poses (save_to_disk keeps it) still names its frame
    earlier = copy.deepcopy(train)
    earlier.info.description = FRAME_LINE_PREFIX + json.dumps(transform.tolist())
    np.testing.assert_array_equal(data_world_to_normalized(earlier), transform)
    other = transform.copy()
    other[:3, 3] += 1.0
    with pytest.raises(ValueError, match=r"views split 'test': its rows were stored in different frames, "
                                         r"normalised by \[\[.* and by \[\["):
        Scene.from_views(DatasetDict({"train": train, "test": concatenate_datasets(
            [test, views_dataset(*splits["test"], world_to_normalized=other)])}))


def test_splits_of_which_one_names_a_frame_are_refused_by_name(scene):
    splits, _, _ = capture(scene, OFFSET)
    transform = world_normalization(splits["train"][2])
    train = views_dataset(*splits["train"], world_to_normalized=transform)
    with pytest.raises(ValueError, match="views split 'train' is stored normalised by .* but views split 'test' in "
                                         "the capture's own coordinates"):
        Scene.from_views(DatasetDict({"train": train, "test": scene.views["test"]}))


@pytest.mark.parametrize("test_frame", ["none", "other"])
def test_a_save_to_disk_folder_whose_splits_name_another_frame_than_scene_json_is_refused(scene, tmp_path,
                                                                                           test_frame):
    """scene.json names the frame of parquet splits, which keep no description; save_to_disk ones keep theirs."""
    far = normalized_scene(scene, OFFSET)
    other = far.world_to_normalized.copy()
    other[:3, 3] += 1.0
    splits, _, _ = capture(scene, OFFSET)
    test = scene.views["test"] if test_frame == "none" else views_dataset(*splits["test"], world_to_normalized=other)
    folder = tmp_path / "scene"
    DatasetDict({"train": far.views["train"], "test": test}).save_to_disk(str(folder / "views"))
    (folder / "scene.json").write_text(json.dumps({"center": list(far.center), "radius": far.radius,
                                                   "world_to_normalized": far.world_to_normalized.tolist()}))
    described = "in the capture's own coordinates" if test_frame == "none" else r"normalised by \[\[.*"
    with pytest.raises(ValueError, match=rf"scene.json says the scene is stored normalised by .* but views split "
                                         rf"'test' is stored {described}"):
        load_scene(folder)
    DatasetDict(far.views).save_to_disk(str(folder / "views"))  # the scene's own splits load
    assert np.array_equal(load_scene(folder).world_to_normalized, far.world_to_normalized)


def test_poses_and_points_map_a_normalised_scene_back_to_its_capture_in_float64(scene):
    splits, xyz, rgb = capture(scene, OFFSET)
    far = normalized_scene(scene, OFFSET)
    poses, (original_xyz, original_rgb) = far.poses_and_points()
    assert list(poses) == list(far.views) and original_xyz.dtype == np.float64
    for name, (_, _, world_to_cameras) in splits.items():
        # float32 could not even place these cameras (0.25 m at 4e6 m): the centres come back to a micrometre
        np.testing.assert_allclose(camera_centres(poses[name]), camera_centres(world_to_cameras), rtol=0, atol=1e-6)
        np.testing.assert_allclose(poses[name][:, :3, :3], np.asarray(world_to_cameras)[:, :3, :3], atol=1e-6)
    np.testing.assert_allclose(original_xyz, xyz, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(original_rgb, rgb)
    # as stored on request, and for a scene in its capture's own coordinates
    for stored, original_frame in ((far, False), (scene, True)):
        poses, (stored_xyz, _) = stored.poses_and_points(original_frame)
        for name in stored.views:
            np.testing.assert_array_equal(poses[name], stored_poses(stored, name))
        assert stored_xyz.dtype == np.float32
        np.testing.assert_array_equal(stored_xyz, stored.point_arrays()[0])


@pytest.mark.parametrize("layout", ["parquet", "save_to_disk"])
def test_a_normalised_scene_loads_digesting_each_pose_twice(scene, tmp_path, monkeypatch, layout):
    """Parquet splits are marked with scene.json's frame, save_to_disk ones that name it already are taken as they
    are: each pose is digested once there (marking, or checking the frame named) and once by Scene."""
    import hf_eff.splat.scene as scene_module

    far = normalized_scene(scene, OFFSET)
    folder = tmp_path / "scene"
    if layout == "parquet":
        far.save(folder)
    else:
        DatasetDict(far.views).save_to_disk(str(folder / "views"))
        far.points.save_to_disk(str(folder / "points"))
        far.save(tmp_path / "parquet")
        (folder / "scene.json").write_text((tmp_path / "parquet" / "scene.json").read_text())
    digested = []
    pose_digests = scene_module._pose_digests
    monkeypatch.setattr(scene_module, "_pose_digests", lambda views: digested.append(len(views)) or
                        pose_digests(views))
    loaded = load_scene(folder)
    assert sum(digested) == 2 * sum(len(split) for split in far.views.values())
    assert loaded == far and np.array_equal(loaded.world_to_normalized, far.world_to_normalized)
    assert all(data_world_to_normalized(part) is not None for part in [*loaded.views.values(), loaded.points])
