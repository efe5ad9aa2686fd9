import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from hf_eff.splat.cameras import camera_centres, camera_spread, look_at, pinhole_intrinsics
from hf_eff.splat.scene import (
    VIEW_FEATURES,
    Scene,
    images_to_float,
    load_scene,
    points_dataset,
    scene_views_cameras,
    scene_views_to_tensors,
    validate_views,
    views_dataset,
)

WIDTH, HEIGHT = 8, 6


def view_columns(count=3, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]
    Ks = [pinhole_intrinsics(WIDTH, HEIGHT, 60.0)] * count
    poses = [
        look_at((3 * np.cos(a), 3 * np.sin(a), 1.0), (0, 0, 0)) for a in np.linspace(0, 3, count)
    ]
    return images, Ks, poses


def small_scene(with_points=True, seed=0):
    train = views_dataset(*view_columns(3, seed=seed))
    test = views_dataset(*view_columns(2, seed=seed + 1))
    rng = np.random.default_rng(seed + 2)
    points = points_dataset(rng.normal(size=(20, 3)), rng.integers(0, 256, (20, 3), dtype=np.uint8))
    return Scene(
        views=DatasetDict({"train": train, "test": test}),
        points=points if with_points else None,
        center=(0.0, 0.5, 0.0),
        radius=3.2,
    )


def assert_same_views(a: DatasetDict, b: DatasetDict):
    assert sorted(a) == sorted(b)
    for split in a:
        for x, y in zip(scene_views_to_tensors(a[split]), scene_views_to_tensors(b[split])):
            assert (x == y).all()


def test_save_writes_the_hub_layout_and_loads_back(tmp_path):
    scene = small_scene()
    scene.save(tmp_path)
    assert (tmp_path / "views" / "train-00000-of-00001.parquet").exists()
    assert (tmp_path / "points" / "train-00000-of-00001.parquet").exists()
    assert "config_name: points" in (tmp_path / "README.md").read_text()
    loaded = load_scene(tmp_path)
    assert_same_views(scene.views, loaded.views)
    for x, y in zip(scene.point_arrays(), loaded.point_arrays()):
        assert (x == y).all()
    assert loaded.center == (0.0, 0.5, 0.0) and loaded.radius == pytest.approx(3.2)


def test_saving_again_without_points_drops_the_old_ones(tmp_path):
    small_scene().save(tmp_path)
    small_scene(with_points=False).save(tmp_path)
    assert load_scene(tmp_path).points is None


def test_saving_another_scene_into_the_folder_loads_the_new_one(tmp_path):
    # datasets caches a folder's README configs by the configs alone: the second load used to
    # return the first scene (in later processes too).
    first, second = small_scene(), small_scene(seed=5)
    first.save(tmp_path)
    assert_same_views(first.views, load_scene(tmp_path).views)
    second.save(tmp_path)
    loaded = load_scene(tmp_path)
    assert_same_views(second.views, loaded.views)
    assert (loaded.point_arrays()[0] == second.point_arrays()[0]).all()


def test_saving_over_a_save_to_disk_folder_leaves_only_the_new_layout(tmp_path):
    old = small_scene()
    old.views.save_to_disk(str(tmp_path / "views"))
    old.points.save_to_disk(str(tmp_path / "points"))
    load_scene(tmp_path)  # may leave datasets' cache files beside the arrow shards
    (tmp_path / "views" / "notes.txt").write_text("mine")
    new = small_scene(seed=5)
    new.save(tmp_path)
    assert sorted(p.name for p in (tmp_path / "views").iterdir()) == [
        "notes.txt", "test-00000-of-00001.parquet", "train-00000-of-00001.parquet",
    ]
    assert [p.name for p in (tmp_path / "points").iterdir()] == ["train-00000-of-00001.parquet"]
    assert_same_views(new.views, load_scene(tmp_path).views)


def test_an_empty_split_is_not_saved_and_the_scene_loads_without_it(tmp_path):
    scene = small_scene()
    scene.save(tmp_path)  # a test split first: saving again must drop its shard
    no_test = Scene(
        views=DatasetDict({"train": scene.views["train"], "test": scene.views["test"].select([])}),
        points=scene.points, center=scene.center, radius=scene.radius,
    )
    no_test.save(tmp_path)
    assert not (tmp_path / "views" / "test-00000-of-00001.parquet").exists()
    assert "split: test" not in (tmp_path / "README.md").read_text()
    loaded = load_scene(tmp_path)
    assert list(loaded.views) == ["train"] and len(loaded.views["train"]) == 3


