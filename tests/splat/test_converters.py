import json
import re
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from datasets import concatenate_datasets
from PIL import Image

from hf_eff.splat.converters import (
    scene_from_colmap,
    scene_from_nerf_synthetic,
    write_colmap,
    write_nerf_synthetic,
)
from hf_eff.splat.converters.colmap import find_colmap_model
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.scene import Scene, load_scene, resolved_test_every, scene_views_to_tensors

pycolmap = pytest.importorskip("pycolmap")


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(
        seed=3, num_train=4, num_test=2, width=20, height=16, num_points=50, supersample=1
    )


def all_views(scene):
    return concatenate_datasets([scene.views["train"], scene.views["test"]])


def assert_views_match(a, b, atol=1e-5):
    images_a, viewmats_a, Ks_a = scene_views_to_tensors(a)
    images_b, viewmats_b, Ks_b = scene_views_to_tensors(b)
    assert (images_a == images_b).all()
    np.testing.assert_allclose(viewmats_a.numpy(), viewmats_b.numpy(), atol=atol)
    np.testing.assert_allclose(Ks_a.numpy(), Ks_b.numpy(), atol=atol)


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_round_trip(tmp_path, scene, binary):
    write_colmap(scene, tmp_path, binary=binary)
    suffix = ".bin" if binary else ".txt"
    assert (tmp_path / "sparse" / "0" / f"images{suffix}").exists()
    loaded = scene_from_colmap(tmp_path, test_every=0)
    assert len(loaded.views["test"]) == 0
    assert_views_match(all_views(scene), loaded.views["train"])
    xyz, rgb = scene.point_arrays()
    loaded_xyz, loaded_rgb = loaded.point_arrays()
    order = np.lexsort(xyz.T), np.lexsort(loaded_xyz.T)  # COLMAP does not keep point order
    assert (xyz[order[0]] == loaded_xyz[order[1]]).all() and (
        rgb[order[0]] == loaded_rgb[order[1]]
    ).all()


def test_colmap_split_downscaled_images_and_auto_detection(tmp_path, scene):
    write_colmap(scene, tmp_path)
    loaded = scene_from_colmap(tmp_path, test_every=3)  # 3DGS's llffhold: views 0 and 3 are test
    views = all_views(scene)
    assert_views_match(views.select([0, 3]), loaded.views["test"])
    assert_views_match(views.select([1, 2, 4, 5]), loaded.views["train"])

    (tmp_path / "images_2").mkdir()
    for path in (tmp_path / "images").iterdir():
        Image.open(path).resize((10, 8)).save(tmp_path / "images_2" / path.name)
    half = scene_from_colmap(tmp_path, images_dir=tmp_path / "images_2", test_every=0)
    _, _, Ks = scene_views_to_tensors(half.views["train"])
    _, _, full_Ks = scene_views_to_tensors(views)
    np.testing.assert_allclose(Ks[:, :2].numpy(), full_Ks[:, :2].numpy() / 2, rtol=1e-6)
    # The same through load_scene (and the example's --images), as 3DGS's --images images_2.
    assert_views_match(load_scene(tmp_path, test_every=0, images="images_2").views["train"], half.views["train"])
    with pytest.raises(FileNotFoundError, match=re.escape(f"COLMAP images folder {tmp_path / 'images_8'} not found")):
        load_scene(tmp_path, images="images_8")
    scene.save(tmp_path / "stored")
    with pytest.raises(ValueError, match="picks the images folder of a COLMAP project; .*stored is not one"):
        load_scene(tmp_path / "stored", images="images_2")
    # A NeRF folder is read as one even with a COLMAP model beside it, so images= is refused there too.
    write_nerf_synthetic(scene, tmp_path / "nerf")
    write_colmap(scene, tmp_path / "nerf")
    with pytest.raises(ValueError, match="picks the images folder of a COLMAP project; .*nerf is not one"):
        load_scene(tmp_path / "nerf", images="images")

    assert len(load_scene(tmp_path).views["train"]) == 5  # default test_every=8: view 0 is test


@pytest.mark.parametrize("argument", ["images_dir", "sparse_dir", "masks_dir"])
@pytest.mark.parametrize("value", ["", "  "])
def test_colmap_names_an_empty_folder_argument(tmp_path, scene, monkeypatch, argument, value):
    project, current = tmp_path / "project", tmp_path / "current"
    write_colmap(scene, project)
    # Path("") is the current folder: one holding the images and the model here, which "" read without an error.
    shutil.copytree(project / "images", current)
    shutil.copytree(project / "sparse" / "0", current, dirs_exist_ok=True)
    monkeypatch.chdir(current)
    with pytest.raises(ValueError, match=re.escape(
            f"scene_from_colmap: {argument}={value!r} is empty; name a folder, or leave it None")):
        scene_from_colmap(project, **{argument: value})


