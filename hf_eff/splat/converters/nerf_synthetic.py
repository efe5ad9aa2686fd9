"""NeRF-synthetic (Blender) ``transforms_*.json`` folders <-> `Scene`.

Their ``transform_matrix`` is camera-to-world in the OpenGL/Blender convention (x right,
y up, looking down -z); scenes here use OpenCV world-to-camera, so y and z are flipped
and the matrix inverted. No reader in the field's libraries returns posed views in this
form (nerfstudio's dataparser pulls in the whole nerfstudio stack), and the format is a
short JSON file, so it is read here directly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from datasets import DatasetDict

from hf_eff.splat.cameras import (
    OPENGL_TO_OPENCV,
    world_normalization,
)
from hf_eff.splat.scene import (
    LLFF_TEST_EVERY,
    MASK_COLUMN,
    Scene,
    check_one_image_size,
    check_test_every,
    has_masks,
    keeps_alpha,
    points_dataset,
    views_dataset,
)

__all__ = ["scene_from_nerf_synthetic", "write_nerf_synthetic"]


def _read_frames(folder: Path, transforms_file: Path, allow_empty: bool = False) -> tuple[dict, dict, list]:
    """The frames of a transforms file as `views_dataset`'s arguments (images, Ks, world_to_cameras
    in float64, masks, mask_names), the file's parsed contents, and each frame's name and image size
    (`check_one_image_size`)."""
    import PIL.Image

    try:
        meta = json.loads(transforms_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{transforms_file}: invalid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{transforms_file}: not a JSON object (one with 'frames'), but a {type(meta).__name__}")
    frames = meta.get("frames")
    if frames is None or not (frames or allow_empty):
        raise ValueError(f"{transforms_file}: no 'frames'")
    if not isinstance(frames, list):
        raise ValueError(f"{transforms_file}: 'frames' must be a list of frames, got a {type(frames).__name__}")
    for index, frame in enumerate(frames):  # a string frame would answer `"file_path" in frame` by substring
        if not isinstance(frame, dict):
            raise ValueError(
                f"{transforms_file.name} frame {index}: not a JSON object with file_path and transform_matrix, "
                f"but {frame!r:.80}"
            )
    # nerfstudio's masks (0 = pixel ignored by the loss): every frame names one, or none does (its
    # dataparser asserts the same).
    masked = [index for index, frame in enumerate(frames) if "mask_path" in frame]
    if masked and len(masked) != len(frames):
        unmasked = [index for index, frame in enumerate(frames) if "mask_path" not in frame]
        raise ValueError(
            f"{transforms_file.name}: {len(masked)} of {len(frames)} frames name a mask_path, frame(s) "
            f"{unmasked[:10]} do not; give every frame a mask (all white to train on every pixel) or none"
        )
    images, Ks, poses, masks, sizes = [], [], [], [], []
    frame_of_image = {}  # resolved image path -> the first frame listing it
    for index, frame in enumerate(frames):
        where = f"{transforms_file.name} frame {index}"
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise ValueError(f"{where}: missing '{key}'")
        path = folder / _relative_path(frame, "file_path", where)
        if not path.suffix:  # Blender's files name the image without its extension
            path = path.with_suffix(".png")
        if not path.exists():
            raise FileNotFoundError(f"{where}: image {path} not found")
        name = _shown(path, folder)
        # A view listed twice is trained on twice, or (split by test_every) measured on a training image.
        first = frame_of_image.setdefault(path.resolve(), index)
        if first != index:
            raise ValueError(f"{where}: image {name} is frame {first}'s too; list each image once")
        with PIL.Image.open(path) as opened:  # reads the header only
            width, height = opened.size
        images.append(path)
        sizes.append((f"{where} ({name})", (width, height)))
        if masked:
            # relative to the transforms file, as nerfstudio reads it
            masks.append(folder / _relative_path(frame, "mask_path", where))
        Ks.append(_intrinsics(meta, frame, width, height, where, transforms_file.name))
        camera_to_world = _transform_matrix(frame, f"{where} ({frame['file_path']})")
        try:
            poses.append(np.linalg.inv(camera_to_world @ OPENGL_TO_OPENCV))
        except np.linalg.LinAlgError:
            raise ValueError(f"{where} ({frame['file_path']}): transform_matrix is singular") from None
    names = [f"{transforms_file.name} frame {index}" for index in range(len(frames))]
    views = {"images": images, "Ks": Ks, "world_to_cameras": poses, "masks": masks if masked else None,
             "mask_names": names}
    return views, meta, sizes


def _shown(path: Path, folder: Path) -> Path:
    """An image's path as errors name it: relative to the transforms file's folder, or (an absolute file_path
    outside it, which ``folder / path`` leaves as it is) as given."""
    return path.relative_to(folder) if path.is_relative_to(folder) else path


def _check_test_images_not_trained(folder: Path, train_file: Path, train_images: list, test_file: Path,
                                   test_images: list) -> None:
    """Refuses a test frame whose image is a training frame's too: its PSNR would measure the fit to the training
    data, not to an unseen view."""
    train_frame_of = {path.resolve(): index for index, path in enumerate(train_images)}
    for index, path in enumerate(test_images):
        train_index = train_frame_of.get(path.resolve())
        if train_index is not None:
            raise ValueError(
                f"{test_file.name} frame {index}: image {_shown(path, folder)} is {train_file.name} frame "
                f"{train_index}'s too; a test image must be one the training split does not hold"
            )


def _relative_path(entry: dict, key: str, where: str) -> str:
    """The path ``key`` of a frame (or of the whole file), refused where it is empty or not a string (``folder / ""``
    is the folder itself, which then reads as an image beside it)."""
    value = entry[key]
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key} must be a path (a string), got {value!r}")
    if not value.strip():
        raise ValueError(f"{where}: {key} is empty ({value!r}); name a file relative to the transforms file")
    return value


def _transform_matrix(frame: dict, where: str) -> np.ndarray:
    """A frame's camera-to-world ``transform_matrix`` in float64, refused (naming ``where``) unless a finite 4x4."""
    value = frame["transform_matrix"]
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # rows of different lengths, strings
        matrix = None
    if matrix is None or matrix.shape != (4, 4):
        got = "x".join(map(str, matrix.shape)) if matrix is not None and matrix.ndim else f"{value!r:.80}"
        raise ValueError(f"{where}: transform_matrix must be a 4x4 matrix of numbers, got {got}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{where}: transform_matrix holds NaN or infinite values")
    return matrix