def save_with_an_empty_test_split(scene: Scene, folder: Path) -> Path:
    """The layout earlier versions (before d51bafa) saved and pushed for ``scene``'s train views
    without test views: an empty test shard, listed in the README's configs."""
    from hf_eff.splat.scene import _embedded

    Scene(views=DatasetDict({"train": scene.views["train"]}), points=scene.points, center=scene.center,
          radius=scene.radius).save(folder)
    _embedded(scene.views["train"].select([])).to_parquet(str(folder / "views" / "test-00000-of-00001.parquet"))
    readme = folder / "README.md"
    train = "  - split: train\n    path: views/train-*\n"
    readme.write_text(readme.read_text().replace(train, train + "  - split: test\n    path: views/test-*\n", 1))
    return folder


def test_a_scene_saved_by_earlier_versions_with_an_empty_test_split_loads_without_it(tmp_path):
    scene = small_scene()
    folder = save_with_an_empty_test_split(scene, tmp_path / "old")
    assert "split: test" in (folder / "README.md").read_text()
    loaded = load_scene(folder)  # failed: Instruction "test" corresponds to no data
    assert list(loaded.views) == ["train"]
    assert_same_views(DatasetDict({"train": scene.views["train"]}), loaded.views)


def test_loads_save_to_disk_folders_with_and_without_metadata(tmp_path):
    scene = small_scene()
    scene.views.save_to_disk(str(tmp_path / "views"))
    scene.points.save_to_disk(str(tmp_path / "points"))
    loaded = load_scene(tmp_path)
    assert_same_views(scene.views, loaded.views)
    assert len(loaded.points) == 20
    # No scene.json: centre = mean training camera position, radius = largest distance.
    positions = np.stack([np.linalg.inv(pose)[:3, 3] for pose in view_columns(3)[2]])
    np.testing.assert_allclose(loaded.center, positions.mean(0), atol=1e-5)
    assert loaded.radius == pytest.approx(
        np.linalg.norm(positions - positions.mean(0), axis=1).max(), rel=1e-5
    )

    (tmp_path / "scene.json").write_text(json.dumps({"center": [1, 2, 3], "radius": 5}))
    assert load_scene(tmp_path).center == (1.0, 2.0, 3.0)


def tampered(column, value, index=1):
    images, Ks, poses = view_columns()
    columns = {
        "image": images,
        "K": Ks,
        "world_to_camera": poses,
        "width": [WIDTH] * 3,
        "height": [HEIGHT] * 3,
    }
    columns[column] = [value if i == index else entry for i, entry in enumerate(columns[column])]
    from PIL import Image

    columns["image"] = [Image.fromarray(image) for image in columns["image"]]
    return DatasetDict({"train": Dataset.from_dict(columns, features=VIEW_FEATURES)})


def singular_pose():
    pose = np.eye(4)
    pose[2, :3] = 0
    return pose


@pytest.mark.parametrize(
    "views, message",
    [
        (
            tampered("world_to_camera", np.full((4, 4), np.nan)),
            r"scene view 1 \(train\): world_to_camera contains NaN",
        ),
        (
            tampered("world_to_camera", singular_pose()),
            r"scene view 1 \(train\): world_to_camera is not invertible",
        ),
        (
            tampered("world_to_camera", np.diag([2.0, 2.0, 2.0, 1.0])),
            r"scene view 1 \(train\): world_to_camera rotation is not orthonormal \(R R\^T differs from I by 3\)",
        ),
        (
            tampered("world_to_camera", np.diag([1.0, 1.0, -1.0, 1.0]), index=0),
            r"scene view 0 \(train\): world_to_camera rotation is a reflection \(det R = -1\)",
        ),
        (
            tampered("width", WIDTH + 1),
            r"scene view 1 \(train\): image is 8x6 but width x height says 9x6",
        ),
        (
            tampered("K", np.diag([-10.0, 10.0, 1.0])),
            r"scene view 1 \(train\): K has a non-positive focal length",
        ),
        (
            tampered("K", np.diag([10.0, 0.0, 1.0]), index=2),
            r"scene view 2 \(train\): K has a non-positive",
        ),
        (
            tampered("K", np.array([[50.0, 0, 0], [0, 50, 0], [4, 3, 1]])),
            r"scene view 1 \(train\): K bottom row must be \[0, 0, 1\], got \[4. 3. 1.\]",
        ),
        (
            tampered("K", np.array([[50.0, 0, 4], [0, 50, 3], [0, 0, 0]])),
            r"scene view 1 \(train\): K bottom row must be \[0, 0, 1\]",
        ),
        (
            tampered("K", np.array([[50.0, 5, 4], [0, 50, 3], [0, 0, 1]])),
            r"scene view 1 \(train\): K\[0, 1\] must be 0 \(skew\), got 5.0",
        ),
        (
            tampered("K", np.array([[50.0, 0, 4], [2, 50, 3], [0, 0, 1]]), index=0),
            r"scene view 0 \(train\): K\[1, 0\] must be 0, got 2.0",
        ),
        (
            # K of the full-size images kept for a 4x downscale
            tampered("K", np.array([[200.0, 0, 16], [0, 200, 12], [0, 0, 1]])),
            r"scene view 1 \(train\): K's principal point \(cx, cy\) = \(16, 12\) lies outside the 8x6 image",
        ),
        (
            DatasetDict({"train": views_dataset(*view_columns()).remove_columns("K")}),
            r"\(train\): missing column.*'K'",
        ),
        (DatasetDict({"test": views_dataset(*view_columns())}), "need a 'train' split"),
    ],
)
def test_validation_names_the_view_and_the_problem(views, message):
    with pytest.raises(ValueError, match=message):
        validate_views(views)