def test_colmap_rejects_distorted_cameras_and_missing_images(tmp_path, scene):
    write_colmap(scene, tmp_path)
    sparse = tmp_path / "sparse" / "0"
    reconstruction = pycolmap.Reconstruction(str(sparse))
    camera = reconstruction.cameras[1]
    distorted = pycolmap.Camera(
        model="OPENCV",
        width=camera.width,
        height=camera.height,
        params=[*camera.params, 0.1, 0.0, 0.0, 0.0],
        camera_id=1,
    )
    reconstruction.cameras[1] = distorted
    reconstruction.write_binary(str(sparse))
    with pytest.raises(ValueError, match="OPENCV.*lens distortion"):
        scene_from_colmap(tmp_path)
    write_colmap(scene, tmp_path)
    (tmp_path / "images" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match="00002.png"):
        scene_from_colmap(tmp_path)
    # A missing folder is named as such, not as its first image.
    with pytest.raises(FileNotFoundError, match=re.escape(f"COLMAP images folder {tmp_path / 'images_8'} not found")):
        scene_from_colmap(tmp_path, images_dir=tmp_path / "images_8")


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("removed", [("cameras",), ("points3D",), ("images", "points3D")])
def test_colmap_names_the_missing_model_files(tmp_path, scene, binary, removed):
    write_colmap(scene, tmp_path, binary=binary)
    ext = "bin" if binary else "txt"
    sparse = tmp_path / "sparse" / "0"
    for name in removed:
        (sparse / f"{name}.{ext}").unlink()
    missing = ", ".join(f"{name}.{ext}" for name in removed)
    # load_scene reads a sparse/0 without cameras as a COLMAP project too, not as a folder holding no scene
    with pytest.raises(FileNotFoundError, match=re.escape(f"COLMAP model {sparse} lacks {missing}:")):
        load_scene(tmp_path)


def test_colmap_names_a_sparse_dir_without_a_model(tmp_path, scene):
    write_colmap(scene, tmp_path)
    empty = tmp_path / "sparse" / "1"
    empty.mkdir()
    # Both sets are named: it used to name only the .bin files as missing.
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"COLMAP model folder {empty} holds no model: it needs cameras.bin, images.bin, points3D.bin "
            "or cameras.txt, images.txt, points3D.txt")):
        scene_from_colmap(tmp_path, sparse_dir=empty)
    missing = tmp_path / "sparse" / "2"
    with pytest.raises(FileNotFoundError, match=re.escape(f"COLMAP model folder {missing} not found")):
        scene_from_colmap(tmp_path, sparse_dir=missing)
    image = tmp_path / "images" / "00001.png"
    with pytest.raises(FileNotFoundError, match=re.escape(f"COLMAP model folder {image} is not a folder")):
        scene_from_colmap(tmp_path, sparse_dir=image)


