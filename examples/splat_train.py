#!/usr/bin/env python
"""Fit 3D Gaussian splats to a scene with default densification or the paper's fast method.

--scene takes a folder written by `Scene.save`, a COLMAP project, a NeRF folder (transforms_train.json
/ transforms_test.json, or one transforms.json split by --test_every) or a Hub dataset repo id; without
it, a built-in procedural scene is generated. --cache_dir is where `datasets` keeps a Hub or parquet
--scene's arrow tables (load_dataset's cache_dir). --white_background True composites transparent pixels
onto white and renders onto white (3DGS's --white_background; the saved model keeps it, and a run starting from
it keeps it unless --white_background False says otherwise). --random_bkgd keeps a COLMAP or NeRF folder's alpha
instead, and each training step composites its views onto the random colour the render is composited onto (as
nerfstudio's splatfacto trains NeRF-synthetic scenes); evaluation composites them onto the fixed background (white
with --white_background). --strategy g2l is the full method of Huang, Liu & Wong (2025):
global-to-local densification, energy-guided coarse-to-fine and adaptive pruning, each switched
off by --g2l False / --c2f False / --adaptive_pruning False. Examples:

    python examples/splat_train.py trainers/splat/procedural_g2l.yaml
    accelerate launch examples/splat_train.py --strategy default --max_steps 3000 --output_dir out/splat_default
    accelerate launch --config_file trainers/accelerate/cpu_2proc.yaml examples/splat_train.py --max_steps 300 --output_dir out/splat_ddp
    python examples/splat_train.py --scene user/my-scene --strategy g2l --max_steps 30000 --output_dir out/scene
    python examples/splat_train.py trainers/splat/procedural_g2l.yaml --resume_from_checkpoint True

--normalize_world_space converts a COLMAP or NeRF --scene into normalised coordinates in float64 (a georegistered
capture, far from the world origin, cannot be stored as float32 otherwise); the saved model's config.json records the
transform (world_to_normalized), and GaussianModel.save_ply(path, original_frame=True) maps the splats back.
--resume_from_checkpoint takes a checkpoint folder, or True for the last checkpoint in --output_dir.
--model_name_or_path takes a trained model (a folder this script wrote, or a Hub model repo id): training
starts from its Gaussians, or with --do_train False the run only evaluates it on the scene's test views:

    python examples/splat_train.py --scene user/my-scene --model_name_or_path user/my-splats --do_train False --output_dir out/eval

A pose_opt model's pose_adjustment.safetensors (in its folder, or downloaded from its Hub repo at the commit the model
was read at: --model_revision, resolved once, so a push meanwhile cannot pair them) gives such an evaluation the
training poses the model was fitted with: a test view that shares a training camera is
rendered at its corrected pose, as the training run's evaluation rendered it, and so is preview.png (a file of other
training views is warned of and not used). trajectory.gif follows the given training cameras in every run, as gsplat's
simple_trainer renders its path from the capture's poses.

A training run's config.json records what it trained on (data_split: the scene as a card shows it, --scene_revision and
--test_every; for the procedural scene its seed, view counts and resolution), and such an evaluation warns, naming
both, when its scene or split differs.

--rasterize_mode antialiased trains, evaluates and renders the previews and the video as gsplat's --antialiased
(Mip-Splatting's 2D filter), for a model that will be viewed at other resolutions than its views'; the saved model
keeps the mode (config.json), splats.ply cannot, and most viewers render it classic.
--render_trajectory ellipse (the default) orbits the point the training cameras look at, interpolated follows the
training cameras in --trajectory_order (capture order; the procedural scene's, placed at golden-angle azimuths,
nearest-first) and comes back (the GIF loops), none skips the video (as gsplat's simple_trainer renders a path after
training) and removes the trajectory.gif an earlier run left in --output_dir, which would pass for this run's.

Writes into --output_dir: the model (config.json + model.safetensors, loadable with
`GaussianModel.from_pretrained`; under --pose_opt with pose_adjustment.safetensors, the training views' corrections and
corrected poses), splats.ply (the standard 3DGS format), preview.png (a test
view: render | ground truth), trajectory.gif (a novel-view video along --render_trajectory) and
all_results.json (train_runtime, epoch, eval_psnr, eval_ssim, num_gaussians, strategy, rasterize_mode, dataset_name,
data_split; base_model,
model_name_or_path and model_revision for a run from a model, which keeps its rasterize_mode and background
unless the flags say otherwise), train_results.json (the train_* metrics, total_flos and epoch), eval_results.json
(the eval_* metrics and epoch), eval_renders/ (under --eval_render_images) and trainer_state.json (the Trainer's
log_history, the final evaluation's entry included). An evaluation (--do_train False) writes no model: preview.png,
trajectory.gif, eval_results.json (its eval_* metrics), eval_renders/ and all_results.json (eval_psnr, eval_ssim, model_name_or_path,
model_revision, dataset_name, data_split, and the rasterize_mode and white_background it rendered with, the model's), into
an --output_dir that holds no training run.
Under several processes each rank renders its share of the views and all ranks keep the same
Gaussians; the main process writes the files.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import transformers
from huggingface_hub import (
    _CACHED_NO_EXIST,
    ResolvedRevision,
    hf_hub_download,
    is_offline_mode,
    resolve_revision,
    try_to_load_from_cache,
)
from huggingface_hub.constants import DEFAULT_REVISION
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RevisionResolutionError,
)
from transformers import HfArgumentParser, set_seed

from hf_eff.hub.cards import shown_name
from hf_eff.hub.sources import check_model_source, naming_missing_folder, naming_model_flags
from hf_eff.splat import (
    GaussianModel,
    SplatTrainer,
    SplatTrainingArguments,
    camera_path,
    load_scene,
    make_procedural_scene,
    path_intrinsics,
    render_trajectory,
    write_gif,
)
from hf_eff.splat.pose_adjustment import POSE_ADJUSTMENT_NAME
from hf_eff.splat.scene import resolved_test_every
from hf_eff.utils.distributed import check_world_size, finish_distributed, prepare_cpu_distributed
from hf_eff.utils.evaluation_only import check_evaluation_only
from hf_eff.utils.output_dir import OverwriteOutputDirArguments, check_output_dir
from hf_eff.utils.recipes import parse_recipe_and_flags
from hf_eff.utils.results import (
    log_numeric_metrics,
    log_written,
    remove_earlier_output,
    save_local_model_card,
    write_results_files,
)

logger = logging.getLogger(__name__)


@dataclass
class SceneArguments:
    scene: str | None = field(
        default=None,
        metadata={"help": "Scene folder (Scene.save), COLMAP project (sparse/ and images/), NeRF folder "
                          "(Blender's transforms_train.json / transforms_test.json, or one instant-ngp / nerfstudio "
                          "transforms.json; nerfstudio's ply_file_path point cloud initialises the Gaussians) or "
                          "Hub dataset repo id; none: a procedural scene."},
    )
    scene_revision: str | None = field(default=None, metadata={"help": "Hub revision of --scene."})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where `datasets` keeps the arrow tables of a Hub or parquet --scene (load_dataset's "
                          "cache_dir; default HF_DATASETS_CACHE). The files downloaded from the Hub, the scene's and "
                          "--model_name_or_path's, go to the huggingface_hub cache (HF_HUB_CACHE moves it); a COLMAP "
                          "or NeRF folder is read without a cache."},
    )
    test_every: int | None = field(
        default=None,
        metadata={"help": "For a COLMAP or NeRF --scene without its own test split: every n-th view is held out "
                          "for evaluation. None: 8 (3DGS's llffhold) for a COLMAP model or a single transforms.json; a Blender "
                          "folder keeps its transforms_test.json, and with transforms_train.json alone every view trains."},
    )
    images: str | None = field(
        default=None,
        metadata={"help": "For a COLMAP --scene: the images folder inside it (default images); images_4 trains on "
                          "the 4x downscaled copy, with K rescaled (3DGS's --images, gsplat's --data_factor 4)."},
    )
    masks: str | None = field(
        default=None,
        metadata={"help": "For a COLMAP --scene: the folder inside it holding one mask per image, <masks>/<image "
                          "name with a .png suffix> (IMG_1.jpg: IMG_1.png), single-channel, 0 = a pixel the loss "
                          "ignores (nerfstudio's COLMAP --masks-path). A NeRF folder's frames name their masks "
                          "themselves (mask_path in transforms.json), and a stored scene keeps its own."},
    )
    normalize_world_space: bool = field(
        default=False,
        metadata={"help": "For a COLMAP or NeRF --scene: convert it into normalised coordinates (as gsplat's "
                          "--normalize_world_space does, but unrotated and by the mean and farthest camera): the mean training camera at the origin, the "
                          "farthest at distance 1, computed in float64 before anything is stored as float32. Needed "
                          "for a capture far from the world origin (georegistered), whose cameras float32 cannot "
                          "place. The saved model records the transform (config.json world_to_normalized), and "
                          "GaussianModel.save_ply(path, original_frame=True) maps it back; splats.ply stays in the "
                          "normalised frame it was trained in. A --model_name_or_path trained so needs the flag again."},
    )
    procedural_seed: int = field(default=0, metadata={"help": "Seed of the procedural scene."})
    procedural_resolution: int = field(default=64, metadata={"help": "Width and height of the procedural views."})
    procedural_num_train: int = field(default=16, metadata={"help": "Procedural training views."})
    procedural_num_test: int = field(default=4, metadata={"help": "Procedural test views."})


DEFAULT_SH_DEGREE = 3


@dataclass
class ModelArguments(OverwriteOutputDirArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A trained model: a folder this script wrote (its --output_dir or a checkpoint-N in it), "
                          "or GaussianModel.save_pretrained did, or a Hub model repo id. With --do_train False the "
                          "run evaluates it in the rasterize_mode and onto the background (white_background) its "
                          "config.json records, whatever the flags say. With training, training "
                          "starts from its Gaussians and SH degree instead of the scene's point cloud or random "
                          "points, and everything else starts over: new Adam moments and densification statistics, "
                          "and the whole schedule from step 0 (coarse-to-fine, densification, opacity resets, SH "
                          "degree, means LR), in the model's rasterize_mode and onto its background (white_background) "
                          "unless --rasterize_mode or --white_background say otherwise (a model that rendered "
                          "antialiased or onto white is named when they change that); --resume_from_checkpoint "
                          "continues a run instead."},
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit) of --model_name_or_path."},
    )
    sh_degree: int | None = field(
        default=None,
        metadata={"help": f"Highest spherical-harmonic degree (0-4); None: {DEFAULT_SH_DEGREE}. A "
                          "--model_name_or_path keeps its own degree (a different --sh_degree is ignored, with a "
                          "warning)."},
    )
    init_random_points: int = field(
        default=10_000,
        metadata={"help": "Gaussians drawn uniformly in the scene's bounds when it has no point cloud (3DGS random init)."},
    )


@dataclass
class TrajectoryArguments:
    render_trajectory: Literal["ellipse", "interpolated", "none"] = field(
        default="ellipse",
        metadata={"help": "Camera path of trajectory.gif, built from the training cameras: ellipse orbits the point "
                          "they look at (for scenes captured around an object), interpolated is a smooth spline "
                          "through them (in --trajectory_order) and back, so the looping GIF has no jump (for a "
                          "walk-through or a forward-facing capture), none writes no video. The path is built before "
                          "training, so a scene it does not suit fails at once."},
    )
    trajectory_order: Literal["capture", "nearest"] | None = field(
        default=None,
        metadata={"help": "Order of the cameras an interpolated path goes through: capture (the training views' order, "
                          "a capture's walk) or nearest (chained nearest-first, for views placed in no walking order, "
                          "e.g. Blender's random hemisphere). None: nearest for the procedural scene (its views, at "
                          "golden-angle azimuths, zigzag round it in order), else capture."},
    )
    trajectory_frames: int = field(
        default=48, metadata={"help": "Frames of trajectory.gif (shown at 20 per second)."},
    )
    trajectory_size: int = field(
        default=320,
        metadata={"help": "Longest side of trajectory.gif in pixels; smaller views render at their own size. A GIF "
                          "keeps 256 colours and grows with each frame's pixels, as a CPU's rendering time does, so the "
                          "default stays small: raise it for a sharper video."},
    )

    def __post_init__(self):
        if self.trajectory_frames < 1 or self.trajectory_size < 1:
            raise ValueError(f"--trajectory_frames and --trajectory_size must be positive, got "
                             f"{self.trajectory_frames} and {self.trajectory_size}")


def parse_args():
    parser = HfArgumentParser((SceneArguments, ModelArguments, TrajectoryArguments, SplatTrainingArguments))
    return parse_recipe_and_flags(parser, sys.argv[1:])


def build_scene(scene_args: SceneArguments, training_args: SplatTrainingArguments):
    """The scene and the name results give it."""
    if scene_args.scene is None:
        if scene_args.test_every is not None:
            raise ValueError("--test_every applies to a COLMAP or NeRF --scene; the procedural scene has "
                             "--procedural_num_test")
        if scene_args.images is not None:
            raise ValueError("--images applies to a COLMAP --scene; the procedural scene has --procedural_resolution")
        if scene_args.masks is not None:
            raise ValueError("--masks applies to a COLMAP --scene; the procedural scene has no masks")
        if scene_args.cache_dir is not None:
            raise ValueError("--cache_dir applies to a Hub or parquet --scene; the procedural scene is generated, "
                             "not loaded")
        if scene_args.normalize_world_space:
            raise ValueError("--normalize_world_space applies to a COLMAP or NeRF --scene; the procedural scene is "
                             "built around the origin")
        scene = make_procedural_scene(
            seed=scene_args.procedural_seed, num_train=scene_args.procedural_num_train,
            num_test=scene_args.procedural_num_test, width=scene_args.procedural_resolution,
            height=scene_args.procedural_resolution,
        )
        scene_name = f"procedural (seed {scene_args.procedural_seed})"
    else:
        # --random_bkgd composites the views onto each step's colour, which needs their alpha; onto a fixed colour, a
        # view composited now trains as one kept with its alpha would (up to rounding), so no flag of its own.
        background = (1.0, 1.0, 1.0) if training_args.white_background else (0.0, 0.0, 0.0)
        if training_args.random_bkgd:
            background = None
        scene = load_scene(scene_args.scene, revision=scene_args.scene_revision, test_every=scene_args.test_every,
                           background=background, images=scene_args.images, masks=scene_args.masks,
                           normalize_world_space=scene_args.normalize_world_space, cache_dir=scene_args.cache_dir)
        scene_name = scene_args.scene
    if "test" not in scene.views or len(scene.views["test"]) == 0:
        raise ValueError(f"scene {scene_name} has no test views: evaluation needs a 'test' split "
                         "(--test_every holds views out of a COLMAP or NeRF folder)")
    logger.info("Scene %s: %s", scene_name, scene)
    return scene, scene_name


def described_scene(scene_name: str, split: dict) -> dict:
    """What the results record of the data, under the other examples' keys: its name (dataset_name; folders written
    before it record ``dataset``) and what split its views (data_split)."""
    return {"dataset_name": scene_name, "data_split": split}


def data_split(scene_args: SceneArguments, scene_name: str) -> dict:
    """What a training run trained on, which the saved model records (config.json data_split): the scene as a card
    shows it (a local folder by its name, as a push records it), and the revision and test_every that split its
    views, as they resolve (`resolved_split_flags`)."""
    if scene_args.scene is None:
        # the resolution too: the same cameras rendered at another size are other test images
        return {"scene": scene_name, "procedural_num_train": scene_args.procedural_num_train,
                "procedural_num_test": scene_args.procedural_num_test,
                "procedural_resolution": scene_args.procedural_resolution}
    return {"scene": shown_name(scene_name),
            **resolved_split_flags(scene_args.scene, scene_args.scene_revision, scene_args.test_every)}


def resolved_split_flags(scene: str, scene_revision: str | None, test_every: int | None) -> dict:
    """--scene_revision and --test_every as they split ``scene``: no revision is a Hub scene's main branch (a folder
    has none), no test_every its converter's default (`resolved_test_every`), so that a run giving the defaults
    and one leaving them out record, and compare as, one split."""
    on_hub = not Path(scene).exists()
    return {"scene_revision": (scene_revision or DEFAULT_REVISION) if on_hub else None,
            "test_every": resolved_test_every(scene, test_every)}


def warn_unless_trained_split(model: GaussianModel, split: dict, source: str, scene: str | None) -> None:
    """Warns when an evaluation's scene or split differs from what the model's training run recorded (a model saved
    before data_split was recorded has nothing to compare). A recorded scene's flags are compared as they resolve
    for ``scene`` (--scene)."""
    if model.data_split is None:
        return
    recorded = model.data_split
    if scene is not None and {"scene_revision", "test_every"} <= set(recorded):
        recorded = {**recorded, **resolved_split_flags(scene, recorded["scene_revision"], recorded["test_every"])}
    # The recorded names only: one the record lacks (procedural_resolution) was not recorded when the model was saved.
    differing = [f"--{name} {split.get(name)} (the model's: {recorded[name]})"
                 for name in sorted(recorded) if recorded[name] != split.get(name)]
    if differing:
        logger.warning("%s differ from the training run of --model_name_or_path %s: these test views are not the ones "
                       "it held out (another scene, or views it may have trained on); give that run's values to "
                       "evaluate on them", ", ".join(differing), source)


def build_camera_path(scene, trajectory_args: TrajectoryArguments, procedural: bool) -> np.ndarray | None:
    """The poses of trajectory.gif, built before training so that a scene the path does not suit fails at once."""
    if trajectory_args.render_trajectory == "none":
        return None
    order = trajectory_args.trajectory_order or ("nearest" if procedural else "capture")
    try:
        return camera_path(scene.views["train"], trajectory_args.render_trajectory, trajectory_args.trajectory_frames,
                           order=order)
    except ValueError as error:
        raise ValueError(f"--render_trajectory {trajectory_args.render_trajectory}: {error} (--render_trajectory "
                         "none trains without the video)") from error


def pinned_revision(repo_id: str, revision: str | None) -> ResolvedRevision:
    """``revision`` of the Hub repo ``repo_id`` resolved once to the commit it names now: huggingface_hub's
    ResolvedRevision, which every download given it reads at that commit, whichever push lands meanwhile."""
    offline = is_offline_mode()  # then the cache's record, read without warning of the Hub, as downloads read it
    try:
        return resolve_revision(repo_id, revision=revision, local_files_only=offline)
    except RevisionResolutionError as error:  # what a download raises when the Hub is unreachable and nothing cached
        raise LocalEntryNotFoundError(f"{'offline (HF_HUB_OFFLINE): ' if offline else ''}{error}") from error


def load_model(model_args: ModelArguments) -> tuple[GaussianModel, ResolvedRevision | None]:
    """--model_name_or_path's model, and the revision it was read at: for a Hub repo --model_revision pinned to one
    commit (`pinned_revision`), so that the model's pose corrections come from the same push; None for a folder."""
    source, revision = model_args.model_name_or_path, model_args.model_revision
    with naming_model_flags("--model_name_or_path", source, "--model_revision", revision):
        if not Path(source).is_dir():  # as GaussianModel.from_pretrained tells a folder from a repo id
            with naming_missing_folder("cannot load a GaussianModel", source):  # its words for a mistyped folder
                revision = pinned_revision(source, revision)
        model = GaussianModel.from_pretrained(source, revision=revision)
    logger.info("Loaded %s: %d Gaussians, SH degree %d, rasterize_mode %s, white_background %s", source, len(model),
                model.sh_degree, model.rasterize_mode, model.white_background)
    if model_args.sh_degree is not None and model_args.sh_degree != model.sh_degree:
        logger.warning("--sh_degree %d ignored: %s keeps its SH degree, %d", model_args.sh_degree, source,
                       model.sh_degree)
    return model, revision


