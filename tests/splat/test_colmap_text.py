"""A text COLMAP model that pycolmap refuses is named by file, line and fault (hf_eff/splat/converters/colmap_text.py),
through `scene_from_colmap`, which reads the model."""

import re

import pytest

from hf_eff.splat.converters import scene_from_colmap, write_colmap
from hf_eff.splat.procedural import make_procedural_scene

pytest.importorskip("pycolmap")

# The lines of the model write_colmap writes for SCENE: cameras.txt holds camera 1 on line 4; images.txt images 1, 2,
# 3 on lines 5, 7, 9, each followed by its (empty) POINTS2D line; points3D.txt points 1, 2 on lines 4, 5.
SCENE = {"seed": 3, "num_train": 4, "num_test": 2, "width": 20, "height": 16, "num_points": 5, "supersample": 1}
IMAGE_LINE = "a line is IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then a line of POINTS2D[] as (X Y POINT3D_ID)"


def replaced(index, value):
    """An edit of a line's fields: field ``index`` replaced by ``value``."""
    return lambda fields: fields[:index] + [value] + fields[index + 1:]


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(**SCENE)


@pytest.mark.parametrize("file, number, edit, fault", [
    ("cameras.txt", 4, lambda fields: fields[:-1], "PINHOLE takes 4 PARAMS (fx fy cx cy), the line gives 3"),
    ("cameras.txt", 4, lambda fields: fields + ["0"], "PINHOLE takes 4 PARAMS (fx fy cx cy), the line gives 5"),
    ("cameras.txt", 4, lambda fields: fields[:3],
     "3 field(s), too few: a line is CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], PINHOLE's PARAMS fx fy cx cy"),
    ("cameras.txt", 4, replaced(2, "20.5"), "WIDTH '20.5' is not a whole number (0 or more)"),
    ("cameras.txt", 4, replaced(6, "nan"), "cx 'nan' is not a number"),
    ("images.txt", 9, lambda fields: fields[:-1], f"9 field(s), too few: {IMAGE_LINE}"),
    ("images.txt", 9, replaced(1, "abc"), "QW 'abc' is not a number"),
    ("images.txt", 9, replaced(8, "7"), "CAMERA_ID 7 is no camera of cameras.txt"),
    ("images.txt", 9, replaced(0, "2"), "IMAGE_ID 2 is line 7's too; an id names one entry"),
    ("images.txt", 10, lambda fields: ["1.5", "2.5"],
     "POINTS2D of image 3: 2 values, not (X Y POINT3D_ID) triples (this line follows the image's line)"),
    ("images.txt", 10, lambda fields: ["1.5", "2.5", "x"], "POINTS2D[0] POINT3D_ID 'x' is not -1 or a whole number"),
    ("points3D.txt", 5, lambda fields: fields[:6],
     "6 field(s), too few: a line is POINT3D_ID X Y Z R G B ERROR TRACK[] as (IMAGE_ID POINT2D_IDX)"),
    ("points3D.txt", 5, replaced(7, "y"), "ERROR 'y' is not a number"),
    ("points3D.txt", 5, replaced(0, "1"), "POINT3D_ID 1 is line 4's too; an id names one entry"),
    ("points3D.txt", 5, lambda fields: fields + ["9", "0"], "TRACK[0] IMAGE_ID 9 is no image of images.txt"),
    ("points3D.txt", 5, lambda fields: fields + ["3", "5"],
     "TRACK[0] POINT2D_IDX 5 is past the 0 POINTS2D of image 3 in images.txt"),
])
def test_colmap_names_the_file_line_and_fault_of_a_text_model(tmp_path, scene, file, number, edit, fault):
    write_colmap(scene, tmp_path, binary=False)
    sparse = tmp_path / "sparse" / "0"
    lines = (sparse / file).read_text().split("\n")
    lines[number - 1] = " ".join(edit(lines[number - 1].split()))
    (sparse / file).write_text("\n".join(lines))
    # pycolmap named a line of its C++ source ("reconstruction_io_text.cc:137 Check failed: line_stream >> ..."), or
    # raised a bare IndexError ("Image with ID 9 does not exist").
    with pytest.raises(ValueError, match=re.escape(
            f"COLMAP model {sparse} (txt files) could not be read: {file} line {number} ({lines[number - 1]!r}): "
            f"{fault}")):
        scene_from_colmap(tmp_path)