def test_colmap_reads_a_text_model_beside_a_stray_bin_file(tmp_path, scene):
    write_colmap(scene, tmp_path, binary=False)
    sparse = tmp_path / "sparse" / "0"
    # Left over from another model (none of its cameras), neither read nor checked against the text model's.
    (sparse / "cameras.bin").write_bytes(bytes(8))
    assert_views_match(load_scene(tmp_path, test_every=0).views["train"], all_views(scene))
    # Incomplete both ways: the set with more files is named.
    (sparse / "points3D.txt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"COLMAP model {sparse} lacks points3D.txt:")):
        load_scene(tmp_path)


def test_colmap_names_a_truncated_cameras_bin(tmp_path, scene):
    write_colmap(scene, tmp_path)
    cameras = tmp_path / "sparse" / "0" / "cameras.bin"
    cameras.write_bytes(cameras.read_bytes()[:32])  # the count and one camera's header; pycolmap reads its params as 0
    with pytest.raises(ValueError, match=re.escape(f"COLMAP {cameras} is truncated or corrupt: 32 bytes")):
        load_scene(tmp_path)


def rewrite_model(sparse, binary, edit):
    """Rewrites the model in ``sparse`` (as .bin or .txt files) after ``edit(reconstruction)``."""
    reconstruction = pycolmap.Reconstruction(str(sparse))
    edit(reconstruction)
    for path in sparse.iterdir():
        path.unlink()
    (reconstruction.write_binary if binary else reconstruction.write_text)(str(sparse))


def replace_camera(sparse, binary=True, **fields):
    """Rewrites camera 1 of the model in ``sparse`` with ``fields`` (model, width, height, params) changed."""
    def edit(reconstruction):
        camera = reconstruction.cameras[1]
        kept = {"model": camera.model.name, "width": camera.width, "height": camera.height,
                "params": list(camera.params)}
        reconstruction.cameras[1] = pycolmap.Camera(**{**kept, **fields}, camera_id=1)

    rewrite_model(sparse, binary, edit)


@pytest.mark.parametrize("name", ["", " "])
def test_colmap_names_a_binary_image_of_an_empty_name(tmp_path, scene, name):
    write_colmap(scene, tmp_path)
    sparse = tmp_path / "sparse" / "0"

    def rename(reconstruction):
        reconstruction.images[3].name = name

    rewrite_model(sparse, True, rename)
    # "" raised IsADirectoryError opening the images folder as image 3
    with pytest.raises(ValueError, match=re.escape(f"COLMAP model {sparse}: image 3 has an empty name ({name!r})")):
        scene_from_colmap(tmp_path)


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_names_the_image_and_file_of_a_name_that_is_not_utf8(tmp_path, scene, binary):
    write_colmap(scene, tmp_path, binary=False)
    sparse = tmp_path / "sparse" / "0"
    images_txt = sparse / "images.txt"
    images_txt.write_bytes(images_txt.read_bytes().replace(b"00002.png", b"caf\xe9.png"))
    if binary:  # pycolmap writes the name's bytes as it read them
        rewrite_model(sparse, True, lambda reconstruction: None)
    # pycolmap reads the model, and image.name raised a bare UnicodeDecodeError naming no image
    with pytest.raises(ValueError, match=re.escape(
            f"COLMAP model {sparse}: image 2 in {sparse / ('images.bin' if binary else 'images.txt')} is named "
            "b'caf\\xe9.png', which is not UTF-8 (invalid continuation byte at byte 3); COLMAP image names must be "
            "UTF-8: rename the image file and its entry")):
        scene_from_colmap(tmp_path)


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_names_an_image_listed_twice(tmp_path, scene, binary):
    write_colmap(scene, tmp_path)
    sparse = tmp_path / "sparse" / "0"

    def rename(reconstruction):
        reconstruction.images[3].name = "00001.png"

    rewrite_model(sparse, binary, rename)
    # Read as two views of one file (two poses for one picture), one of them in the test split.
    with pytest.raises(ValueError, match=re.escape(
            f"COLMAP model {sparse}: images 1 and 3 both name '00001.png'; a model lists each image once")):
        scene_from_colmap(tmp_path)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("size", [{"width": 0}, {"height": 0}])
def test_colmap_names_a_camera_of_zero_size(tmp_path, scene, binary, size):
    write_colmap(scene, tmp_path)
    replace_camera(tmp_path / "sparse" / "0", binary, **size)
    expected = {"width": 20, "height": 16, **size}
    # It raised ZeroDivisionError, scaling K to the image.
    with pytest.raises(ValueError, match=re.escape(
            f"COLMAP camera 1 (PINHOLE) of image '00001.png' is {expected['width']}x{expected['height']}: "
            "its width and height must be positive")):
        scene_from_colmap(tmp_path)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("model, params, focal", [("PINHOLE", [0.0, 21.0, 10.0, 8.0], "fx=0.0, fy=21.0"),
                                                  ("SIMPLE_PINHOLE", [-21.0, 10.0, 8.0], "fx=-21.0, fy=-21.0")])
def test_colmap_names_a_camera_whose_focal_length_is_not_positive(tmp_path, scene, binary, model, params, focal):
    write_colmap(scene, tmp_path)
    replace_camera(tmp_path / "sparse" / "0", binary, model=model, params=params)
    # views_dataset refused it as "scene view 0 (train)", naming neither camera nor image
    with pytest.raises(ValueError, match=re.escape(
            f"COLMAP camera 1 ({model}) of image '00001.png' has focal length {focal}: both must be positive")):
        scene_from_colmap(tmp_path)


def test_colmap_names_a_binary_camera_whose_params_are_not_finite(tmp_path, scene):
    write_colmap(scene, tmp_path)
    # pycolmap refuses these in a text model, but reads them from a binary one
    replace_camera(tmp_path / "sparse" / "0", model="OPENCV", params=[21.0, 21.0, 10.0, 8.0, float("nan"), 0, 0, 0])
    with pytest.raises(ValueError, match=re.escape(
            "COLMAP camera 1 (OPENCV) of image '00001.png' has params that are not finite: "
            "[21.0, 21.0, 10.0, 8.0, nan")):
        scene_from_colmap(tmp_path)


@pytest.mark.parametrize("model, named", [("FOO", "'FOO'"), ("", "'20'")])  # without a model, WIDTH reads as one
def test_colmap_names_the_line_of_an_unknown_camera_model_in_a_text_model(tmp_path, scene, model, named):
    write_colmap(scene, tmp_path, binary=False)
    sparse = tmp_path / "sparse" / "0"
    cameras = sparse / "cameras.txt"
    line = f"1 {model} 20 16 21 21 10 8"
    written = cameras.read_text()
    camera_line = next(text for text in written.splitlines() if not text.startswith("#"))  # line 4, after 3 comments
    cameras.write_text(written.replace(camera_line, line))
    # pycolmap says only "Camera model does not exist"
    with pytest.raises(ValueError, match=re.escape(
            f"COLMAP model {sparse} (txt files) could not be read: cameras.txt line 4 ({line!r}): {named} is not a "
            "COLMAP camera model (a line is CAMERA_ID MODEL WIDTH HEIGHT PARAMS[])")):
        scene_from_colmap(tmp_path)


def test_colmap_names_a_binary_image_whose_pose_is_not_finite(tmp_path, scene):
    write_colmap(scene, tmp_path)

    def unplace(reconstruction):  # a text model's NaN is refused by pycolmap, a binary one's read
        frame = reconstruction.frames[reconstruction.images[2].frame_id]
        frame.rig_from_world = pycolmap.Rigid3d(frame.rig_from_world.rotation, np.array([np.nan, 0.0, 0.0]))

    rewrite_model(tmp_path / "sparse" / "0", True, unplace)
    # views_dataset refused it as "scene view 1 (train)"
    with pytest.raises(ValueError, match=re.escape(
            "COLMAP image '00002.png' (id 2): its pose (cam_from_world) holds NaN or infinite values")):
        scene_from_colmap(tmp_path, test_every=0)


@pytest.mark.parametrize(
    "model, extra",
    [("OPENCV_FISHEYE", 4), ("SIMPLE_RADIAL_FISHEYE", 1), ("THIN_PRISM_FISHEYE", 8), ("FOV", 1)],
)
def test_colmap_refuses_fisheye_models_even_without_distortion(tmp_path, scene, model, extra):
    write_colmap(scene, tmp_path)
    sparse = tmp_path / "sparse" / "0"
    reconstruction = pycolmap.Reconstruction(str(sparse))
    camera = reconstruction.cameras[1]
    fx, fy, cx, cy = camera.params
    focal = [fx] if model.startswith("SIMPLE") else [fx, fy]
    reconstruction.cameras[1] = pycolmap.Camera(
        model=model,
        width=camera.width,
        height=camera.height,
        params=[*focal, cx, cy, *[0.0] * extra],
        camera_id=1,
    )
    reconstruction.write_binary(str(sparse))
    with pytest.raises(ValueError, match=rf"COLMAP camera 1 \({model}\).*not a pinhole camera model"):
        scene_from_colmap(tmp_path)


def test_nerf_synthetic_round_trip_and_opengl_convention(tmp_path, scene):
    write_nerf_synthetic(scene, tmp_path)
    meta = json.loads((tmp_path / "transforms_train.json").read_text())
    camera_to_world = np.asarray(meta["frames"][0]["transform_matrix"])
    to_center = np.asarray(scene.center) - camera_to_world[:3, 3]
    assert camera_to_world[:3, 2] @ to_center < 0, "OpenGL cameras look down -z"
    assert camera_to_world[:3, 1] @ np.array([0, 0, 1.0]) > 0, "and their y axis points up"
    assert meta["camera_angle_x"] == pytest.approx(np.radians(50.0))
    loaded = load_scene(tmp_path)
    # The points travel as nerfstudio's sparse_pc.ply, named by ply_file_path.
    assert meta["ply_file_path"] == "sparse_pc.ply"
    for stored, read in zip(scene.point_arrays(), loaded.point_arrays()):
        assert stored.dtype == read.dtype and (stored == read).all()
    for split in ("train", "test"):
        assert_views_match(scene.views[split], loaded.views[split])


def test_nerf_synthetic_writer_and_reader_agree_on_an_empty_test_split(tmp_path, scene):
    views = datasets.DatasetDict({"train": scene.views["train"], "test": scene.views["test"].select([])})
    no_test = Scene(views=views, points=None, center=scene.center, radius=scene.radius)
    write_nerf_synthetic(no_test, tmp_path)
    # The reader used to refuse the "frames": [] that the writer writes for an empty split.
    assert json.loads((tmp_path / "transforms_test.json").read_text())["frames"] == []
    loaded = load_scene(tmp_path)
    assert len(loaded.views["test"]) == 0
    assert_views_match(scene.views["train"], loaded.views["train"])


def test_nerf_synthetic_composites_alpha_and_names_missing_fields(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    (tmp_path / "train").mkdir()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "train" / "r_0.png")
    frame = {"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}
    (tmp_path / "transforms_train.json").write_text(
        json.dumps({"camera_angle_x": 0.8, "frames": [frame]})
    )
    loaded = scene_from_nerf_synthetic(tmp_path, background=(1.0, 1.0, 1.0))
    image = np.asarray(loaded.views["train"][0]["image"])
    assert image[0, 0].tolist() == [200, 0, 0] and image[3, 0].tolist() == [255, 255, 255]
    K = np.asarray(loaded.views["train"][0]["K"])
    assert K[0, 0] == pytest.approx(2 / np.tan(0.4), rel=1e-6)

    (tmp_path / "transforms_train.json").write_text(json.dumps({"frames": [frame]}))
    with pytest.raises(ValueError, match="frame 0: needs 'camera_angle_x'"):
        scene_from_nerf_synthetic(tmp_path)


def test_nerf_synthetic_names_the_frame_of_a_singular_transform_matrix(tmp_path):
    (tmp_path / "train").mkdir()
    for index in range(2):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "train" / f"r_{index}.png")
    singular = np.diag([0.0, 0.0, 0.0, 1.0]).tolist()  # a zeroed rotation block
    frames = [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()},
              {"file_path": "./train/r_1", "transform_matrix": singular}]
    (tmp_path / "transforms_train.json").write_text(
        json.dumps({"camera_angle_x": 0.8, "frames": frames})
    )
    with pytest.raises(
        ValueError,
        match=r"transforms_train.json frame 1 \(\./train/r_1\): transform_matrix is singular",
    ):
        scene_from_nerf_synthetic(tmp_path)


