"""`SplatTrainer`: a `transformers.Trainer` that fits a `GaussianModel` to a scene's views.

Densification goes through gsplat's `Strategy` API, so any gsplat strategy plugs in. The parts
Trainer cannot do by itself are:
- one Adam per Gaussian parameter (gsplat's ops resize each one's state when Gaussians are
  added or removed), behind the single optimizer Trainer expects (`GaussianOptimizers`);
- a densification step after each optimizer step (`_DensifyCallback`), as in gsplat's
  simple_trainer;
- checkpoints whose number of Gaussians differs from the model's at start-up;
- data parallelism (`accelerate launch`): DDP's wrapper assumes parameters of fixed shape, and
  densification resizes them, so the model is kept out of DistributedDataParallel and the ranks
  are synchronised by hand. Each step all-reduces the gradients (`_average_gradients`). Each rank
  accumulates gsplat's densification statistics from its own views, and the ranks combine them
  only where the strategy reads them (`_combined_statistics`): once per refine interval, not
  once per step.

The training step adds no host read of its own (gsplat's rasteriser still reads one count per
render): the NaN / inf checks of `rasterize` and `photometric_loss` (host reads, each a CUDA
synchronisation) are replaced by a device-side record of the first step whose Gaussians or
render went non-finite (`NonFiniteWatch`), read every `finite_check_steps` steps and wherever
the host reads the device anyway (logging, refine steps, evaluation, checkpoints, the end of
training).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from torch import nn
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PredictionOutput, speed_metrics
from transformers.utils import logging

from hf_eff.hub.push import model_side_files
from hf_eff.hub.trainer_cards import HubCardTrainerMixin
from hf_eff.splat.cameras import camera_centres, camera_spread, describe_frame, same_frame
from hf_eff.splat.coarse_to_fine import EnergyCoarseToFine, downscale_images, scale_intrinsics
from hf_eff.splat.config import SplatTrainingArguments
from hf_eff.splat.losses import (
    gaussian_regularization,
    photometric_loss,
    psnr,
    ssim,
    ssim_blind_images,
)
from hf_eff.splat.pose_adjustment import (
    POSE_ADJUSTMENT_NAME,
    PoseAdjustment,
    camera_key,
    cameras_sha256,
    gaussians_sha256,
    load_corrected_poses,
    pose_lr,
)
from hf_eff.splat.rendering import LOW_PRECISION
from hf_eff.splat.scene import (
    Scene,
    composite_premultiplied,
    data_world_to_normalized,
    images_to_float,
    keeps_alpha,
    premultiply_rgba,
    scene_views_cameras,
    scene_views_images,
    scene_views_masks,
    validate_views_split,
)
from hf_eff.utils.best_model import reported_metric_names
from hf_eff.utils.resume import check_resume, resumed_checkpoint
from hf_eff.utils.training_failures import unreadable_best_weights_error, unreadable_weights_error

logger = logging.get_logger(__name__)

DENSIFICATION_STATE_NAME = "densification_state.pt"
# pose_opt's corrections beside the Gaussians' parameters: their optimizer's key (optimizer.pt) and param group name,
# and their name in the non-finite watch and its errors.
POSE_ADJUSTMENT_KEY = "pose_adjustment"
# Refused for a training split without alpha: its transparency was composited onto a colour already.
RANDOM_BKGD_ON_WHITE = (
    "SplatTrainer: random_bkgd with white_background, and train_dataset keeps no alpha: its transparent pixels were "
    "composited onto white, which a random background contradicts; keep the alpha (views_dataset(..., "
    "background=None), load_scene(folder, background=None)) or leave out one of the two"
)
# What SplatTrainer.evaluate reports, after its prefix ("eval_").
EVAL_METRICS = ("psnr", "ssim", "num_gaussians", "train_seconds", "train_cpu_seconds")
# The keywords `SplatTrainer.render` passes to the model's render.
RENDER_KEYWORDS = ("sh_degree", "packed", "backend", "backgrounds", "absgrad", "check_finite", "rasterize_mode")


def check_views_split(views, name: str = "train_dataset") -> None:
    """Raises naming the fix unless ``views`` is one split of a scene's views (a `datasets.Dataset`
    that passes a scene's checks of a split, `validate_views_split`: a split built by hand is passed
    here directly): a whole `Scene` or its `DatasetDict` failed deep inside with a bare KeyError or
    TypeError. ``name``: the trainer argument its errors name ("scene view 3 (train_dataset): ...")."""
    from datasets import Dataset as HFDataset
    from datasets import DatasetDict

    if isinstance(views, DatasetDict | Scene):
        raise TypeError(
            f"SplatTrainer takes one split of the scene's views, got a {type(views).__name__}: pass "
            "train_dataset=scene.views['train'] and eval_dataset=scene.views['test']"
        )
    if not isinstance(views, HFDataset):
        raise TypeError(
            f"SplatTrainer takes a split of a scene's views (a datasets.Dataset), got {type(views).__name__}"
        )
    if len(views) == 0:
        # A converted folder's test split with test_every=0, or views_dataset([], [], []).
        hint = {"eval_dataset": "; pass eval_dataset=None to train without evaluation"}.get(name, "")
        if name.startswith("eval_dataset["):
            hint = "; leave it out of eval_dataset"
        raise ValueError(f"SplatTrainer: {name} has no views{hint}")
    validate_views_split(views, name)


class SceneViews(Dataset):
    """The views of one scene split as tensors: image [H, W, 3] float in [0, 1], viewmat [4, 4]
    (world-to-camera, OpenCV), K [3, 3] and view_index (int64 scalar: the view's index in the split, which
    pose_opt's per-view correction reads) per item. Built once from the `datasets` split, so
    training does not decode PNGs at every step.

    `images` holds the whole split in host memory as uint8 [N, H, W, 3], the stored pixels, as
    gsplat's simple_trainer reads them (300 views at 1600x1200: 1.7 GB, not 6.9 GB of float32;
    kept off the GPU, whose memory goes to the Gaussians). Each item's image becomes float in
    [0, 1] when it is read (`images_to_float`), so a batch holds its own views only and Trainer
    moves just the batch to the training device. The conversion stays on the CPU: CUDA divides
    by a scalar as a multiplication by its reciprocal, which differs in the last bit for 126 of
    the 256 values; the CPU division gives the same values whatever the training device.

    A split with a ``mask`` column keeps its masks as bool `masks` [N, H, W] (None without one), and
    each item gets ``mask`` [H, W, 1] bool (True = trained, False = ignored: exact, and a byte a pixel
    on the way to the device; `SplatTrainer.compute_loss` makes it float). The ignored pixels of
    `images` are set to 0 here, once: their content then reaches nothing downstream (the loss, the
    coarse-to-fine downscaling and energy schedule, the evaluation's target).

    A split that keeps its alpha (`keeps_alpha`: built with ``views_dataset(..., background=None)``) has
    `keeps_alpha` True, keeps its alphas as uint8 `alphas` [N, H, W], and each item gets ``alpha`` [H, W, 1] float
    in [0, 1]. Its `images` are then the colour over black (premultiplied by the alpha, rounded as `views_dataset`
    composites onto black), so a transparent pixel's hidden colour reaches nothing downstream either;
    `SplatTrainer` adds the background's share, ``background * (1 - alpha)``, for the colour it renders onto (the
    energy schedule measures the views so too, on the fixed background). Both are views of the one decoded RGBA
    stack, split in place: 4 bytes a pixel. A masked view's ignored pixels are made opaque, so their target stays 0
    whatever the background. A split whose every alpha is 255 (an opaque capture kept with its alpha) drops it:
    `alphas` None and no ``alpha`` item, it trains as opaque views do; `keeps_alpha`, read from the features, stays
    True.

    ``lazy=True`` reads the cameras now and decodes the images and masks when `images` or `masks` is
    first read (or `decode` is called): an evaluation-only trainer's training views serve their
    cameras alone (the scene scale, the check that they see the Gaussians).
    ``name``: the `SplatTrainer` argument the split came in as, which errors about it name.
    ``world_to_normalized``: the frame the split names (`hf_eff.splat.scene.data_world_to_normalized`), or None.
    """

    def __init__(self, views, lazy: bool = False, name: str = "train_dataset"):
        if isinstance(views, SceneViews):
            vars(self).update(vars(views))  # the same tensors, and the pixels if they are decoded
        else:
            check_views_split(views, name)
            self.viewmats, self.Ks, (self.width, self.height) = scene_views_cameras(views, split=name)
            self.keeps_alpha = keeps_alpha(views)
            self._views, self._images, self._masks, self._alphas, self._name = views, None, None, None, name
            self.world_to_normalized = data_world_to_normalized(views, name)
        if not lazy:
            self.decode()

    def decode(self) -> None:
        """Decodes the split's images and masks, once."""
        if self._views is None:
            return
        images = scene_views_images(self._views, split=self._name)
        masks = scene_views_masks(self._views, split=self._name)
        alphas = None
        if self.keeps_alpha:
            images, alphas = premultiply_rgba(images, masks)
        if masks is not None:
            images[~masks] = 0
        # The split is not needed past this point (nor pickled into dataloader workers).
        self._images, self._masks, self._alphas, self._views = images, masks, alphas, None

    @property
    def images(self) -> torch.Tensor:
        self.decode()
        return self._images

    @property
    def masks(self) -> torch.Tensor | None:
        self.decode()
        return self._masks

    @property
    def alphas(self) -> torch.Tensor | None:
        self.decode()
        return self._alphas

    def __len__(self) -> int:
        return len(self.viewmats)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"image": images_to_float(self.images[index]), "viewmat": self.viewmats[index], "K": self.Ks[index],
                "view_index": torch.tensor(index)}
        if self.masks is not None:
            item["mask"] = self.masks[index, :, :, None]
        if self.alphas is not None:
            item["alpha"] = images_to_float(self.alphas[index, :, :, None])
        return item


POSE_HINT = (
    "check the poses: world_to_camera maps world to camera points in OpenCV's convention (x right, "
    "y down, z forward); an OpenGL / Blender camera-to-world c2w becomes inv(c2w @ OPENGL_TO_OPENCV) "
    "(hf_eff.splat.cameras), and a camera-to-world matrix must be inverted"
)


def camera_scene_scale(viewmats: torch.Tensor) -> float:
    """gsplat simple_trainer's scene scale: 1.1 x the largest distance of a camera centre from
    the mean centre. It scales the means LR and the strategies' 3D size thresholds."""
    radius = camera_spread(camera_centres(viewmats.detach().cpu()))
    return 1.1 * (radius if radius > 0 else 1.0)


@torch.no_grad()
def views_seeing_no_gaussian(views: SceneViews, means: torch.Tensor, max_gaussians: int = 65536) -> list[int]:
    """Indices of the views in which no Gaussian centre lies in front of the camera and inside the
    image: a pose in another convention (OpenGL, or camera-to-world for world-to-camera) looks
    away from the scene. Checks at most ``max_gaussians`` centres, evenly spaced, so that the
    cost stays small on large scenes."""
    means = means.detach()[:: max(1, math.ceil(len(means) / max_gaussians))].to("cpu", torch.float64)
    blind = []
    for index, (viewmat, K) in enumerate(zip(views.viewmats.double(), views.Ks.double())):
        points = means @ viewmat[:3, :3].T + viewmat[:3, 3]
        depth = points[:, 2]
        front = depth > 0
        pixels = points[front] @ K.T
        u, v = pixels[:, 0] / depth[front], pixels[:, 1] / depth[front]
        if not ((u >= 0) & (u < views.width) & (v >= 0) & (v < views.height)).any():
            blind.append(index)
    return blind