def pose_adjustment_folder(model_args: ModelArguments, revision: ResolvedRevision | None) -> str | None:
    """Where --model_name_or_path keeps its pose_opt run's corrected training poses (pose_adjustment.safetensors): the
    model's folder, or for a Hub repo the snapshot folder the file is downloaded into, at the commit ``revision``
    (`load_model`'s) the model was read at; None for a model trained without pose_opt."""
    source = model_args.model_name_or_path
    if Path(source).is_dir():  # as GaussianModel.from_pretrained tells a folder from a repo id
        return source if Path(source, POSE_ADJUSTMENT_NAME).is_file() else None
    # the commit itself: try_to_load_from_cache would read a branch's ref, which a later download may have moved
    if try_to_load_from_cache(source, POSE_ADJUSTMENT_NAME, revision=revision.resolved) is _CACHED_NO_EXIST:
        return None  # the Hub said so at an earlier download (offline, hf_hub_download would not read that answer)
    try:
        return str(Path(hf_hub_download(source, POSE_ADJUSTMENT_NAME, revision=revision)).parent)
    except RemoteEntryNotFoundError:
        return None
    except LocalEntryNotFoundError:
        logger.warning("%s: %s is not in the cache and the Hub cannot be reached: views sharing a training camera are "
                       "evaluated at their given poses, not at those a pose_opt run corrected them to", source,
                       POSE_ADJUSTMENT_NAME)
        return None


