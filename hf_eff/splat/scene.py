"""Scenes as `datasets`: posed views, an optional point cloud and a little metadata.

Layout (a Hub dataset repo, or a local folder written by `Scene.save`)::

    README.md                         # YAML `configs`: views (train/test), points (train)
    scene.json                        # {"center": [x, y, z], "radius": r, optional "world_to_normalized"}
    views/train-00000-of-00001.parquet
    views/test-00000-of-00001.parquet
    points/train-00000-of-00001.parquet

the layout ``Dataset.push_to_hub(repo_id, config_name=...)`` writes. `load_scene` also reads
a folder holding ``views/`` (``DatasetDict.save_to_disk``), optional ``points/``
(``Dataset.save_to_disk``) and optional ``scene.json``. Cameras follow OpenCV (x right,
y down, z forward); ``K`` is in pixels.

A views split may hold an optional ``mask`` column (`MASK_FEATURE`, see `views_dataset`): one
single-channel 8-bit image per view, the size of its image, where 0 marks pixels that training
ignores (nerfstudio's ``mask_path`` convention). A split without the column costs nothing.

A views split may keep its images' alpha (`views_dataset(..., background=None)`, ``load_scene(folder,
background=None)``): its ``image`` feature is then `ALPHA_IMAGE_FEATURE` (``datasets.Image(mode="RGBA")``), which
`save_to_disk`, the parquet files and the Hub keep, and which decodes every row as RGBA (an RGB row is opaque).
`SplatTrainer` composites such views onto the background it renders onto, each step (`keeps_alpha`). Every split
of a scene keeps its alpha or none does. A split whose feature is a plain ``Image()`` holds RGB images: transparent
pixels in it are refused where they are decoded (`scene_views_images`), since training would fit their hidden
colours.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Array2D, Dataset, DatasetDict, Features, Image, Sequence, Value

from hf_eff.hub.sources import naming_missing_folder
from hf_eff.splat.cameras import (
    camera_centres,
    camera_spread,
    check_world_to_normalized,
    describe_frame,
    normalize_world_to_camera,
    original_points,
    original_world_to_camera,
    same_frame,
)

__all__ = [
    "Scene",
    "load_scene",
    "images_to_float",
    "scene_views_to_tensors",
    "scene_views_cameras",
    "scene_views_images",
    "scene_views_masks",
    "keeps_alpha",
    "validate_views",
    "views_dataset",
    "points_dataset",
    "data_world_to_normalized",
    "VIEW_FEATURES",
    "MASK_FEATURE",
    "ALPHA_IMAGE_FEATURE",
    "POINT_FEATURES",
]

VIEW_FEATURES = Features(
    {
        "image": Image(),
        "K": Array2D((3, 3), "float32"),
        "world_to_camera": Array2D((4, 4), "float32"),
        "width": Value("int32"),
        "height": Value("int32"),
    }
)
# The optional per-view mask column: a grayscale PNG (mode L), 255 where the view is trained and
# 0 where it is ignored, stored like the images (any non-zero value reads as trained, as
# nerfstudio reads its mask files).
MASK_COLUMN, MASK_FEATURE = "mask", Image()
# The image feature of a split that keeps its alpha: the feature is what tells it from an RGB split, in memory, in
# save_to_disk's files and in parquet's schema (which, unlike the dataset's description, the Hub keeps).
ALPHA_IMAGE_FEATURE = Image(mode="RGBA")
POINT_FEATURES = Features(
    {"xyz": Sequence(Value("float32"), length=3), "rgb": Sequence(Value("uint8"), length=3)}
)
VIEW_CONFIG, POINT_CONFIG, METADATA_FILE = "views", "points", "scene.json"
# A split or point set stored in normalised coordinates names its transform in a line of its DatasetInfo
# description, which datasets keeps through select, map, shuffle and save_to_disk. The frame so travels with the
# data: `Scene` and `SplatTrainer` read it instead of trusting the caller to pass the same transform once more,
# which a forgotten argument would have turned, silently, into a scene or model of unknown frame.
# A views split's line also lists a digest of each pose it marked: the description is per dataset, and
# concatenate_datasets keeps a normalised part's line for rows of an unmarked part too, which the digests tell apart.
FRAME_LINE_PREFIX = "hf-eff world_to_normalized: "


def _stored_poses(views: Dataset, dtype) -> np.ndarray:
    """Each row's stored world_to_camera [N, 4, 4] as ``dtype``, read without decoding an image."""
    poses = views.select_columns(["world_to_camera"]).with_format("numpy")["world_to_camera"]
    return np.asarray(poses, dtype=dtype).reshape(len(views), 4, 4)


def _pose_digests(views: Dataset) -> list[str]:
    """A short digest of each row's stored world_to_camera (float32 bytes)."""
    poses = _stored_poses(views, np.float32).reshape(len(views), 16)
    return [hashlib.blake2b(pose.tobytes(), digest_size=8).hexdigest() for pose in poses]


def data_world_to_normalized(dataset: Dataset, name: str | None = None) -> np.ndarray | None:
    """The ``world_to_normalized`` a views split or point set was stored with (`views_dataset`, `points_dataset`,
    or a `Scene` holding it), or None: in the capture's own coordinates, or built without hf-eff.

    Refuses, naming ``name`` (default: "a dataset of N rows") and the frames, a dataset whose rows were stored in
    different frames, as far as its description tells: parts normalised by different transforms, or a views split
    holding rows that its frame line does not list (`concatenate_datasets` of a normalised split and one in the
    capture's own coordinates, whose merged description names the normalised frame alone). Splits marked before
    the lines listed their poses are taken as they are."""
    where = name or f"a dataset of {len(dataset)} rows"
    lines = {line for line in (dataset.info.description or "").splitlines() if line.startswith(FRAME_LINE_PREFIX)}
    if not lines:
        return None
    # a list: a point set's line (and a views split's before they listed poses); a dict: a views split's
    entries = [json.loads(line.removeprefix(FRAME_LINE_PREFIX)) for line in sorted(lines)]
    frames = [check_world_to_normalized(entry["world_to_normalized"] if isinstance(entry, dict) else entry,
                                        f"{where}: description") for entry in entries]
    frame = frames[0]
    other = next((other for other in frames[1:] if not same_frame(other, frame)), None)
    if other is not None:
        raise ValueError(
            f"{where}: its rows were stored in different frames, normalised by {frame.tolist()} and by "
            f"{other.tolist()} (concatenated from differently normalised data?); build every part with one "
            "world_to_normalized"
        )
    if all(isinstance(entry, dict) for entry in entries) and "world_to_camera" in dataset.column_names:
        listed = {digest for entry in entries for digest in entry["poses"]}
        unlisted = [index for index, digest in enumerate(_pose_digests(dataset)) if digest not in listed]
        if unlisted:
            raise ValueError(
                f"{where}: its description says its rows are stored {describe_frame(frame)}, but {len(unlisted)} "
                f"of its {len(dataset)} rows (row(s) {unlisted[:10]}) are not among those views_dataset stored so: "
                "rows of another frame were added, such as the capture's own coordinates by concatenate_datasets "
                "with an unnormalised split, or their poses were edited; build every part with views_dataset("
                "..., world_to_normalized=...) and the same transform"
            )
    return frame


def _with_world_to_normalized(dataset: Dataset, transform: np.ndarray) -> Dataset:
    """A copy of ``dataset`` (the same arrow table, its own DatasetInfo) whose description names ``transform``
    (and for a views split, its rows' poses): marking the caller's object would give its frame to every later
    scene built from it."""
    marked = copy.deepcopy(dataset)  # datasets shares the arrow table, copies the info
    kept = [line for line in (marked.info.description or "").splitlines() if not line.startswith(FRAME_LINE_PREFIX)]
    # json keeps float64 exactly (repr round-trips)
    entry = transform.tolist()
    if "world_to_camera" in dataset.column_names:
        entry = {"world_to_normalized": entry, "poses": _pose_digests(dataset)}
    marked.info.description = "\n".join([*kept, FRAME_LINE_PREFIX + json.dumps(entry)])
    return marked