# nerfstudio's perspective camera models: with every distortion coefficient zero they are a
# pinhole. Fisheye, equirectangular and the rest never are.
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def _intrinsics(
    meta: dict, frame: dict, width: int, height: int, where: str, file_name: str
) -> np.ndarray:
    # Per-frame keys win over file-level ones (instant-ngp / nerfstudio style fl_x, cx, ...).
    def get(key):
        return frame.get(key, meta.get(key))

    def named(key):  # where a key's value comes from, for errors
        return f"{where}: {key}" if key in frame else f"{file_name}: {key}"

    def number(key, default=None):  # a key's value as a float (numbers written as strings too), else the default
        value = get(key)
        if value is None:
            return default
        try:
            result = float(value)
        except (TypeError, ValueError):  # "", "abc", a list
            result = math.nan
        if not math.isfinite(result):
            raise ValueError(f"{named(key)}={value!r} is not a finite number")
        return result

    undistort = "undistort the images first (ns-process-data, or colmap image_undistorter)"
    model = get("camera_model")
    if isinstance(model, str) and not model.strip():  # would read as "not a pinhole camera"
        raise ValueError(
            f"{named('camera_model')} is empty ({model!r}); write camera_model PINHOLE or leave the key out"
        )
    if model is not None and str(model).upper() not in PINHOLE_MODELS:
        raise ValueError(
            f"{named('camera_model')}={model!r} is not a pinhole camera; {undistort} "
            f"and write camera_model PINHOLE"
        )
    if get("is_fisheye"):  # instant-ngp's flag
        raise ValueError(f"{named('is_fisheye')}={get('is_fisheye')} is not a pinhole camera; {undistort}")
    for key in DISTORTION_KEYS:
        value = number(key)
        if value is not None and value != 0:
            raise ValueError(f"{named(key)}={get(key)} is lens distortion; {undistort}")

    # fl_x, cx, cy are in pixels of the declared w x h (the image's own size by default).
    declared_w = number("w", float(width))
    declared_h = number("h", float(height))
    if not (declared_w > 0 and declared_h > 0):
        raise ValueError(f"{where}: w and h must be positive, got {get('w')}x{get('h')}")
    # views_dataset refuses a non-positive focal too, but by view number: these name the key and the file
    if get("fl_x") is not None:
        fx = number("fl_x")
        fy = number("fl_y", fx)
        for key, focal in (("fl_x", fx), ("fl_y", fy)):
            if focal <= 0:
                raise ValueError(f"{named(key)}={get(key)} must be positive (a focal length in pixels)")
    elif get("camera_angle_x") is not None:
        angle = number("camera_angle_x")
        if not 0 < angle < math.pi:  # 0 divides by zero; pi and above give a negative focal
            raise ValueError(
                f"{named('camera_angle_x')}={get('camera_angle_x')} must be between 0 and pi "
                "(the horizontal field of view in radians)"
            )
        fx = fy = 0.5 * declared_w / math.tan(0.5 * angle)
    else:
        raise ValueError(f"{where}: needs 'camera_angle_x' or 'fl_x' for the focal length")
    cx = number("cx", declared_w / 2)
    cy = number("cy", declared_h / 2)
    # A downscaled copy of the images (e.g. images_2) keeps the declared intrinsics: rescale K to
    # the file, as the COLMAP converter does; a different aspect ratio is not a downscale.
    scale_x, scale_y = width / declared_w, height / declared_h
    if abs(width - declared_w * scale_y) > 1 or abs(height - declared_h * scale_x) > 1:
        raise ValueError(
            f"{where}: image is {width}x{height} but w x h says {get('w')}x{get('h')}, "
            "not a uniform downscale"
        )
    return np.array(
        [[fx * scale_x, 0.0, cx * scale_x], [0.0, fy * scale_y, cy * scale_y], [0.0, 0.0, 1.0]]
    )