def test_nerf_synthetic_names_the_file_of_invalid_json(tmp_path):
    (tmp_path / "transforms.json").write_text('{"camera_angle_x": 0.8,\n "frames": [} ')
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'transforms.json'}: invalid JSON: Expecting value: line 2 column 13")):
        load_scene(tmp_path)


@pytest.mark.parametrize(
    "contents, message",
    [
        ([{"file_path": "r_0"}], "transforms.json: not a JSON object (one with 'frames'), but a list"),
        ({"frames": {"file_path": "r_0"}}, "transforms.json: 'frames' must be a list of frames, got a dict"),
        # a string frame used to be read as one missing file_path ("file_path" in "r_0" is a substring test)
        ({"frames": ["r_0"]},
         "transforms.json frame 0: not a JSON object with file_path and transform_matrix, but 'r_0'"),
    ],
)
def test_nerf_synthetic_names_a_transforms_file_of_another_shape(tmp_path, contents, message):
    (tmp_path / "transforms.json").write_text(json.dumps(contents))
    with pytest.raises(ValueError, match=re.escape(message)):
        load_scene(tmp_path)


def write_transforms(folder, meta, size=(64, 48), count=2, mode="RGB"):
    (folder / "images").mkdir(exist_ok=True)
    frames = []
    for i in range(count):
        camera_to_world = np.eye(4)
        camera_to_world[:3, 3] = [0.1 * i, 0, 4]  # frame i is told apart by its position
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": camera_to_world.tolist()})
        Image.new(mode, size).save(folder / "images" / f"f{i}.png")
    meta = {"frames": frames, **meta}
    (folder / "transforms.json").write_text(json.dumps(meta))
    return meta