def test_validation_accepts_poses_rounded_like_real_files():
    # Blender's transforms JSON and float32 storage round the rotation to ~6 digits.
    pose = look_at((2.0, -1.0, 0.5), (0, 0, 0))
    pose[:3, :3] = np.round(pose[:3, :3], 6)
    validate_views(tampered("world_to_camera", pose))


def test_loading_a_bad_scene_raises_the_named_error(tmp_path):
    tampered("world_to_camera", np.full((4, 4), np.nan)).save_to_disk(str(tmp_path / "views"))
    with pytest.raises(ValueError, match=r"scene view 1 \(train\): world_to_camera contains NaN"):
        load_scene(tmp_path)


def test_scene_views_to_tensors_stacks_and_checks_sizes():
    images, Ks, poses = view_columns()
    split = views_dataset(images, Ks, poses)
    stacked, viewmats, intrinsics = scene_views_to_tensors(split)
    # The stored pixels as they are: uint8, a quarter of float32's memory.
    assert stacked.shape == (3, HEIGHT, WIDTH, 3) and stacked.dtype == torch.uint8
    assert (stacked.numpy() == np.stack(images)).all()
    np.testing.assert_allclose(viewmats[2].numpy(), poses[2], atol=1e-6)
    np.testing.assert_allclose(intrinsics[0].numpy(), Ks[0], atol=1e-5)
    mixed = views_dataset([images[0], np.zeros((4, 4, 3), np.uint8)], Ks[:2], poses[:2])
    with pytest.raises(ValueError, match="scene view 1 is 4x4 but view 0 is 8x6"):
        scene_views_to_tensors(mixed)
    # a caller that knows the split's name has it in the error, as validate_views_split's
    with pytest.raises(ValueError, match=r"scene view 1 \(test\) is 4x4 but view 0 is 8x6"):
        scene_views_to_tensors(mixed, split="test")


def test_scene_views_cameras_reads_no_image(monkeypatch):
    # An evaluation-only trainer's training views: their cameras without their pixels.
    from datasets import Image

    images, Ks, poses = view_columns()
    split = views_dataset(images, Ks, poses)
    decoded = []
    decode = Image.decode_example
    monkeypatch.setattr(Image, "decode_example", lambda self, *args, **kwargs: decoded.append(1)
                        or decode(self, *args, **kwargs))
    viewmats, intrinsics, size = scene_views_cameras(split)
    assert not decoded
    assert size == (WIDTH, HEIGHT)
    _, stacked_viewmats, stacked_intrinsics = scene_views_to_tensors(split)
    assert torch.equal(viewmats, stacked_viewmats) and torch.equal(intrinsics, stacked_intrinsics)
    assert len(decoded) == 3
    mixed = views_dataset([images[0], np.zeros((4, 4, 3), np.uint8)], Ks[:2], poses[:2])
    with pytest.raises(ValueError, match="scene view 1 is 4x4 but view 0 is 8x6"):
        scene_views_cameras(mixed)


def test_the_scene_packaging_functions_are_public():
    import hf_eff

    # What a user packaging their own images and cameras needs, without knowing the module layout.
    assert hf_eff.views_dataset is views_dataset and hf_eff.points_dataset is points_dataset
    assert hf_eff.Scene is Scene and hf_eff.load_scene is load_scene