# Where nerfstudio's ns-process-data puts the SfM points (splatfacto initialises from them).
POINTS_KEY, POINTS_FILE = "ply_file_path", "sparse_pc.ply"


def _read_points(folder: Path, transforms_file: Path, meta: dict, world_to_normalized=None):
    """The point set a transforms file (parsed: ``meta``) names with nerfstudio's ``ply_file_path``
    (in the frame of its ``transform_matrix`` poses, as nerfstudio writes both), or None when it
    names none."""
    from plyfile import PlyData

    if meta.get(POINTS_KEY) is None:
        return None
    path = folder / _relative_path(meta, POINTS_KEY, transforms_file.name)
    where = f"{transforms_file.name}: {POINTS_KEY}"
    if not path.is_file():
        raise FileNotFoundError(f"{where}: point cloud {path} not found")
    ply = PlyData.read(str(path))
    names = set(ply["vertex"].data.dtype.names) if "vertex" in ply else set()
    missing = [key for key in ("x", "y", "z", "red", "green", "blue") if key not in names]
    if missing:
        raise ValueError(
            f"{where}: {path} has no vertex properties {missing} (a coloured point cloud is needed)"
        )
    vertex = ply["vertex"].data
    xyz = np.stack([vertex[key] for key in "xyz"], axis=1).astype(np.float64)
    rgb = np.stack([vertex[key] for key in ("red", "green", "blue")], axis=1)
    return points_dataset(xyz, rgb, world_to_normalized=world_to_normalized)


def default_test_every(folder: Path) -> int | None:
    """The ``test_every`` a NeRF folder is split by when none is given: None where transforms_test.json is its own
    test split, 0 for a transforms_train.json alone (every view trains), `LLFF_TEST_EVERY` for one
    transforms.json."""
    if (folder / "transforms_train.json").exists():
        return None if (folder / "transforms_test.json").exists() else 0
    return LLFF_TEST_EVERY