@torch.no_grad()
def empty_model_causes(before: dict[str, torch.Tensor], step: int, strategy, scene_scale: float, views: SceneViews,
                       blind_at_start: list[int]) -> list[str]:
    """What a trainer can tell of why densification step ``step`` left no Gaussian, most telling first. ``before``:
    the Gaussians' means, scales (log) and opacities (logits) the step started from; ``strategy``: the one that
    pruned them (its prune_opa, and its prune_scale3d, which gsplat's strategies apply after step reset_every, where
    it has them); ``scene_scale``: `camera_scene_scale`;
    ``views``: the training views; ``blind_at_start``: the views that saw no Gaussian at the start. Reads the
    device (only when a run has already failed)."""
    causes = []
    if blind_at_start:
        causes.append(f"training views {blind_at_start[:10]}{' ...' if len(blind_at_start) > 10 else ''} "
                      f"({len(blind_at_start)} of {len(views)}) saw none of the Gaussians at the start (the warning "
                      f"then), as with camera-to-world poses given as world_to_camera; {POSE_HINT}")
    count = len(before["means"])
    if not count:
        return causes
    largest = torch.exp(before["scales"]).amax(dim=-1)
    prune_scale3d = getattr(strategy, "prune_scale3d", None)
    if prune_scale3d is not None and step > getattr(strategy, "reset_every", -1):
        too_big = int((largest > prune_scale3d * scene_scale).sum())
        if too_big:
            causes.append(
                f"{too_big} of the {count} Gaussians before this step were larger than prune_scale3d x the scene "
                f"scale ({prune_scale3d} x {scene_scale:.3g}; median largest scale {largest.median().item():.3g}), "
                "which gsplat's strategies prune after step reset_every; the scene scale is 1.1 x the largest "
                "distance of a training camera from the cameras' mean centre, so wrong poses shrink it"
            )
    prune_opa = getattr(strategy, "prune_opa", None)
    if prune_opa is not None:
        faint = int((torch.sigmoid(before["opacities"]) < prune_opa).sum())
        if faint:
            causes.append(f"{faint} of the {count} Gaussians before this step had an opacity under prune_opa={prune_opa}")
    if len(views_seeing_no_gaussian(views, before["means"])) == len(views):
        causes.append(f"no training view saw any of the {count} Gaussians before this step (every centre behind the "
                      "camera or outside the image), so none got a gradient")
    return causes