def test_views_dataset_takes_float_and_tensor_images_as_renders_are():
    images, Ks, poses = view_columns(1)
    pixels = images[0]
    as_float = pixels.astype(np.float32) / 255
    for image in (as_float, torch.from_numpy(pixels), torch.from_numpy(as_float), pixels[..., :1]):
        stored = np.asarray(views_dataset([image], Ks, poses)[0]["image"])
        expected = np.repeat(pixels[..., :1], 3, -1) if image.shape[-1] == 1 else pixels
        assert (stored == expected).all()


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((HEIGHT, WIDTH, 3), 1.5, np.float32), r"float pixels must be in \[0, 1\], got values from 1.5"),
        (np.full((HEIGHT, WIDTH, 3), 1.002, np.float32), r"float pixels must be in \[0, 1\], got values from 1.002 to"),
        (np.where(np.arange(WIDTH) == 2, np.nan, 0.5)[None, :, None].repeat(HEIGHT, 0).repeat(3, 2),
         r"pixels contain NaN or infinite values \(first at \(0, 2, 0\)\)"),
        (np.full((HEIGHT, WIDTH, 3), 300, np.uint16), "got uint16 with values from 300 to 300"),
        (np.zeros((3, HEIGHT, WIDTH), np.uint8), r"channels last\), got shape \(3, 6, 8\)"),
        (7, "expected a PIL image, an array or tensor"),
    ],
)
def test_views_dataset_names_images_it_cannot_store(image, message):
    images, Ks, poses = view_columns(2)
    with pytest.raises((ValueError, TypeError), match=f"views_dataset image 1: .*{message}"):
        views_dataset([images[0], image], Ks, poses)


def test_views_dataset_takes_3x4_poses_and_names_wrong_camera_shapes():
    images, Ks, poses = view_columns(2)
    stored = views_dataset(images, Ks, [poses[0][:3], poses[1]]).with_format("numpy")["world_to_camera"]
    np.testing.assert_allclose(stored, np.stack(poses), atol=1e-6)
    with pytest.raises(ValueError, match=r"view 1: K must be 3x3, got shape \(4,\) \(from fx, fy, cx, cy"):
        views_dataset(images, [Ks[0], [50.0, 50.0, 4.0, 3.0]], poses)
    with pytest.raises(ValueError, match=r"view 0: world_to_camera must be 4x4 or 3x4, got shape \(3, 3\)"):
        views_dataset(images, Ks, [poses[0][:3, :3], poses[1]])
    with pytest.raises(ValueError, match="2 images, 2 intrinsics and 1 poses; one of each per view"):
        views_dataset(images, Ks, poses[:1])
    # a single K of another shape: its rows used to be counted as Ks ("2 images, 4 intrinsics and 2 poses")
    for single, shape in ((np.eye(4), "(4, 4)"), (torch.eye(4), "(4, 4)"), (np.array([50.0, 50.0, 4.0, 3.0]), "(4,)")):
        with pytest.raises(ValueError, match=re.escape(f"views_dataset: Ks has shape {shape}; expected one K [3, 3] "
                                                       "that every view shares, or one per view [N, 3, 3]")):
            views_dataset(images, single, poses)


def test_cameras_at_one_point_are_refused_naming_the_inverted_poses():
    images, Ks, poses = view_columns(3)
    # Camera-to-world matrices of cameras aimed at the origin, given as world_to_camera: every
    # "camera centre" lands on one point (and a random initialisation in a cube of that radius diverged).
    inverted = views_dataset(images, Ks, [np.linalg.inv(pose) for pose in poses])
    with pytest.raises(ValueError, match=r"the 3 training cameras all sit at one point .*invert the matrices"):
        Scene.from_views(DatasetDict({"train": inverted}))
    single = Scene.from_views(DatasetDict({"train": views_dataset(images[:1], Ks[:1], poses[:1])}))
    assert single.radius == 1.0  # one camera is no mistake


def test_an_inverted_test_split_is_refused_naming_the_split():
    images, Ks, poses = view_columns(3)
    train = views_dataset(images, Ks, poses)
    inverted = views_dataset(images[:2], Ks[:2], [np.linalg.inv(pose) for pose in poses[:2]])
    with pytest.raises(ValueError, match=r"the 2 cameras of split 'test' all sit at one point .*invert the matrices"):
        Scene.from_views(DatasetDict({"train": train, "test": inverted}))
    # given a centre and radius, the splits are still checked
    with pytest.raises(ValueError, match=r"split 'test' all sit at one point"):
        Scene.from_views(DatasetDict({"train": train, "test": inverted}), center=(0.0, 0.0, 0.0), radius=1.0)
    upright = views_dataset(images[:2], Ks[:2], poses[:2])
    assert len(Scene.from_views(DatasetDict({"train": train, "test": upright})).views["test"]) == 2