NERFSTUDIO_CAMERA = {"fl_x": 66.0, "fl_y": 58.0, "cx": 30.0, "cy": 26.0, "w": 64, "h": 48}


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"camera_model": "OPENCV", "k1": -0.2, "k2": 0.05}, r"transforms.json: k1=-0.2 is lens distortion"),
        ({"camera_model": "OPENCV", "p2": 0.01}, r"transforms.json: p2=0.01 is lens distortion"),
        (
            {"camera_model": "OPENCV_FISHEYE", "k1": 0, "k2": 0, "k3": 0, "k4": 0},
            r"transforms.json: camera_model='OPENCV_FISHEYE' is not a pinhole camera",
        ),
        ({"camera_model": "EQUIRECTANGULAR"}, "'EQUIRECTANGULAR' is not a pinhole"),
        ({"is_fisheye": True}, r"transforms.json: is_fisheye=True is not a pinhole camera"),
    ],
)
def test_transforms_json_refuses_lens_distortion_and_non_pinhole_models(tmp_path, extra, message):
    write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, **extra})
    with pytest.raises(ValueError, match=message + ".*undistort the images first"):
        load_scene(tmp_path)


@pytest.mark.parametrize(
    "transform_matrix, message",
    [
        (np.eye(4)[:3].tolist(), "must be a 4x4 matrix of numbers, got 3x4"),
        ([[1.0, 0.0], [0.0]], "must be a 4x4 matrix of numbers, got [[1.0, 0.0], [0.0]]"),  # numpy's ValueError
        ([["1"] * 4, ["a"] * 4] * 2, "must be a 4x4 matrix of numbers, got [['1', '1', '1', '1'], ['a'"),
        (None, "must be a 4x4 matrix of numbers, got None"),
        ("", "must be a 4x4 matrix of numbers, got ''"),
        ([[float("nan")] * 4] * 4, "holds NaN or infinite values"),
    ],
)
def test_nerf_synthetic_names_the_frame_of_a_transform_matrix_that_is_not_4x4(tmp_path, transform_matrix, message):
    meta = write_transforms(tmp_path, NERFSTUDIO_CAMERA)
    meta["frames"][1]["transform_matrix"] = transform_matrix
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    expected = f"transforms.json frame 1 (images/f1.png): transform_matrix {message}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_scene(tmp_path)


@pytest.mark.parametrize(
    "file_keys, frame_keys, message",
    [
        ({"w": ""}, {}, "transforms.json: w='' is not a finite number"),
        ({"fl_x": "", "camera_angle_x": 0.8}, {}, "transforms.json: fl_x='' is not a finite number"),
        ({"fl_x": None, "fl_y": None, "camera_angle_x": [0.8]}, {},
         "transforms.json: camera_angle_x=[0.8] is not a finite number"),
        ({"cx": float("nan")}, {}, "transforms.json: cx=nan is not a finite number"),
        ({}, {"cy": "abc"}, "transforms.json frame 1: cy='abc' is not a finite number"),
        ({}, {"k1": ""}, "transforms.json frame 1: k1='' is not a finite number"),
    ],
)
def test_transforms_json_names_intrinsics_that_are_not_numbers(tmp_path, file_keys, frame_keys, message):
    meta = write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, **file_keys})
    meta["frames"][1].update(frame_keys)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    # float() used to raise its own "could not convert string to float: ''", naming neither file nor key
    with pytest.raises(ValueError, match=re.escape(message)):
        load_scene(tmp_path)


@pytest.mark.parametrize(
    "file_keys, frame_keys, message",
    [
        ({"fl_x": 0}, {}, "transforms.json: fl_x=0 must be positive (a focal length in pixels)"),
        ({}, {"fl_y": -58.0}, "transforms.json frame 1: fl_y=-58.0 must be positive"),
        # a fl_y left out is fl_x's: named as fl_x, not as a fl_y the file does not hold
        ({"fl_x": -66.0, "fl_y": None}, {}, "transforms.json: fl_x=-66.0 must be positive"),
        ({"fl_x": None, "camera_angle_x": 0}, {}, "transforms.json: camera_angle_x=0 must be between 0 and pi"),
        ({"fl_x": None}, {"camera_angle_x": 3.5},
         "transforms.json frame 1: camera_angle_x=3.5 must be between 0 and pi"),
    ],
)
def test_transforms_json_names_a_focal_length_that_is_not_positive(tmp_path, file_keys, frame_keys, message):
    meta = write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, "camera_angle_x": 0.8, **file_keys})
    meta["frames"][1].update(frame_keys)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    # camera_angle_x=0 raised ZeroDivisionError; the rest were refused by views_dataset, by view number
    with pytest.raises(ValueError, match=re.escape(message)):
        load_scene(tmp_path)


def test_transforms_json_names_an_empty_camera_model(tmp_path):
    write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, "camera_model": ""})
    # It used to be refused as a camera that is not a pinhole, to undistort.
    with pytest.raises(ValueError, match=re.escape(
            "transforms.json: camera_model is empty (''); write camera_model PINHOLE or leave the key out")):
        load_scene(tmp_path)
    meta = write_transforms(tmp_path, NERFSTUDIO_CAMERA)
    meta["frames"][1]["camera_model"] = " "
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=re.escape("transforms.json frame 1: camera_model is empty (' ')")):
        load_scene(tmp_path)


def test_transforms_json_names_the_frame_of_per_frame_distortion(tmp_path):
    meta = write_transforms(tmp_path, NERFSTUDIO_CAMERA)
    meta["frames"][1]["k1"] = 0.1
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"transforms.json frame 1: k1=0.1 is lens distortion"):
        scene_from_nerf_synthetic(tmp_path)