class GaussianOptimizers(torch.optim.Optimizer):
    """One optimizer per Gaussian parameter (and one for pose_opt's corrections), seen by Trainer and accelerate
    as one, so that checkpoints' optimizer.pt holds every state.

    gsplat's densification ops replace each parameter and resize its own optimizer's state, so
    the per-key optimizers stay the source of truth: `param_groups` and `state` are read
    through from them (as accelerate's `AcceleratedOptimizer` does for the one it wraps, it
    skips `Optimizer.__init__`). Learning-rate changes on these groups reach the real optimizers.
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = optimizers
        self.defaults = {}

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers.values() for group in optimizer.param_groups]

    @property
    def state(self) -> dict:
        return {param: value for optimizer in self.optimizers.values() for param, value in optimizer.state.items()}

    def step(self, closure=None):
        for optimizer in self.optimizers.values():
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True):
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {key: optimizer.state_dict() for key, optimizer in self.optimizers.items()}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != set(self.optimizers):
            raise ValueError(f"optimizer state has keys {sorted(state_dict)}, expected {sorted(self.optimizers)}")
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state_dict[key])

    def __repr__(self) -> str:
        return f"GaussianOptimizers({', '.join(self.optimizers)})"


class NonFiniteWatch:
    """Remembers on the device the first step at which a watched tensor held NaN or inf, and which
    ones did, without reading the device: `update` queues a few small kernels, `first` reads the
    record (one host read: on CUDA, a synchronisation).

    Args:
        names: the watched tensors, in the order errors name them.
    """

    def __init__(self, names: list[str]):
        self.names = list(names)
        self.first_step: torch.Tensor | None = None  # int64 scalar, -1 while all were finite
        self.bad: torch.Tensor | None = None  # bool [len(names)], at first_step

    @torch.no_grad()
    def update(self, step: int, tensors: dict[str, torch.Tensor]) -> None:
        """Records `step` if it is the first at which one of `tensors` (a subset of `names`) is non-finite."""
        unknown = set(tensors) - set(self.names)
        if unknown:
            raise ValueError(f"NonFiniteWatch: {sorted(unknown)} are not watched ({self.names})")
        device = next(iter(tensors.values())).device
        if self.first_step is None or self.first_step.device != device:
            self.first_step = torch.full((), -1, dtype=torch.long, device=device)
            self.bad = torch.zeros(len(self.names), dtype=torch.bool, device=device)
        # a placeholder only for a partial update (the training step passes every name)
        none = self.bad.new_zeros(()) if len(tensors) < len(self.names) else None
        bad = torch.stack([~torch.isfinite(tensors[name]).all() if name in tensors else none for name in self.names])
        # Python scalars go to the kernels as arguments: no host-to-device copy, no synchronisation.
        fresh = (self.first_step < 0) & bad.any()
        self.first_step = torch.where(fresh, step, self.first_step)
        self.bad = torch.where(fresh, bad, self.bad)

    def reset(self) -> None:
        """Forgets what was recorded (a new training run, e.g. resumed from a checkpoint before a divergence)."""
        self.first_step = self.bad = None

    def record(self) -> torch.Tensor | None:
        """[first_step, bad...] as one int64 tensor on the device (None before any update)."""
        if self.first_step is None:
            return None
        return torch.cat([self.first_step[None], self.bad.long()])

    def first(self, records: torch.Tensor) -> tuple[int, list[str]] | None:
        """(step, names) of the earliest non-finite step among `records` [R, 1 + len(names)] (the
        `record`s of R ranks; the names any of them flagged at that step), or None when every watched
        tensor stayed finite. Reads the device."""
        found = [row for row in records.tolist() if row[0] >= 0]
        if not found:
            return None
        step = min(row[0] for row in found)
        flagged = [any(flags) for flags in zip(*(row[1:] for row in found if row[0] == step))]
        return step, [name for name, flag in zip(self.names, flagged) if flag]


class _DensifyCallback(TrainerCallback):
    """Runs the strategy right after each optimizer step, before the step counter moves on."""

    def __init__(self, trainer: SplatTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._non_finite.reset()
        self.trainer._start_train_clocks(state)
        self.trainer._broadcast_gaussians()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._densify()

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer._check_finite(current=True)
        self.trainer._stop_train_clocks()


class SplatTrainer(HubCardTrainerMixin, Trainer):
    """Fits a `GaussianModel` to the views of a `Scene` with 3DGS's recipe.

    Args:
        model: the `GaussianModel` to train (e.g. `GaussianModel.from_points` on the scene's cloud).
        args: `SplatTrainingArguments` (max_steps must be set to train; the schedules scale with it).
        train_dataset: the scene's train split (`scene.views["train"]`) or a `SceneViews`. This and every
            argument after `args` are keyword-only: `Trainer`'s third positional argument is `data_collator`.
        eval_dataset: the test split; evaluation reports PSNR and SSIM on it and saves renders. A dict of splits
            (``{"test": ..., "train_views": ...}``, as Trainer takes) evaluates each under ``eval_<key>_``, and
            ``metric_for_best_model`` then names one of them (``test_psnr``).
        strategy: any gsplat `Strategy` (`MCMCStrategy` on CUDA only: it calls gsplat's kernels itself);
            None builds the one `args` describes. A strategy that is not a `GlobalToLocalStrategy` trains as
            under `SplatTrainingArguments(strategy="default")` (no coarse-to-fine, no means LR hold), which
            `trainer.args` then says, whatever `args.strategy` held. The trainer
            works on a copy (`trainer.strategy`); a `GlobalToLocalStrategy` without `global_stop_iter`
            gets T_2 of the energy schedule there.
        kwargs: passed to `transformers.Trainer` (callbacks, ...).

    Per step: the views are rendered at the coarse-to-fine resolution of the step, the loss is
    (1 - lambda) L1 + lambda D-SSIM (on a split with masks, render and target multiplied by the
    mask, as gsplat's simple_trainer and nerfstudio's splatfacto do: ignored pixels give no
    gradient, so they do not drive densification either), plus gsplat simple_trainer's `opacity_reg` and
    `scale_reg` terms when set (`random_bkgd`: the render composited onto a random colour first). The views of a
    split that keeps its alpha (`views_dataset(..., background=None)`) are composited onto the colour the render
    is composited onto, each step: the random one under `random_bkgd`, else the fixed background (white under
    `white_background`, else black), onto which evaluation, `predict` and the energy schedule (coarse-to-fine,
    G2L's T_2, whatever `random_bkgd`) composite them too. One Adam per
    parameter steps (3DGS learning rates; the means
    LR decays exponentially towards `means_lr_final_ratio`, held constant while coarse-to-fine
    downsamples, see `means_lr_decay`), then the strategy densifies and prunes. The SH degree grows by one every
    `sh_degree_interval` steps up to the model's. Under `pose_opt` each training view is rendered with its pose
    corrected by a learned per-view SE(3) correction (`hf_eff.splat.pose_adjustment`), saved beside the model as
    pose_adjustment.safetensors; `training_poses` returns the corrected poses (`load_pose_adjustment` gives a trainer
    that evaluates a trained model its run's).
    """

    card_kind = "splat_model"
    hub_model_side_files = tuple(model_side_files(card_kind))

    def __init__(self, model: nn.Module | None = None, args: SplatTrainingArguments | None = None, *,
                 train_dataset=None, eval_dataset=None, strategy=None, **kwargs):
        from hf_eff.splat.strategy import GlobalToLocalStrategy

        if not isinstance(args, SplatTrainingArguments):
            raise TypeError(f"SplatTrainer needs SplatTrainingArguments, got {type(args).__name__}")
        if isinstance(strategy, str):
            raise TypeError(
                f"SplatTrainer(strategy={strategy!r}): strategy is a gsplat Strategy object; the built-in ones are "
                "named by SplatTrainingArguments(strategy='default' or 'g2l')"
            )
        if strategy is not None and args.strategy == "g2l" and not isinstance(strategy, GlobalToLocalStrategy):
            # Coarse-to-fine and the held means LR belong to G2L: another strategy runs as under 'default'. The
            # caller's arguments are left as given (they may serve other runs).
            logger.info(f"SplatTrainer: the {type(strategy).__name__} passed trains as strategy='default' (no "
                        "coarse-to-fine, no means LR hold: those are global-to-local's)")
            args = copy.copy(args)
            args.strategy = "default"
        if train_dataset is None:
            raise ValueError("SplatTrainer needs a train_dataset: a scene's train split")
        if kwargs.get("compute_metrics") is not None:
            # evaluate renders views, not logits: Trainer's metric hook would never be called.
            raise ValueError(
                "SplatTrainer: compute_metrics is not used (evaluate reports PSNR and SSIM); trainer.predict(split) "
                "returns the renders and the views' images for metrics of one's own"
            )
        if type(self).evaluate is SplatTrainer.evaluate:
            _check_metric_for_best_model(args.metric_for_best_model, eval_dataset, args._metric_for_best_model_defaulted)
        if not hasattr(model, "splats") or not hasattr(model, "render"):
            raise TypeError("SplatTrainer trains a GaussianModel (an nn.Module with .splats and .render)")
        half = sorted({str(param.dtype) for param in model.splats.values() if param.dtype in LOW_PRECISION})
        if half:
            # Renders work (from float32 copies), but Adam's steps would round away in the parameters themselves.
            raise ValueError(
                f"SplatTrainer: the Gaussians are {', '.join(half)}, whose resolution (about 1% of a value) is coarser "
                "than the 3DGS learning rates' steps, which would round away; train them in float32 (model.float())"
            )
        render_parameters = inspect.signature(model.render).parameters
        if not any(parameter.kind is parameter.VAR_KEYWORD for parameter in render_parameters.values()):
            missing = [name for name in RENDER_KEYWORDS if name not in render_parameters]
            if missing:
                raise TypeError(f"SplatTrainer: model.render must accept the keywords {', '.join(missing)} "
                                "(GaussianModel.render passes them to rasterize)")
        if args.rasterize_mode is None or args.white_background is None:
            args = copy.copy(args)  # the model's settings fill this run's, not those of the caller's other runs
        args.take_model_render_settings(model)  # the background, known before any image is decoded
        # Cameras and features only, so what they refuse costs no decoding; an evaluation-only run reads the training
        # cameras alone: its training images stay undecoded.
        train_views = SceneViews(train_dataset, lazy=True)
        if args.random_bkgd and args.white_background and not train_views.keeps_alpha:
            # the hint also where the white came from the model before the trainer (the example fills it so)
            from_model = (" (white_background is the model's: it renders onto white; pass white_background=False to "
                          "train it onto black)") if getattr(model, "white_background", None) else ""
            raise ValueError(RANDOM_BKGD_ON_WHITE + from_model)
        if args.do_train:
            train_views.decode()
        eval_views = self._eval_splits(eval_dataset, args, train_views)
        self._adopt_frame(model, train_views)
        self._adopt_render_settings(model, args)
        # kept for the error of a run whose pruning leaves no Gaussian, which wrong poses cause
        self._views_blind_at_start = self._check_cameras_see_gaussians(train_views, model)
        super().__init__(model=model, args=args, train_dataset=train_views, eval_dataset=eval_views, **kwargs)
        if self.is_distributed:
            # accelerate returns a model marked as prepared unchanged: no DistributedDataParallel,
            # whose buckets would break at the first densification.
            model._is_accelerate_prepared = True
        self.scene_scale = camera_scene_scale(train_views.viewmats)
        self._setup_pose_opt(train_views)  # after the scene scale is taken from the given poses
        # A copy: T_2 is written on it below and on resume, which a strategy object the caller shares
        # between scenes must not keep.
        self.strategy = copy.copy(strategy) if strategy is not None else args.build_strategy()
        self._strategy_from_args = strategy is None
        self._check_strategy_runs_here()
        self.coarse_to_fine = None
        # An evaluation-only run does no training-only work: the energy schedule reads every training image
        # (seconds for tens of large views); train() builds it if it is called anyway.
        self._schedule_built = False
        if args.do_train:
            self._build_schedule()
        self.strategy_state = self._initial_strategy_state()
        self.optimizers_by_key: dict[str, torch.optim.Optimizer] = {}
        self._last_info: dict[str, Any] | None = None
        self._non_finite = NonFiniteWatch([*self._watched_tensors(), "render"])
        # Whether the ranks' densification statistics hold their own views' parts, not yet summed.
        self._statistics_partial = False
        self._checkpoint_clocks: tuple[float, float] | None = None  # what a resumed checkpoint saved
        # (checkpoint, its densification state): read once by `_check_resumable`, taken by `_load_densification_state`
        self._resume_state_read: tuple[str, dict] | None = None
        # Started by training (_DensifyCallback): an evaluation before it has no training time to report.
        self._train_clock_start: float | None = None
        self._stopped_clocks = None
        self._eval_seconds = self._eval_cpu_seconds = 0.0
        self.add_callback(_DensifyCallback(self))

    def _setup_pose_opt(self, train_views: SceneViews) -> None:
        """pose_opt's corrections and pose_noise's perturbation of ``train_views``' poses; under either, the training
        views' given cameras, by which evaluation finds them in any split (`evaluation_poses`) and a resume checks
        that it trains on the checkpoint's views in its order (`_pose_record`)."""
        args = self.args
        self._training_view_of_camera: dict[bytes, int] | None = None
        # a trained model's corrected training poses, which `load_pose_adjustment` gives an evaluation
        self._loaded_training_poses: torch.Tensor | None = None
        if args.pose_opt or args.pose_noise:
            self._index_training_cameras(train_views)
        if args.pose_noise:
            # gsplat's --pose_noise. A new tensor: a SceneViews the caller passed keeps its own.
            noise = PoseAdjustment.random(len(train_views), args.pose_noise, args.seed)
            with torch.no_grad():
                train_views.viewmats = noise(train_views.viewmats, torch.arange(len(train_views)))
        self.pose_adjustment = None
        if args.pose_opt:
            self.pose_adjustment = PoseAdjustment(len(train_views)).to(next(iter(self.splats.values())).device)
        self.pose_optimizer: torch.optim.Optimizer | None = None  # built with the Gaussians' (create_optimizer)

    def _index_training_cameras(self, train_views: SceneViews) -> None:
        """Finds training views by their given cameras (before pose_noise): the views' `camera_key`s, each mapped to
        its first view's index, and their `cameras_sha256`."""
        keys = [camera_key(viewmat, K) for viewmat, K in zip(train_views.viewmats, train_views.Ks)]
        self._training_cameras_sha256 = cameras_sha256(keys)
        self._training_view_of_camera = {}
        for index, key in enumerate(keys):
            self._training_view_of_camera.setdefault(key, index)  # a camera held twice: its first view's

    def _build_schedule(self) -> None:
        """The energy schedule of the training images: the coarse-to-fine resolutions and, for G2L, T_2."""
        args = self.args
        needs_t2 = getattr(self.strategy, "global_stop_iter", 0) is None
        if args.uses_coarse_to_fine or needs_t2:
            # G2L alone still hands over at T_2 of the energy schedule; only C2F changes resolution.
            # T_densify is the strategy's own end of densification when it has one.
            densify_steps = getattr(self.strategy, "refine_stop_iter", args.densify_stop_steps)
            # Views kept with their alpha are measured composited onto the fixed background, as evaluation sees them,
            # under random_bkgd too: the schedule is set once, before any step draws its colour.
            views = self.train_dataset
            schedule = EnergyCoarseToFine.from_images(
                views.images, densify_steps=densify_steps, num_levels=args.c2f_levels, alphas=views.alphas,
                background=self._fixed_backgrounds(1),
            )
            if needs_t2:
                self.strategy.global_stop_iter = schedule.full_resolution_step
            if args.uses_coarse_to_fine:
                self.coarse_to_fine = schedule
        self._schedule_built = True

    def _check_strategy_runs_here(self) -> None:
        """gsplat's MCMCStrategy calls gsplat's CUDA kernels itself (noise injection and relocation), not
        through `rasterize`; on a CPU it would fail at its first refine step, after trying to compile them."""
        from gsplat.strategy import MCMCStrategy

        if isinstance(self.strategy, MCMCStrategy) and self.args.device.type != "cuda":
            raise ValueError(
                f"SplatTrainer: gsplat's MCMCStrategy needs gsplat's CUDA kernels (its noise injection and "
                f"relocation call them), and training runs on {self.args.device}; on a CPU use "
                "SplatTrainingArguments(strategy='default' or 'g2l'), or a DefaultStrategy"
            )

    @staticmethod
    def _adopt_render_settings(model, args: SplatTrainingArguments) -> None:
        """The model renders in the mode and onto the background it is trained with once saved
        (`GaussianModel.rasterize_mode` and `white_background`, kept in config.json): the arguments' when given,
        else the model's own (``args`` has taken them: `SplatTrainingArguments.take_model_render_settings`); a model
        that rendered antialiased or onto white before is named when the arguments change it. A custom model without
        them still gets both from the trainer's renders."""
        if hasattr(model, "rasterize_mode"):
            if model.rasterize_mode != args.rasterize_mode and model.rasterize_mode != "classic":
                logger.warning(
                    f"SplatTrainer: the model renders {model.rasterize_mode!r} (it was trained so?) and this run "
                    f"trains it with rasterize_mode={args.rasterize_mode!r}, which it will keep; pass "
                    f"rasterize_mode={model.rasterize_mode!r} to train it as before"
                )
            model.rasterize_mode = args.rasterize_mode
        if hasattr(model, "white_background"):
            if model.white_background and not args.white_background:
                logger.warning(
                    "SplatTrainer: the model renders onto white (it was trained with white_background?) and this run "
                    "trains it onto black, which it will keep; pass white_background=True to train it as before"
                )
            model.white_background = args.white_background

    @staticmethod
    def _adopt_frame(model, train_views: SceneViews) -> None:
        """A model trained on a split stored in normalised coordinates records that frame (config.json), which the
        split names: a model without one gets it here, so no script of one's own can forget it; a model that
        records a frame the views are not in (another, or the views name none) is refused, its Gaussians do not
        lie in the views' coordinates."""
        frame = train_views.world_to_normalized
        if not hasattr(model, "world_to_normalized"):
            return
        if model.world_to_normalized is None:
            model.world_to_normalized = frame
            return
        if same_frame(model.world_to_normalized, frame):
            return
        if frame is None:
            fix = ("store the views normalised as its training run did (views_dataset's world_to_normalized, "
                   "load_scene(..., normalize_world_space=True); examples/splat_train.py: --normalize_world_space)")
        else:
            fix = ("it was trained on another normalisation (other training cameras?): use the scene it was trained "
                   "on, or start from this scene's points")
        raise ValueError(
            f"SplatTrainer: the model records world_to_normalized {np.asarray(model.world_to_normalized).tolist()} "
            f"(config.json) and train_dataset was stored {describe_frame(frame)}: its Gaussians lie in another frame "
            f"than the views; {fix}"
        )

    @classmethod
    def _eval_splits(cls, dataset, args: SplatTrainingArguments,
                     train_views: SceneViews) -> SceneViews | dict[str, SceneViews] | None:
        """``eval_dataset`` as the trainer keeps it: None, one split's views (`_eval_views`), or for a dict of
        splits each one's views under its key, each checked as ``eval_dataset['key']``."""
        if dataset is None:
            return None
        if not isinstance(dataset, dict):  # a DatasetDict is a dict of splits too, as for Trainer
            return cls._eval_views(dataset, args, train_views)
        _check_split_names(dataset)
        return {key: cls._eval_views(split, args, train_views, name=f"eval_dataset[{key!r}]")
                for key, split in dataset.items()}

    @staticmethod
    def _eval_views(dataset, args: SplatTrainingArguments, train_views: SceneViews,
                    name: str = "eval_dataset") -> SceneViews:
        """An evaluation split's views, which must lie in the training views' coordinates (each names its frame,
        or none), and whose masks must each keep a pixel where `eval_ssim_padding` centres SSIM's windows: checked
        when the split is given, not when training has ended."""
        views = SceneViews(dataset, name=name)
        theirs, trained = views.world_to_normalized, train_views.world_to_normalized
        if not same_frame(theirs, trained):
            raise ValueError(
                f"SplatTrainer: {name} is stored {describe_frame(theirs)} but train_dataset {describe_frame(trained)}; "
                "pass splits of one scene (views_dataset with the same world_to_normalized)"
            )
        if views.masks is not None:
            blind, margin = ssim_blind_images(views.masks[..., None], args.eval_ssim_padding)
            if blind:
                raise ValueError(
                    f"SplatTrainer: the masks of {name} views {blind[:10]} keep no pixel at least {margin} pixels "
                    f"from the border, where eval_ssim_padding={args.eval_ssim_padding!r} centres SSIM's windows, so "
                    "those views have no SSIM: use eval_ssim_padding='same' (3DGS's) or leave them out"
                )
        return views

    @staticmethod
    def _check_cameras_see_gaussians(views: SceneViews, model) -> list[int]:
        """A view that sees no Gaussian gives no gradient: when no training view sees one, the
        poses are wrong (training would only prune, and end with an error that blames pruning).
        Returns the views that see none, after warning about them."""
        means = model.splats["means"]
        if not len(means):
            return []
        blind = views_seeing_no_gaussian(views, means)
        if not blind:
            return []
        if len(blind) == len(views):
            raise ValueError(
                f"SplatTrainer: none of the {len(views)} training views sees any of the model's {len(means)} "
                f"Gaussians (every centre is behind the camera or outside the image); {POSE_HINT}"
            )
        logger.warning(
            f"SplatTrainer: training views {blind[:10]}{' ...' if len(blind) > 10 else ''} ({len(blind)} of "
            f"{len(views)}) see none of the model's {len(means)} Gaussians at the start; if that is not "
            f"expected, {POSE_HINT}"
        )
        return blind

    def _initial_strategy_state(self) -> dict[str, Any]:
        if "scene_scale" in inspect.signature(self.strategy.initialize_state).parameters:
            return self.strategy.initialize_state(scene_scale=self.scene_scale)
        return self.strategy.initialize_state()

    def _start_train_clocks(self, state: TrainerState | None = None) -> None:
        """Starts the training clocks, wall and process CPU time (CPU time is much less disturbed when
        other processes share the machine; evaluation time is subtracted from both): at 0 for a new
        run, at the times saved with the checkpoint for a resumed one (``state.global_step`` > 0).
        A checkpoint saved before the clocks were goes on from its last logged evaluation."""
        wall = cpu = 0.0
        if state is not None and state.global_step:
            if self._checkpoint_clocks is not None:
                wall, cpu = self._checkpoint_clocks
            else:
                wall, cpu = (next((entry[key] for entry in reversed(state.log_history) if key in entry), 0.0)
                             for key in ("eval_train_seconds", "eval_train_cpu_seconds"))
        self._train_clock_start = time.perf_counter() - wall
        self._train_cpu_start = time.process_time() - cpu
        self._eval_seconds = self._eval_cpu_seconds = 0.0
        self._stopped_clocks = None

    def _stop_train_clocks(self) -> None:
        """Stops the clocks when training ends: the saves and evaluations an example runs afterwards
        are not training time."""
        self._stopped_clocks = self._train_clocks()

    def _train_clocks(self) -> tuple[float, float] | None:
        """Training wall and process CPU seconds so far (until training ended), evaluations excluded; None
        before training has begun."""
        if self._stopped_clocks is not None:
            return self._stopped_clocks
        if self._train_clock_start is None:
            return None
        return (time.perf_counter() - self._train_clock_start - self._eval_seconds,
                time.process_time() - self._train_cpu_start - self._eval_cpu_seconds)

    # ------------------------------------------------------------------ data parallelism
    @property
    def is_distributed(self) -> bool:
        return self.args.world_size > 1

    @torch.no_grad()
    def _broadcast_gaussians(self) -> None:
        """Every rank starts from rank 0's Gaussians, whatever seed each one built its model with."""
        if self.is_distributed:
            for param in self.splats.values():
                dist.broadcast(param.data, src=0)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.pose_optimizer is not None:
            self.pose_optimizer.param_groups[0]["lr"] = self._pose_lr(self.state.global_step)
            # Trainer zeroes the model's gradients only; a step is one training_step (no accumulation).
            self.pose_adjustment.zero_grad(set_to_none=True)
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.is_distributed and self.accelerator.sync_gradients:
            self._average_gradients()
        return loss

    @torch.no_grad()
    def _average_gradients(self) -> None:
        """What DDP would do, for parameters whose number changes: after the last backward of the
        step (before clipping and the optimizer step), each gradient becomes the mean over ranks,
        so every rank applies the same update to the same Gaussians (and to pose_opt's corrections)."""
        corrections = list(self.pose_adjustment.parameters()) if self.pose_adjustment is not None else []
        for param in [*self.splats.values(), *corrections]:
            if param.grad is not None:
                dist.all_reduce(param.grad, op=dist.ReduceOp.AVG)

    @contextlib.contextmanager
    def _combined_statistics(self):
        """While the strategy runs: each rank accumulates gsplat's densification statistics
        (grad2d, count, radii) from its own views with the strategy's own `_update_state`, and the
        ranks combine them where the strategy reads them (`_grow_gs`, `_prune_gs`): grad2d and
        count summed, radii maxed. That is what one process rendering every rank's views would
        hold: `_update_state` scales each camera's gradient by its width, height and `n_cameras`,
        and a rank's `n_cameras` is its share of the batch while its gradient, that of its mean
        loss, is world_size times its share of the averaged loss; the two factors cancel. The
        all-reduce hands every rank the same bits, so all take the same decisions.

        Between two reads the total is the sum over ranks: after a combination every rank holds
        it, so on the next update rank 0 keeps it and the others restart from zero (gsplat zeroes
        them after each refine anyway; this also holds when a read leaves them, and after a resume,
        when every rank loads the saved total)."""
        strategy = self.strategy
        update = getattr(strategy, "_update_state", None)
        if update is None:  # MCMC keeps no screen-space statistics
            yield
            return
        readers = {name: getattr(strategy, name) for name in ("_grow_gs", "_prune_gs") if hasattr(strategy, name)}

        def update_own_views(params, state, info, packed=False):
            if not self._statistics_partial and self.args.process_index != 0:
                for key in ("grad2d", "count"):
                    if isinstance(state.get(key), torch.Tensor):
                        state[key].zero_()
            update(params, state, info, packed=packed)
            self._statistics_partial = True

        def combine_then(read):
            def combined_read(params, optimizers, state, step):
                self._combine_statistics(state)
                return read(params, optimizers, state, step)
            return combined_read

        # Instance attributes shadow the strategy's methods.
        strategy._update_state = update_own_views
        for name, read in readers.items():
            setattr(strategy, name, combine_then(read))
        try:
            yield
        finally:
            for name in ("_update_state", *readers):
                delattr(strategy, name)

    @torch.no_grad()
    def _combine_statistics(self, state: dict[str, Any]) -> None:
        """Every rank's densification statistics become their total over ranks (see `_combined_statistics`)."""
        if not self._statistics_partial:
            return
        for key, op in (("grad2d", dist.ReduceOp.SUM), ("count", dist.ReduceOp.SUM), ("radii", dist.ReduceOp.MAX)):
            if isinstance(state.get(key), torch.Tensor):
                dist.all_reduce(state[key], op=op)
        self._statistics_partial = False

    @torch.no_grad()
    def _check_ranks_agree(self, step: int) -> None:
        counts = self.accelerator.gather(torch.tensor([len(self.splats["means"])], device=self.args.device))
        if (counts != counts[0]).any():
            raise RuntimeError(
                f"step {step}: after densification the ranks hold {counts.tolist()} Gaussians; their random draws "
                "differ (GPUs of different models draw different CUDA random numbers for the same seed): train on "
                "GPUs of one model"
            )

    # ------------------------------------------------------------------ schedules
    @property
    def splats(self) -> nn.ParameterDict:
        return self.accelerator.unwrap_model(self.model).splats

    def resolution_factor(self, step: int) -> int:
        return self.coarse_to_fine.factor_at(step) if self.coarse_to_fine is not None else 1

    def active_sh_degree(self, step: int) -> int:
        start = 0
        if self.coarse_to_fine is not None and self.args.sh_degree_start == "full_resolution":
            start = self.coarse_to_fine.full_resolution_step
        degree = max(0, step - start) // self.args.active_sh_interval
        return min(degree, self.accelerator.unwrap_model(self.model).sh_degree)

    def means_lr_factor(self, step: int) -> float:
        """1 while coarse-to-fine downsamples, then exponential decay: to means_lr_final_ratio at
        max_steps ('remaining'), or along the full-length schedule with its clock paused while
        coarse ('paused')."""
        hold = self.coarse_to_fine.full_resolution_step if self.coarse_to_fine is not None else 0
        if step < hold:
            return 1.0
        span = self.args.max_steps if self.args.means_lr_decay == "paused" else self.args.max_steps - hold
        progress = min(1.0, (step - hold) / max(1, span))
        return self.args.means_lr_final_ratio ** progress

    def _pose_lr(self, step: int) -> float:
        """pose_opt's learning rate at ``step`` (`hf_eff.splat.pose_adjustment.pose_lr`)."""
        return pose_lr(step, self.args.pose_opt_lr, self.args.per_device_train_batch_size, self.args.max_steps)

    # ------------------------------------------------------------------ optimizer hooks
    def create_optimizer(self, model=None):
        args = self.args
        learning_rates = {
            "means": args.means_lr * self.scene_scale, "scales": args.scales_lr, "quats": args.quats_lr,
            "opacities": args.opacities_lr, "sh0": args.sh0_lr, "shN": args.shN_lr,
        }
        unknown = [key for key in self.splats if key not in learning_rates]
        if unknown:
            raise ValueError(f"SplatTrainer: no learning rate for Gaussian parameters {unknown}")
        # eps 1e-15 as 3DGS: gradients of single Gaussians are tiny.
        self.optimizers_by_key = {
            key: torch.optim.Adam([{"params": [param], "lr": learning_rates[key], "name": key}], eps=1e-15)
            for key, param in self.splats.items()
        }
        self.strategy.check_sanity(self.splats, self.optimizers_by_key)
        optimizers = dict(self.optimizers_by_key)  # the strategy's stay the Gaussians' only
        if self.pose_adjustment is not None:
            # gsplat's: Adam (default eps) with weight decay as the regulariser
            self.pose_optimizer = torch.optim.Adam(
                [{"params": list(self.pose_adjustment.parameters()), "lr": self._pose_lr(0), "name": POSE_ADJUSTMENT_KEY}],
                weight_decay=args.pose_opt_reg,
            )
            optimizers[POSE_ADJUSTMENT_KEY] = self.pose_optimizer
        self.optimizer = GaussianOptimizers(optimizers)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            # Only the means LR is scheduled; the others are constant in 3DGS.
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizers_by_key["means"], self.means_lr_factor)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------ training step
    def train(self, *args, **kwargs):
        if self._loaded_training_poses is not None:
            raise ValueError(
                "SplatTrainer.train: load_pose_adjustment gave this trainer a trained model's corrected training poses, "
                "which its Gaussians would move away from; train with a new SplatTrainer (pose_opt learns its own)"
            )
        # The arguments check max_steps only with do_train (an evaluation needs none); Trainer would
        # run num_train_epochs on a schedule scaled by max_steps=-1.
        if self.args.max_steps <= 0:
            raise ValueError(f"SplatTrainer.train needs max_steps > 0 (splatting counts optimizer iterations and "
                             "scales the paper's schedule by them; num_train_epochs is not used), got "
                             f"{self.args.max_steps}: SplatTrainingArguments(do_train=False) leaves it unset for "
                             "evaluation only")
        resuming = kwargs.get("resume_from_checkpoint", args[0] if args else None)
        checkpoint = resumed_checkpoint(self.args.output_dir, resuming)  # train(None) resumes nothing
        # One without densification state (save_only_model) is named by `_load_optimizer_and_scheduler`, which says
        # how to start from its Gaussians
        if checkpoint is not None and os.path.isfile(os.path.join(checkpoint, DENSIFICATION_STATE_NAME)):
            check_resume(self.args, checkpoint)
        if not resuming and not len(self.splats["means"]):
            # It would stop at the first refine step, blaming pruning for a model that never had a Gaussian.
            raise ValueError(
                "SplatTrainer.train: the model has no Gaussians to fit (GaussianModel() is a placeholder): start from "
                "GaussianModel.from_points(*scene.point_arrays()) or GaussianModel.random(scene.center, scene.radius, "
                "num_gaussians)"
            )
        if not self._schedule_built:  # do_train=False left it out; a resumed checkpoint's replaces it
            self.train_dataset.decode()  # here, not in each dataloader worker
            self._build_schedule()
        return super().train(*args, **kwargs)

    def card_run_settings(self) -> dict:
        return {"strategy": self.strategy_name(), "eval_ssim_padding": self.args.eval_ssim_padding,
                "rasterize_mode": self.args.rasterize_mode, "pose_opt": self.args.pose_opt}

    def strategy_name(self) -> str:
        """How cards and results name this run's densification: ``default``; ``g2l``, with the parts an
        ablation switched off (``g2l (no c2f)``); or a strategy object's class name."""
        if not self._strategy_from_args:
            return type(self.strategy).__name__
        if self.args.strategy != "g2l":
            return self.args.strategy
        off = [part.replace("_", " ") for part in ("g2l", "c2f", "adaptive_pruning") if not getattr(self.args, part)]
        return f"g2l (no {', no '.join(off)})" if off else "g2l"

    def render(self, model, viewmats, Ks, width, height, sh_degree=None, check_finite=True, backgrounds=None):
        """``model.render`` with this run's backend, packing, ``rasterize_mode`` and background (white with
        ``white_background``; ``backgrounds`` [C, 3] replaces it), and absolute gradients when the strategy
        densifies on them (``absgrad=True``, AbsGS); ``sh_degree`` None renders every SH degree. ``check_finite``:
        `rasterize`'s NaN check (a host read of the device)."""
        if backgrounds is None:
            backgrounds = self._fixed_backgrounds(len(viewmats), viewmats.device)
        return self.accelerator.unwrap_model(model).render(
            viewmats, Ks, width, height, sh_degree=sh_degree, packed=self.args.packed,
            backend=self.args.render_backend, backgrounds=backgrounds, absgrad=getattr(self.strategy, "absgrad", False),
            check_finite=check_finite, rasterize_mode=self.args.rasterize_mode,
        )

    def _fixed_backgrounds(self, count: int, device=None) -> torch.Tensor | None:
        """This run's fixed background, [count, 3]: white under ``white_background``; None for black, the
        rasterizer's own, which nothing needs to add. What `render` renders onto unless given ``backgrounds``, and
        what evaluation composites views kept with their alpha onto."""
        return torch.ones(count, 3, device=device) if self.args.white_background else None

    def _composite_onto_background(self, images: torch.Tensor, alphas: torch.Tensor,
                                   backgrounds: torch.Tensor | None = None) -> torch.Tensor:
        """Views kept with their alpha (`SceneViews`: their colour over black [N, H, W, 3] and alphas [N, H, W, 1])
        composited onto ``backgrounds`` [N, 3], or for None onto this run's fixed background (`_fixed_backgrounds`)."""
        if backgrounds is None:
            backgrounds = self._fixed_backgrounds(len(images), images.device)
            if backgrounds is None:  # black: the colour over black is the view over it
                return images
        return composite_premultiplied(images, alphas, backgrounds)

    def evaluation_target(self, item: dict[str, torch.Tensor], device=None) -> torch.Tensor:
        """A view's target as evaluation compares a render with it, [1, H, W, 3] on ``device``: the `SceneViews`
        item's image, composited onto the fixed background the render is (`_composite_onto_background`) for a view
        kept with its alpha."""
        target = item["image"][None].to(device)
        if "alpha" in item:  # like compared with like
            target = self._composite_onto_background(target, item["alpha"][None].to(device))
        return target

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step = self.state.global_step
        images, viewmats, Ks = inputs["image"], inputs["viewmat"], inputs["K"]
        if self.pose_adjustment is not None:
            viewmats = self.pose_adjustment(viewmats, inputs["view_index"])
        # [N, H, W, 1] bool, True = trained; the images are already 0 where it is False (SceneViews)
        masks = inputs.get("mask")
        if masks is not None:
            masks = masks.to(images.dtype)
        backgrounds = None
        if self.args.random_bkgd:
            # gsplat's simple_trainer: one colour a step behind every view of the batch. The rasterizer composites
            # it, as it does a fixed background (gsplat in its kernel), rather than a second full-image pass here.
            backgrounds = torch.rand(1, 3, device=viewmats.device).expand(len(viewmats), 3)
        if "alpha" in inputs:
            # Views kept with their alpha: the target over the colour the render is composited onto, this step's
            # random one included (splatfacto's random background); at full resolution, before any downscaling
            # (which is linear: the order does not matter).
            images = self._composite_onto_background(images, inputs["alpha"], backgrounds)
        height, width = images.shape[1:3]
        factor = self.resolution_factor(step)
        if factor > 1:
            images = downscale_images(images, factor)
            if masks is not None:
                # The fraction of each coarse pixel that is trained; the image was zeroed before it was
                # downscaled, so an ignored pixel's colour does not leak into its trained neighbours.
                masks = downscale_images(masks, factor)
            Ks, width, height = scale_intrinsics(Ks, width, height, factor)
        # No NaN check that reads the device here (it would wait for the GPU at every step): the
        # watch records the first non-finite step on the device, and `_check_finite` reads it.
        renders, _, info = self.render(model, viewmats, Ks, width, height, self.active_sh_degree(step),
                                       check_finite=False, backgrounds=backgrounds)
        self._non_finite.update(step, {**self._watched_tensors(), "render": renders})
        self.strategy.step_pre_backward(self.splats, self.optimizers_by_key, self.strategy_state, step, info)
        self._last_info = info
        # Masks as gsplat's simple_trainer and splatfacto apply them: render and target both multiplied by
        # the mask (the target was zeroed in SceneViews), means still over every pixel. Ignored pixels give
        # no gradient, and each trained pixel weighs what it weighs in an unmasked view, so the densification
        # gradients keep the scale their thresholds were set for (a mean over the trained pixels only would
        # inflate them by the view's ignored fraction).
        fitted = renders if masks is None else renders * masks
        loss = photometric_loss(fitted, images, self.args.ssim_weight, self.args.ssim_padding, check_finite=False)
        if self.args.opacity_reg or self.args.scale_reg:
            loss = loss + gaussian_regularization(self.splats, self.args.opacity_reg, self.args.scale_reg)
        return (loss, {"renders": renders}) if return_outputs else loss

    def _densify(self) -> None:
        from gsplat.strategy import MCMCStrategy

        if self._last_info is None:
            return
        extra = {"lr": self.lr_scheduler.get_last_lr()[0]} if isinstance(self.strategy, MCMCStrategy) else {"packed": self.args.packed}
        step, info = self.state.global_step, self._last_info
        self._last_info = None
        # At refine steps the strategy mostly reads the device anyway (it counts what it grows and prunes);
        # past its window the read is an extra one every refine_every steps.
        if step % self.args.finite_check_steps == 0 or self._is_refine_step(step):
            self._check_finite()
        # References, not copies: the strategy replaces the parameters it changes; read only if none is left.
        before = {key: self.splats[key] for key in ("means", "scales", "opacities")}
        if not self.is_distributed:
            self.strategy.step_post_backward(self.splats, self.optimizers_by_key, self.strategy_state, step, info, **extra)
            self._check_not_empty(step, before)
            return
        # Splitting draws new positions with torch.randn (MCMC relocates at random too): every rank
        # seeds its draws with (seed, step), so the ranks draw the same numbers without sending the
        # new Gaussians from rank 0 after each densification.
        device = self.args.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), self._combined_statistics():
            torch.manual_seed(self.args.seed + step)
            self.strategy.step_post_backward(self.splats, self.optimizers_by_key, self.strategy_state, step, info, **extra)
        if self._is_refine_step(step):  # the steps that can add or remove Gaussians
            self._check_ranks_agree(step)
        self._check_not_empty(step, before)

    def _is_refine_step(self, step: int) -> bool:
        """Whether the strategy may grow or prune at ``step``: every ``refine_every`` steps, whatever the
        window (g2l's adaptive pruning runs past ``refine_stop_iter``); every step for a strategy that
        names no interval."""
        return step % getattr(self.strategy, "refine_every", 1) == 0

    @torch.no_grad()
    def _check_finite(self, current: bool = False) -> None:
        """Raises at the first step at which the Gaussians or the render went NaN or inf, as
        recorded by `compute_loss` on the device; `current` also checks the Gaussians as they are
        now (before a save or an evaluation). Reads the device once; with several processes every
        rank raises the same error (one gather)."""
        if current:
            self._non_finite.update(self.state.global_step, self._watched_tensors())
        record = self._non_finite.record()
        if record is None:  # nothing rendered yet
            return
        found = self._non_finite.first(self.accelerator.gather(record[None]) if self.is_distributed else record[None])
        if found is None:
            return
        step, names = found
        gaussians = [name for name in names if name in self.splats]
        what, fix = "the Gaussians", "Lower the learning rates (means_lr, scales_lr, opacities_lr) or check the cameras"
        if POSE_ADJUSTMENT_KEY in names:
            # NaN corrections reach the render at the same step, the Gaussians only at the next
            what, fix = ("the Gaussians and pose_opt's camera corrections",
                         "Lower the learning rates (means_lr, scales_lr, opacities_lr, pose_opt_lr) or check the "
                         "cameras") if gaussians else (
                "pose_opt's camera corrections", "Lower pose_opt_lr, or train with pose_opt=False")
        raise RuntimeError(
            f"step {step}: {what} diverged: {', '.join(names)} went NaN or inf at this step (recorded on the "
            f"device every step, read every finite_check_steps={self.args.finite_check_steps} steps and at logging, "
            "densification, evaluation and checkpoints; no checkpoint was written from then on, earlier ones are "
            f"kept). {fix}"
        )

    def _watched_tensors(self) -> dict[str, torch.Tensor]:
        """The trained tensors the non-finite watch checks: the Gaussians', and pose_opt's corrections."""
        corrections = {} if self.pose_adjustment is None else {POSE_ADJUSTMENT_KEY: self.pose_adjustment.embeds.weight}
        return {**self.splats, **corrections}

    def _check_not_empty(self, step: int, before: dict[str, torch.Tensor]) -> None:
        """Rendering nothing would train on without a gradient and save an empty model: stops here, naming
        the pruning settings and what the trainer saw of the causes (`empty_model_causes`; ``before``: the
        Gaussians the step started from). Checkpoints already written are kept."""
        if len(self.splats["means"]):
            return
        names = ("prune_opa", "prune_scale3d", "prune_scale2d", "adaptive_pruning", "prune_ratio", "prune_opa_max",
                 "refine_start_iter", "refine_every")
        settings = ", ".join(f"{name}={getattr(self.strategy, name)}" for name in names if hasattr(self.strategy, name))
        causes = empty_model_causes(before, step, self.strategy, self.scene_scale, self.train_dataset,
                                    self._views_blind_at_start)
        seen = f" What the trainer saw: {'; '.join(causes)}." if causes else ""
        raise RuntimeError(
            f"step {step}: densification and pruning left no Gaussian ({type(self.strategy).__name__}: {settings})."
            f"{seen} If the poses are right, lower prune_opa or start refining later (refine_start_steps)"
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs = dict(logs)  # Trainer.log adds the epoch to the dict it is given, and evaluate returns what it logs
        # Training's logs (each step's and train()'s summary) only: an evaluation's has its own <prefix>_num_gaussians,
        # and another num_gaussians there added points to TensorBoard's train/num_gaussians.
        if not any(key.endswith("_num_gaussians") for key in logs):
            logs["num_gaussians"] = len(self.splats["means"])
        if "loss" in logs:  # a training log: Trainer has just read the loss from the device
            self._check_finite()
            logs["resolution_factor"] = self.resolution_factor(self.state.global_step)
        super().log(logs, start_time)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Renders every test view at full resolution; returns (and logs) mean PSNR and SSIM (in
        the `eval_ssim_padding` convention: 'same' is 3DGS's and the paper's, 'valid' gsplat's; on
        masked views over the kept pixels only, see `hf_eff.splat.losses`; the saved targets show
        ignored pixels black),
        the number of Gaussians, `train_seconds` and `train_cpu_seconds` (training wall and
        process CPU time so far, evaluations excluded; left out before training has begun), and Trainer's
        `eval_runtime`, `eval_samples_per_second` and `eval_steps_per_second` (a sample and a step: one view rendered,
        the PNG's saving excluded). No LPIPS: it needs pretrained AlexNet /
        VGG weights, which the library does not download. The render|target pairs of the first
        `eval_render_images` views are saved as a PNG in output_dir/<prefix>_renders and sent to
        the image-capable `report_to` loggers (TensorBoard, wandb).

        A dict of splits (given here or to the trainer) is evaluated split by split, as Trainer does, each
        under ``<prefix>_<key>``; a key of the trainer's dict names its split (``evaluate("test")``)."""
        if isinstance(eval_dataset, dict):  # every split checked before any is rendered
            eval_dataset = self._eval_splits(eval_dataset, self.args, self.train_dataset)
        if isinstance(eval_dataset if eval_dataset is not None else self.eval_dataset, dict):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)  # recurses per split
        started, started_cpu = time.perf_counter(), time.process_time()
        # Read before rendering: this evaluation's own time is not training time.
        train_clocks = self._train_clocks()
        if isinstance(eval_dataset, str):  # Trainer's recursion over the trainer's own dict passes its keys
            views = self._eval_split_named(eval_dataset)
        elif eval_dataset is not None:
            views = self._eval_views(eval_dataset, self.args, self.train_dataset)
        else:
            views = self.eval_dataset
        if views is None:
            raise ValueError("SplatTrainer.evaluate needs an eval_dataset (the scene's test split)")
        self._check_finite(current=True)
        metrics, renders, targets = self._render_views(views, metric_key_prefix, self.args.eval_render_images)
        if train_clocks is not None:
            wall, cpu = train_clocks
            metrics.update({f"{metric_key_prefix}_train_seconds": wall, f"{metric_key_prefix}_train_cpu_seconds": cpu})
        pairs = [torch.cat([render, target], dim=1) for render, target in zip(renders, targets)]
        # Logged first: the loggers' writers are opened by their first on_log (after training
        # ends too), and the images go to the writers that exist.
        self.log(metrics)
        if pairs and self.args.should_save:
            pixels = (torch.cat(pairs, dim=0).numpy() * 255).round().astype("uint8")
            self._save_eval_renders(pixels, metric_key_prefix)
            self._log_eval_renders(pixels, metric_key_prefix)
        self._eval_seconds += time.perf_counter() - started
        self._eval_cpu_seconds += time.process_time() - started_cpu
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _eval_split_named(self, key: str) -> SceneViews:
        splits = self.eval_dataset if isinstance(self.eval_dataset, dict) else {}
        if key not in splits:
            given = f"the splits {', '.join(map(repr, splits))}" if splits else "one split, not a dict"
            raise KeyError(f"SplatTrainer.evaluate({key!r}): the trainer's eval_dataset has {given}")
        return splits[key]

    @torch.no_grad()
    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test") -> PredictionOutput:
        """Renders every view of ``test_dataset`` (a scene split) at full resolution, as Trainer's
        predict runs the model on a test set: ``predictions`` are the renders and ``label_ids`` the
        views' images (float32 [N, H, W, 3] in [0, 1]; masked views' ignored pixels black; a split kept with its
        alpha composited onto the fixed background the renders are), for metrics
        of one's own such as LPIPS; ``metrics`` are `evaluate`'s PSNR, SSIM, Gaussian count and speed metrics."""
        views = self._eval_views(test_dataset, self.args, self.train_dataset, name="test_dataset")
        self._check_finite(current=True)
        metrics, renders, targets = self._render_views(views, metric_key_prefix, len(views))
        self.control = self.callback_handler.on_predict(self.args, self.state, self.control, metrics)
        return PredictionOutput(predictions=torch.stack(renders).numpy(), label_ids=torch.stack(targets).numpy(),
                                metrics=metrics)

    @torch.no_grad()
    def training_poses(self) -> torch.Tensor:
        """The world-to-camera poses [N, 4, 4] (CPU) the training views are rendered with: as given, perturbed by
        ``pose_noise``, then corrected by ``pose_opt``'s learned corrections; after `load_pose_adjustment`, the
        trained model's."""
        if self._loaded_training_poses is not None:
            return self._loaded_training_poses
        viewmats = self.train_dataset.viewmats
        if self.pose_adjustment is None:
            return viewmats
        device = self.pose_adjustment.embeds.weight.device
        return self.pose_adjustment(viewmats.to(device), torch.arange(len(viewmats), device=device)).cpu()

    def evaluation_poses(self, views: SceneViews) -> torch.Tensor:
        """The world-to-camera poses [N, 4, 4] ``views`` are rendered with in evaluation: a view whose camera
        (world_to_camera and K, `camera_key`) is a training view's, in any split and order, gets that view's training
        pose (`training_poses`), as training renders it; any other keeps its given pose (as gsplat evaluates)."""
        if self._training_view_of_camera is None:
            return views.viewmats
        matches = [(index, self._training_view_of_camera.get(camera_key(viewmat, K)))
                   for index, (viewmat, K) in enumerate(zip(views.viewmats, views.Ks))]
        matches = [(index, training_index) for index, training_index in matches if training_index is not None]
        if not matches:
            return views.viewmats
        poses, training_poses = views.viewmats.clone(), self.training_poses()
        for index, training_index in matches:
            poses[index] = training_poses[training_index]
        return poses

    def _render_views(self, views: SceneViews, prefix: str, keep: int):
        """Renders every view; returns the metrics (mean PSNR and SSIM, Gaussian count, then Trainer's speed
        metrics, one view a sample and a step) and the render and target [H, W, 3] (CPU) of the first ``keep`` views.
        Training views are rendered with their training poses (`evaluation_poses`)."""
        start_time = time.time()  # speed_metrics' clock
        poses = self.evaluation_poses(views)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        device = self.args.device
        psnrs, ssims, renders, targets = [], [], [], []
        for index in range(len(views)):
            item = views[index]
            target = self.evaluation_target(item, device)
            # masked views: the metrics count the kept pixels only (hf_eff.splat.losses)
            masked = {"mask": item["mask"][None].to(device)} if "mask" in item else {}
            # every SH degree of the model (render's default), not the step's active one: a model trained or
            # loaded elsewhere is measured with its view-dependent colour (degrees not yet active stay zero)
            render, _, _ = self.render(model, poses[index][None].to(device), item["K"][None].to(device),
                                       views.width, views.height)
            render = render.clamp(0, 1)
            psnrs.append(psnr(render, target, **masked).item())
            ssims.append(ssim(render, target, self.args.eval_ssim_padding, **masked).item())
            if index < keep:
                renders.append(render[0].cpu())
                targets.append(target[0].cpu())
        model.train(was_training)
        metrics = {
            f"{prefix}_psnr": sum(psnrs) / len(psnrs),
            f"{prefix}_ssim": sum(ssims) / len(ssims),
            f"{prefix}_num_gaussians": len(self.splats["means"]),
            **speed_metrics(prefix, start_time, num_samples=len(views), num_steps=len(views)),
        }
        return metrics, renders, targets

    def _save_eval_renders(self, pixels, prefix: str) -> None:
        """`pixels` [views * H, 2 W, 3] uint8: views stacked vertically, render | target side by side."""
        from PIL import Image

        folder = Path(self.args.output_dir) / f"{prefix}_renders"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"step-{self.state.global_step:06d}.png")

    def _log_eval_renders(self, pixels, prefix: str) -> None:
        """Sends the render|target grid to the image-capable loggers of `report_to`.

        Trainer's logging callbacks only take scalars and text, so, as TRL's trainers do for their
        completion tables, the image goes straight to each enabled logger's own client: the
        TensorBoard `SummaryWriter` and the wandb run. Other integrations get the metrics only.
        """
        from transformers.integrations import TensorBoardCallback, WandbCallback

        tag, step = f"{prefix}/renders", self.state.global_step
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                callback.tb_writer.add_image(tag, pixels, step, dataformats="HWC")
                callback.tb_writer.flush()
            elif isinstance(callback, WandbCallback) and callback._initialized and callback._wandb.run is not None:
                image = callback._wandb.Image(pixels, caption="render | target, one test view per row")
                callback._wandb.log({tag: image, "train/global_step": step})

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        # Before anything is written: a diverged run raises here, keeping the checkpoints before it.
        self._check_finite(current=True)
        super()._save_checkpoint(model, trial)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Saves the model with `save_pretrained` (safetensors + config, loadable with
        `GaussianModel.from_pretrained`), pose_opt's corrections (`save_pose_adjustment`; without pose_opt, a
        corrections file already in the folder is removed) and the training arguments; refuses Gaussians holding
        NaN or inf."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        if self._loaded_training_poses is not None:  # before anything is written: the model's own file stays as it is
            raise ValueError(
                f"not saved to {output_dir}: load_pose_adjustment gave this trainer a trained model's corrected poses, "
                "which a save would not keep (its own corrections are not those); save the model with "
                "GaussianModel.save_pretrained and copy pose_adjustment.safetensors beside it"
            )
        # Local (save_model runs on the main process only); _save_checkpoint has named the step.
        bad = [key for key, value in self.splats.items() if not torch.isfinite(value).all()]
        if bad:
            raise RuntimeError(f"not saved to {output_dir}: the Gaussians' {', '.join(bad)} contain NaN or inf")
        self._refuse_non_finite_corrections(output_dir)  # before anything is written
        os.makedirs(output_dir, exist_ok=True)
        # The model first (its save_pretrained may still refuse): new corrections never sit beside an older model.
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir)
        if self.pose_adjustment is None:
            # An earlier pose_opt run's corrections in a reused folder would pass for this model's (save_pretrained
            # deletes the stale weight shards it did not write likewise).
            Path(output_dir, POSE_ADJUSTMENT_NAME).unlink(missing_ok=True)
        self.save_pose_adjustment(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

    def save_pose_adjustment(self, folder: str | os.PathLike) -> str | None:
        """Writes pose_opt's corrections into ``folder`` as pose_adjustment.safetensors (`PoseAdjustment.save`), as
        checkpoints and `save_model` do, with the corrected training poses (`training_poses`) and what a resume must
        match (`_pose_record`), which names the trainer's Gaussians as the model the corrections are of: save the model
        into ``folder`` with them. Returns the file's path; None without pose_opt or off the main process, where
        nothing is written. Refuses corrections holding NaN or inf, writing nothing."""
        if self.pose_adjustment is None or not self.args.should_save:
            return None
        self._refuse_non_finite_corrections(folder)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, POSE_ADJUSTMENT_NAME)
        self.pose_adjustment.save(path, self.training_poses(), self._pose_record())
        return path

    def load_pose_adjustment(self, folder: str | os.PathLike) -> bool:
        """For an evaluation of a trained model: takes the corrected training poses its pose_opt run saved beside it
        (``folder``'s pose_adjustment.safetensors), so that `evaluate` and `predict` render each view whose camera is
        a training view's at the pose the model was fitted with, as that run's evaluation did. The poses are used as
        saved: this trainer needs neither pose_opt nor that run's pose_noise and seed. A file whose training cameras
        are not train_dataset's (another split, a part of it, another order) is warned of and not used, since a model
        may be evaluated on other views: every view is then rendered at its given pose. So is a file that records
        other Gaussians than the trainer's model (`gaussians_sha256`): an older save's or push's, left in the folder
        or repo that another model was saved or pushed to alone; a file written before the record is taken. Returns
        whether the poses were taken. A missing file, or one that does not read, is named; a trainer that took poses
        does not train."""
        path = Path(folder, POSE_ADJUSTMENT_NAME)
        if not path.is_file():
            raise FileNotFoundError(f"load_pose_adjustment: {path} is missing (a model trained without pose_opt has "
                                    "no corrections)")
        poses, recorded = load_corrected_poses(path)
        if self._training_view_of_camera is None:  # no pose_noise: the training views hold their given cameras
            self._index_training_cameras(self.train_dataset)
        fitted_model = recorded.get("model_sha256")  # None in a file written before it was recorded
        if fitted_model is not None and fitted_model != gaussians_sha256(self.splats):
            logger.warning(
                f"load_pose_adjustment: {path} corrects the poses of another model than this trainer's (the Gaussians "
                "it records are not these: an older save's or push's file, left where another model was saved or "
                "pushed alone): not used, every view is evaluated at its given pose; save or push a pose_opt model "
                "with its pose_adjustment.safetensors (SplatTrainer.save_model, or save_pose_adjustment beside "
                "save_pretrained)"
            )
            return False
        if recorded.get("training_cameras_sha256") != self._training_cameras_sha256:
            logger.warning(
                f"load_pose_adjustment: {path} corrects other training views than train_dataset's (their cameras, "
                "world_to_camera and K in order, differ: another split, a part of it, or another order): not used, "
                "every view is evaluated at its given pose; give the model's training split to evaluate its training "
                "views as it was fitted"
            )
            return False
        if len(poses) != len(self.train_dataset):
            raise ValueError(f"load_pose_adjustment: {path} holds {len(poses)} corrected poses for the "
                             f"{len(self.train_dataset)} training views its record names")
        self._loaded_training_poses = poses
        return True

    def _refuse_non_finite_corrections(self, folder) -> None:
        if self.pose_adjustment is not None and not torch.isfinite(self.pose_adjustment.embeds.weight).all():
            raise RuntimeError(f"not saved to {folder}: pose_opt's camera corrections contain NaN or inf; lower "
                               "pose_opt_lr, or train with pose_opt=False")

    def _pose_record(self) -> dict[str, str]:
        """What the corrections belong to (safetensors metadata, strings): the training views' given cameras in their
        order (`cameras_sha256`) and the noise that pose_noise drew for them (its std and seed), which a resume must
        match, and the Gaussians fitted with them (`gaussians_sha256`), which an evaluation's model must be. A resume
        and load_best_model_at_end do not check the Gaussians: they read a checkpoint's model and corrections, which
        `_save` wrote together."""
        return {"training_cameras_sha256": self._training_cameras_sha256, "pose_noise": str(self.args.pose_noise),
                "seed": str(self.args.seed), "model_sha256": gaussians_sha256(self.splats)}

    def _load_pose_adjustment(self, checkpoint: str, source: str, resuming: bool) -> None:
        """Restores pose_opt's corrections from ``checkpoint`` (in place: the optimizer's state stays theirs);
        ``source``: how errors name the checkpoint; ``resuming``: a resume (else load_best_model_at_end's load of
        this run's best checkpoint), whose training views and pose_noise must be the checkpoint's. Refuses one that
        does not match pose_opt."""
        path = os.path.join(checkpoint, POSE_ADJUSTMENT_NAME)
        if self.pose_adjustment is None:
            if not os.path.isfile(path):
                return
            if resuming:
                raise ValueError(
                    f"{source}: it was trained with pose_opt=True (it holds {POSE_ADJUSTMENT_NAME}) and this run has "
                    f"pose_opt=False: resume with pose_opt=True, or start a new run from its Gaussians with "
                    f"GaussianModel.from_pretrained({checkpoint!r})"
                )
            raise ValueError(f"{source} holds {POSE_ADJUSTMENT_NAME}, and this run has pose_opt=False: an earlier "
                             "pose_opt run's file in the same folder? Train into an output_dir of its own")
        if not os.path.isfile(path):
            if resuming:
                raise FileNotFoundError(
                    f"{source}: pose_opt=True and the checkpoint holds no pose corrections ({path} is missing: saved "
                    "without pose_opt?); resume with pose_opt=False, or start a new pose_opt run from its Gaussians "
                    f"with GaussianModel.from_pretrained({checkpoint!r})"
                )
            raise FileNotFoundError(
                f"{source}: {path} is missing (removed?), and its Gaussians were fitted with the corrections it held: "
                "restore it, or train with load_best_model_at_end=False to keep the last step's model and corrections"
            )
        try:
            saved, recorded = PoseAdjustment.load(path)
        except ValueError as error:
            raise ValueError(f"{source}: {error}; it is left as it is") from error
        deltas, weight = saved.embeds.weight, self.pose_adjustment.embeds.weight
        if deltas.shape != weight.shape:
            raise ValueError(f"{source}: {path} holds corrections of {len(deltas)} training views, and train_dataset "
                             f"has {len(weight)}: resume on the training views the checkpoint was trained on")
        if resuming:
            self._check_pose_record(recorded, f"{source}: {path}")
        with torch.no_grad():
            weight.copy_(deltas)

    def _check_pose_record(self, recorded: dict[str, str], source: str) -> None:
        """Refuses, naming each difference, corrections of other training poses than this run's (`_pose_record`):
        other training views or another order of them, another pose_noise, or another seed under pose_noise."""
        differences = self._pose_noise_differences(recorded.get("pose_noise"), recorded.get("seed"),
                                                   recorded.get("training_cameras_sha256"), always_cameras=True)
        if differences:
            raise ValueError(
                f"{source} corrects other training poses than this run's: {'; '.join(differences)}. Resume on the "
                "checkpoint's training split with the pose_noise and seed it was trained with (its training_args.bin)"
            )

    def _pose_noise_differences(self, noise, seed, cameras_sha256: str | None, always_cameras: bool = False) -> list[str]:
        """How a checkpoint's training poses differ from those this run trains on: other training views or another
        order of them (where both runs drew pose_noise, whose draw is per view, or ``always_cameras``), another pose_noise,
        or another seed under pose_noise. ``noise``, ``seed`` and ``cameras_sha256``: the checkpoint's (numbers, or
        the strings `_pose_record` wrote; None: not recorded), compared as numbers (pose_noise=0 is 0.0)."""
        differences = []
        noised_both = self.args.pose_noise and cameras_sha256 is not None
        if (always_cameras or noised_both) and cameras_sha256 != self._training_cameras_sha256:
            differences.append("train_dataset: its views' cameras (world_to_camera and K, in order) are not the "
                               "checkpoint's (another split, a part of it, or its views in another order)")
        if noise is None or float(noise) != self.args.pose_noise:
            differences.append(f"pose_noise: {noise} in the checkpoint, {self.args.pose_noise} now")
        elif self.args.pose_noise and (seed is None or int(seed) != self.args.seed):
            differences.append(f"seed (which draws pose_noise): {seed} in the checkpoint, {self.args.seed} now")
        return differences

    def _check_pose_noise_of_checkpoint(self, checkpoint: str, source: str) -> None:
        """Without pose_opt (whose file records its training poses, `_check_pose_record`): refuses a checkpoint whose
        densification state records another pose_noise, or another seed or other training views under pose_noise, whose
        perturbed training poses this run would not train on. Checkpoints saved before the record held them are not
        checked."""
        if not os.path.isfile(os.path.join(checkpoint, DENSIFICATION_STATE_NAME)):
            return  # `_load_optimizer_and_scheduler` names the missing state
        # Not training_args.bin: a pickle, which a resume would otherwise never need to unpickle.
        recorded = self._densification_state(checkpoint).get("run") or {}
        if "pose_noise" not in recorded:
            return
        differences = self._pose_noise_differences(recorded["pose_noise"], recorded.get("seed"),
                                                   recorded.get("training_cameras_sha256"))
        if differences:
            self._resume_state_read = None  # not resumed: its tensors are not kept
            raise ValueError(
                f"{source}: it was trained on other training poses than this run's: {'; '.join(differences)}. Resume "
                "with the pose_noise and seed it was trained with"
            )

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        # Every rank is here: the saved statistics are the ranks' total, so a resume continues exactly.
        # Summing here also changes the order of the live run's sums (last bits only), so a run that
        # saves checkpoints may take a near-threshold densification decision differently from one that does not.
        self._combine_statistics(self.strategy_state)
        if self.args.should_save:
            state = {
                "strategy_state": self.strategy_state,
                "coarse_to_fine": self.coarse_to_fine.state_dict() if self.coarse_to_fine is not None else None,
                "global_stop_iter": getattr(self.strategy, "global_stop_iter", None),
                # A resumed run goes on from these, not from the last evaluation (steps after it count).
                "train_clocks": self._train_clocks(),
                "run": self._densification_record(),
            }
            torch.save(state, os.path.join(output_dir, DENSIFICATION_STATE_NAME))

    def _densification_record(self) -> dict[str, Any]:
        """What a checkpoint's densification state belongs to, which a resumed run must match: the strategy
        (`strategy_name`: the built-in one with the parts switched off, or a strategy object's class), the
        screen-space gradient its statistics sum, and the coarse-to-fine levels (None: no coarse-to-fine),
        whose schedule the checkpoint carries. Schedules scaled by max_steps may change: a run is extended so."""
        return {
            "strategy": self.strategy_name(),
            "gradient": "absgrad" if getattr(self.strategy, "absgrad", False) else "grad",
            "c2f_levels": self.args.c2f_levels if self.args.uses_coarse_to_fine else None,
            # the training poses' perturbation, checked by `_check_pose_noise_of_checkpoint`
            "pose_noise": self.args.pose_noise,
            "seed": self.args.seed,
            "training_cameras_sha256": self._training_cameras_sha256 if self.args.pose_noise else None,
        }

    def _check_resumable(self, checkpoint: str) -> None:
        """Refuses, naming each difference, a checkpoint whose densification state another strategy saved:
        the state would be resumed silently under this run's strategy (the coarse-to-fine schedule and T_2
        of a g2l checkpoint replace this run's, a default one's leave them as they are). Checkpoints saved
        before the record (`_densification_record`) are not checked."""
        if not os.path.isfile(os.path.join(checkpoint, DENSIFICATION_STATE_NAME)):
            return  # `_load_optimizer_and_scheduler` names the missing state
        state = self._densification_state(checkpoint)
        recorded = state.get("run")
        if recorded is None:
            return
        current = self._densification_record()
        labels = {
            "strategy": "strategy (SplatTrainingArguments strategy, g2l, c2f and adaptive_pruning, or the strategy "
                        "object passed)",
            "gradient": "densification gradient (the strategy's absgrad)",
            "c2f_levels": "coarse-to-fine levels (c2f_levels; None: no coarse-to-fine)",
        }
        differences = [f"{label}: {recorded.get(key)!r} in the checkpoint, {current[key]!r} now"
                       for key, label in labels.items() if recorded.get(key) != current[key]]
        if differences:
            self._resume_state_read = None  # not resumed: its tensors are not kept
            raise ValueError(
                f"resume_from_checkpoint {checkpoint!r}: its densification state was saved by another run than these "
                f"arguments describe: {'; '.join(differences)}. Resume with the settings it was trained with (its "
                "training_args.bin), or start a new run from its Gaussians with "
                f"GaussianModel.from_pretrained({checkpoint!r}) (examples/splat_train.py: --model_name_or_path)"
            )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Resumes with the checkpoint's Gaussians (`_read_gaussians`), from a checkpoint of the same strategy
        (`_check_resumable`) and training poses (`_load_pose_adjustment`; without pose_opt,
        `_check_pose_noise_of_checkpoint`); weights that do not read are refused naming the file, left as it is."""
        # Checked here, the first use: `from_pretrained` would take a missing folder for a Hub repo id
        # and fail on its form, yet Trainer reads the rest of the state (trainer_state.json, optimizer,
        # RNG) from a local folder only, so a Hub id cannot resume either.
        if not os.path.isdir(resume_from_checkpoint):
            raise FileNotFoundError(
                f"resume_from_checkpoint {resume_from_checkpoint!r}: no such checkpoint folder. Pass a folder "
                "written by save_strategy (output_dir/checkpoint-N), or True for the last one in output_dir; "
                "a checkpoint on the Hub must be downloaded first (huggingface_hub.snapshot_download)"
            )
        # The Gaussians are read first: another trainer's checkpoint (a HaLoRA adapter, a GCN) is named by its
        # weights, not by the pose corrections or densification state it lacks.
        try:
            loaded = self._read_gaussians(resume_from_checkpoint, model)
        except SafetensorError as error:  # a truncated or corrupt model.safetensors, named as the other trainers do
            raise unreadable_weights_error(resume_from_checkpoint, error) from error
        self._check_resumable(resume_from_checkpoint)
        source = f"resume_from_checkpoint {resume_from_checkpoint!r}"
        self._load_pose_adjustment(resume_from_checkpoint, source, resuming=True)
        if self.pose_adjustment is None:
            self._check_pose_noise_of_checkpoint(resume_from_checkpoint, source)
        self._set_gaussians(loaded, model)

    def _load_best_model(self) -> None:
        """`load_best_model_at_end`: the best checkpoint's Gaussians (`_load_gaussians`; Trainer's
        version copies into the parameters, whose number has changed since), with the densification
        state saved beside them, so that the trainer's state describes them (a fresh state for a
        `save_only_model` checkpoint, which holds none)."""
        checkpoint = self.state.best_model_checkpoint
        try:
            self._load_gaussians(checkpoint)
        except SafetensorError as error:  # a truncated or corrupt model.safetensors, named as the other trainers do
            raise unreadable_best_weights_error(checkpoint, error) from error
        self._load_pose_adjustment(checkpoint, f"load_best_model_at_end: the best checkpoint {checkpoint!r}",
                                   resuming=False)
        if os.path.isfile(os.path.join(checkpoint, DENSIFICATION_STATE_NAME)):
            self._load_densification_state(checkpoint)
        else:
            self.strategy_state = self._initial_strategy_state()

    def _load_gaussians(self, checkpoint: str, model=None) -> None:
        self._set_gaussians(self._read_gaussians(checkpoint, model), model)

    def _read_gaussians(self, checkpoint: str, model=None):
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        loaded = type(target).from_pretrained(checkpoint)
        if loaded.sh_degree != target.sh_degree:
            raise ValueError(f"checkpoint {checkpoint} has sh_degree {loaded.sh_degree}, the model {target.sh_degree}")
        return loaded

    def _set_gaussians(self, loaded, model=None) -> None:
        """The checkpoint decides the number of Gaussians: the parameters are replaced, not
        copied into (Trainer's default `load_state_dict` would fail on the shape change)."""
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        device = next(iter(target.splats.values())).device
        for key, value in loaded.splats.items():
            target.splats[key] = nn.Parameter(value.detach().to(device))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is not None and not os.path.isfile(os.path.join(checkpoint, DENSIFICATION_STATE_NAME)):
            model = type(self.accelerator.unwrap_model(self.model)).__name__
            raise FileNotFoundError(
                f"checkpoint {checkpoint} holds no optimizer or densification state ({DENSIFICATION_STATE_NAME} is "
                "missing; saved with save_only_model=True?), so training cannot resume from it; to start a new run "
                f"from its Gaussians, load the model with {model}.from_pretrained({checkpoint!r}) instead"
            )
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._load_densification_state(checkpoint)

    def _densification_state(self, checkpoint: str) -> dict:
        """``checkpoint``'s densification state on the Gaussians' device, read from disk once for a resume (its
        record is checked first, the rest loaded after the optimizer)."""
        if self._resume_state_read is None or self._resume_state_read[0] != checkpoint:
            # The Gaussians' device, not args.device: accelerate's CPU ranks report cpu:<rank>, which
            # torch.load cannot map to.
            device = next(iter(self.splats.values())).device
            path = os.path.join(checkpoint, DENSIFICATION_STATE_NAME)
            self._resume_state_read = (checkpoint, torch.load(path, map_location=device, weights_only=True))
        return self._resume_state_read[1]

    def _load_densification_state(self, checkpoint: str) -> None:
        state = self._densification_state(checkpoint)
        self._resume_state_read = None  # taken: the strategy state now holds its tensors
        self.strategy_state = state["strategy_state"]
        self._statistics_partial = False  # every rank holds the saved total
        if state["coarse_to_fine"] is not None:
            self.coarse_to_fine = EnergyCoarseToFine.from_state_dict(state["coarse_to_fine"])
        if state["global_stop_iter"] is not None:
            self.strategy.global_stop_iter = state["global_stop_iter"]
        self._checkpoint_clocks = state.get("train_clocks")


def _check_split_names(splits: dict) -> None:
    """A dict eval_dataset's keys become metric names (``eval_<key>_psnr``) and folder names
    (``output_dir/eval_<key>_renders``): non-empty strings, at least one, that name no other folder."""
    if not splits:
        raise ValueError("SplatTrainer: eval_dataset is an empty dict; pass eval_dataset=None to train without evaluation")
    bad = [key for key in splits if not isinstance(key, str) or not key]
    if bad:
        raise TypeError(f"SplatTrainer: eval_dataset's keys name its splits in the metrics (eval_<key>_psnr) and must "
                        f"be non-empty strings, got {bad}")
    for key in splits:
        # A separator makes the renders folder a path (with '..', one outside output_dir).
        found = [repr(part) for part in ("/", "\\", "..") if part in key]
        found += ["whitespace"] if any(char.isspace() for char in key) else []
        if found:
            raise ValueError(
                f"SplatTrainer: eval_dataset's key {key!r} holds {' and '.join(found)}: a key names its "
                f"split's metrics (eval_{key}_psnr) and its renders folder (output_dir/eval_{key}_renders), so it "
                "must not hold '/', '\\', whitespace or '..'; rename the split (e.g. 'test_a')"
            )


def _check_metric_for_best_model(metric: str | None, eval_dataset, defaulted: bool) -> None:
    """Refuses a ``metric_for_best_model`` that evaluate does not report, naming those it does: Trainer finds out at
    the first evaluation, after the training steps before it. With a dict eval_dataset they are ``<key>_<metric>``;
    ``defaulted``: SplatTrainingArguments filled in "psnr", which names no split of a dict."""
    if not metric:
        return
    if isinstance(eval_dataset, dict):
        _check_split_names(eval_dataset)
        if defaulted:
            raise ValueError(
                f"SplatTrainingArguments.metric_for_best_model was left unset, and its default under "
                f"load_best_model_at_end or save_strategy='best', {metric!r}, names no split of the dict eval_dataset "
                f"(splits {', '.join(map(repr, eval_dataset))}): set it to the split's, "
                f"{' or '.join(repr(f'{key}_{metric}') for key in eval_dataset)}"
            )
        where = f"evaluation metrics for the eval_dataset splits {', '.join(map(repr, eval_dataset))}"
    else:
        where = "evaluation metrics"
    valid = reported_metric_names(EVAL_METRICS, eval_dataset)
    if metric.removeprefix("eval_") not in valid:
        raise ValueError(
            f"SplatTrainingArguments.metric_for_best_model={metric!r} is not among SplatTrainer's {where}: "
            f"{', '.join(valid)}"
        )


TRAIN_CLOCKS = ("train_seconds", "train_cpu_seconds")


def train_seconds_to_reach(log_history: list[dict], target_psnr: float, clock: str = "train_seconds",
                           split: str | None = None) -> float:
    """Training time (`clock`: train_seconds, wall, or train_cpu_seconds, process CPU; evaluations excluded) of
    the first evaluation with eval_psnr >= target; inf when none reached it. ``split``: the key of a dict
    eval_dataset whose ``eval_<split>_psnr`` and ``eval_<split>_<clock>`` are read; needed when the history holds
    dict splits' PSNRs only, and refused when it holds none of ``split``'s."""
    if clock not in TRAIN_CLOCKS:
        raise ValueError(f"train_seconds_to_reach: clock must be one of {', '.join(TRAIN_CLOCKS)}, got {clock!r}")
    prefix = "eval" if split is None else f"eval_{split}"
    evaluations = [entry for entry in log_history if f"{prefix}_psnr" in entry]
    if not evaluations:  # a split left out or misnamed: inf would read as "never reached"
        splits = list(dict.fromkeys(key.removeprefix("eval_").removesuffix("_psnr") for entry in log_history
                                    for key in entry if key.startswith("eval_") and key.endswith("_psnr")
                                    and key != "eval_psnr"))
        if splits:
            raise ValueError(
                f"train_seconds_to_reach(split={split!r}): the history holds no {prefix}_psnr but the PSNRs of the "
                f"dict eval_dataset splits {', '.join(map(repr, splits))} (eval_<key>_psnr): pass split= one of them"
            )
        if split is not None and any("eval_psnr" in entry for entry in log_history):
            raise ValueError(
                f"train_seconds_to_reach(split={split!r}): the history holds no {prefix}_psnr but eval_psnr, of an "
                "eval_dataset that was not a dict: leave split=None"
            )
    for entry in evaluations:
        if entry[f"{prefix}_psnr"] >= target_psnr:
            # an evaluation before training began records no clock: no training time was spent
            return entry.get(f"{prefix}_{clock}", 0.0)
    return math.inf