def test_a_split_that_float32_rounds_onto_one_point_is_refused_where_it_is_stored():
    # 2 m apart, 5e8 m out: float32 steps there are 32 m, so the centres move by far more than their span
    # (which the refusal used to let through, for Scene.from_views to name): views_dataset refuses it where it is
    # stored, naming the fix.
    images, Ks, _ = view_columns(3)
    site = np.array([4e8, 3e8, 1e3])
    poses = [look_at(tuple(site + offset), tuple(site + (0.0, 0.0, -50.0)))
             for offset in [(2.0, 0.0, 0.0), (0.0, 2.0, 0.0), (-2.0, 0.0, 0.5)]]
    exact = camera_centres(poses)
    moved = np.abs(camera_centres([pose.astype(np.float32) for pose in poses]) - exact).max()
    assert moved > 5 * camera_spread(exact)
    with pytest.raises(ValueError, match=r"views_dataset: the cameras lie about 5e\+08 from the world origin but "
                                         r"within 2.* normalize_world_space=True"):
        views_dataset(images, Ks, poses)


def test_a_views_split_built_without_views_dataset_may_not_hold_transparent_pixels(tmp_path):
    import PIL.Image

    images, Ks, poses = view_columns(2)
    rgba = np.concatenate([images[1], np.full((HEIGHT, WIDTH, 1), 255, np.uint8)], axis=-1)
    columns = {"image": [PIL.Image.fromarray(images[0]), str(tmp_path / "view.png")], "K": [np.float32(K) for K in Ks],
               "world_to_camera": [np.float32(pose) for pose in poses], "width": [WIDTH] * 2, "height": [HEIGHT] * 2}
    # An alpha at 255 everywhere (many writers' default) is opaque: its RGB trains, as before.
    PIL.Image.fromarray(rgba).save(tmp_path / "view.png")
    opaque = Scene.from_views(DatasetDict({"train": Dataset.from_dict(columns, features=VIEW_FEATURES)}))
    stacked, _, _ = scene_views_to_tensors(opaque.views["train"])
    assert (stacked.numpy() == np.stack(images)).all()
    # Transparent pixels: training dropped the alpha and fitted the hidden colours.
    rgba[0, 0, 3] = 254
    PIL.Image.fromarray(rgba).save(tmp_path / "view.png")
    split = Dataset.from_dict(columns, features=VIEW_FEATURES)
    with pytest.raises(ValueError, match=r"scene view 1: image has transparent pixels .*views_dataset\(.*background="):
        scene_views_to_tensors(split)


@pytest.mark.parametrize("form", ["array", "pil", "png", "png_colour_key"])
def test_views_dataset_composites_transparent_pixels_onto_the_background(tmp_path, form):
    import PIL.Image

    images, Ks, poses = view_columns(1)
    rgba = np.concatenate([images[0], np.zeros((HEIGHT, WIDTH, 1), np.uint8)], axis=-1)
    rgba[0, 0, 3] = 255  # one opaque pixel keeps its colour
    image = {"array": rgba, "pil": PIL.Image.fromarray(rgba)}.get(form, tmp_path / "view.png")
    PIL.Image.fromarray(rgba).save(tmp_path / "view.png")
    if form == "png_colour_key":  # an RGB PNG whose transparent pixels are one colour (tRNS)
        keyed = images[0].copy()
        keyed.reshape(-1, 3)[1:] = (1, 2, 3)
        PIL.Image.fromarray(keyed).save(tmp_path / "view.png", transparency=(1, 2, 3))
    for background, fill in (((0, 0, 0), 0), ((1, 1, 1), 255)):
        stored = np.asarray(views_dataset([image], Ks, poses, background=background)[0]["image"])
        assert (stored[0, 0] == images[0][0, 0]).all()
        assert (stored.reshape(-1, 3)[1:] == fill).all()


def test_images_to_float_is_the_division_by_255_and_refuses_float_input():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16, 1).expand(2, 16, 16, 3)
    converted = images_to_float(pixels)
    assert converted.dtype == torch.float32 and converted.min() == 0.0 and converted.max() == 1.0
    expected = torch.tensor([value / 255.0 for value in range(256)], dtype=torch.float64).float()
    assert torch.equal(converted[0, ..., 0].flatten(), expected)
    with pytest.raises(TypeError, match="images_to_float expects uint8 images"):
        images_to_float(converted)


def nan_xyz():
    xyz = np.zeros((4, 3))
    xyz[2, 1] = np.nan
    return xyz