def initial_model(scene, model_args: ModelArguments) -> GaussianModel:
    sh_degree = model_args.sh_degree if model_args.sh_degree is not None else DEFAULT_SH_DEGREE
    if scene.points is not None:
        xyz, rgb = scene.point_arrays()
        return GaussianModel.from_points(xyz, rgb, sh_degree=sh_degree)
    logger.info("The scene has no point cloud: %d random Gaussians", model_args.init_random_points)
    return GaussianModel.random(scene.center, scene.radius, model_args.init_random_points, sh_degree=sh_degree)


def evaluate_as_trained(model: GaussianModel, training_args: SplatTrainingArguments) -> None:
    """An evaluation renders as the model's training run did, in its rasterize_mode and onto its background
    (its config.json): SplatTrainer renders with, and gives the model, its arguments' settings. A config.json
    older than white_background leaves --white_background to say."""
    for name in ("rasterize_mode", "white_background"):
        trained, given = getattr(model, name), getattr(training_args, name)
        if trained is None:
            logger.warning("The model's config.json does not record %s (saved before it did): evaluating with --%s "
                           "%s", name, name, False if given is None else given)
            continue
        if given is not None and trained != given:
            logger.info("Evaluating with the model's %s %s, not --%s %s", name, trained, name, given)
        setattr(training_args, name, trained)