def test_colmap_shortens_a_long_line_it_names(tmp_path, scene):
    write_colmap(scene, tmp_path, binary=False)
    sparse = tmp_path / "sparse" / "0"
    images = sparse / "images.txt"
    lines = images.read_text().split("\n")
    lines[9] = " ".join(["1.5", "2.5", "-1"] * 99 + ["1.5", "2.5", "x"])  # image 3's POINTS2D, 300 values
    images.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=re.escape(
            f"images.txt line 10 ({lines[9][:197] + '...'!r}): POINTS2D[99] POINT3D_ID 'x' is not")):
        scene_from_colmap(tmp_path)


def test_colmap_gives_pycolmaps_error_where_the_three_files_read(tmp_path, scene):
    write_colmap(scene, tmp_path, binary=False)
    sparse = tmp_path / "sparse" / "0"
    frames = sparse / "frames.txt"  # newer COLMAP's rigs and frames, outside the three files checked
    frames.write_text(re.sub(r"^1 ", "x ", frames.read_text(), flags=re.MULTILINE))
    with pytest.raises(ValueError, match=re.escape(
            f"COLMAP model {sparse} (txt files) could not be read: [reconstruction_io_text.cc")):
        scene_from_colmap(tmp_path)


def test_colmap_names_the_line_of_an_image_whose_name_is_not_utf8(tmp_path, scene):
    write_colmap(scene, tmp_path, binary=False)
    sparse = tmp_path / "sparse" / "0"
    images = sparse / "images.txt"
    lines = images.read_bytes().split(b"\n")
    lines[8] = b" ".join(lines[8].split()[:8] + [b"7", b"caf\xe9.png"])  # image 3 of camera 7, named in Latin-1
    images.write_bytes(b"\n".join(lines))
    # Reading the model again as UTF-8 raised UnicodeDecodeError in place of the line's fault.
    shown = lines[8].decode(errors="replace")
    assert shown.endswith(" 7 caf\ufffd.png")
    with pytest.raises(ValueError, match=re.escape(
            f"images.txt line 9 ({shown!r}): CAMERA_ID 7 is no camera of cameras.txt")):
        scene_from_colmap(tmp_path)


def test_colmap_trims_the_carriage_returns_of_a_crlf_model_as_colmap_does(tmp_path, scene):
    write_colmap(scene, tmp_path, binary=False)
    sparse = tmp_path / "sparse" / "0"
    for name in ("cameras.txt", "images.txt", "points3D.txt"):  # each line ends "\r\n", which COLMAP trims
        (sparse / name).write_bytes((sparse / name).read_bytes().replace(b"\n", b"\r\n"))
    points = sparse / "points3D.txt"
    lines = points.read_bytes().split(b"\n")
    lines[4] = lines[4].rstrip() + b" 9 0\r"
    points.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=re.escape(
            f"points3D.txt line 5 ({lines[4].strip().decode()!r}): TRACK[0] IMAGE_ID 9 is no image of images.txt")):
        scene_from_colmap(tmp_path)


def test_colmap_keeps_a_lone_carriage_return_within_its_line(tmp_path, scene):
    write_colmap(scene, tmp_path, binary=False)
    points = tmp_path / "sparse" / "0" / "points3D.txt"
    lines = points.read_bytes().split(b"\n")
    lines[4] = lines[4].rstrip() + b"\r9 0"  # getline ends a line at "\n" only; "\r" then parts fields, as a space
    points.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=re.escape(
            f"points3D.txt line 5 ({lines[4].decode()!r}): TRACK[0] IMAGE_ID 9 is no image of images.txt")):
        scene_from_colmap(tmp_path)
