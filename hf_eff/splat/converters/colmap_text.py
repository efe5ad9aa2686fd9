"""Finds the line of a text COLMAP model that pycolmap refused to read.

pycolmap parses the model, but its errors name a line of its own C++ source ("reconstruction_io_text.cc:246 Check
failed: line_stream1 >> image_id >> ..."), or an id ("Image with ID 9 does not exist"), never the model's file
and line. When it fails, `text_model_error` reads cameras.txt, images.txt and points3D.txt again, line by line as
COLMAP's text reader does, and says which line breaks the format and how.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

# The values C++'s `>> double` reads (nan and inf it does not), and the ids and sizes its unsigned `>>` reads without
# wrapping round.
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
WHOLE = re.compile(r"[0-9]+")
POINT3D_ID = re.compile(r"-1|[0-9]+")  # -1: a 2D point without a 3D one
KINDS = {NUMBER: "a number", WHOLE: "a whole number (0 or more)", POINT3D_ID: "-1 or a whole number"}

CAMERA_LINE = "CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"
IMAGE_LINE = "IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, then a line of POINTS2D[] as (X Y POINT3D_ID)"
POINT_LINE = "POINT3D_ID X Y Z R G B ERROR TRACK[] as (IMAGE_ID POINT2D_IDX)"


class _BadLine(Exception):
    """What is wrong with the line being read."""


def _checked(fields: list[str], names: list[str], pattern: re.Pattern) -> None:
    for name, value in zip(names, fields):
        if not pattern.fullmatch(value):
            raise _BadLine(f"{name} {value!r} is not {KINDS[pattern]}")


def _checked_groups(values: list[str], group: str, names: list[str], patterns: list[re.Pattern]) -> None:
    """Checks values that repeat in groups, as POINTS2D's (X Y POINT3D_ID) triples, naming the group by index."""
    for index, value in enumerate(values):
        pattern = patterns[index % len(names)]
        if not pattern.fullmatch(value):
            raise _BadLine(f"{group}[{index // len(names)}] {names[index % len(names)]} {value!r} is not "
                           f"{KINDS[pattern]}")


def _too_few(fields: list[str], needed: int, layout: str) -> None:
    if len(fields) < needed:
        raise _BadLine(f"{len(fields)} field(s), too few: a line is {layout}")


def _first_of(ids: dict, key: str, number: int, name: str) -> None:
    """Records that line ``number`` holds id ``key``, refusing one an earlier line holds."""
    first = ids.setdefault(int(key), number)
    if first != number:
        raise _BadLine(f"{name} {key} is line {first}'s too; an id names one entry")


@contextmanager
def _at(path: Path, number: int, line: str):
    """Turns a `_BadLine` raised within into one that names the file and the line (its number from 1, its text)."""
    try:
        yield
    except _BadLine as error:
        shown = line if len(line) <= 200 else line[:197] + "..."
        raise _BadLine(f"{path.name} line {number} ({shown!r}): {error}") from None


def _numbered_lines(path: Path):
    """Each line of ``path`` with its number (from 1), as COLMAP's reader sees it: split at newlines only, as getline
    does (a lone carriage return stays within its line), then trimmed as its StringTrim does (of spaces, tabs and
    carriage returns: a CRLF file's too). NAME is bytes to COLMAP, not always UTF-8: a byte that is not reads as U+FFFD
    here, so the line can still be named."""
    return enumerate((line.strip(b" \t\r").decode(errors="replace") for line in path.read_bytes().split(b"\n")), 1)


def _skipped(line: str) -> bool:
    return not line or line.startswith("#")


def _check_cameras(path: Path, pycolmap) -> dict[int, int]:
    """The line of each camera id in cameras.txt."""
    known = set(pycolmap.CameraModelId.__members__) - {"INVALID"}
    cameras: dict[int, int] = {}
    for number, line in _numbered_lines(path):
        if _skipped(line):
            continue
        with _at(path, number, line):
            fields = line.split()
            model = fields[1] if len(fields) > 1 else ""
            if model not in known:  # pycolmap says only "Camera model does not exist"
                raise _BadLine(f"{model!r} is not a COLMAP camera model (a line is {CAMERA_LINE})")
            params = [name.strip() for name in pycolmap.Camera(model=model).params_info.split(",")]
            _too_few(fields, 4, f"{CAMERA_LINE}, {model}'s PARAMS {' '.join(params)}")
            _checked(fields[:1], ["CAMERA_ID"], WHOLE)
            _checked(fields[2:4], ["WIDTH", "HEIGHT"], WHOLE)
            if len(fields) - 4 != len(params):
                raise _BadLine(f"{model} takes {len(params)} PARAMS ({' '.join(params)}), the line gives "
                               f"{len(fields) - 4}")
            _checked(fields[4:], params, NUMBER)
            _first_of(cameras, fields[0], number, "CAMERA_ID")
    return cameras