def train(trainer: SplatTrainer, model_args: ModelArguments, scene: dict) -> dict:
    """Trains, saves the model and writes the train results, which it returns; ``scene``: the data the results name
    (`described_scene`)."""
    args = trainer.args
    logger.info("Strategy: %s; coarse-to-fine: %s", trainer.strategy, trainer.coarse_to_fine)
    train_result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    if args.should_save:  # the model first: nothing that fails below can lose it
        trainer.model.save_pretrained(args.output_dir)
        trainer.save_pose_adjustment(args.output_dir)  # --pose_opt's corrections, which the model was fitted with
    metrics = dict(train_result.metrics)
    metrics.update(num_gaussians=len(trainer.model), epoch=trainer.state.epoch)
    metrics.update(trainer.card_run_settings(), ssim_padding=args.ssim_padding)
    if model_args.model_name_or_path is not None:  # the card's base_model
        metrics.update(base_model=model_args.model_name_or_path, model_name_or_path=model_args.model_name_or_path,
                       model_revision=model_args.model_revision)
    metrics.update(scene)
    log_numeric_metrics(trainer, "train", metrics)  # printed: after training the progress bar shows no evaluation
    write_results_files(trainer, metrics)  # now, as the model: an evaluation that fails below keeps them
    return metrics


def evaluate(trainer: SplatTrainer, model_args: ModelArguments, scene: dict, trained: dict) -> list[str]:
    """Evaluates, and writes the results files with the eval results and ``trained``, this run's train results (none
    for an evaluation); returns their names."""
    metrics = trainer.evaluate()
    if not trainer.args.do_train:
        metrics.update(model_name_or_path=model_args.model_name_or_path, model_revision=model_args.model_revision,
                       **scene, rasterize_mode=trainer.args.rasterize_mode,
                       white_background=trainer.args.white_background,
                       eval_ssim_padding=trainer.args.eval_ssim_padding)
    log_numeric_metrics(trainer, "eval", metrics)
    return write_results_files(trainer, {**trained, **metrics})