def test_transforms_json_accepts_zero_distortion_and_rescales_K_to_the_images(tmp_path):
    zero = {"camera_model": "OPENCV", "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, **zero})
    K = np.asarray(scene_from_nerf_synthetic(tmp_path).views["train"][0]["K"])
    np.testing.assert_allclose(K, [[66, 0, 30], [0, 58, 26], [0, 0, 1]])

    # Images at half the declared 128x96 (a downscaled copy): K follows the files.
    write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, "fl_x": 132.0, "fl_y": 116.0, "cx": 60.0,
                                "cy": 52.0, "w": 128, "h": 96})
    K = np.asarray(scene_from_nerf_synthetic(tmp_path).views["train"][0]["K"])
    np.testing.assert_allclose(K, [[66, 0, 30], [0, 58, 26], [0, 0, 1]])

    write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, "w": 64, "h": 64})
    with pytest.raises(ValueError, match="image is 64x48 but w x h says 64x64, not a uniform"):
        scene_from_nerf_synthetic(tmp_path)


def frame_ids(views):
    # write_transforms puts frame i at x = 0.1 i (camera-to-world; world-to-camera negates it).
    poses = np.asarray(views.with_format("numpy")["world_to_camera"])
    return [round(-10 * x) for x in poses[:, 0, 3]]


def test_single_transforms_json_holds_out_every_nth_frame(tmp_path):
    write_transforms(tmp_path, NERFSTUDIO_CAMERA, count=10)
    scene = load_scene(tmp_path)  # default 8, as COLMAP's llffhold
    assert frame_ids(scene.views["test"]) == [0, 8]
    assert frame_ids(scene.views["train"]) == [1, 2, 3, 4, 5, 6, 7, 9]
    assert frame_ids(load_scene(tmp_path, test_every=3).views["test"]) == [0, 3, 6, 9]
    everything = load_scene(tmp_path, test_every=0)
    assert len(everything.views["train"]) == 10 and len(everything.views["test"]) == 0
    with pytest.raises(ValueError, match="test_every=1 leaves no training view among the 10"):
        load_scene(tmp_path, test_every=1)
    with pytest.raises(ValueError, match="test_every must be an integer >= 0"):
        scene_from_nerf_synthetic(tmp_path, test_every=-2)


def test_converters_name_the_image_of_another_size_in_a_split(tmp_path, scene):
    write_transforms(tmp_path, {"camera_angle_x": 0.8}, size=(16, 16), count=5)
    Image.new("RGB", (20, 12)).save(tmp_path / "images" / "f0.png")
    assert len(load_scene(tmp_path).views["test"]) == 1  # frame 0 alone is test (test_every=8): a split of one size
    Image.new("RGB", (20, 12)).save(tmp_path / "images" / "f4.png")
    with pytest.raises(ValueError, match=re.escape(
            "transforms.json frame 4 (images/f4.png) is 20x12 but transforms.json frame 1 (images/f1.png) is 16x16, "
            "in one split")):
        load_scene(tmp_path)
    write_colmap(scene, tmp_path / "colmap")
    Image.new("RGB", (10, 8)).save(tmp_path / "colmap" / "images" / "00003.png")  # a uniform downscale of 20x16
    with pytest.raises(ValueError, match=re.escape(
            "COLMAP image '00003.png' is 10x8 but COLMAP image '00002.png' is 20x16, in one split")):
        load_scene(tmp_path / "colmap")


@pytest.mark.parametrize("file_path", ["", "  "])
def test_transforms_json_names_the_frame_of_an_empty_file_path(tmp_path, file_path):
    meta = write_transforms(tmp_path, NERFSTUDIO_CAMERA)
    meta["frames"][1]["file_path"] = file_path
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    # It used to read as the image "<folder>.png" beside the folder.
    with pytest.raises(ValueError, match=re.escape(f"transforms.json frame 1: file_path is empty ({file_path!r})")):
        load_scene(tmp_path)
    meta["frames"][1]["file_path"] = None
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=re.escape(
            "transforms.json frame 1: file_path must be a path (a string), got None")):
        load_scene(tmp_path)


@pytest.mark.parametrize("mask_path, message", [("", "mask_path is empty ('')"),
                                                 (None, "mask_path must be a path (a string), got None")])
def test_transforms_json_names_the_frame_of_an_empty_mask_path(tmp_path, mask_path, message):
    meta = write_transforms(tmp_path, NERFSTUDIO_CAMERA)
    for index, frame in enumerate(meta["frames"]):
        Image.new("L", (64, 48), 255).save(tmp_path / "images" / f"m{index}.png")
        frame["mask_path"] = f"images/m{index}.png"
    meta["frames"][1]["mask_path"] = mask_path
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    # "" was named as the mask file <folder>, not found; None raised Path's TypeError
    with pytest.raises(ValueError, match=re.escape(f"transforms.json frame 1: {message}")):
        load_scene(tmp_path)


@pytest.mark.parametrize("file_path", ["images/f0.png", "./images/../images/f0"])
def test_transforms_json_names_an_image_listed_twice(tmp_path, file_path):
    meta = write_transforms(tmp_path, NERFSTUDIO_CAMERA, count=3)
    meta["frames"][2]["file_path"] = file_path
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    # It was read as two views: trained on twice, or (frame 0 here is held out) measured on a training image.
    name = file_path if file_path.endswith(".png") else f"{file_path}.png"
    with pytest.raises(ValueError, match=re.escape(
            f"transforms.json frame 2: image {Path(name)} is frame 0's too; list each image once")):
        load_scene(tmp_path, test_every=2)


