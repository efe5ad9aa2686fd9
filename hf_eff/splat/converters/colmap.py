"""COLMAP sparse models (text or binary) <-> `Scene`, read and written with pycolmap.

COLMAP stores ``cam_from_world`` per image, which is already the OpenCV world-to-camera
convention, so poses pass through unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datasets import DatasetDict

from hf_eff.splat.cameras import (
    camera_centres,
    world_normalization,
)
from hf_eff.splat.converters.colmap_text import text_model_error
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

__all__ = ["find_colmap_model", "scene_from_colmap", "write_colmap"]

# COLMAP's perspective models, pinholes once their distortion coefficients are all zero. A
# fisheye (OPENCV_FISHEYE, FOV, THIN_PRISM_FISHEYE, ...) or equirectangular camera never is.
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")


def _pycolmap():
    try:
        import pycolmap
    except ImportError as error:
        raise ImportError(
            "reading COLMAP models needs pycolmap: pip install pycolmap (or hf-eff[colmap])"
        ) from error
    return pycolmap


# The files of a COLMAP model, all .bin or all .txt (rigs and frames, newer, are optional).
MODEL_FILES = ("cameras", "images", "points3D")


def _holds_model_file(folder: Path) -> bool:
    return any((folder / f"{name}.{ext}").exists() for name in MODEL_FILES for ext in ("bin", "txt"))


def find_colmap_model(folder) -> Path | None:
    """The model folder COLMAP's mapper leaves in a project: ``sparse/0`` (3DGS's choice), else
    the lowest-numbered other ``sparse/<n>``, else ``sparse`` or the folder itself; None if
    none holds a model file (cameras, images or points3D, .bin or .txt)."""
    folder = Path(folder)
    numbered = sorted(
        (p for p in (folder / "sparse").glob("*") if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    for candidate in (*numbered, folder / "sparse", folder):
        if _holds_model_file(candidate):
            return candidate
    return None


def _find_sparse_dir(folder: Path) -> Path:
    found = find_colmap_model(folder)
    if found is None:
        raise FileNotFoundError(
            f"no COLMAP model (cameras.bin or cameras.txt) in {folder}/sparse/<n>, {folder}/sparse or {folder}"
        )
    return found


def _check_model_files(sparse_dir: Path) -> str:
    """The extension of the model set pycolmap reads from ``sparse_dir``: "bin" or "txt", whichever is complete (.bin
    where both are), whatever stray files of the other lie beside it. Otherwise names the files missing from the more
    complete set (pycolmap's error lists all five as missing)."""
    if not sparse_dir.is_dir():
        raise FileNotFoundError(
            f"COLMAP model folder {sparse_dir} {'is not a folder' if sparse_dir.exists() else 'not found'}"
        )
    if not _holds_model_file(sparse_dir):
        binary, text = (", ".join(f"{name}.{ext}" for name in MODEL_FILES) for ext in ("bin", "txt"))
        raise FileNotFoundError(f"COLMAP model folder {sparse_dir} holds no model: it needs {binary} or {text}")
    missing_by_ext = {
        ext: [f"{name}.{ext}" for name in MODEL_FILES if not (sparse_dir / f"{name}.{ext}").exists()]
        for ext in ("bin", "txt")
    }
    ext = min(missing_by_ext, key=lambda ext: len(missing_by_ext[ext]))  # .bin on a tie, as pycolmap
    missing = missing_by_ext[ext]
    if missing:
        raise FileNotFoundError(
            f"COLMAP model {sparse_dir} lacks {', '.join(missing)}: a model needs cameras, images and points3D, "
            "all .bin or all .txt"
        )
    return ext


def _check_cameras_bin_size(sparse_dir: Path, cameras) -> None:
    """pycolmap reads a cut cameras.bin without error, its missing bytes as zeros: compare the file's size with
    what the cameras it read take (a uint64 count, then per camera an int32 id and model, uint64 width and height
    and float64 params)."""
    path = sparse_dir / "cameras.bin"
    expected = 8 + sum(24 + 8 * len(camera.params) for camera in cameras.values())
    size = path.stat().st_size
    if size < expected:
        raise ValueError(
            f"COLMAP {path} is truncated or corrupt: {size} bytes, but its {len(cameras)} camera(s) take {expected}"
        )


def _image_name(image, images_file: Path) -> str:
    """``image.name``, or an error naming the image and its file when its stored bytes are not UTF-8 (pycolmap
    decodes them at each read, and offers no others)."""
    try:
        return image.name
    except UnicodeDecodeError as error:
        raise ValueError(
            f"COLMAP model {images_file.parent}: image {image.image_id} in {images_file} is named {error.object!r}, "
            f"which is not UTF-8 ({error.reason} at byte {error.start}); COLMAP image names must be UTF-8: rename the "
            "image file and its entry"
        ) from error


def scene_from_colmap(
    folder, images_dir=None, sparse_dir=None, test_every: int | None = LLFF_TEST_EVERY, background=(0.0, 0.0, 0.0),
    masks_dir=None, normalize_world_space: bool = False,
) -> Scene:
    """Reads a COLMAP reconstruction and its images into a `Scene`.

    Args:
        folder: the COLMAP project folder (``sparse/0`` or ``sparse`` and ``images/`` in it).
        images_dir: the images folder, by default ``folder/images``. A downscaled copy
            (e.g. ``images_4``) works: K is rescaled to the size of the files. A split's images share one
            size (`SplatTrainer` trains it at one): an image of another is refused.
        sparse_dir: the model folder, by default `find_colmap_model` of ``folder``.
        test_every: every n-th image (sorted by name, starting with the first) goes to the
            test split, as 3DGS's ``llffhold=8`` (None: 8); 0 puts every image in train.
        background: RGB in [0, 1] under the transparent pixels of RGBA images (black, as
            3DGS; (1, 1, 1) for its ``--white_background``); None keeps the images' alpha (RGBA views,
            `views_dataset`), which `SplatTrainer` composites onto the colour it renders onto: a random one each
            step under ``random_bkgd``. Opaque images (JPEGs) then read as alpha 255, which the trainer drops: they
            train as they would without it.
        masks_dir: a folder of per-image masks, as nerfstudio's COLMAP dataparser reads them
            (``--masks-path``): ``<masks_dir>/<image name>`` with a ``.png`` suffix, single-channel,
            the size of its image, 0 = a pixel the loss ignores (the views' ``mask`` column). Every
            registered image needs one. None (the default): no masks.
        normalize_world_space: store the scene in normalised coordinates (`load_scene`'s option of
            that name), computed from the training images' poses in float64; the scene records the
            transform (``Scene.world_to_normalized``).

    Cameras must be undistorted (PINHOLE / SIMPLE_PINHOLE, or a perspective model with zero
    distortion; never a fisheye): run ``colmap image_undistorter`` first, as 3DGS does.
    """
    import PIL.Image

    check_test_every(test_every)
    for name, value in (("images_dir", images_dir), ("sparse_dir", sparse_dir), ("masks_dir", masks_dir)):
        if isinstance(value, str) and not value.strip():  # Path("") is the current folder, read in its place
            raise ValueError(f"scene_from_colmap: {name}={value!r} is empty; name a folder, or leave it None")
    test_every = LLFF_TEST_EVERY if test_every is None else test_every
    pycolmap = _pycolmap()
    folder = Path(folder)
    sparse_dir = Path(sparse_dir) if sparse_dir is not None else _find_sparse_dir(folder)
    images_dir = Path(images_dir) if images_dir is not None else folder / "images"
    if not images_dir.is_dir():
        raise FileNotFoundError(f"COLMAP images folder {images_dir} not found")
    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise FileNotFoundError(f"COLMAP masks folder {masks_dir} not found")
    model_ext = _check_model_files(sparse_dir)
    try:
        reconstruction = pycolmap.Reconstruction(str(sparse_dir))
    except (ValueError, IndexError) as error:  # naming a line of pycolmap's own source, or an id, not the model's
        detail = str(error).strip()
        if model_ext == "txt":
            detail = text_model_error(sparse_dir, pycolmap) or detail
        raise ValueError(f"COLMAP model {sparse_dir} ({model_ext} files) could not be read: {detail}") from error
    if model_ext == "bin":  # a stray cameras.bin beside a text model is not what pycolmap read
        _check_cameras_bin_size(sparse_dir, reconstruction.cameras)
    registered = [reconstruction.images[i] for i in reconstruction.reg_image_ids()]
    if not registered:
        raise ValueError(f"COLMAP model {sparse_dir} has no registered images")
    images_file = sparse_dir / f"images.{model_ext}"
    registered.sort(key=lambda image: _image_name(image, images_file))
    for previous, image in zip(registered, registered[1:]):  # sorted: images of one name are neighbours
        if image.name == previous.name:
            raise ValueError(
                f"COLMAP model {sparse_dir}: images {previous.image_id} and {image.image_id} both name "
                f"{image.name!r}; a model lists each image once"
            )

    files, Ks, poses, masks, sizes = [], [], [], [], []
    for image in registered:
        # A binary model can hold one (pycolmap refuses it in text); images_dir / "" is the folder itself.
        if not image.name.strip():
            raise ValueError(f"COLMAP model {sparse_dir}: image {image.image_id} has an empty name ({image.name!r})")
        camera = reconstruction.cameras[image.camera_id]
        if camera.model.name not in PINHOLE_MODELS:
            raise ValueError(
                f"COLMAP camera {image.camera_id} ({camera.model.name}) of image {image.name!r} is "
                f"not a pinhole camera model ({', '.join(PINHOLE_MODELS)}); undistort the images "
                "first (colmap image_undistorter)"
            )
        if camera.width <= 0 or camera.height <= 0:  # the image's scale to its camera divides by them
            raise ValueError(
                f"COLMAP camera {image.camera_id} ({camera.model.name}) of image {image.name!r} is "
                f"{camera.width}x{camera.height}: its width and height must be positive"
            )
        # pycolmap checks a text model's params, not a binary one's; NaN distortion would read as "distortion"
        if not np.isfinite(camera.params).all():
            raise ValueError(
                f"COLMAP camera {image.camera_id} ({camera.model.name}) of image {image.name!r} has params that are "
                f"not finite: {np.asarray(camera.params).tolist()}"
            )
        distortion = np.asarray(camera.params)[camera.extra_params_idxs()]
        if np.any(distortion != 0):
            raise ValueError(
                f"COLMAP camera {image.camera_id} ({camera.model.name}) of image {image.name!r} has lens "
                "distortion; undistort the images first (colmap image_undistorter)"
            )
        K = np.asarray(camera.calibration_matrix(), dtype=np.float64)
        if not (K[0, 0] > 0 and K[1, 1] > 0):  # views_dataset refuses it too, by view number
            raise ValueError(
                f"COLMAP camera {image.camera_id} ({camera.model.name}) of image {image.name!r} has focal length "
                f"fx={K[0, 0]}, fy={K[1, 1]}: both must be positive"
            )
        path = images_dir / image.name
        if not path.exists():
            raise FileNotFoundError(f"COLMAP image {image.name!r} not found in {images_dir}")
        with PIL.Image.open(path) as opened:  # reads the header only
            width, height = opened.size
        scale_x, scale_y = width / camera.width, height / camera.height
        if abs(width - camera.width * scale_y) > 1 or abs(height - camera.height * scale_x) > 1:
            raise ValueError(
                f"COLMAP image {image.name!r} is {width}x{height} but its camera is "
                f"{camera.width}x{camera.height}, not a uniform downscale"
            )
        K[0] *= scale_x
        K[1] *= scale_y
        pose = np.eye(4)
        pose[:3] = image.cam_from_world().matrix()
        if not np.isfinite(pose).all():  # views_dataset refuses it too, by view number
            raise ValueError(
                f"COLMAP image {image.name!r} (id {image.image_id}): its pose (cam_from_world) holds NaN or "
                "infinite values"
            )
        files.append(path)
        sizes.append((f"COLMAP image {image.name!r}", (width, height)))
        Ks.append(K)
        poses.append(pose)
        if masks_dir is not None:
            masks.append((Path(masks_dir) / image.name).with_suffix(".png"))  # nerfstudio's --masks-path

    is_test = [test_every > 0 and index % test_every == 0 for index in range(len(files))]
    if all(is_test):
        raise ValueError(f"test_every={test_every} leaves no training image among {len(files)}")

    check_one_image_size(sizes, is_test)
    transform = None
    if normalize_world_space:
        transform = world_normalization([pose for pose, test in zip(poses, is_test) if not test])

    def split(test: bool):
        ids = [i for i, flag in enumerate(is_test) if flag == test]
        # RGB files are stored as they are; transparency is composited onto background, or kept (None), not dropped.
        return views_dataset([files[i] for i in ids], [Ks[i] for i in ids], [poses[i] for i in ids], background,
                             masks=[masks[i] for i in ids] if masks_dir is not None else None,
                             mask_names=[f"COLMAP image {registered[i].name!r}" for i in ids],
                             world_to_normalized=transform)

    points = None
    if reconstruction.num_points3D():
        point_list = list(reconstruction.points3D.values())
        xyz = np.stack([point.xyz for point in point_list])
        rgb = np.stack([point.color for point in point_list]).astype(np.uint8)
        points = points_dataset(xyz, rgb, world_to_normalized=transform)
    # the views and points carry the transform (data_world_to_normalized); the scene takes it from them
    return Scene.from_views(DatasetDict({"train": split(False), "test": split(True)}), points)


def write_colmap(scene: Scene, folder, binary: bool = True, original_frame: bool = True) -> Path:
    """Writes a scene as a COLMAP project: ``folder/images/*.png`` and ``folder/sparse/0``.

    Views from every split are written in split order (train first), named
    ``00001.png``, ...; identical intrinsics share one PINHOLE camera. Points become 3D
    points without tracks. A scene with masks gets them as ``folder/masks/00001.png``, ... (all
    white for a view without one), what ``scene_from_colmap(folder, masks_dir=folder / "masks")``
    and nerfstudio's ``--masks-path masks`` read.

    A scene stored in normalised coordinates is written in the capture's own coordinates in float64 (COLMAP
    stores doubles), ``original_frame=False`` as stored: see `Scene.poses_and_points`.

    COLMAP has no train/test split, and ``scene_from_colmap(test_every=k)`` holds out the first view (here a
    training view) and every k-th after it, which no order matches for every split size. So
    ``load_scene(folder, normalize_world_space=True, test_every=0)`` gives back the same cameras, normalised
    by the same transform, only for a scene without a test split. A scene with one comes back with all its
    views in train (train first, then test), or split anew by ``test_every``, either way normalised by other
    training views: its cameras are the same in the capture's own coordinates (`Scene.poses_and_points`), but not
    as stored. `write_nerf_synthetic` keeps the splits and so the normalisation.
    """
    import PIL.Image

    pycolmap = _pycolmap()
    folder = Path(folder)
    images_dir, sparse_dir = folder / "images", folder / "sparse" / "0"
    images_dir.mkdir(parents=True, exist_ok=True)
    sparse_dir.mkdir(parents=True, exist_ok=True)
    masked = any(has_masks(split) for split in scene.views.values())
    if masked:
        (folder / "masks").mkdir(exist_ok=True)
    reconstruction = pycolmap.Reconstruction()
    camera_ids: dict[tuple, int] = {}
    image_id = 0
    poses, points = scene.poses_and_points(original_frame)
    for split_name, split in scene.views.items():
        for index, row in enumerate(split):
            K, pose = np.asarray(row["K"], dtype=np.float64), poses[split_name][index]
            key = (row["width"], row["height"], K[0, 0], K[1, 1], K[0, 2], K[1, 2])
            if key not in camera_ids:
                camera_ids[key] = len(camera_ids) + 1
                width, height, *params = key
                camera = pycolmap.Camera(
                    model="PINHOLE",
                    width=width,
                    height=height,
                    params=params,
                    camera_id=camera_ids[key],
                )
                reconstruction.add_camera_with_trivial_rig(camera)
            image_id += 1
            name = f"{image_id:05d}.png"
            row["image"].convert("RGBA" if keeps_alpha(split) else "RGB").save(images_dir / name)
            if masked:
                mask = row.get(MASK_COLUMN)
                mask = mask if mask is not None else PIL.Image.new("L", (row["width"], row["height"]), 255)
                mask.save(folder / "masks" / name)
            # COLMAP keeps the rotation as a unit quaternion, which makes the float32 one orthonormal: t is taken
            # for that rotation so that the camera centre stays put (far out, t kept would move it by |t| times
            # the float32 rotation's rounding)
            rotation = pycolmap.Rotation3d(pose[:3, :3])
            centre = camera_centres(pose[None, :3])[0]
            cam_from_world = pycolmap.Rigid3d(rotation, -rotation.matrix() @ centre)
            image = pycolmap.Image(name=name, camera_id=camera_ids[key], image_id=image_id)
            reconstruction.add_image_with_trivial_frame(image, cam_from_world)
    if points is not None:
        xyz, rgb = points
        for position, colour in zip(xyz.astype(np.float64), rgb):
            reconstruction.add_point3D(position, pycolmap.Track(), colour)
    if binary:
        reconstruction.write_binary(str(sparse_dir))
    else:
        reconstruction.write_text(str(sparse_dir))
    return folder