def save_trajectory(trainer: SplatTrainer, views, path_poses: np.ndarray, max_size: int, path: Path) -> None:
    K, width, height = path_intrinsics(views, max_size)
    background = (1.0, 1.0, 1.0) if trainer.args.white_background else None
    frames = render_trajectory(trainer.model, path_poses, K, width, height, background=background,
                               backend=trainer.args.render_backend, packed=trainer.args.packed)
    count = write_gif(frames, path)
    logger.info("Wrote %s: %d frames of %dx%d", path, count, width, height)


@torch.no_grad()
def save_preview(trainer: SplatTrainer, path: Path) -> None:
    """The first test view, render | ground truth, as evaluation renders and compares it: a view sharing a training
    camera at its training pose (`evaluation_poses`), a kept alpha over the render's background."""
    from PIL import Image

    views = trainer.eval_dataset
    item = views[0]
    device = trainer.args.device
    render, _, _ = trainer.render(trainer.model, trainer.evaluation_poses(views)[:1].to(device),
                                  item["K"][None].to(device), views.width, views.height)
    target = trainer.evaluation_target(item)[0]
    pair = torch.cat([render[0].clamp(0, 1).cpu(), target], dim=1)
    Image.fromarray((pair.numpy() * 255).round().astype("uint8")).save(path)