def views_dataset(images, Ks, world_to_cameras, background=(0.0, 0.0, 0.0), masks=None,
                  mask_names=None, world_to_normalized=None) -> Dataset:
    """A views split from images, intrinsics [3, 3] and world-to-camera poses [4, 4] or [3, 4]
    (OpenCV: x right, y down, z forward; an OpenGL / Blender camera-to-world ``c2w`` becomes
    ``inv(c2w @ OPENGL_TO_OPENCV)``, see `hf_eff.splat.cameras`). ``Ks``: one per view, or a single
    [3, 3] array or tensor that every view shares (one camera).

    Images may be PIL images, arrays or CPU tensors [H, W], [H, W, 3] or [H, W, 4] (uint8 in
    0..255, or float in [0, 1] as renders are, rounded to 8 bits), encoded bytes or file paths.
    Transparent pixels (an alpha channel, RGBA arrays) are composited onto ``background`` (RGB in
    [0, 1]; black, 3DGS's default, or white for ``white_background``), as the converters do:
    dropping the alpha would train on whatever colour the masked-out pixels hold. ``background=None``
    keeps the alpha instead: images with transparency are stored as RGBA PNGs, and the split's ``image``
    feature is `ALPHA_IMAGE_FEATURE`, which decodes every view as RGBA (a view without transparency as opaque);
    `SplatTrainer` then composites each view onto the colour it renders onto, a random one each step under
    ``random_bkgd`` (as nerfstudio's splatfacto does with ``background_color="random"``), else its fixed
    background. Encoded RGB files are stored as they are (a JPEG is not re-encoded); anything else is stored as
    PNG.

    ``masks`` (optional, one per view, each the size of its image, or None for a view trained on
    every pixel): the pixels training ignores, as nerfstudio's and gsplat's masks: 0 = ignored,
    anything else = trained. A mask is a
    single-channel PIL image, file path or encoded bytes (nerfstudio's mask files), or an array
    or tensor [H, W] of bools, integers or floats; floats must be 0 or 1 (masks are binary: soft
    weights are refused rather than thresholded silently; so are JPEG files, whose noise makes
    ignored pixels non-zero, hence trained; and a mask that keeps no pixel). Stored in a ``mask``
    column as grayscale PNGs of 0 and 255. Masks are not transparency: an RGBA image's alpha is still
    composited onto ``background`` (or kept, with ``background=None``), and a masked pixel is ignored
    whatever its alpha. ``mask_names``: what an error about each mask calls it (default
    ``views_dataset mask <i>``; the converters give the frame or COLMAP image).

    ``world_to_normalized`` (optional, [4, 4]; `world_normalization` (hf_eff.splat.cameras) of the training
    poses): the poses are mapped into normalised coordinates in float64 before they are stored as
    float32. A capture far from the world origin (georegistered) needs it: stored as they are, its
    camera centres would round by more than 1e-4 of their span, which is refused. Give every split and the
    point set (`points_dataset`) the same one: the split records it (`data_world_to_normalized`), and
    `Scene.from_views` takes it from there and refuses parts that disagree.
    """
    import PIL.Image

    stored, sizes = [], []
    for index, image in enumerate(images):
        if isinstance(image, str | Path):
            image = Path(image).read_bytes()
        if isinstance(image, bytes | bytearray):
            with PIL.Image.open(io.BytesIO(image)) as opened:
                sizes.append(opened.size)
                stored.append(
                    {"bytes": bytes(image), "path": None}
                    if opened.mode == "RGB" and not has_alpha(opened)
                    else _stored_image(opened, background)
                )
            continue
        if isinstance(image, torch.Tensor | np.ndarray):
            image = PIL.Image.fromarray(_uint8_pixels(image, index))
        if not isinstance(image, PIL.Image.Image):
            raise TypeError(
                f"views_dataset image {index}: expected a PIL image, an array or tensor [H, W, 3], "
                f"bytes or a file path, got {type(image).__name__}"
            )
        sizes.append(image.size)
        stored.append(_stored_image(image, background))
    if isinstance(Ks, np.ndarray | torch.Tensor):
        if tuple(Ks.shape) == (3, 3):
            Ks = [Ks] * len(stored)  # one camera for every view; iterating would read its rows as three Ks
        elif Ks.ndim != 3:  # iterating would read its rows as Ks, and count them
            raise ValueError(
                f"views_dataset: Ks has shape {tuple(Ks.shape)}; expected one K [3, 3] that every view shares, or "
                "one per view [N, 3, 3] (from fx, fy, cx, cy: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])"
            )
    Ks = [np.asarray(K, dtype=np.float32) for K in Ks]
    given_poses = [np.asarray(pose, dtype=np.float64) for pose in world_to_cameras]
    if world_to_normalized is not None:
        transform = check_world_to_normalized(world_to_normalized, "views_dataset")
        given_poses = [normalize_world_to_camera(transform, pose) if pose.shape in ((4, 4), (3, 4)) else pose
                       for pose in given_poses]
    poses = [pose.astype(np.float32) for pose in given_poses]
    if not len(stored) == len(Ks) == len(poses):
        raise ValueError(
            f"views_dataset: {len(stored)} images, {len(Ks)} intrinsics and {len(poses)} poses; "
            "one of each per view"
        )
    for index, (K, pose) in enumerate(zip(Ks, poses)):
        if K.shape != (3, 3):
            raise ValueError(
                f"views_dataset view {index}: K must be 3x3, got shape {K.shape} "
                "(from fx, fy, cx, cy: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])"
            )
        if pose.shape == (3, 4):  # [R | t], as COLMAP and OpenCV give it
            poses[index] = np.concatenate([pose, np.array([[0, 0, 0, 1]], dtype=np.float32)])
        elif pose.shape != (4, 4):
            raise ValueError(
                f"views_dataset view {index}: world_to_camera must be 4x4 or 3x4, got shape {pose.shape}"
            )
    _check_float32_keeps_cameras(given_poses, poses)
    columns = {
        "image": stored,
        "K": Ks,
        "world_to_camera": poses,
        "width": [size[0] for size in sizes],
        "height": [size[1] for size in sizes],
    }
    features = VIEW_FEATURES if background is not None else Features({**VIEW_FEATURES, "image": ALPHA_IMAGE_FEATURE})
    if masks is not None:
        columns[MASK_COLUMN] = _mask_images(masks, sizes, mask_names)
        features = Features({**features, MASK_COLUMN: MASK_FEATURE})
    views = Dataset.from_dict(columns, features=features)
    if world_to_normalized is not None:
        views = _with_world_to_normalized(views, transform)
    return views


def _check_float32_keeps_cameras(given: list[np.ndarray], stored: list[np.ndarray]) -> None:
    """Refuses poses that float32 storage moves by more than 1e-4 of the cameras' span: a georegistered
    capture (UTM coordinates, millions of metres from the origin) rounds to about half a metre, and further
    out onto one point. Cameras at one point as given (camera-to-world matrices given as world_to_camera)
    are left to `Scene.from_views`, whose error names the split and the inverted poses."""
    if len(given) < 2 or any(pose.shape not in ((4, 4), (3, 4)) for pose in given):
        return
    if not all(np.isfinite(pose).all() and abs(np.linalg.det(pose[:3, :3])) > 1e-8 for pose in given):
        return  # named by the scene's checks
    exact = camera_centres([pose[:3] for pose in given])
    span = camera_spread(exact)
    given_rounding = _centre_rounding(np.stack([pose[:3] for pose in given]), np.finfo(np.float64).eps)
    if span <= 10 * given_rounding:
        return
    moved = np.abs(camera_centres([pose[:3] for pose in stored]) - exact).max()
    if moved > 1e-4 * span:
        raise ValueError(
            f"views_dataset: the cameras lie about {np.linalg.norm(exact, axis=1).max():.3g} from the world origin "
            f"but within {span:.3g} of their mean; stored as float32, their centres move by up to {moved:.3g}. "
            f"{NORMALIZE_HINT}"
        )


# What the errors about cameras that float32 cannot place name as the fix.
NORMALIZE_HINT = (
    "Normalise the world in float64 before it is stored: load_scene(folder, normalize_world_space=True) for a COLMAP "
    "or NeRF folder (examples/splat_train.py --normalize_world_space); for your own arrays pass "
    "world_to_normalized=world_normalization(train_poses) (from hf_eff) to views_dataset for every split "
    "and to points_dataset. The scene and the trained model record the transform"
)


def _mask_images(masks, sizes: list[tuple[int, int]], names=None) -> list:
    """`views_dataset`'s masks as grayscale PIL images of 0 (ignored) and 255 (trained), one per
    view of the given (width, height) sizes; anything that is not a binary single-channel mask of
    its view's size is refused, naming the view."""
    import PIL.Image

    masks = list(masks)
    if len(masks) != len(sizes):
        raise ValueError(f"views_dataset: {len(masks)} masks for {len(sizes)} images; one mask per view")
    stored = []
    for index, (mask, size) in enumerate(zip(masks, sizes)):
        where = f"views_dataset mask {index}" if names is None else names[index]
        if mask is None:  # this view trains on every pixel
            stored.append(None)
            continue
        if isinstance(mask, str | Path) and not Path(mask).is_file():
            raise FileNotFoundError(f"{where}: mask {mask} not found")
        if isinstance(mask, str | Path | bytes | bytearray):
            with PIL.Image.open(mask if isinstance(mask, str | Path) else io.BytesIO(mask)) as opened:
                check_mask_image(opened, size, where)
                mask = np.asarray(opened)
        elif isinstance(mask, PIL.Image.Image):
            check_mask_image(mask, size, where)
            mask = np.asarray(mask)
        elif isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        elif not isinstance(mask, np.ndarray):
            raise TypeError(
                f"{where}: expected a single-channel PIL image, an array or tensor [H, W], bytes or a file "
                f"path, got {type(mask).__name__}"
            )
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.ndim != 2:
            raise ValueError(f"{where}: expected [H, W] (one channel), got shape {mask.shape}")
        if (mask.shape[1], mask.shape[0]) != size:
            raise ValueError(
                f"{where}: the mask is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]}"
            )
        if mask.dtype.kind == "f" and not np.isin(mask, (0.0, 1.0)).all():
            raise ValueError(
                f"{where}: float masks must hold only 0 (ignored) and 1 (trained), got values from "
                f"{np.nanmin(mask):.4g} to {np.nanmax(mask):.4g}; masks are binary: threshold soft ones first "
                "(e.g. mask > 0.5)"
            )
        if mask.dtype.kind not in "biuf":
            raise ValueError(f"{where}: mask values must be bools or numbers, got {mask.dtype}")
        if not mask.any():  # refused here, where its view is named as the caller counts it
            raise ValueError(
                f"{where}: the mask keeps no pixel (0 everywhere: nothing to train on or measure); leave the view "
                "out, or mark the pixels to train on with non-zero values"
            )
        stored.append(PIL.Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8)))
    return stored