@pytest.mark.parametrize("file_path", ["./train/r_2", "test/../train/r_2.png"])
def test_nerf_synthetic_names_a_test_image_that_is_a_training_one(tmp_path, scene, file_path):
    write_nerf_synthetic(scene, tmp_path)
    test_file = tmp_path / "transforms_test.json"
    meta = json.loads(test_file.read_text())
    meta["frames"][1]["file_path"] = file_path
    test_file.write_text(json.dumps(meta))
    # The test split's PSNR measured the fit to a training image.
    with pytest.raises(ValueError, match=re.escape(
            f"transforms_test.json frame 1: image {Path(file_path).with_suffix('.png')} is transforms_train.json "
            "frame 2's too; a test image must be one the training split does not hold")):
        load_scene(tmp_path)


@pytest.mark.parametrize("absolute", [False, True])
def test_transforms_json_reads_images_outside_its_folder(tmp_path, absolute):
    write_transforms(tmp_path, {"camera_angle_x": 0.8}, size=(16, 16), count=5)
    folder = tmp_path / "scene"
    folder.mkdir()
    meta = json.loads((tmp_path / "transforms.json").read_text())
    for frame in meta["frames"]:  # "images/f0.png" -> "../images/f0.png" or its absolute path
        frame["file_path"] = str(tmp_path / frame["file_path"]) if absolute else f"../{frame['file_path']}"
    (folder / "transforms.json").write_text(json.dumps(meta))
    assert len(load_scene(folder, test_every=0).views["train"]) == 5
    Image.new("RGB", (20, 12)).save(tmp_path / "images" / "f4.png")
    named = tmp_path / "images" / "f4.png" if absolute else "../images/f4.png"
    with pytest.raises(ValueError, match=re.escape(f"transforms.json frame 4 ({named}) is 20x12 but")):
        load_scene(folder, test_every=0)