def main():
    prepare_cpu_distributed()
    scene_args, model_args, trajectory_args, training_args = parse_args()
    check_evaluation_only(training_args, "--model_name_or_path", model_args.model_name_or_path)
    check_model_source("--model_name_or_path", model_args.model_name_or_path, "--model_revision",
                       model_args.model_revision, training_args.output_dir)
    check_output_dir(training_args, model_args.overwrite_output_dir)
    check_world_size(training_args.world_size)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    transformers.utils.logging.set_verbosity(log_level)
    # Trainer's passive default is warnings only, which hid this script's own lines (the scene, where it wrote):
    # they are info on the main process unless --log_level says otherwise, as the GraNT example's are.
    passive = training_args.should_log and training_args.log_level == "passive"
    logger.setLevel(logging.INFO if passive else log_level)
    set_seed(training_args.seed)

    model, model_commit = load_model(model_args) if model_args.model_name_or_path is not None else (None, None)
    # Before the scene, whose transparent pixels are composited onto the model's background.
    if model is not None and not training_args.do_train:
        evaluate_as_trained(model, training_args)
    elif model is not None:
        training_args.take_model_render_settings(model)
    scene, scene_name = build_scene(scene_args, training_args)
    split = data_split(scene_args, scene_name)
    path_poses = build_camera_path(scene, trajectory_args, procedural=scene_args.scene is None)
    if model is None:
        model = initial_model(scene, model_args)  # SplatTrainer gives it the frame of the views (config.json)
    elif model.world_to_normalized is None and scene.world_to_normalized is not None:
        # SplatTrainer would take it for a fresh model and give it the scene's frame: only here is it known trained
        raise ValueError(f"--model_name_or_path {model_args.model_name_or_path} records no world_to_normalized (it was "
                         "trained in the capture's own coordinates), but --normalize_world_space put the scene in "
                         "normalised ones: leave out --normalize_world_space")
    if training_args.do_train:
        model.data_split = split  # config.json records what this run trains on
    else:
        warn_unless_trained_split(model, split, model_args.model_name_or_path, scene_args.scene)
    trainer = SplatTrainer(model=model, args=training_args, train_dataset=scene.views["train"],
                           eval_dataset=scene.views["test"])
    if not training_args.do_train:
        folder = pose_adjustment_folder(model_args, model_commit)
        # its training views (where a test split shares their cameras) at the poses the model was fitted with
        if folder is not None and trainer.load_pose_adjustment(folder):
            logger.info("Training cameras are evaluated at the corrected poses of %s/%s", folder, POSE_ADJUSTMENT_NAME)
    output_dir = Path(training_args.output_dir)
    described = described_scene(scene_name, split)
    trained = train(trainer, model_args, described) if training_args.do_train else {}
    results_files = evaluate(trainer, model_args, described, trained)
    if training_args.do_train:
        trainer.save_state()  # trainer_state.json: the run's log_history, its final evaluation's metrics included
        results_files.append("trainer_state.json")

    written = []
    if training_args.should_save:
        if training_args.do_train:
            trainer.model.save_ply(output_dir / "splats.ply")
            written += ["the model", "splats.ply"]
        save_preview(trainer, output_dir / "preview.png")
        written.append("preview.png")
        if path_poses is not None:
            save_trajectory(trainer, scene.views["train"], path_poses, trajectory_args.trajectory_size,
                            output_dir / "trajectory.gif")
            written.append("trajectory.gif")
        else:
            remove_earlier_output(trainer, "trajectory.gif", "video")
        if training_args.eval_render_images:  # the final evaluation's render|target pairs, as the earlier ones
            written.append("eval_renders/")
        written += results_files
    if training_args.do_train:
        trainer.save_model()  # again, last: with --push_to_hub it pushes the .ply, the preview and the card of the results
        # the card a push writes, for a run kept local; a push wrote it itself (save_model above)
        if written and save_local_model_card(trainer):  # a README.md of an earlier run is not this run's
            written.append("README.md")
    log_written(logger, trainer, written)


if __name__ == "__main__":
    main()
    finish_distributed()