def check_mask_image(image, size: tuple[int, int], where: str) -> None:
    """Refuses, naming ``where``, a mask (a PIL image, as opened: its header suffices) with more than
    one channel, of another size than its image's (width, height) ``size``, or stored as JPEG, whose
    compression turns ignored pixels (0) into small values that read as trained."""
    name = f" {Path(image.filename).name}" if getattr(image, "filename", "") else ""
    if image.format in ("JPEG", "MPO"):
        raise ValueError(
            f"{where}: mask{name} is a JPEG, whose compression makes some ignored pixels (0) non-zero, hence "
            "trained (as nerfstudio reads masks, any non-zero value trains): save masks losslessly, as PNG"
        )
    if len(image.getbands()) != 1:
        raise ValueError(
            f"{where}: mask{name} is a {image.mode} image; a mask has one channel (0 = ignored, anything else "
            "= trained): save it as grayscale"
        )
    if image.size != tuple(size):
        raise ValueError(
            f"{where}: mask{name} is {image.size[0]}x{image.size[1]} but its image is {size[0]}x{size[1]}"
        )


def _uint8_pixels(image, index: int) -> np.ndarray:
    """An array or tensor image as uint8 [H, W] or [H, W, 3 or 4]; float values in [0, 1] are
    rounded to 0..255 (and those less than half a level outside it, a render's rounding error).
    Anything PIL would misread (other layouts, 16-bit or out-of-range values) is refused, naming
    the view."""
    where = f"views_dataset image {index}"
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (3, 4))):
        raise ValueError(
            f"{where}: expected [H, W], [H, W, 3] or [H, W, 4] (channels last), got shape {image.shape}"
        )
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind == "f":
        if not np.isfinite(image).all():
            bad = np.argwhere(~np.isfinite(image))[0]
            raise ValueError(f"{where}: pixels contain NaN or infinite values (first at {tuple(bad.tolist())})")
        # Stored as 8 bits: a render's rounding error past 0 or 1 (under half a level) stores as 0 or 255.
        tolerance = 0.5 / 255
        if image.min() < -tolerance or image.max() > 1 + tolerance:
            raise ValueError(
                f"{where}: float pixels must be in [0, 1], got values from {image.min():.6g} to {image.max():.6g}"
            )
        return np.round(np.clip(image.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    if image.dtype.kind in "iu" and image.size and image.min() >= 0 and image.max() <= 255:
        return image.astype(np.uint8)
    raise ValueError(
        f"{where}: pixels must be uint8 in 0..255 or float in [0, 1], got {image.dtype} "
        + (f"with values from {image.min()} to {image.max()}" if image.size else "(empty)")
    )


def _stored_image(image, background):
    """A PIL image as `views_dataset` stores it: with transparency, RGBA for ``background`` None, else RGB
    composited onto ``background``; without, RGB (other modes converted)."""
    import PIL.Image

    if has_alpha(image):
        if background is None:
            return image.convert("RGBA")  # a loaded copy: an opened file's image is read before it closes
        return PIL.Image.fromarray(composite_alpha(image, background))
    return image if image.mode == "RGB" else image.convert("RGB")


# Every 8th view to test by default, as 3DGS's llffhold, where a converted capture has no test split of its own.
LLFF_TEST_EVERY = 8


def check_test_every(test_every) -> None:
    """A converter's ``test_every``: None (the converter's default) or an int >= 0 (0: no test split)."""
    if test_every is not None and (isinstance(test_every, bool) or not isinstance(test_every, int) or test_every < 0):
        raise ValueError(f"test_every must be an integer >= 0 (0: no test split), got {test_every!r}")


def check_one_image_size(sizes: list[tuple[str, tuple[int, int]]], is_test: list[bool] | None = None) -> None:
    """A converter's images, as (name, (width, height)) each, one split, or two where ``is_test`` flags each image's:
    refuses images of another size than their split's first, naming the file, before anything is stored
    (`SplatTrainer` and evaluation stack a split at one size)."""
    if is_test is not None:
        for test in (False, True):
            check_one_image_size([size for size, flag in zip(sizes, is_test) if flag == test])
        return
    for name, size in sizes:
        if size != sizes[0][1]:
            first_name, first_size = sizes[0]
            raise ValueError(
                f"{name} is {size[0]}x{size[1]} but {first_name} is {first_size[0]}x{first_size[1]}, in one split: "
                "SplatTrainer trains a split at one image size; resize that image (its K follows the file's size) "
                "or leave it out"
            )


def composite_alpha(image, background) -> np.ndarray:
    """An image's transparent pixels composited onto ``background`` (RGB in [0, 1]): uint8
    [H, W, 3], as 3DGS loads RGBA views."""
    return composite_rgba(np.asarray(image.convert("RGBA")), background)


def composite_rgba(rgba: np.ndarray, background) -> np.ndarray:
    """uint8 RGBA pixels [..., 4] (straight alpha) composited onto ``background`` (RGB in [0, 1]), rounded to uint8
    [..., 3]: how `views_dataset` composites a view, and (onto black) how `premultiply_rgba` premultiplies a kept
    alpha, so the two agree to the bit."""
    rgba = rgba.astype(np.float64) / 255.0
    alpha = rgba[..., 3:]
    rgb = rgba[..., :3] * alpha + np.asarray(background, dtype=np.float64).reshape(3) * (1 - alpha)
    return np.round(rgb * 255).astype(np.uint8)


def premultiply_rgba(rgba: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RGBA views uint8 [N, H, W, 4] (straight alpha, CPU: `scene_views_images` of a split that keeps its alpha) split
    in place into their colour over black [N, H, W, 3] (`composite_rgba` onto black, as `views_dataset` composites)
    and their alphas [N, H, W]: two views of the one stack, no copy of it. ``masks`` [N, H, W] bool (True = trained):
    ignored pixels are made opaque, so that their colour alone (which the caller sets) is their target. Alphas that
    are 255 everywhere (an opaque capture kept with its alpha) come back None: they would composite nothing."""
    for view in rgba:  # one view at a time: no float copy of the whole split
        if view[..., 3].min() < 255:  # an opaque view is its own colour over black
            view[..., :3] = torch.from_numpy(composite_rgba(view.numpy(), (0.0, 0.0, 0.0)))
    colours, alphas = rgba[..., :3], rgba[..., 3]
    if masks is not None:
        alphas[~masks] = 255
    return colours, None if alphas.min() == 255 else alphas


def composite_premultiplied(colours: torch.Tensor, alphas: torch.Tensor, backgrounds: torch.Tensor) -> torch.Tensor:
    """Views kept with their alpha, as float in [0, 1]: their colour over black (premultiplied) [N, H, W, 3] and
    alphas [N, H, W, 1], composited onto ``backgrounds`` [N, 3] (or one [3] for all): ``colour + background *
    (1 - alpha)``. What training's target, evaluation's and the energy schedule's are (`SplatTrainer`)."""
    return colours + backgrounds.reshape(-1, 1, 1, 3) * (1 - alphas)


def has_alpha(image) -> bool:
    """Whether a PIL image carries transparency (an alpha band or a transparent palette entry)."""
    return "A" in image.getbands() or "transparency" in image.info


def check_points(xyz, rgb) -> None:
    """Raises ``ValueError`` naming the problem unless xyz is finite [N, 3] and rgb integers in
    0..255 [N, 3] (any integer dtype: other tools' scenes and `Dataset.from_dict` of Python ints
    give int64, cast to uint8 where the colours are read): a float colour in [0, 1] would round to
    black, and 300 or -5 would wrap, when stored as uint8."""
    xyz, rgb = np.asarray(xyz), np.asarray(rgb)
    if len(xyz) == 0:
        raise ValueError("scene points: the point set is empty; use points=None (random initialisation)")
    if xyz.ndim != 2 or xyz.shape[1] != 3 or rgb.shape != xyz.shape:
        raise ValueError(
            f"scene points: xyz and rgb must both be [N, 3], got {xyz.shape} and {rgb.shape}"
        )
    if rgb.dtype.kind == "f":
        raise ValueError(
            f"scene points: rgb must be integers in 0..255, got dtype {rgb.dtype} "
            "(colours in [0, 1]: multiply by 255 and round first)"
        )
    if rgb.dtype.kind not in "iu":
        raise ValueError(f"scene points: rgb must be integers in 0..255, got dtype {rgb.dtype}")
    low, high = int(rgb.min()), int(rgb.max())
    if low < 0 or high > 255:
        hint = "16-bit colours: divide by 257 and round" if low >= 0 and high <= 65535 else "clip them"
        raise ValueError(
            f"scene points: rgb must lie in 0..255, got values from {low} to {high} ({hint} first)"
        )
    bad = np.flatnonzero(~np.isfinite(xyz.astype(np.float64)).all(-1))
    if len(bad):
        raise ValueError(f"scene point {bad[0]}: xyz contains NaN or infinite values")


def _stored_rows(dataset: Dataset, column: str) -> np.ndarray:
    """A list column as stored: [N, k] in its own dtype, read from arrow in one piece (the numpy
    format widens every integer to int64 and float to float32, row by row: about a minute for
    a million points), or [N] objects when rows are missing or differ in length."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = dataset.with_format("arrow")[:].column(column).combine_chunks()
    kind = values.type
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if is_list and len(values) and not values.null_count:
        lengths = pc.min_max(pc.list_value_length(values)).as_py()
        if lengths["min"] == lengths["max"]:
            return values.flatten().to_numpy(zero_copy_only=False).reshape(len(values), lengths["max"])
    return values.to_numpy(zero_copy_only=False)


def _same_rows(first: Dataset, second: Dataset) -> bool:
    """Whether two datasets hold the same features and rows (an index mapping, as `select` leaves,
    is followed; arrow's schema metadata is not compared)."""
    return first.features == second.features and first.with_format("arrow")[:].equals(
        second.with_format("arrow")[:]
    )


def points_dataset(xyz, rgb, world_to_normalized=None) -> Dataset:
    """A point set from xyz [N, 3] and rgb [N, 3] (integers in 0..255, stored as uint8), checked
    by `check_points`; ``world_to_normalized`` (the views' one, see `views_dataset`) maps xyz in
    float64 before it is stored as float32, and the point set records it (`data_world_to_normalized`)."""
    xyz, rgb = np.asarray(xyz, dtype=np.float64), np.asarray(rgb)
    transform = None
    if world_to_normalized is not None:
        transform = check_world_to_normalized(world_to_normalized, "points_dataset")
        if xyz.ndim == 2 and xyz.shape[1] == 3:  # other shapes: check_points names them
            xyz = xyz * transform[0, 0] + transform[:3, 3]
    xyz = xyz.astype(np.float32)
    check_points(xyz, rgb)
    points = Dataset.from_dict({"xyz": xyz, "rgb": rgb.astype(np.uint8)}, features=POINT_FEATURES)
    if transform is not None:
        points = _with_world_to_normalized(points, transform)
    return points


@dataclass(eq=False)
class Scene:
    """Posed views (a `DatasetDict` with at least a ``train`` split), an optional point set
    for initialisation, the scene centre and the radius of the cameras around it. Two scenes are
    equal (``==``) when they hold the same splits, rows (images compared as stored), centre and
    radius: ``load_scene(folder) == scene`` after ``scene.save(folder)``.

    From your own images and cameras: ``Scene.from_views(DatasetDict({"train": views_dataset(
    images, Ks, world_to_cameras), "test": views_dataset(...)}), points_dataset(xyz, rgb))``
    (the point set is optional), then `save` or `push_to_hub`.

    ``world_to_normalized``: None when the views and points are in the capture's own world
    coordinates; else the similarity [4, 4] float64 (x_n = s x + b) that mapped them into the
    normalised coordinates they are stored in (`views_dataset`, ``load_scene(...,
    normalize_world_space=True)``). Left None, it is the one the splits and points were stored with
    (`data_world_to_normalized`); parts stored with different ones, or given another one, are refused, and so
    is one given for parts that name none (`views_dataset` and `points_dataset` apply it and name it). The
    splits and the point set name it, scene.json keeps it, and `SplatTrainer` gives it to the model trained on a
    split (`GaussianModel.world_to_normalized`), so results can be placed back in the original frame."""

    views: DatasetDict
    points: Dataset | None
    center: tuple[float, float, float]
    radius: float
    world_to_normalized: np.ndarray | None = None

    def __post_init__(self):
        validate_views(self.views)
        if self.points is not None:
            missing = [c for c in ("xyz", "rgb") if c not in self.points.column_names]
            if missing:
                raise ValueError(f"scene points: missing column(s) {missing}")
            check_points(_stored_rows(self.points, "xyz"), _stored_rows(self.points, "rgb"))
        center = np.asarray(self.center, dtype=np.float64)
        if center.shape != (3,) or not np.isfinite(center).all():
            raise ValueError(f"scene center must be 3 finite floats, got {self.center}")
        if not (np.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"scene radius must be positive and finite, got {self.radius}")
        self.center = tuple(float(c) for c in center)
        self.radius = float(self.radius)
        self.world_to_normalized = self._agreed_world_to_normalized()

    def _agreed_world_to_normalized(self) -> np.ndarray | None:
        """The frame the views and points were stored in: the one they name, which must be the same for each
        and agree with the one given. A frame given for parts that name none is refused: it would be recorded
        for data it was never applied to."""
        given = self.world_to_normalized
        if given is not None:
            given = check_world_to_normalized(given, "scene")
        named = _named_frames(self.views, self.points)
        first, stored = next(iter(named.items()))
        for part, frame in named.items():
            if not same_frame(frame, stored):
                raise ValueError(
                    f"scene: {first} is stored {describe_frame(stored)} but {part} {describe_frame(frame)}; build "
                    "every split (views_dataset) and the point set (points_dataset) with the same world_to_normalized"
                )
        if given is not None and stored is None:
            raise ValueError(
                f"scene: world_to_normalized={given.tolist()} was given for views stored in the capture's own "
                "coordinates (they name no frame), so it would be recorded for data it was never applied to: pass "
                "it to views_dataset (every split) and points_dataset, which map the poses and points and name it, "
                "and leave it out here"
            )
        if given is not None and not same_frame(given, stored):
            raise ValueError(
                f"scene: world_to_normalized={given.tolist()} was given, but the views were stored "
                f"{describe_frame(stored)} (views_dataset's world_to_normalized); leave it out to use theirs"
            )
        return stored

    @classmethod
    def from_views(
        cls, views: DatasetDict, points: Dataset | None = None, center=None, radius=None, world_to_normalized=None
    ) -> Scene:
        """A scene whose missing centre / radius come from the training cameras, as
        3DGS and gsplat normalise: the mean camera position and the largest camera
        distance from it (1 for a single camera). Several cameras of one split (any split) at one point are
        refused, naming the split: that is what camera-to-world matrices given as world_to_camera look like for
        cameras aimed at one target, and a capture without camera motion has no parallax to fit.
        ``world_to_normalized``: None takes the transform the views and points were stored with, if any
        (`views_dataset`, `points_dataset`); given, it must be theirs. See `Scene`."""
        validate_views(views)
        positions = {}
        for split, dataset in views.items():
            poses = _stored_poses(dataset, np.float64)
            positions[split] = camera_centres(poses)
            if len(poses) > 1 and camera_spread(positions[split]) <= 10 * _centre_rounding(poses):
                cameras = "training cameras" if split == "train" else f"cameras of split {split!r}"
                raise ValueError(
                    f"scene: the {len(poses)} {cameras} all sit at one point "
                    f"({', '.join(f'{c:.4g}' for c in positions[split].mean(0))}): world_to_camera must map world "
                    "points into the camera, the inverse of a camera-to-world pose (invert the matrices); a capture "
                    "without camera motion cannot be reconstructed; cameras far from the world origin lose "
                    f"their spread to float32 rounding. {NORMALIZE_HINT}"
                )
        if center is None:
            center = positions["train"].mean(0)
        if radius is None:
            radius = camera_spread(positions["train"], center) or 1.0
        return cls(views=views, points=points, center=center, radius=radius, world_to_normalized=world_to_normalized)

    def __eq__(self, other) -> bool:
        # A dataclass's own __eq__ would compare the datasets by identity (datasets defines no
        # equality), so a saved and reloaded scene would never equal the scene it came from.
        if not isinstance(other, Scene):
            return NotImplemented
        if (self.center, self.radius, list(self.views)) != (other.center, other.radius, list(other.views)):
            return False
        if not same_frame(self.world_to_normalized, other.world_to_normalized):
            return False
        if (self.points is None) != (other.points is None):
            return False
        pairs = [(self.views[split], other.views[split]) for split in self.views]
        if self.points is not None:
            pairs.append((self.points, other.points))
        return all(_same_rows(mine, theirs) for mine, theirs in pairs)

    __hash__ = None  # mutable, compared by content

    def __repr__(self) -> str:
        splits = ", ".join(f"{name}={len(split)}" for name, split in self.views.items())
        points = "none" if self.points is None else len(self.points)
        normalized = "" if self.world_to_normalized is None else "; world normalised"
        return f"Scene(views: {splits}; points: {points}; center={self.center}, radius={self.radius:.3g}{normalized})"

    def point_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """xyz float32 [N, 3] and rgb uint8 [N, 3] of the point set, writable copies (arrow's
        buffers are read-only)."""
        if self.points is None:
            raise ValueError("this scene has no point set; initialise Gaussians at random instead")
        xyz, rgb = _stored_rows(self.points, "xyz"), _stored_rows(self.points, "rgb")
        return xyz.astype(np.float32), rgb.astype(np.uint8)

    def poses_and_points(self, original_frame: bool = True) -> tuple[dict[str, np.ndarray],
                                                                      tuple[np.ndarray, np.ndarray] | None]:
        """The world_to_camera poses [N, 4, 4] float64 of each split (in split order) and the point set (xyz, rgb
        as `point_arrays`; None without one), as `write_colmap` and `write_nerf_synthetic` write them.

        A scene stored in normalised coordinates (``world_to_normalized``, ``load_scene(...,
        normalize_world_space=True)``) gives them in the capture's own coordinates, mapped back in float64 (xyz
        too: far from the origin, float32 would round away what normalising kept), since the files written from
        them could not record the transform. Read back with ``normalize_world_space=True``, a NeRF folder gives the
        same cameras in the same splits; a COLMAP project does for a scene without a test split (see
        `write_colmap`). ``original_frame=False``, or a scene in its capture's own coordinates, gives them as stored
        (xyz float32; files written from them hold no trace of the original frame)."""
        to_original = self.world_to_normalized if original_frame else None
        poses = {}
        for split, views in self.views.items():
            stored = _stored_poses(views, np.float64)
            if to_original is not None:
                stored = np.array([original_world_to_camera(to_original, pose) for pose in stored]).reshape(stored.shape)
            poses[split] = stored
        if self.points is None:
            return poses, None
        xyz, rgb = self.point_arrays()
        return poses, (xyz if to_original is None else original_points(to_original, xyz), rgb)

    def save(self, folder) -> Path:
        """Writes the Hub layout (parquet files, README.md with configs, scene.json).

        An empty split (a converted folder's test split with ``test_every=0``) is not written:
        `datasets` cannot load a split without rows, so the loaded scene has no such split, as
        `SplatTrainer` (``eval_dataset=None``) and the example expect. When some split has masks,
        the others are saved with a ``mask`` column of None. What an earlier scene saved in
        ``views/`` and ``points/`` (parquet shards, or ``save_to_disk`` files) is removed first.
        """
        folder = Path(folder)
        for config_name in (VIEW_CONFIG, POINT_CONFIG):
            _remove_saved_dataset(folder / config_name)
        views = {name: split for name, split in self.views.items() if len(split)}
        if any(MASK_COLUMN in split.column_names for split in views.values()):
            # One configuration, one set of columns: datasets refuses to load splits whose columns
            # differ, so an unmasked split gets a mask column of None (every pixel trains).
            views = {
                name: split if MASK_COLUMN in split.column_names
                else split.add_column(MASK_COLUMN, [None] * len(split), feature=MASK_FEATURE)
                for name, split in views.items()
            }
        configs = {VIEW_CONFIG: DatasetDict(views)}
        if self.points is not None:
            configs[POINT_CONFIG] = DatasetDict({"train": self.points})
        yaml = ["---", "configs:"]
        for config_name, dataset_dict in configs.items():
            yaml += [f"- config_name: {config_name}", "  data_files:"]
            for split, dataset in dataset_dict.items():
                path = folder / config_name / f"{split}-00000-of-00001.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                _embedded(dataset).to_parquet(str(path))
                yaml += [f"  - split: {split}", f"    path: {config_name}/{split}-*"]
        yaml += ["tags:", "- gaussian-splatting", "- hf-eff", "---", ""]
        card = (
            "# Scene for 3D reconstruction\n\n"
            "Posed views (`views`: image (RGBA where the scene keeps its alpha), K in pixels, OpenCV "
            "world_to_camera, width, height, and an "
            "optional mask whose 0 pixels training ignores) "
            "and an initial point set (`points`: xyz, rgb); `scene.json` holds the centre and "
            "camera radius (and `world_to_normalized` for a scene stored in normalised coordinates). Load it with "
            "`hf_eff.load_scene(repo_id)`.\n"
        )
        (folder / "README.md").write_text("\n".join(yaml) + card)
        metadata = {"center": list(self.center), "radius": self.radius}
        if self.world_to_normalized is not None:
            metadata["world_to_normalized"] = self.world_to_normalized.tolist()
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        private: bool | None = None,
        token=None,
        commit_message=None,
        revision=None,
        license: str | None = None,
    ):
        """Uploads the `save` layout, with the hf-eff scene card, to a Hub dataset repo in one
        commit (what `hf-eff push` of a scene folder does too); ``revision``: a branch, created from
        main if it does not exist; ``license``: the card's license (a Hub license id: the images
        are the user's, so none is stated without it). Before the repo is created, the Hub's whoami
        refuses a token it does not know, a read token or a repo the token cannot write to, and
        the Hub names a bare ``repo_id``'s user (``hf_eff.hub.push.refuse_unwritable_repo``); offline
        (``HF_HUB_OFFLINE``), the push is refused before anything (``refuse_offline``:
        ``OfflineModeIsEnabled``), as `hf-eff push` refuses before it calls ``_push_to_hub``."""
        from hf_eff.hub.push import refuse_offline

        refuse_offline(repo_id)
        return self._push_to_hub(repo_id, private, token, commit_message, revision, license,
                                 given_as="Scene.push_to_hub's token", identity=None)

    def _push_to_hub(self, repo_id: str, private: bool | None, token, commit_message, revision,
                     license: str | None, given_as: str, identity: dict | None):
        """`push_to_hub`, with what `hf-eff push` (``push_output_dir``) knows: ``given_as``, what
        the refusals call a given ``token``, and ``identity``, whoami's answer when it asked already
        (for a bare name). Private: an ``identity`` not from whoami would skip its checks."""
        from huggingface_hub import DatasetCard, HfApi

        from hf_eff.hub.cards import scene_card
        from hf_eff.hub.push import ensure_branch, refuse_unwritable_repo

        api = HfApi(token=token)
        refuse_unwritable_repo(api, repo_id, repo_type="dataset", given_as=given_as, identity=identity)
        # the created repo's whole id: the Hub puts a bare name under the token's user, and the uploads and the card
        # need USER/NAME
        repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
        ensure_branch(api, repo_id, revision, repo_type="dataset")
        with tempfile.TemporaryDirectory() as tmp:
            self.save(tmp)
            readme = Path(tmp) / "README.md"
            contents = {}
            for split, views in self.views.items():
                contents[f"{split} views"] = len(views)
                if masked := masked_view_count(views):
                    contents[f"{split} views with a mask"] = masked
            if self.points is not None:
                contents["points"] = len(self.points)
            contents["camera radius"] = self.radius
            if self.world_to_normalized is not None:  # scene.json: world_to_normalized
                contents["one unit, in the capture's world units (normalised)"] = 1 / self.world_to_normalized[0, 0]
            # The card keeps save's YAML (its configs are how load_dataset finds views and points).
            metadata = DatasetCard.load(readme).data.to_dict()
            scene_card(repo_id, contents, metadata, license=license, revision=revision).save(readme)
            return api.upload_folder(
                repo_id=repo_id,
                repo_type="dataset",
                folder_path=tmp,
                revision=revision,
                # A re-push replaces the scene: shards of the old one must not linger.
                delete_patterns=[f"{VIEW_CONFIG}/*", f"{POINT_CONFIG}/*"],
                commit_message=commit_message or "Upload scene with hf-eff",
            )


# What `Dataset.save_to_disk` / `DatasetDict.save_to_disk` write (and `map` caches beside them).
SAVE_TO_DISK_FILES = ("dataset_dict.json", "dataset_info.json", "state.json", "data-*.arrow", "cache-*.arrow")


def _remove_saved_dataset(directory: Path) -> None:
    """Removes the parquet shards `Scene.save` wrote in ``directory``, or the files
    ``save_to_disk`` wrote there (and in its split folders); other files stay."""
    if not directory.is_dir():
        return
    # A DatasetDict's splits are folders holding their own state.json.
    splits = [child for child in directory.iterdir() if (child / "state.json").is_file()]
    stale = list(directory.glob("*.parquet"))
    for saved in [directory, *splits]:
        stale += [path for pattern in SAVE_TO_DISK_FILES for path in saved.glob(pattern)]
    for path in stale:
        path.unlink()
    for split in splits:
        if not any(split.iterdir()):
            split.rmdir()


def _embedded(dataset: Dataset) -> Dataset:
    """Image bytes embedded in the table (as `push_to_hub` does), so no file paths leak out."""
    from datasets.table import embed_table_storage

    return (
        dataset.with_format("arrow")
        .map(embed_table_storage, batched=True, keep_in_memory=True)
        .with_format(None)
    )


REQUIRED_VIEW_COLUMNS = ("image", "K", "world_to_camera", "width", "height")


def validate_views(views: DatasetDict) -> None:
    """Raises ``ValueError`` naming the split, view and problem for a malformed scene."""
    if not isinstance(views, DatasetDict):
        raise TypeError(f"scene views must be a datasets.DatasetDict, got {type(views).__name__}")
    if "train" not in views:
        raise ValueError(f"scene views need a 'train' split, found {list(views)}")
    if len(views["train"]) == 0:
        raise ValueError("scene views: the 'train' split is empty; a scene needs a training view")
    for split, dataset in views.items():
        validate_views_split(dataset, split)
    with_alpha = [split for split, dataset in views.items() if keeps_alpha(dataset)]
    if with_alpha and len(with_alpha) < len(views):
        without = [split for split in views if split not in with_alpha]
        # A scene's splits are one configuration of one set of features: loaded back, one image feature would
        # decode them all, dropping one split's alpha or giving another an alpha it never had.
        raise ValueError(
            f"scene views: split(s) {with_alpha} keep their alpha (image feature {ALPHA_IMAGE_FEATURE}, "
            f"views_dataset(..., background=None)) but {without} do not: build every split alike, with "
            "background=None to keep the alpha or with one background colour to composite it"
        )


def keeps_alpha(views: Dataset) -> bool:
    """Whether a views split keeps its images' alpha: its ``image`` feature is `ALPHA_IMAGE_FEATURE`
    (`views_dataset(..., background=None)`), read from the features without decoding an image."""
    return views.features.get("image") == ALPHA_IMAGE_FEATURE


def validate_views_split(dataset: Dataset, split: str | None = None) -> None:
    """Raises ``ValueError`` naming the view (and ``split``) and the problem for a malformed split:
    its columns, cameras, image sizes and the optional ``mask`` column (per view a single-channel
    lossless image of its view's size, `check_mask_image`, or None: no mask). `validate_views` checks a scene's splits with it, and
    `SplatTrainer` the splits it is given. Transparency and masks that keep no pixel need the
    decoded pixels: they are checked where those are decoded (`scene_views_images`,
    `scene_views_masks`)."""
    import PIL.Image

    label = _label(split)
    missing = [c for c in REQUIRED_VIEW_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"scene views{label}: missing column(s) {missing}; columns are {dataset.column_names}"
        )
    if not isinstance(dataset.features["image"], Image):
        raise ValueError(
            f"scene views{label}: column 'image' must be a datasets.Image feature, "
            f"got {dataset.features['image']}"
        )
    columns = list(REQUIRED_VIEW_COLUMNS)
    if MASK_COLUMN in dataset.column_names:
        if not isinstance(dataset.features[MASK_COLUMN], Image):
            raise ValueError(
                f"scene views{label}: column '{MASK_COLUMN}' must be a datasets.Image feature, "
                f"got {dataset.features[MASK_COLUMN]} (build the split with views_dataset(..., masks=...))"
            )
        columns.append(MASK_COLUMN)
    raw = dataset.select_columns(columns).cast_column("image", Image(decode=False))
    if MASK_COLUMN in columns:
        raw = raw.cast_column(MASK_COLUMN, Image(decode=False))
    for index, row in enumerate(raw):
        where = f"scene view {index}{label}"
        K = np.asarray(row["K"], dtype=np.float64)
        pose = np.asarray(row["world_to_camera"], dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"{where}: K must be 3x3, got shape {K.shape}")
        if pose.shape != (4, 4):
            raise ValueError(f"{where}: world_to_camera must be 4x4, got shape {pose.shape}")
        if not np.isfinite(pose).all():
            raise ValueError(f"{where}: world_to_camera contains NaN or infinite values")
        if not np.isfinite(K).all():
            raise ValueError(f"{where}: K contains NaN or infinite values")
        if not np.allclose(pose[3], [0, 0, 0, 1], atol=1e-6):
            raise ValueError(
                f"{where}: world_to_camera bottom row must be [0, 0, 0, 1], got {pose[3]}"
            )
        if abs(np.linalg.det(pose[:3, :3])) < 1e-8:
            raise ValueError(
                f"{where}: world_to_camera is not invertible (its 3x3 block is singular)"
            )
        rotation = pose[:3, :3]
        # Rigid poses only: the rasterizer reads the 3x3 block as a rotation. Real poses
        # (COLMAP quaternions, Blender's printed matrices) stored as float32 are orthonormal to
        # ~1e-7; 1e-3 rejects scaled, sheared or reflected poses, not rounding.
        deviation = np.abs(rotation @ rotation.T - np.eye(3)).max()
        if deviation > 1e-3:
            raise ValueError(
                f"{where}: world_to_camera rotation is not orthonormal "
                f"(R R^T differs from I by {deviation:.3g}); scale belongs in the scene, not the pose"
            )
        if np.linalg.det(rotation) < 0:
            raise ValueError(
                f"{where}: world_to_camera rotation is a reflection (det R = -1); "
                "flip an axis of the camera convention instead (OpenCV: x right, y down, z forward)"
            )
        # The rasterizer reads only fx, fy, cx, cy: any other layout (a transposed K, skew,
        # a bottom row other than [0, 0, 1]) would be trained as something else.
        if not np.allclose(K[2], [0, 0, 1], atol=1e-6):
            raise ValueError(f"{where}: K bottom row must be [0, 0, 1], got {K[2]}")
        for i, j in ((0, 1), (1, 0)):
            if abs(K[i, j]) > 1e-6:
                skew = " (skew)" if (i, j) == (0, 1) else ""
                raise ValueError(
                    f"{where}: K[{i}, {j}] must be 0{skew}, got {K[i, j]}; K is "
                    "[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels"
                )
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(
                f"{where}: K has a non-positive focal length (fx={K[0, 0]}, fy={K[1, 1]})"
            )
        width, height = row["width"], row["height"]
        if width is None or height is None or width <= 0 or height <= 0:
            raise ValueError(
                f"{where}: width and height must be positive, got {width}x{height}"
            )
        # A principal point outside the image is almost always K of another resolution (the
        # images were downscaled, K was not): training would fit views it cannot see.
        cx, cy = K[0, 2], K[1, 2]
        if not (0 <= cx <= width and 0 <= cy <= height):
            raise ValueError(
                f"{where}: K's principal point (cx, cy) = ({cx:g}, {cy:g}) lies outside the "
                f"{width}x{height} image; K must be in pixels of this image (for images downscaled "
                "by s, divide fx, fy, cx and cy by s)"
            )
        image = row["image"]
        if image is None or (image.get("bytes") is None and image.get("path") is None):
            raise ValueError(f"{where}: image is missing")
        source = io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"]
        with PIL.Image.open(source) as opened:  # reads the header only
            size = opened.size
        if size != (width, height):
            raise ValueError(
                f"{where}: image is {size[0]}x{size[1]} but width x height says {width}x{height}"
            )
        if MASK_COLUMN in row:
            _check_stored_mask(row[MASK_COLUMN], size, where)


def _check_stored_mask(mask, size: tuple[int, int], where: str) -> None:
    """A stored mask (undecoded), checked by `check_mask_image` from its header."""
    import PIL.Image

    if mask is None:  # no mask: every pixel trains (a saved scene's unmasked split gets such rows)
        return
    if mask.get("bytes") is None and mask.get("path") is None:
        raise ValueError(f"{where}: mask has neither bytes nor a path")
    source = io.BytesIO(mask["bytes"]) if mask.get("bytes") is not None else mask["path"]
    with PIL.Image.open(source) as opened:
        check_mask_image(opened, size, where)


def scene_views_to_tensors(views: Dataset, device=None, split: str | None = None):
    """Stacks one split for training: images [N, H, W, 3] uint8 ([N, H, W, 4] where the split keeps its alpha,
    `scene_views_images`), viewmats
    (world-to-camera) [N, 4, 4] and Ks [N, 3, 3] float32 (`scene_views_cameras`). ``split``: the name
    its errors give it (as `validate_views_split`'s)."""
    viewmats, Ks, _ = scene_views_cameras(views, device, split)
    return scene_views_images(views, device, split), viewmats, Ks


def scene_views_cameras(views: Dataset, device=None, split: str | None = None):
    """One split's cameras, read without decoding an image: viewmats (world-to-camera) [N, 4, 4] and
    Ks [N, 3, 3] float32, and the (width, height) all its views share (`scene_views_images` stacks
    them). ``split``: the name its errors give it."""
    size = _one_size(views, split)
    table = views.select_columns(["K", "world_to_camera"]).with_format("numpy")
    Ks = torch.as_tensor(np.asarray(table["K"], dtype=np.float32), device=device)
    viewmats = torch.as_tensor(
        np.asarray(table["world_to_camera"], dtype=np.float32), device=device
    )
    return viewmats, Ks, size


def scene_views_images(views: Dataset, device=None, split: str | None = None) -> torch.Tensor:
    """One split's images decoded into a stack [N, H, W, 3] uint8 (0..255, as stored; 4x smaller
    than float), or [N, H, W, 4] RGBA (straight, not premultiplied, alpha) for a split that keeps its alpha
    (`keeps_alpha`). All views must share one size, and the images of an RGB split may not have transparent
    pixels (`views_dataset` composites them, or keeps the alpha with ``background=None``). `images_to_float`
    gives an image's values in [0, 1]; the trainer converts each view when it is read (`SceneViews`), not the
    whole stack. ``split``: the name its errors give it."""
    width, height = _one_size(views, split)
    mode = "RGBA" if keeps_alpha(views) else "RGB"
    # Decoded one view at a time into the stack: no list of all decoded images beside it.
    images = np.empty((len(views), height, width, len(mode)), dtype=np.uint8)
    for index, row in enumerate(views.select_columns(["image"])):
        image = row["image"]
        # An RGB split's colours are what trains: a transparent pixel's hidden colour would be fitted. An alpha
        # at 255 everywhere (many writers' default) is opaque, and dropping it loses nothing.
        if mode == "RGB" and has_alpha(image) and image.convert("RGBA").getchannel("A").getextrema()[0] < 255:
            raise ValueError(
                f"scene view {index}{_label(split)}: image has transparent pixels (alpha below 255) in a split of "
                "RGB images (its image feature is not Image(mode='RGBA')), which training would read as their "
                "hidden colours: build the split with views_dataset(images, Ks, poses, background=...), which "
                "composites them onto the background, or with background=None, which keeps the alpha for training "
                "to composite"
            )
        images[index] = np.asarray(image.convert(mode))
    return torch.as_tensor(images, device=device)


def _label(split: str | None) -> str:
    """How an error names the split after a view's index: " (train)", or nothing when it has no name."""
    return f" ({split})" if split is not None else ""


def _one_size(views: Dataset, split: str | None = None) -> tuple[int, int]:
    """The (width, height) of every view of a non-empty split, read from its columns."""
    if len(views) == 0:
        raise ValueError(f"scene split{_label(split)} is empty")
    sizes = list(zip(views["width"], views["height"]))
    for index, size in enumerate(sizes):
        if size != sizes[0]:
            raise ValueError(
                f"scene view {index}{_label(split)} is {size[0]}x{size[1]} but view 0 is {sizes[0][0]}x{sizes[0][1]}; "
                "stacking needs one image size (SplatTrainer trains each split at one size: resize those views "
                "and scale their K alike, or leave them out)"
            )
    return sizes[0]


def masked_view_count(views: Dataset) -> int:
    """How many views of a split have a mask (not None), read without decoding them."""
    if MASK_COLUMN not in views.column_names:
        return 0
    column = views.select_columns([MASK_COLUMN]).cast_column(MASK_COLUMN, Image(decode=False))
    return sum(mask is not None for mask in column[MASK_COLUMN])


def has_masks(views: Dataset) -> bool:
    """Whether some view of a split has a mask."""
    return masked_view_count(views) > 0


def scene_views_masks(views: Dataset, device=None, split: str | None = None) -> torch.Tensor | None:
    """The masks of one split as bool [N, H, W] (True where the view is trained: a non-zero stored
    value; every pixel of a view whose mask is None), or None when no view has a mask. A mask that
    keeps no pixel is refused, naming the view: the view would train on nothing and have no metric.

    A split saved in one configuration with a masked one (a scene's test split beside a masked
    train split) is loaded back with a ``mask`` column of None: such views are unmasked. ``split``: the name its
    errors give it."""
    if not has_masks(views):
        return None
    column = views.select_columns([MASK_COLUMN])
    first = views.select_columns(["width", "height"])[0]
    width, height = first["width"], first["height"]
    masks = np.ones((len(views), height, width), dtype=bool)
    for index, row in enumerate(column):
        mask = row[MASK_COLUMN]
        if mask is None:
            continue
        if (mask.width, mask.height) != (width, height):
            raise ValueError(
                f"scene view {index}{_label(split)}: mask is {mask.width}x{mask.height} but view 0 is {width}x{height}"
            )
        masks[index] = np.asarray(mask) != 0
        if not masks[index].any():
            raise ValueError(
                f"scene view {index}{_label(split)}: its mask keeps no pixel (0 everywhere: nothing to train on or measure); "
                "leave the view out, or mark the pixels to train on with non-zero values"
            )
    return torch.as_tensor(masks, device=device)


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255, as `scene_views_images` stacks them) as float32 in [0, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images_to_float expects uint8 images (0..255), got {images.dtype}")
    return images.float() / 255.0


def _centre_rounding(poses: np.ndarray, eps: float = np.finfo(np.float32).eps) -> float:
    """How far the rounding of world-to-camera poses [N, 4, 4] or [N, 3, 4] moves a camera centre
    (`camera_centres`): the largest translation times the rotations' rounding, ``eps`` (float32's: stored
    poses) or the coarser rounding of values printed with fewer digits, which their deviation from
    orthonormal shows. Inverted poses of an object
    capture (cameras aimed at the origin from one distance) put every centre at one point up to this; a
    capture far from the origin (georegistered) spreads its cameras far above it."""
    rotations = poses[:, :3, :3]
    deviation = np.abs(rotations @ rotations.transpose(0, 2, 1) - np.eye(3)).max()
    return float((deviation + eps) * np.linalg.norm(poses[:, :3, 3], axis=1).max())


def _scene_from_parts(views, points, metadata) -> Scene:
    if metadata is None:
        return Scene.from_views(views, points)
    missing = [key for key in ("center", "radius") if key not in metadata]
    if missing:
        raise ValueError(f"{METADATA_FILE}: missing key(s) {missing}")
    frame = metadata.get("world_to_normalized")
    if frame is not None:
        frame = check_world_to_normalized(frame, METADATA_FILE)
        if not _parts_name_the_frame(views, points, frame):
            # Parquet keeps no dataset description: scene.json names the frame the saved rows were stored in.
            views = DatasetDict({split: _with_world_to_normalized(dataset, frame) for split, dataset in views.items()})
            points = None if points is None else _with_world_to_normalized(points, frame)
    return Scene(views=views, points=points, center=metadata["center"], radius=metadata["radius"],
                 world_to_normalized=frame)


def _named_frames(views: DatasetDict, points: Dataset | None) -> dict[str, np.ndarray | None]:
    """The frame each part of a scene names (`data_world_to_normalized`), keyed by the part as errors name it:
    "views split 'train'", ..., then "the point set" if there is one."""
    parts = {f"views split {split!r}": dataset for split, dataset in views.items()}
    if points is not None:
        parts["the point set"] = points
    return {part: data_world_to_normalized(dataset, part) for part, dataset in parts.items()}


def _parts_name_the_frame(views: DatasetDict, points: Dataset | None, frame: np.ndarray) -> bool:
    """Whether loaded parts name scene.json's ``frame`` already (``save_to_disk`` keeps the descriptions parquet
    drops): True when all do, False when none names any (they are in scene.json's frame). Refuses parts that name
    another frame, or that are mixed: some naming it, others none."""
    named = _named_frames(views, points)
    if all(part_frame is None for part_frame in named.values()):
        return False
    for part, part_frame in named.items():
        if not same_frame(part_frame, frame):
            raise ValueError(
                f"{METADATA_FILE} says the scene is stored {describe_frame(frame)}, but {part} is stored "
                f"{describe_frame(part_frame)}; save the parts of one scene, built with one world_to_normalized"
            )
    return True


def _load_local_config(folder: Path, config_name: str, cache_dir=None) -> DatasetDict:
    """One README config of a local folder, as its files are now.

    ``load_dataset(folder, name=...)`` keys its cache on the README's configs alone, so a scene
    saved again into the same folder would load as the old one (in later processes too). The
    config's files, resolved by the builder with their modification times, go to the parquet
    builder instead, whose cache key includes those times.
    """
    from datasets import load_dataset_builder

    data_files = load_dataset_builder(str(folder), name=config_name, cache_dir=cache_dir).config.data_files
    return _splits_with_rows(load_dataset_builder("parquet", data_files=data_files, cache_dir=cache_dir))


def _splits_with_rows(builder) -> DatasetDict:
    """What ``load_dataset`` returns for ``builder``, less the splits without rows: scenes saved or
    pushed by earlier versions hold an empty test split, which datasets refuses to load ('Instruction
    "test" corresponds to no data'); such a scene loads without it, as one saved now."""
    builder.download_and_prepare()
    return DatasetDict(
        {name: builder.as_dataset(split=name) for name, split in builder.info.splits.items() if split.num_examples}
    )


def _has_colmap_model(path: Path) -> bool:
    from hf_eff.splat.converters.colmap import find_colmap_model

    return find_colmap_model(path) is not None


def _conversion(path: Path) -> str | None:
    """"nerf" or "colmap" for a folder `load_scene` converts; None for a stored scene or a Hub repo id."""
    if not path.is_dir() or (path / VIEW_CONFIG).is_dir():
        return None
    if (path / "transforms_train.json").exists() or (path / "transforms.json").exists():
        return "nerf"
    return "colmap" if _has_colmap_model(path) else None


def resolved_test_every(source, test_every: int | None = None) -> int | None:
    """The ``test_every`` that ``load_scene(source, test_every=test_every)`` holds views out by: the one given, or
    for a converted folder its converter's default (a COLMAP project's and a single transforms.json's
    `LLFF_TEST_EVERY`, a transforms_train.json's 0); None where the split is the source's own (a stored scene or
    Hub repo, a NeRF folder with transforms_test.json). A run records it, so that leaving test_every out and
    giving its default describe one split."""
    path = Path(source)
    conversion = _conversion(path)
    if test_every is not None or conversion is None:
        return test_every
    if conversion == "colmap":
        return LLFF_TEST_EVERY
    from hf_eff.splat.converters.nerf_synthetic import default_test_every

    return default_test_every(path)


def _check_hub_scene(repo_id: str, revision: str | None, token) -> None:
    """Refuses a Hub repo that holds no scene at ``revision`` or that ``token`` cannot read.

    datasets answers any Hub error by loading its cached copy of the repo, whatever revision or
    token asked for it: a scene pushed to another branch, or a private one its owner cached on this
    machine, would load. One listing tells those cases apart; offline (no answer at all), datasets'
    cache stays the fallback. `load_scene` asks only for a source that is no local folder."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f"revision {revision!r}" if revision is not None else "its main branch"
    try:
        files = HfApi().list_repo_files(repo_id, repo_type="dataset", revision=revision, token=token)
    except RevisionNotFoundError as error:
        raise FileNotFoundError(f"load_scene: dataset repo {repo_id} has no {at}") from error
    except RepositoryNotFoundError as error:  # gated repos included
        # A mistyped relative folder (data/garden) is a valid repo id too.
        raise FileNotFoundError(
            f"load_scene: no folder {Path(repo_id).absolute()} and no dataset repo {repo_id} that this token "
            "can read (a private or gated repo needs its owner's or a granted token: pass token= or log in)"
        ) from error
    except HFValidationError:
        raise FileNotFoundError(f"load_scene: {repo_id} is neither a folder nor a Hub repo id") from None
    except HfHubHTTPError:  # the Hub answered (an expired token's 401, a 5xx): no cached copy instead
        raise
    except Exception:  # offline or the Hub unreachable (the HTTP client's errors vary by version)
        return
    if not any(name.startswith(f"{VIEW_CONFIG}/") for name in files):
        raise FileNotFoundError(
            f"load_scene: dataset repo {repo_id} holds no scene at {at} (no {VIEW_CONFIG}/): push one with "
            "Scene.push_to_hub, or give the revision it was pushed to"
        )


def load_scene(
    source,
    revision: str | None = None,
    token=None,
    test_every: int | None = None,
    background=(0.0, 0.0, 0.0),
    images: str | None = None,
    masks: str | None = None,
    normalize_world_space: bool = False,
    cache_dir=None,
) -> Scene:
    """Loads a scene from a Hub dataset repo id, a local folder in the same parquet layout,
    or a local folder holding ``views/`` (``save_to_disk``), optional ``points/`` and
    optional ``scene.json``. Without ``scene.json`` the centre and radius come from the
    training cameras (their mean, and the largest distance from it). A local COLMAP
    project or NeRF folder (Blender's ``transforms_train.json`` / ``transforms_test.json``,
    or one instant-ngp / nerfstudio ``transforms.json``) is converted.

    Args:
        test_every: for a converted folder without its own test split, every n-th view goes
            to test (0: none); None: the converter's default (8, as 3DGS's ``llffhold``, for
            COLMAP and a single ``transforms.json``). Refused for a stored scene, whose split
            is fixed.
        background: RGB in [0, 1] composited under transparent pixels of a converted folder's
            images (black, 3DGS's default; (1, 1, 1) for ``--white_background``); None keeps their alpha
            (`views_dataset`), for `SplatTrainer` to composite onto the colour it renders onto each step
            (``random_bkgd``). A stored scene's images are stored as they are (RGB, or RGBA kept).
        images: for a COLMAP project, the images folder inside it (default ``images``):
            ``images_4`` trains on the 4x downscaled copy that Mip-NeRF 360 ships, with K
            rescaled to it (3DGS's ``--images``, gsplat's ``--data_factor``).
        masks: for a COLMAP project, the folder inside it holding per-image masks (nerfstudio's
            COLMAP ``--masks-path``): ``<masks>/<image name>.png``, 0 = a pixel the loss ignores.
            A NeRF folder's frames name their masks themselves (nerfstudio's ``mask_path``).
        normalize_world_space: for a COLMAP or NeRF folder, convert into normalised coordinates
            (gsplat's ``--normalize_world_space``): the mean training-camera centre at the origin and
            the farthest training camera at distance 1, computed and applied in float64 before
            anything is stored as float32 (`hf_eff.splat.cameras.world_normalization`). The scene
            records the transform (``Scene.world_to_normalized``). Needed for a capture far from the
            world origin (georegistered), whose cameras float32 cannot place. A stored scene is
            already float32: refused.
        cache_dir: where `datasets` keeps the arrow tables of a Hub or parquet scene, as ``load_dataset``'s
            ``cache_dir`` (default ``HF_DATASETS_CACHE``). The files downloaded from the Hub go to the
            huggingface_hub cache, as `datasets` puts them (``HF_HUB_CACHE`` moves them). A converted folder or
            a ``save_to_disk`` one is read without a cache.
    """
    from datasets import (
        get_dataset_config_names,
        load_dataset,
        load_dataset_builder,
        load_from_disk,
    )

    converter_options = {"background": background}
    if test_every is not None:
        converter_options["test_every"] = test_every
    path = Path(source)
    conversion = _conversion(path)
    is_nerf, is_colmap = conversion == "nerf", conversion == "colmap"
    is_converted = conversion is not None
    if normalize_world_space and not is_converted:
        raise ValueError(
            f"load_scene: normalize_world_space=True normalises a COLMAP or NeRF folder while it is converted; "
            f"{source} is a stored scene, whose poses are float32 already (normalising them now would not restore "
            "what storing them rounded): convert the original folder with normalize_world_space=True"
        )
    if normalize_world_space:
        converter_options["normalize_world_space"] = True
    for name, value in (("images", images), ("masks", masks)):
        if isinstance(value, str) and not value.strip():  # folder / "" is the project folder, read in their place
            raise ValueError(f"load_scene: {name}={value!r} is empty; name a folder inside the COLMAP project, or "
                             "leave it None")
        if value is not None and not is_colmap:
            raise ValueError(
                f"load_scene: {name}={value!r} picks the {name} folder of a COLMAP project; {source} is not one"
            )
    if test_every is not None and not is_converted:
        raise ValueError(
            f"load_scene: test_every={test_every} applies to COLMAP and NeRF folders; {source} is "
            "a stored scene whose train/test split is fixed"
        )
    if path.exists():
        if revision is not None:
            raise ValueError(
                f"load_scene: revision={revision!r} applies to Hub repos, not to {path}"
            )
        if not path.is_dir():
            raise ValueError(
                f"load_scene: {path} is a file; expected a scene folder or a Hub repo id"
            )
        metadata_file = path / METADATA_FILE
        metadata = json.loads(metadata_file.read_text()) if metadata_file.exists() else None
        if (path / VIEW_CONFIG / "dataset_dict.json").exists():
            views = load_from_disk(str(path / VIEW_CONFIG))
            points_dir = path / POINT_CONFIG
            points = load_from_disk(str(points_dir)) if points_dir.exists() else None
            if isinstance(points, DatasetDict):
                points = points["train"]
        elif (path / VIEW_CONFIG).is_dir():
            views = _load_local_config(path, VIEW_CONFIG, cache_dir)
            has_points = POINT_CONFIG in get_dataset_config_names(str(path), cache_dir=cache_dir)
            points = _load_local_config(path, POINT_CONFIG, cache_dir)["train"] if has_points else None
        elif is_nerf:
            from hf_eff.splat.converters import scene_from_nerf_synthetic

            return scene_from_nerf_synthetic(path, **converter_options)
        elif is_colmap:
            from hf_eff.splat.converters import scene_from_colmap

            images_dir = None if images is None else path / images
            masks_dir = None if masks is None else path / masks
            return scene_from_colmap(path, images_dir=images_dir, masks_dir=masks_dir, **converter_options)
        else:
            raise ValueError(
                f"load_scene: {path} holds no scene: expected views/ (the parquet layout Scene.save "
                "writes, or a DatasetDict from save_to_disk), a COLMAP project (sparse/) or a "
                "NeRF folder (transforms_train.json or transforms.json)"
            )
        return _scene_from_parts(views, points, metadata)

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    _check_hub_scene(str(source), revision, token)
    # Offline or the Hub unreachable, with no cached copy: datasets' error would name the Hub alone.
    with naming_missing_folder("load_scene", source):
        views = _splits_with_rows(load_dataset_builder(str(source), name=VIEW_CONFIG, revision=revision, token=token,
                                                       cache_dir=cache_dir))
    configs = get_dataset_config_names(str(source), revision=revision, token=token, cache_dir=cache_dir)
    points = None
    if POINT_CONFIG in configs:
        points = load_dataset(
            str(source), name=POINT_CONFIG, split="train", revision=revision, token=token, cache_dir=cache_dir
        )
    try:
        metadata_path = hf_hub_download(
            str(source), METADATA_FILE, repo_type="dataset", revision=revision, token=token
        )
        metadata = json.loads(Path(metadata_path).read_text())
    except EntryNotFoundError:
        metadata = None
    return _scene_from_parts(views, points, metadata)