def _check_images(path: Path, cameras: dict[int, int]) -> dict[int, int]:
    """The number of 2D points of each image id in images.txt, whose lines come in pairs: the image, then its
    POINTS2D (the very next line, empty for none)."""
    image_lines: dict[int, int] = {}
    points2d: dict[int, int] = {}
    lines = iter(_numbered_lines(path))
    for number, line in lines:
        if _skipped(line):
            continue
        with _at(path, number, line):
            fields = line.split()
            _too_few(fields, 10, IMAGE_LINE)
            _checked(fields[:1], ["IMAGE_ID"], WHOLE)
            _checked(fields[1:8], ["QW", "QX", "QY", "QZ", "TX", "TY", "TZ"], NUMBER)
            _checked(fields[8:9], ["CAMERA_ID"], WHOLE)
            if int(fields[8]) not in cameras:
                raise _BadLine(f"CAMERA_ID {fields[8]} is no camera of cameras.txt")
            _first_of(image_lines, fields[0], number, "IMAGE_ID")
        image_id = int(fields[0])
        points2d[image_id] = 0
        points_line = next(lines, None)
        if points_line is None:  # the file ends on an image line: an image without 2D points
            continue
        number, line = points_line
        with _at(path, number, line):
            values = line.split()
            if len(values) % 3:
                raise _BadLine(f"POINTS2D of image {image_id}: {len(values)} values, not (X Y POINT3D_ID) triples "
                               "(this line follows the image's line)")
            _checked_groups(values, "POINTS2D", ["X", "Y", "POINT3D_ID"], [NUMBER, NUMBER, POINT3D_ID])
            points2d[image_id] = len(values) // 3
    return points2d


def _check_points(path: Path, points2d: dict[int, int]) -> None:
    """Checks points3D.txt, its tracks against the images and their 2D points (`_check_images`)."""
    points: dict[int, int] = {}
    for number, line in _numbered_lines(path):
        if _skipped(line):
            continue
        with _at(path, number, line):
            fields = line.split()
            _too_few(fields, 8, POINT_LINE)
            _checked(fields[:1], ["POINT3D_ID"], WHOLE)
            _checked(fields[1:4], ["X", "Y", "Z"], NUMBER)
            _checked(fields[4:7], ["R", "G", "B"], WHOLE)
            _checked(fields[7:8], ["ERROR"], NUMBER)
            track = fields[8:]
            if len(track) % 2:
                raise _BadLine(f"TRACK: {len(track)} values, not (IMAGE_ID POINT2D_IDX) pairs")
            _checked_groups(track, "TRACK", ["IMAGE_ID", "POINT2D_IDX"], [WHOLE, WHOLE])
            for index, (image_id, point2d_index) in enumerate(zip(map(int, track[::2]), map(int, track[1::2]))):
                if image_id not in points2d:
                    raise _BadLine(f"TRACK[{index}] IMAGE_ID {image_id} is no image of images.txt")
                if point2d_index >= points2d[image_id]:
                    raise _BadLine(f"TRACK[{index}] POINT2D_IDX {point2d_index} is past the {points2d[image_id]} "
                                   f"POINTS2D of image {image_id} in images.txt")
            _first_of(points, fields[0], number, "POINT3D_ID")


def text_model_error(sparse_dir: Path, pycolmap) -> str | None:
    """The first line of ``sparse_dir``'s cameras.txt, images.txt or points3D.txt that breaks COLMAP's text format
    (too few fields, a value that is not a number, a wrong count of camera params, an id given twice or naming
    nothing), as "<file> line <n> ('<line>'): <what is wrong>"; None where every line reads."""
    try:
        cameras = _check_cameras(sparse_dir / "cameras.txt", pycolmap)
        points2d = _check_images(sparse_dir / "images.txt", cameras)
        _check_points(sparse_dir / "points3D.txt", points2d)
    except _BadLine as error:
        return str(error)
    return None