@pytest.mark.parametrize(
    "xyz, rgb, message",
    [
        (nan_xyz(), np.zeros((4, 3), np.uint8), "scene point 2: xyz contains NaN"),
        # Float colours in [0, 1] used to be stored as uint8 zeros (black); 300 and -5 wrapped.
        (np.zeros((4, 3)), np.full((4, 3), 0.5),
         r"rgb must be integers in 0..255, got dtype float64 \(colours in \[0, 1\]: multiply by 255"),
        (np.zeros((4, 3)), np.full((4, 3), 300),
         r"rgb must lie in 0..255, got values from 300 to 300 \(16-bit colours: divide by 257"),
        (np.zeros((4, 3)), np.full((4, 3), -5), r"rgb must lie in 0..255, got values from -5 to -5 \(clip them"),
        (np.zeros((4, 3)), np.ones((4, 3), bool), "rgb must be integers in 0..255, got dtype bool"),
        (np.zeros((4, 2)), np.zeros((4, 3), np.uint8), r"xyz and rgb must both be \[N, 3\], got \(4, 2\) and \(4, 3\)"),
        (np.zeros((0, 3)), np.zeros((0, 3), np.uint8), "the point set is empty; use points=None"),
    ],
)
def test_point_sets_are_checked_alike_by_points_dataset_scenes_and_loading(tmp_path, xyz, rgb, message):
    with pytest.raises(ValueError, match=message):
        points_dataset(xyz, rgb)
    # A user's own Dataset, with the column types its values give.
    points = Dataset.from_dict({"xyz": xyz, "rgb": rgb})
    views = small_scene().views
    with pytest.raises(ValueError, match=message):
        Scene(views=views, points=points, center=(0, 0, 0), radius=1.0)
    if len(points) == 0:
        return  # datasets' load_from_disk cannot read back a Dataset without rows
    views.save_to_disk(str(tmp_path / "views"))
    points.save_to_disk(str(tmp_path / "points"))
    with pytest.raises(ValueError, match=message):
        load_scene(tmp_path)


def test_integer_colours_of_any_dtype_are_accepted_and_read_as_uint8(tmp_path):
    rng = np.random.default_rng(0)
    xyz, rgb = rng.normal(size=(6, 3)), rng.integers(0, 256, (6, 3))
    rgb[0] = (0, 255, 7)
    views = small_scene().views
    # Python ints give an int64 column, as other tools' scenes may store their colours.
    from_ints = Dataset.from_dict({"xyz": xyz.tolist(), "rgb": rgb.tolist()})
    scenes = [
        Scene(views=views, points=from_ints, center=(0, 0, 0), radius=1.0),
        Scene(views=views, points=points_dataset(xyz, rgb.astype(np.int16)), center=(0, 0, 0), radius=1.0),
    ]
    scenes.append(load_scene(scenes[0].save(tmp_path)))
    for scene in scenes:
        read = scene.point_arrays()[1]
        assert read.dtype == np.uint8 and (read == rgb).all()


def test_point_arrays_are_writable_and_initialise_without_warnings(tmp_path):
    import warnings

    from hf_eff import GaussianModel

    for scene in (small_scene(), load_scene(small_scene().save(tmp_path))):
        xyz, rgb = scene.point_arrays()
        assert (xyz.dtype, rgb.dtype) == (np.float32, np.uint8)
        rgb[0] = 1  # was a read-only view of the arrow buffer
        xyz[0] = 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warned "The given NumPy array is not writable"
            GaussianModel.from_points(xyz, rgb)


def test_an_empty_train_split_is_refused_by_name():
    views = small_scene().views
    empty = DatasetDict({"train": views["train"].select([]), "test": views["test"]})
    with pytest.raises(ValueError, match="the 'train' split is empty"):
        Scene(views=empty, points=None, center=(0, 0, 0), radius=1.0)
    with pytest.raises(ValueError, match="the 'train' split is empty"):  # was a LinAlgError
        Scene.from_views(empty)


def test_rejects_bad_metadata_and_unknown_folders(tmp_path):
    views = small_scene().views
    with pytest.raises(ValueError, match="radius"):
        Scene(views=views, points=None, center=(0, 0, 0), radius=0.0)
    with pytest.raises(ValueError, match="center"):
        Scene(views=views, points=None, center=(0, 0), radius=1.0)
    with pytest.raises(ValueError, match="holds no scene"):
        load_scene(tmp_path)
    with pytest.raises(ValueError, match="revision"):
        load_scene(tmp_path, revision="main")
    with pytest.raises(FileNotFoundError, match=r"missing is neither a folder nor a Hub repo id"):
        load_scene(tmp_path / "missing")  # a mistyped folder