def test_transforms_json_reads_nerfstudios_point_cloud(tmp_path):
    from plyfile import PlyData, PlyElement

    write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, "ply_file_path": "sparse_pc.ply"}, count=3)
    with pytest.raises(FileNotFoundError, match="transforms.json: ply_file_path: point cloud .* not found"):
        load_scene(tmp_path)
    write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, "ply_file_path": ""}, count=3)
    # It was named as the point cloud <folder>, not found.
    with pytest.raises(ValueError, match=re.escape("transforms.json: ply_file_path is empty ('')")):
        load_scene(tmp_path)
    write_transforms(tmp_path, {**NERFSTUDIO_CAMERA, "ply_file_path": "sparse_pc.ply"}, count=3)
    # As ns-process-data writes it (open3d): float xyz, uchar colours.
    keys = ("x", "y", "z", "red", "green", "blue")
    vertex = np.zeros(4, dtype=[(key, "f4" if len(key) == 1 else "u1") for key in keys])
    vertex["x"], vertex["red"], vertex["blue"] = [0.5, 1, 2, 3], [10, 20, 30, 255], 7
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "sparse_pc.ply"))
    xyz, rgb = load_scene(tmp_path).point_arrays()
    assert (xyz[:, 0] == [0.5, 1, 2, 3]).all() and (xyz[:, 1:] == 0).all()
    assert (rgb == np.stack([[10, 20, 30, 255], [0] * 4, [7] * 4], axis=1)).all()
    uncoloured = vertex[["x", "y", "z"]].astype([("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(uncoloured, "vertex")]).write(str(tmp_path / "sparse_pc.ply"))
    with pytest.raises(ValueError, match=r"has no vertex properties \['red', 'green', 'blue'\]"):
        load_scene(tmp_path)


def test_test_every_is_refused_where_the_split_is_fixed(tmp_path, scene):
    write_nerf_synthetic(scene, tmp_path / "blender")
    with pytest.raises(ValueError, match="has its own test split \\(transforms_test.json\\)"):
        load_scene(tmp_path / "blender", test_every=4)
    scene.save(tmp_path / "stored")
    with pytest.raises(ValueError, match="test_every=4 applies to COLMAP and NeRF folders"):
        load_scene(tmp_path / "stored", test_every=4)
    # A COLMAP project takes it through load_scene.
    write_colmap(scene, tmp_path / "colmap")
    assert len(load_scene(tmp_path / "colmap", test_every=2).views["test"]) == 3


def test_resolved_test_every_is_the_split_load_scene_makes_without_one(tmp_path, scene):
    write_colmap(scene, tmp_path / "colmap")
    write_nerf_synthetic(scene, tmp_path / "blender")
    scene.save(tmp_path / "stored")
    assert resolved_test_every(tmp_path / "colmap") == 8 and resolved_test_every(tmp_path / "colmap", 2) == 2
    assert resolved_test_every(tmp_path / "blender") is None  # its own transforms_test.json
    (tmp_path / "blender" / "transforms_test.json").unlink()
    assert resolved_test_every(tmp_path / "blender") == 0  # transforms_train.json alone: every view trains
    assert len(load_scene(tmp_path / "blender").views.get("test", [])) == 0
    assert resolved_test_every(tmp_path / "stored") is None and resolved_test_every("user/scene") is None


def test_load_scene_composites_transparent_images_onto_the_background(tmp_path):
    write_transforms(tmp_path, NERFSTUDIO_CAMERA, mode="RGBA")  # fully transparent images
    white = load_scene(tmp_path, test_every=0, background=(1.0, 1.0, 1.0))
    assert (np.asarray(white.views["train"][0]["image"]) == 255).all()


def test_colmap_composites_rgba_images_and_finds_numbered_models(tmp_path, scene):
    write_colmap(scene, tmp_path)
    rgba = np.zeros((16, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:8, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "images" / "00001.png")
    loaded = load_scene(tmp_path, test_every=0, background=(1.0, 1.0, 1.0))
    image = np.asarray(loaded.views["train"][0]["image"])
    assert image[0, 0].tolist() == [200, 0, 0] and image[15, 0].tolist() == [255, 255, 255]
    # RGB files are stored byte for byte.
    stored = loaded.views["train"].cast_column("image", datasets.Image(decode=False))
    assert stored[1]["image"]["bytes"] == (tmp_path / "images" / "00002.png").read_bytes()

    # COLMAP's mapper writes sparse/1, sparse/2, ... for further models: with no sparse/0,
    # the lowest one is read, by load_scene and scene_from_colmap alike.
    (tmp_path / "sparse" / "0").rename(tmp_path / "sparse" / "10")
    write_colmap(scene, tmp_path / "other")
    (tmp_path / "other" / "sparse" / "0").rename(tmp_path / "sparse" / "2")
    assert find_colmap_model(tmp_path) == tmp_path / "sparse" / "2"  # 2 < 10, numerically
    assert len(load_scene(tmp_path, test_every=0).views["train"]) == 6
    (tmp_path / "sparse" / "2").rename(tmp_path / "sparse" / "x")
    assert len(scene_from_colmap(tmp_path, test_every=0).views["train"]) == 6
    for model in ("10", "x"):
        shutil.rmtree(tmp_path / "sparse" / model)
    with pytest.raises(FileNotFoundError, match="no COLMAP model .* in .*/sparse/<n>"):
        scene_from_colmap(tmp_path)


def far_normalized_scene(scene, folder, source):
    """``scene`` moved 4e6 m from the origin (test_normalization's OFFSET) into a "nerf" (without its points) or
    "colmap" folder (every view in train), loaded normalised."""
    from tests.splat.test_normalization import OFFSET, move_colmap_world, write_moved_nerf

    if source == "nerf":
        return load_scene(write_moved_nerf(scene, folder, OFFSET), normalize_world_space=True)
    move_colmap_world(write_colmap(scene, folder, binary=False) / "sparse" / "0", OFFSET)
    return load_scene(folder, normalize_world_space=True, test_every=0)


def stored_poses(split):
    return np.asarray(split.with_format("numpy")["world_to_camera"], dtype=np.float64)


@pytest.mark.parametrize("source, writer", [("nerf", write_nerf_synthetic), ("colmap", write_colmap),
                                            ("colmap", write_nerf_synthetic)])
def test_a_normalised_scene_is_written_in_its_original_frame(tmp_path, scene, source, writer):
    far = far_normalized_scene(scene, tmp_path / "far", source)
    # a COLMAP project is split by test_every, a NeRF folder by its files
    options = {"test_every": 0} if writer is write_colmap else {}
    writer(far, tmp_path / "written")
    again = load_scene(tmp_path / "written", normalize_world_space=True, **options)
    # the same cameras, normalised by the same transform, up to float32's rounding of the stored scene
    assert list(again.views) == list(far.views)
    for split in far.views:
        np.testing.assert_allclose(stored_poses(again.views[split]), stored_poses(far.views[split]), rtol=0,
                                   atol=1e-6)
    np.testing.assert_allclose(again.world_to_normalized, far.world_to_normalized, rtol=1e-6)
    assert (again.points is None) == (far.points is None) == (source == "nerf")
    if far.points is not None:
        def by_x(xyz):  # COLMAP's point ids need not keep the order
            return xyz[np.argsort(xyz[:, 0])]

        np.testing.assert_allclose(by_x(again.point_arrays()[0]), by_x(far.point_arrays()[0]), rtol=0, atol=1e-6)
    # written as stored on request: the normalised coordinates, which name no frame once read back
    writer(far, tmp_path / "normalized", original_frame=False)
    as_stored = load_scene(tmp_path / "normalized", **options)
    assert as_stored.world_to_normalized is None
    for split in far.views:
        np.testing.assert_allclose(stored_poses(as_stored.views[split]), stored_poses(far.views[split]), rtol=0,
                                   atol=1e-6)


def test_a_colmap_project_has_no_split_so_a_test_split_comes_back_in_train_normalised_anew(tmp_path, scene):
    from hf_eff.splat.cameras import camera_centres

    far = far_normalized_scene(scene, tmp_path / "far", "nerf")  # 4 train + 2 test views
    write_colmap(far, tmp_path / "written")
    again = load_scene(tmp_path / "written", normalize_world_space=True, test_every=0)
    # every view, train first, at the same place in the capture's own coordinates
    poses, _ = far.poses_and_points()
    written = np.concatenate([poses["train"], poses["test"]])
    reloaded = again.poses_and_points()[0]["train"]
    np.testing.assert_allclose(camera_centres(reloaded), camera_centres(written), rtol=0, atol=1e-5)
    np.testing.assert_allclose(reloaded[:, :3, :3], written[:, :3, :3], rtol=0, atol=1e-6)
    # but normalised by its own training views, the test views among them: not the cameras as stored
    assert len(again.views["test"]) == 0
    assert not np.allclose(again.world_to_normalized, far.world_to_normalized, rtol=1e-3)