def scene_from_nerf_synthetic(
    folder, background=(0.0, 0.0, 0.0), test_every: int | None = None, normalize_world_space: bool = False
) -> Scene:
    """Reads ``transforms_train.json`` and ``transforms_test.json`` (Blender's own split), or
    one ``transforms.json`` (instant-ngp / nerfstudio) split by ``test_every``, with their
    images into a `Scene`.

    Args:
        background: RGB in [0, 1] under transparent pixels (black as 3DGS's default;
            (1, 1, 1) for its ``--white_background``); None keeps the images' alpha (RGBA views,
            `views_dataset`), which `SplatTrainer` composites onto the colour it renders onto: a random one
            each step under ``random_bkgd``, as nerfstudio's splatfacto trains these scenes.
        test_every: for a single ``transforms.json``, every n-th frame (in file order, starting
            with the first) goes to the test split, as the COLMAP converter's (3DGS's
            ``llffhold``); 0 puts every frame in train. None: 8 for ``transforms.json``, and
            the files' own split for ``transforms_train.json`` / ``transforms_test.json``
            (a ``test_every`` is refused where ``transforms_test.json`` exists; with a train
            file alone it holds views out of it, and None keeps them all in train).

    The point set is the coloured ``.ply`` that the train file (or ``transforms.json``) names
    with nerfstudio's ``ply_file_path`` (``ns-process-data`` writes ``sparse_pc.ply``, from
    which splatfacto initialises); without one the scene has none (3DGS initialises these
    scenes at random). Cameras must be
    pinholes: a ``camera_model`` other than a perspective one (fisheye, equirectangular),
    instant-ngp's ``is_fisheye`` or a non-zero distortion coefficient (``k1``..``k4``,
    ``p1``, ``p2``) is refused; undistort first. Images whose size differs from the declared ``w`` x ``h`` by a uniform scale get K
    rescaled to them. A split's images share one size (`SplatTrainer` trains it at one): a frame of another is refused.

    nerfstudio's per-frame ``mask_path`` (relative to the transforms file's folder, as nerfstudio
    resolves it) is read into the views' ``mask`` column: 0 = a pixel the loss ignores, anything
    else = trained (nerfstudio reads its masks the same way). Every frame of a file names one or
    none does; a missing mask file, or one whose size is not its image's, is refused by frame.

    ``normalize_world_space``: store the scene in normalised coordinates (`load_scene`'s option of that
    name), computed from the training frames' poses in float64; the scene records the transform
    (``Scene.world_to_normalized``).
    """
    folder = Path(folder)
    if background is not None:
        background = np.asarray(background, dtype=np.float64).reshape(3)
    check_test_every(test_every)

    def normalization(poses):
        return world_normalization(poses) if normalize_world_space else None

    def dataset(frames, transform):
        # Transparent background composited onto a solid colour (3DGS: black by default), or kept (None).
        return views_dataset(**frames, background=background, world_to_normalized=transform)

    if (folder / "transforms_train.json").exists():
        frames, meta, sizes = _read_frames(folder, folder / "transforms_train.json")
        test_file = folder / "transforms_test.json"
        if test_file.exists():
            if test_every is not None:
                raise ValueError(
                    f"test_every={test_every}: {folder} has its own test split ({test_file.name}); "
                    "leave test_every unset"
                )
            transform = normalization(frames["world_to_cameras"])
            points = _read_points(folder, folder / "transforms_train.json", meta, transform)
            # "frames": [] is an empty test split, as `write_nerf_synthetic` writes one.
            test_frames, _, test_sizes = _read_frames(folder, test_file, allow_empty=True)
            _check_test_images_not_trained(folder, folder / "transforms_train.json", frames["images"], test_file,
                                           test_frames["images"])
            for split_sizes in (sizes, test_sizes):
                check_one_image_size(split_sizes)
            views = DatasetDict({"train": dataset(frames, transform), "test": dataset(test_frames, transform)})
            return Scene.from_views(views, points)  # which take their transform from the views
        transforms_file = folder / "transforms_train.json"
    elif (folder / "transforms.json").exists():
        transforms_file = folder / "transforms.json"
        frames, meta, sizes = _read_frames(folder, transforms_file)
    else:
        raise FileNotFoundError(f"no transforms_train.json or transforms.json in {folder}")
    test_every = default_test_every(folder) if test_every is None else test_every
    poses = frames["world_to_cameras"]
    is_test = [test_every > 0 and index % test_every == 0 for index in range(len(poses))]
    if all(is_test):
        raise ValueError(
            f"test_every={test_every} leaves no training view among the {len(poses)} of {folder} "
            "(test_every=0 trains on all of them)"
        )
    check_one_image_size(sizes, is_test)
    transform = normalization([pose for pose, test in zip(poses, is_test) if not test])
    points = _read_points(folder, transforms_file, meta, transform)
    views = dataset(frames, transform)
    return Scene.from_views(
        DatasetDict(
            {
                "train": views.select([i for i, test in enumerate(is_test) if not test]),
                "test": views.select([i for i, test in enumerate(is_test) if test]),
            }
        ),
        points,
    )