@pytest.mark.parametrize("name", ["images", "masks"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_images_or_masks_folder_is_refused_by_name(tmp_path, name, value):
    # "" named the project folder itself: one holding the images as well was read as the images folder, silently.
    pytest.importorskip("pycolmap")
    import shutil

    from hf_eff.splat.converters import write_colmap
    from hf_eff.splat.procedural import make_procedural_scene

    write_colmap(make_procedural_scene(seed=3, num_train=3, num_test=1, width=12, height=10, num_points=20), tmp_path)
    shutil.copytree(tmp_path / "images", tmp_path, dirs_exist_ok=True)
    with pytest.raises(ValueError, match=re.escape(f"load_scene: {name}={value!r} is empty; name a folder inside "
                                                   "the COLMAP project, or leave it None")):
        load_scene(tmp_path, **{name: value})

HUB_SCRIPT = """
import json, os, secrets, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.hub.hub_server import HubServer

token, other_token = f"hf_{secrets.token_hex(16)}", f"hf_{secrets.token_hex(16)}"
server = HubServer({token: "me", other_token: "other"}).start()
home = tempfile.mkdtemp(prefix="hf-home-")
for key in [k for k in os.environ if k.startswith(("HF_", "HUGGINGFACE_"))]:
    del os.environ[key]
os.environ.update(HF_ENDPOINT=server.url, HF_HUB_DISABLE_XET="1", HF_HOME=home, HF_TOKEN=token,
                  HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.scene import load_scene

def tiny(seed, num_test):
    return make_procedural_scene(seed=seed, num_train=3, num_test=num_test, width=16, height=16,
                                 num_objects=1, num_points=10, supersample=1)

def splits(scene):
    return {name: len(split) for name, split in scene.views.items()}

result = {}
tiny(1, 0).push_to_hub("me/no-test")
result["no_test"] = splits(load_scene("me/no-test"))
from huggingface_hub import HfApi
from tests.splat.test_scene import save_with_an_empty_test_split
old = save_with_an_empty_test_split(tiny(1, 0), Path(tempfile.mkdtemp()))
HfApi().create_repo("me/old-no-test", repo_type="dataset")
HfApi().upload_folder(repo_id="me/old-no-test", repo_type="dataset", folder_path=str(old))
result["old_no_test"] = splits(load_scene("me/old-no-test"))
tiny(2, 1).push_to_hub("me/fresh", revision="v2")  # the branch does not exist yet
result["fresh_v2"] = splits(load_scene("me/fresh", revision="v2"))
from huggingface_hub import hf_hub_download
card = open(hf_hub_download("me/fresh", "README.md", repo_type="dataset", revision="v2")).read()
result["fresh_v2_card"] = 'load_scene("me/fresh", revision="v2")' in card
tiny(1, 1).push_to_hub("me/existing")
tiny(2, 2).push_to_hub("me/existing", revision="v2")
result["existing_main"] = splits(load_scene("me/existing"))
result["existing_v2"] = splits(load_scene("me/existing", revision="v2"))
# datasets would answer these from its cache (the scenes above, and the owner's private one)
def refusal(*args, **kwargs):
    try:
        load_scene(*args, **kwargs)
    except FileNotFoundError as error:
        return str(error)
tiny(3, 1).push_to_hub("me/private", private=True)
load_scene("me/private")  # cached by its owner
result["refused"] = [refusal("me/fresh"), refusal("me/existing", revision="v3"),
                     refusal("me/private", token=other_token)]
try:  # the Hub's answer to an expired token, not the owner's cached copy
    load_scene("me/private", token=f"hf_{secrets.token_hex(16)}")
except Exception as error:
    result["expired_token"] = [type(error).__name__, error.response.status_code]
server.stop()
print("RESULT " + json.dumps(result))
"""


def test_hub_scenes_load_from_their_branch_and_what_the_cache_would_answer_is_refused(tmp_path):
    # A fresh process: huggingface_hub and datasets read the endpoint when first imported.
    repo_root = Path(__file__).resolve().parents[2]
    process = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(HUB_SCRIPT), str(repo_root)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, process.stderr[-4000:]
    assert json.loads(lines[-1][len("RESULT "):]) == {
        "no_test": {"train": 3},  # pushed with an empty test split: used to fail to load
        "old_no_test": {"train": 3},  # an empty test split pushed by an earlier version: failed to load
        "fresh_v2": {"train": 3, "test": 1},  # push_to_hub(revision=) used to need the branch
        "fresh_v2_card": True,  # its card loads from that branch
        "existing_main": {"train": 3, "test": 1},
        "existing_v2": {"train": 3, "test": 2},
        "refused": [  # each used to load a cached copy of the repo
            "load_scene: dataset repo me/fresh holds no scene at its main branch (no views/): push one with "
            "Scene.push_to_hub, or give the revision it was pushed to",
            "load_scene: dataset repo me/existing has no revision 'v3'",
            f"load_scene: no folder {tmp_path / 'me' / 'private'} and no dataset repo me/private that this token "
            "can read (a private or gated repo needs its owner's or a granted token: pass token= or log in)",
        ],
        "expired_token": ["HfHubHTTPError", 401],  # it loaded the cached copy
    }


def test_a_mistyped_relative_folder_is_named_as_neither_folder_nor_readable_repo(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    def not_found(self, repo_id, **kwargs):  # the Hub's answer, without a server
        raise RepositoryNotFoundError("Repository Not Found", response=SimpleNamespace(headers={}, request=None))

    monkeypatch.setattr(HfApi, "list_repo_files", not_found)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "gardens").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=f"no folder {tmp_path / 'data' / 'garden'} and no dataset repo "
                                                "data/garden that this token can read"):
        load_scene("data/garden")


MISSING_SCENE_SCRIPT = """
import sys
from hf_eff.splat.scene import load_scene
try:
    load_scene(sys.argv[1])
except FileNotFoundError as error:
    print("REFUSED " + str(error))
"""


@pytest.mark.parametrize("offline", [True, False])
def test_a_mistyped_folder_is_named_with_what_the_hub_answered(tmp_path, local_hub, offline):
    repo_id = local_hub.repo_id("cap_colmpa")  # no such folder here, and no such repo on the local Hub
    env = local_hub.env(HF_HUB_OFFLINE="1") if offline else local_hub.env()
    process = subprocess.run([sys.executable, "-c", MISSING_SCENE_SCRIPT, repo_id], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    refusals = [line.removeprefix("REFUSED ") for line in process.stdout.splitlines() if line.startswith("REFUSED ")]
    assert process.returncode == 0 and len(refusals) == 1, process.stderr[-4000:]
    if offline:  # was datasets' ConnectionError: Couldn't reach '...' on the Hub (OfflineModeIsEnabled)
        assert refusals[0].startswith(
            f"load_scene: there is no such folder {repo_id} ({tmp_path / repo_id}), and the Hub could not be reached "
            f"to look for a repo {repo_id}, which is not in the local cache"
        )
    else:
        assert refusals[0].startswith(
            f"load_scene: no folder {tmp_path / repo_id} and no dataset repo {repo_id} that this token can read"
        )


CACHE_DIR_SCRIPT = """
import json, sys
from pathlib import Path
from hf_eff.splat.scene import load_scene
folder, repo_id, cache_dir = sys.argv[1], sys.argv[2], sys.argv[3]
load_scene(folder).push_to_hub(repo_id)
loaded = load_scene(repo_id, cache_dir=cache_dir)
print("LOADED " + json.dumps({split: len(views) for split, views in loaded.views.items()}))
"""


def arrow_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.arrow")) if folder.is_dir() else []


def test_load_scene_keeps_its_arrow_tables_in_the_cache_dir_given(tmp_path, local_hub):
    scene = small_scene()
    scene.save(tmp_path / "scene")
    # a parquet folder, in this process
    loaded = load_scene(tmp_path / "scene", cache_dir=tmp_path / "local-cache")
    assert loaded == scene
    assert {path.relative_to(tmp_path / "local-cache").parts[0] for path in arrow_files(tmp_path / "local-cache")} \
        == {"parquet"}
    # a Hub repo, in a process talking to the local Hub
    repo_id = local_hub.repo_id("cached-scene")
    process = local_hub.run_code(CACHE_DIR_SCRIPT, str(tmp_path / "scene"), repo_id, str(tmp_path / "hub-cache"))
    printed = [line for line in process.stdout.splitlines() if line.startswith("LOADED ")]
    assert process.returncode == 0 and printed, process.stderr[-4000:]
    assert json.loads(printed[0].removeprefix("LOADED ")) == {"train": 3, "test": 2}
    # views (train, test) and points, in the repo's folder of the cache given, none in the default one
    repo_name = repo_id.split("/")[1]
    assert len([path for path in arrow_files(tmp_path / "hub-cache") if repo_name in str(path)]) == 3
    assert not [path for path in arrow_files(local_hub.home / "datasets") if repo_name in str(path)]