def write_nerf_synthetic(scene: Scene, folder, original_frame: bool = True) -> Path:
    """Writes ``transforms_<split>.json`` and ``<split>/r_<i>.png`` (RGBA for a split kept with its alpha,
    `views_dataset(..., background=None)`) for every split, and the
    point set, if any, as ``sparse_pc.ply`` named by the train file's ``ply_file_path``
    (nerfstudio's layout). Views with a mask get it as ``masks/<split>/r_<i>.png``, named by the
    frame's ``mask_path`` (a view of a masked split without one: all white).

    ``camera_angle_x`` is written for Blender-style readers, and ``fl_x``, ``fl_y``,
    ``cx``, ``cy``, ``w``, ``h`` per frame so non-square or off-centre intrinsics survive.

    A scene stored in normalised coordinates is written in the capture's own coordinates in float64 (the JSON's
    numbers and the ``.ply``'s doubles keep them), ``original_frame=False`` as stored: see
    `Scene.poses_and_points`.
    """
    from PIL import Image
    from plyfile import PlyData, PlyElement

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    poses, points = scene.poses_and_points(original_frame)
    if points is not None:
        xyz, rgb = points  # xyz float64 when mapped back to the original frame, else float32 as stored
        keys = ("x", "y", "z", "red", "green", "blue")
        vertex = np.empty(len(xyz), dtype=[(key, xyz.dtype if len(key) == 1 else "u1") for key in keys])
        for index, key in enumerate(keys):
            vertex[key] = (xyz if index < 3 else rgb)[:, index % 3]
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(folder / POINTS_FILE))
    for split_name, split in scene.views.items():
        (folder / split_name).mkdir(parents=True, exist_ok=True)
        masked = has_masks(split)
        if masked:
            (folder / "masks" / split_name).mkdir(parents=True, exist_ok=True)
        mode = "RGBA" if keeps_alpha(split) else "RGB"
        frames = []
        for index, row in enumerate(split):
            K = np.asarray(row["K"], dtype=np.float64)
            world_to_camera = poses[split_name][index]
            file_path = f"./{split_name}/r_{index}"
            # a split kept with its alpha is written with it: as RGB, its hidden colours would show
            row["image"].convert(mode).save(folder / f"{file_path}.png")
            mask_entry = {}
            if masked:  # nerfstudio reads masks for every frame or none
                mask_entry["mask_path"] = f"./masks/{split_name}/r_{index}.png"
                mask = row[MASK_COLUMN]
                mask = mask if mask is not None else Image.new("L", (row["width"], row["height"]), 255)
                mask.save(folder / mask_entry["mask_path"])
            frames.append(
                {
                    "file_path": file_path,
                    "transform_matrix": (
                        np.linalg.inv(world_to_camera) @ OPENGL_TO_OPENCV
                    ).tolist(),
                    "fl_x": K[0, 0],
                    "fl_y": K[1, 1],
                    "cx": K[0, 2],
                    "cy": K[1, 2],
                    "w": row["width"],
                    "h": row["height"],
                    **mask_entry,
                }
            )
        meta = {"frames": frames}
        if split_name == "train" and scene.points is not None:
            meta[POINTS_KEY] = POINTS_FILE
        if frames:
            meta["camera_angle_x"] = 2 * math.atan(frames[0]["w"] / (2 * frames[0]["fl_x"]))
        (folder / f"transforms_{split_name}.json").write_text(json.dumps(meta, indent=1))
    return folder
