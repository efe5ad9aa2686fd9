"""`SplatTrainingArguments`: the 3DGS / paper schedule as `TrainingArguments`, scaled by max_steps."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from types import SimpleNamespace
from typing import get_type_hints

from transformers import TrainingArguments
from transformers.trainer_utils import SaveStrategy

from hf_eff.hub.tokens import TokenFreeArgumentsMixin
from hf_eff.splat.losses import SSIM_PADDINGS
from hf_eff.splat.rendering import RASTERIZE_MODES
from hf_eff.splat.strategy.global_to_local import check_prune_ratio
from hf_eff.utils.pinning import CudaPinningArgumentsMixin

# The reference run both 3DGS and the paper use; step counts below are given at this length and
# scaled by max_steps / PAPER_STEPS, so a short run keeps the same proportions.
PAPER_STEPS = 30_000

# Steps the mean opacity takes to climb back after an opacity reset, whatever the run's length (the opacity
# logits are relearnt at opacities_lr from 2 * prune_opa): on the procedural scene (24 px, 1500 steps, resets every
# 300) 'default' regains its pre-reset mean in 33-34 steps and g2l reaches its plateau in about 40. The default reset
# period is at least this long. The images take longer: a reset at step 40 of 90 still cost 1.1-1.2 dB of final
# PSNR, so no default reset comes within twice this of max_steps.
RESET_RECOVERY_STEPS = 40

# The installed transformers' TrainingArguments fields and their types (which, as their defaults, vary between
# transformers versions): for the optimizer defaults below, and the fields redeclared with a help saying what
# SplatTrainer does with them.
_TRAINER_FIELDS = {f.name: f for f in fields(TrainingArguments)}
TrainerFieldTypes = SimpleNamespace(**get_type_hints(TrainingArguments))

# Trainer's optimizer and LR-schedule options, at their defaults (warmup_ratio only before transformers 5).
# SplatTrainer builds its own optimizers and schedule, so any other value would be silently ignored.
TRAINER_OPTIMIZER_DEFAULTS = {
    name: base.default if base.default is not MISSING else base.default_factory()
    for name, base in _TRAINER_FIELDS.items()
    if name in ("learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio",
                "weight_decay", "optim", "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon")
}

# The per-parameter Adams' learning rates (3DGS's).
LEARNING_RATE_FIELDS = ("means_lr", "scales_lr", "quats_lr", "opacities_lr", "sh0_lr", "shN_lr")


def _trainer_field(name: str, help: str):
    """TrainingArguments' field ``name``, its default kept, under another help."""
    base = _TRAINER_FIELDS[name]
    default = {"default": base.default} if base.default is not MISSING else {"default_factory": base.default_factory}
    return field(**default, metadata={**base.metadata, "help": help})


_REFUSED = "Not used by SplatTrainer, and refused unless left at its default: "


@dataclass
class SplatTrainingArguments(TokenFreeArgumentsMixin, CudaPinningArgumentsMixin, TrainingArguments):
    """Training arguments for `SplatTrainer`.

    Every step count left as None is the published value (3DGS / gsplat simple_trainer / the
    paper, all at 30k steps) scaled by ``max_steps / 30_000`` and rounded, at least 1. Choices the
    paper leaves open are documented on each field. Trainer defaults changed for splatting: one
    view per step (3DGS), training on (`do_train`: Trainer ignores it, the example only evaluates a trained
    model when it is False), no gradient clipping (3DGS has none, and it would couple the
    per-parameter Adams), unused columns kept, no reporting integrations unless asked, no NaN
    filter of the logged loss (it reads the device at every step; `finite_check_steps`), on CUDA
    batches pinned (`dataloader_pin_memory`, dropped off CUDA) and copied without waiting (accelerate's
    `non_blocking`, unless an `accelerator_config` is given), and `metric_for_best_model` "psnr" under
    `load_best_model_at_end` or `save_strategy="best"` (the evaluation reports no loss). Trainer's optimizer and
    schedule options (learning_rate, lr_scheduler_type, warmup, weight_decay, optim, adam_*) must stay
    at their defaults: the per-parameter Adams take the 3DGS learning rates of the `*_lr` fields.

    Evaluation reports PSNR and SSIM (in the convention `eval_ssim_padding` names), not LPIPS: LPIPS
    needs pretrained AlexNet / VGG weights, which the library does not download.
    """

    # Not a field (no annotation): True when __post_init__ filled metric_for_best_model with "psnr", which
    # SplatTrainer then names as the default to a dict eval_dataset's run; the class value serves old pickles.
    _metric_for_best_model_defaulted = False

    strategy: str = field(
        default="g2l",
        metadata={"help": "'default': 3DGS densification (gsplat's DefaultStrategy with a working opacity "
                          "reset). 'g2l': the paper's method; --g2l, --c2f and --adaptive_pruning switch its parts."},
    )
    g2l: bool = field(default=True, metadata={"help": "Under strategy=g2l: split-only densification until T_2."})
    c2f: bool = field(default=True, metadata={"help": "Under strategy=g2l: energy-guided coarse-to-fine resolution."})
    adaptive_pruning: bool = field(
        default=True, metadata={"help": "Under strategy=g2l: prune below min(alpha_sorted[floor(N p)], tau_u)."}
    )
    c2f_levels: int = field(default=8, metadata={"help": "K, the coarsest downscale factor (paper: 8)."})
    prune_ratio: float = field(default=0.03, metadata={"help": "p of adaptive pruning (paper: 0.03)."})
    prune_opa_max: float = field(default=0.05, metadata={"help": "tau_u of adaptive pruning (paper: 0.05)."})
    white_background: bool | None = field(
        default=None,
        metadata={"help": "Render onto white instead of black (3DGS's --white_background), for scenes whose "
                          "transparent pixels were composited onto white; the example then composites a converted "
                          "folder's RGBA images onto white too. For views kept with their alpha (views_dataset(..., "
                          "background=None)) it is the background they are composited onto when not random_bkgd, and "
                          "in evaluation. The saved model keeps it (config.json), and renders "
                          "onto white by default. None: the trained model's (a GaussianModel loaded with "
                          "from_pretrained keeps its background), else False (black, 3DGS's default).",
                  # a bare --white_background means True, as in 3DGS (HfArgumentParser asks a value of a bool
                  # defaulting to None)
                  "nargs": "?", "const": True},
    )
    prune_opa: float = field(
        default=0.005,
        metadata={"help": "Fixed opacity pruning threshold (3DGS: 0.005), in (0, 0.5): the opacity reset sets every "
                          "opacity to 2 * prune_opa, which must stay under 1."},
    )
    grow_grad2d: float = field(
        default=0.0002,
        metadata={"help": "Screen-space gradient threshold to densify (3DGS's 2e-4, about the median initial gradient "
                          "at ~1k-pixel images). The gradients grow as images shrink (median 1.8e-3 at 32 px, 1.1e-3 "
                          "at 64 px on the procedural scenes, benchmarks/splat_speed.py), so under 2e-4 small images "
                          "densify most of their Gaussians at every refine step: the 48 px recipes use 1.5e-3."},
    )
    clone_grad2d_factor: float = field(
        default=3.0,
        metadata={"help": "Under strategy=g2l with --g2l: in the local phase (from T_2) a small Gaussian is cloned "
                          "only when its screen-space gradient exceeds this multiple of grow_grad2d; splitting keeps "
                          "grow_grad2d. 1.0 is the paper's rule (3DGS's, one threshold for both); other values depart "
                          "from it. Default 3.0: in short low-resolution runs the local phase's clones made most of "
                          "g2l's Gaussians without adding PSNR. On validation scenes (seeds 10, 11, 12; 64 px, 1500 "
                          "steps, grow_grad2d 1.1e-3): +2.10 / +1.25 / +1.10 dB over the default instead of +1.74 / "
                          "+1.23 / +0.46, at 0.46x / 0.49x / 0.44x its Gaussians instead of 0.76x / 0.69x / 0.85x, "
                          "its final PSNR reached at step 750 / 1000 / 1000 instead of 850 / 1050 / 1100. Factor 1.5: "
                          "+2.26 / +1.41 / +0.70 dB at 0.59x / 0.58x / 0.62x; 2: +2.01 / +1.32 / +0.60 dB at 0.52x / "
                          "0.53x / 0.53x; 5: +2.28 / +1.33 / +1.02 dB at 0.43x / 0.47x / 0.40x; no cloning at all: "
                          "+2.17 / +1.38 / +0.85 dB at 0.43x / 0.46x / 0.39x. Not a gain of its own: the default's "
                          "densification with factor 3 gives +0.18 / -0.15 dB at 0.59x / 0.73x (seeds 10, 11)."},
    )
    densify_stop_fraction: float | None = field(
        default=None,
        metadata={"help": "End of densification as a fraction of max_steps. None: 15k/30k for 'default' (3DGS) "
                          "and 25k/30k for 'g2l' (the paper extends densification to T_densify = 25k)."},
    )
    reset_stop_fraction: float | None = field(
        default=None,
        metadata={"help": "No opacity reset from this fraction of max_steps on. None: the end of densification for "
                          "'default' (15k/30k, as in 3DGS, whose reset sits inside its densify-until block) and 0.7 "
                          "(21k/30k: the last reset at 18k) for 'g2l', and, unless --reset_every is given, no later "
                          "than 80 steps before max_steps (see --reset_every). The paper extends densification to 25k and "
                          "does not say where resets stop. Resets through 25k cost the late run a dip after each "
                          "(about 0.3-0.6 dB at 1050 and 1200 of 1500 steps). Measured on validation scenes (seeds 10, "
                          "11, 12; 64 px, 1500 steps) against resets through 25k: +1.74 / +1.23 / +0.46 dB over the "
                          "default instead of +1.69 / +1.08 / +0.54, 0.76x / 0.69x / 0.85x its Gaussians instead of "
                          "0.81x / 0.66x / 0.82x, and its final PSNR reached at step 850 / 1050 / 1100 instead of "
                          "850 / 1050 / 1150 (CPU-time speedup 3.97x / 3.04x / 2.10x instead of 3.81x / 3.10x / "
                          "1.87x). 0.5 (last reset at 12k): +1.67 / +1.22 / +0.50 dB at 0.78x / 0.74x / 0.89x."},
    )
    prune_stop_fraction: float | None = field(
        default=1.0,
        metadata={"help": "Under strategy=g2l with adaptive pruning: pruning, without growth, keeps running every "
                          "refine interval after densification ends, until this fraction of max_steps; None stops it "
                          "with densification (gsplat, 3DGS). The paper does not say. Each such step removes the "
                          "Gaussians under the adaptive opacity bar and, as gsplat's pruning does, the oversized ones "
                          "(largest scale above prune_scale3d, 0.1, times the scene scale). Default 1.0: "
                          "Gaussians still under the opacity bar after the last reset, or grown too large, are "
                          "dropped; on validation scenes (seeds 10, 11; 64 px, 1500 steps, with the pause below) "
                          "0.74x / 0.63x the default's Gaussians instead of 0.80x / 0.66x, at the same PSNR "
                          "(+0.01 / -0.01 dB)."},
    )
    prune_pause_after_reset: int = field(
        default=100,
        metadata={"help": "Under strategy=g2l with adaptive pruning: no pruning by opacity within this many steps "
                          "after an opacity reset; not scaled by max_steps. The paper does not say. Just after a "
                          "reset every opacity is near 0.01, under tau_u, so the adaptive rule removes the lowest p "
                          "of Gaussians that had no time to recover. Default 100: 3DGS's and the paper's first prune "
                          "after a reset comes 100 steps later, so at 30k steps this changes nothing, and shorter "
                          "runs keep those 100 steps (Adam lifts an opacity logit at a per-step rate that does not "
                          "shrink with the run). Validation seeds 10, 11 (64 px, 1500 steps): +1.37 / +0.84 dB over "
                          "the default instead of +0.88 / -0.13 dB, at 0.80x / 0.66x its Gaussians instead of "
                          "0.73x / 0.67x. A reset period shorter than the pause still prunes once, just before the "
                          "next reset. 0: prune at every refine interval."},
    )
    refine_start_steps: int | None = field(
        default=None, metadata={"help": "First densification step, >= 0 (3DGS: 500 of 30k)."}
    )
    refine_every: int | None = field(
        default=None,
        metadata={"help": "Densify every this many steps, >= 1 (3DGS: 100 of 30k), but at least 10 when scaled: "
                          "3DGS averages the densification gradient over 100 views, and 1-3 views are too noisy."},
    )
    reset_every: int | None = field(
        default=None,
        metadata={"help": "Opacity reset period, >= 1 (3DGS: 3000 of 30k); --reset_stop_fraction 0 turns resets off. "
                          "Left None: 3DGS's scaled, but at least 40 steps, and no reset in the last 80 unless "
                          "--reset_stop_fraction is given: after a reset the mean opacity takes about 40 steps to climb back whatever the "
                          "run's length (procedural scene, 24 px: 33-34 steps for 'default', ~40 to g2l's plateau), "
                          "and the images longer; scaled alone, a 40-step run reset every 4 steps and ended below its "
                          "untrained PSNR. Runs of 400 steps or more keep 3DGS's scaled schedule. Final test PSNR of "
                          "procedural_g2l.yaml / procedural_default.yaml at 24 px (untrained 15.4 dB), scaled period "
                          "-> this default (no resets at all): 40 steps 9.5 / 10.7 -> 17.8 / 18.9 (17.8 / 18.9) dB; "
                          "90: 16.8 / 18.4 -> 19.3 / 19.4 (19.4 / 19.5); 200: 19.2 / 19.6 -> 19.7 / 19.8 (19.7 / "
                          "20.0); 400: 20.2 / 20.1, unchanged (19.9 / 20.1). A period given keeps the paper's stop."},
    )
    sh_degree_interval: int | None = field(
        default=None, metadata={"help": "SH degree +1 every this many steps, >= 1 (3DGS: 1000 of 30k)."}
    )
    sh_degree_start: str = field(
        default="start",
        metadata={"help": "Where the SH degree schedule's clock starts (the paper does not say). 'start': step 0 "
                          "(3DGS). 'full_resolution': T_2 under coarse-to-fine, so that no higher-order SH is "
                          "fitted to downscaled images. Default 'start': on validation seed 11 (64 px, 1500 steps) "
                          "'full_resolution' lost 0.70 dB."},
    )
    means_lr: float = field(default=1.6e-4, metadata={"help": "Means LR, times the scene scale (3DGS)."})
    means_lr_final_ratio: float = field(
        default=0.01,
        metadata={"help": "The means LR decays exponentially to this fraction at max_steps (3DGS). Under "
                          "coarse-to-fine it is held constant until T_2 and decays from there (paper)."},
    )
    means_lr_decay: str = field(
        default="paused",
        metadata={"help": "How the means LR decays after coarse-to-fine's hold; the paper only says it is held "
                          "while downsampled. 'paused': the 3DGS schedule's clock stops while coarse, so it ends at "
                          "means_lr_final_ratio ** ((max_steps - T_2) / max_steps). 'remaining': the whole decay is "
                          "squeezed into T_2..max_steps, reaching means_lr_final_ratio at the end. Default 'paused': "
                          "on validation seeds 10, 11 (64 px, 1500 steps) +0.33 / +0.25 dB over 'remaining', at "
                          "1.01x / 1.05x the Gaussians."},
    )
    scales_lr: float = field(default=5e-3, metadata={"help": "Log-scales LR (3DGS)."})
    quats_lr: float = field(default=1e-3, metadata={"help": "Quaternions LR (3DGS)."})
    opacities_lr: float = field(default=5e-2, metadata={"help": "Opacity logits LR (3DGS)."})
    sh0_lr: float = field(default=2.5e-3, metadata={"help": "DC colour LR (3DGS)."})
    shN_lr: float = field(default=2.5e-3 / 20, metadata={"help": "Higher SH LR (3DGS: sh0's / 20)."})
    ssim_weight: float = field(default=0.2, metadata={"help": "lambda in (1 - lambda) L1 + lambda D-SSIM (3DGS)."})
    ssim_padding: str = field(
        default="valid",
        metadata={"help": "SSIM convention of the D-SSIM loss, named as fused-ssim's padding argument. 'valid': "
                          "windows inside the image only (gsplat's simple_trainer: fused_ssim(padding='valid')). "
                          "'same': zero-padded 11x11 windows, averaged over every pixel (3DGS's loss; the paper "
                          "states 3DGS's 0.8 L1 + 0.2 D-SSIM and its code is not public). Default 'valid': every "
                          "default here was chosen, and every figure quoted in this help and in "
                          "benchmarks/splat_speed.py measured, with it. On validation scenes (seeds 10, 11, 12; "
                          "64 px, 1500 steps, grow_grad2d 1.1e-3) 'same' gives g2l +0.79 / +1.96 / +1.90 dB over "
                          "the default instead of +2.10 / +1.25 / +1.10, at 0.50x / 0.49x / 0.46x its Gaussians "
                          "instead of 0.46x / 0.49x / 0.44x; on the benchmark's scenes 0-2 +1.08 / +0.23 / +1.51 dB "
                          "and 3.06x / 2.25x / 4.08x CPU-time speedups instead of +1.06 / +1.02 / +0.85 dB and "
                          "3.46x / 3.12x / 2.26x."},
    )
    opacity_reg: float = field(
        default=0.0,
        metadata={"help": "gsplat simple_trainer's --opacity_reg: adds this weight times the mean opacity (sigmoid of "
                          "the logits) of every Gaussian to the loss, which pushes unneeded Gaussians under the prune "
                          "threshold (gsplat's MCMC configuration: 0.01). 0: off (3DGS)."},
    )
    scale_reg: float = field(
        default=0.0,
        metadata={"help": "gsplat simple_trainer's --scale_reg: adds this weight times the mean scale (exp of the "
                          "log-scales, every axis of every Gaussian) to the loss, which keeps Gaussians small (gsplat's "
                          "MCMC configuration: 0.01). 0: off (3DGS)."},
    )
    random_bkgd: bool = field(
        default=False,
        metadata={"help": "gsplat simple_trainer's --random_bkgd: each training step renders onto one random colour "
                          "instead of the fixed background, so a transparent render cannot pass for a dark pixel. "
                          "Views kept with their alpha (views_dataset(..., background=None)) are composited onto the "
                          "same colour; views stored without alpha are refused with white_background. Evaluation "
                          "and the energy schedule use the fixed background."},
    )
    pose_opt: bool = field(
        default=False,
        metadata={"help": "gsplat simple_trainer's --pose_opt: learn one SE(3) correction per training view, for "
                          "captures whose poses are imperfect, saved beside the model as pose_adjustment.safetensors "
                          "(PoseAdjustment.from_file reads it). Evaluation renders the training views' cameras with "
                          "their corrected poses, every other view with its given pose."},
    )
    pose_opt_lr: float = field(
        default=1e-5,
        metadata={"help": "Under pose_opt: the corrections' Adam learning rate, times sqrt(per_device_train_batch_"
                          "size), decayed exponentially to 1%% at max_steps (gsplat's)."},
    )
    pose_opt_reg: float = field(
        default=1e-6,
        metadata={"help": "Under pose_opt: the corrections' Adam weight decay (gsplat's), which pulls them towards "
                          "no correction. 0: none."},
    )
    pose_noise: float = field(
        default=0.0,
        metadata={"help": "gsplat simple_trainer's --pose_noise, to test pose_opt: perturbs every training pose once "
                          "by a fixed random SE(3) whose 9 values (translation and 6D rotation delta) are drawn from "
                          "N(0, pose_noise), seeded by seed (the same on every process). The scene scale is taken "
                          "from the given poses. 0: off."},
    )
    eval_ssim_padding: str = field(
        default="same",
        metadata={"help": "SSIM convention of evaluate's eval_ssim: 'same' (3DGS's metrics.py: zero-padded "
                          "windows, every pixel) or 'valid' (gsplat's simple_trainer, torchmetrics and "
                          "pytorch-msssim: interior windows only). Default 'same': the paper's table compares "
                          "with 3DGS, 3DGS-accel and DashGaussian, which evaluate with 3DGS's metrics.py; the two "
                          "differ by about 0.002-0.01 on 256 px images, as much as the methods differ."},
    )
    rasterize_mode: str | None = field(
        default=None,
        metadata={"help": "gsplat's rasterize_mode for every render of the run (training, evaluation, previews). "
                          "'classic': 3DGS's (each projected Gaussian dilated by 0.3 pixel^2 so none is thinner than "
                          "a pixel). 'antialiased': gsplat simple_trainer's --antialiased, Mip-Splatting's 2D filter: "
                          "the same dilation with the opacity scaled by sqrt(det(cov2d) / det(cov2d + 0.3 I)), so "
                          "that Gaussians small on screen keep their weight instead of growing. Use it when the "
                          "model will be rendered at other resolutions or distances than its views'. On validation "
                          "scenes (seeds 10, 11, 12; 48 px, 600 steps, grow_grad2d 1.5e-3), at the views' resolution "
                          "it changed test PSNR by -0.24 / +0.49 / +0.29 dB under g2l and -0.06 / +0.26 / -0.56 dB "
                          "under 'default': coarse-to-fine, although it trains at several resolutions, does not need "
                          "it; rendered at 1/2 and 1/4 of that resolution the classic g2l models scored 5.0 / 6.0 / "
                          "4.6 and 10.9 / 9.0 / 10.6 dB below the antialiased ones ('default': 5.3 / 5.8 / 3.9 and "
                          "11.5 / 9.6 / 9.7 dB). Antialiased g2l ended with 1.46x / 1.23x / 1.47x the Gaussians of "
                          "classic g2l ('default': 0.85x / 1.02x / 0.78x). The trained model keeps the mode "
                          "(GaussianModel.rasterize_mode, saved in config.json, used by from_pretrained and "
                          "render_trajectory); the .ply and .splat exports cannot record it, and most viewers render classic, "
                          "which cost these antialiased g2l models 2.3 / 2.9 / 2.3 dB at the views' resolution. "
                          "None: the trained model's (a GaussianModel loaded with from_pretrained keeps its "
                          "mode; a new one is 'classic', 3DGS's and the paper's, and the one every other default "
                          "here was tuned with)."},
    )
    packed: bool = field(default=False, metadata={"help": "Packed rasterization (gsplat's memory-saving mode)."})
    render_backend: str = field(default="auto", metadata={"help": "'auto' (gsplat on CUDA, PyTorch on CPU), 'cpu', 'gsplat'."})
    finite_check_steps: int = field(
        default=100,
        metadata={"help": "Read the device-side NaN / inf record of the Gaussians and renders at least every this many "
                          "steps (it is also read at every refine_every step, at logging, evaluation and checkpoint steps "
                          "and at the end, so values above refine_every change nothing); the error names the first step "
                          "that went non-finite. Each read waits for the GPU to finish its queued work; the checks it "
                          "replaces paid six such waits per step (gsplat's rasteriser still reads one count per render). "
                          "Default 100: 3DGS's refine interval, and a diverged run is stopped at most 100 steps late, "
                          "with no checkpoint written after the divergence. 1 reads at every step."},
    )
    eval_render_images: int = field(
        default=4,
        metadata={"help": "Test views rendered as render|target pairs at each evaluation: saved as a PNG in "
                          "output_dir/eval_renders and logged as an image to TensorBoard / wandb under report_to; 0 renders none."},
    )

    # Trainer defaults changed for splatting (see the class docstring).
    do_train: bool = field(
        default=True,
        metadata={"help": "Train (Trainer itself ignores this flag; examples/splat_train.py reads it, and "
                          "SplatTrainer builds the energy schedule from every training image only when it is True or "
                          "train() is called). False: the example only evaluates the model --model_name_or_path names on the scene's test views "
                          "(PSNR, SSIM, preview.png, trajectory.gif, all_results.json) in the rasterize_mode and onto "
                          "the background its config.json records, and saves no model, so --push_to_hub is refused; "
                          "max_steps may then be left unset."},
    )
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Views per step (3DGS: 1)."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping; 3DGS uses none."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the view columns."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Reporting integrations."})
    logging_steps: float = field(default=50, metadata={"help": "Log every this many steps."})
    save_strategy: SaveStrategy | str = field(default="no", metadata={"help": "Checkpointing, as in TrainingArguments."})
    metric_for_best_model: str | None = field(
        default=None,
        metadata={"help": "The metric load_best_model_at_end and early stopping compare, as in TrainingArguments. "
                          "None: 'psnr' (greater is better) under load_best_model_at_end or save_strategy='best'; Trainer's default there, "
                          "'loss', is not among SplatTrainer's evaluation metrics. With a dict eval_dataset, name the split: "
                          "'test_psnr' for the key 'test'."},
    )
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={"help": "Trainer's NaN filter of the logged loss reads the loss from the device at every step (a "
                          "GPU synchronisation); SplatTrainer stops a diverged run with a named error instead "
                          "(finite_check_steps)."},
    )

    # Trainer's fields that splatting does not use, or requires: defaults and types are transformers' own.
    max_steps: TrainerFieldTypes.max_steps = _trainer_field(
        "max_steps",
        "Required to train (> 0): the number of optimizer steps (3DGS and the paper: 30000), by which every step "
        "count left unset is scaled. Its default, -1, is accepted only with --do_train False (evaluation only).",
    )
    num_train_epochs: TrainerFieldTypes.num_train_epochs = _trainer_field(
        "num_train_epochs", "Not used: --max_steps, which is required, sets the length of the run."
    )
    learning_rate: TrainerFieldTypes.learning_rate = _trainer_field(
        "learning_rate",
        _REFUSED + "each Gaussian parameter has its own Adam at its 3DGS learning rate (--means_lr, --scales_lr, "
        "--quats_lr, --opacities_lr, --sh0_lr, --shN_lr). The logged learning_rate is the means' (means_lr times "
        "the scene scale, as it decays).",
    )
    lr_scheduler_type: TrainerFieldTypes.lr_scheduler_type = _trainer_field(
        "lr_scheduler_type",
        _REFUSED + "the means LR decays exponentially (--means_lr_final_ratio, --means_lr_decay), the other "
        "learning rates are constant (3DGS).",
    )
    lr_scheduler_kwargs: TrainerFieldTypes.lr_scheduler_kwargs = _trainer_field(
        "lr_scheduler_kwargs", _REFUSED + "see --lr_scheduler_type."
    )
    warmup_steps: TrainerFieldTypes.warmup_steps = _trainer_field(
        "warmup_steps", _REFUSED + "3DGS's learning rates have no warmup."
    )
    weight_decay: TrainerFieldTypes.weight_decay = _trainer_field(
        "weight_decay",
        _REFUSED + "the Gaussians' Adams have no weight decay (3DGS); --pose_opt_reg is the pose corrections'.",
    )
    optim: TrainerFieldTypes.optim = _trainer_field(
        "optim",
        _REFUSED + "SplatTrainer builds one torch Adam per Gaussian parameter (3DGS), and one for --pose_opt's "
        "corrections; their learning rates are the *_lr flags.",
    )
    optim_args: TrainerFieldTypes.optim_args = _trainer_field("optim_args", _REFUSED + "see --optim.")
    adam_beta1: TrainerFieldTypes.adam_beta1 = _trainer_field(
        "adam_beta1", _REFUSED + "the Adams use torch's betas, (0.9, 0.999), as 3DGS."
    )
    adam_beta2: TrainerFieldTypes.adam_beta2 = _trainer_field(
        "adam_beta2", _REFUSED + "the Adams use torch's betas, (0.9, 0.999), as 3DGS."
    )
    adam_epsilon: TrainerFieldTypes.adam_epsilon = _trainer_field(
        "adam_epsilon",
        _REFUSED + "the Gaussians' Adams use eps 1e-15, as 3DGS (single Gaussians' gradients are tiny); "
        "--pose_opt's, torch's 1e-8.",
    )

    def __post_init__(self):
        accelerator_config_given = self.accelerator_config is not None
        # Before Trainer's __post_init__, which would default it to "loss"; "psnr" then gets greater_is_better.
        if (self.load_best_model_at_end or self.save_strategy == "best") and self.metric_for_best_model is None:
            self.metric_for_best_model = "psnr"
            self._metric_for_best_model_defaulted = True
        # As given: Trainer's __post_init__ turns torch_compile on for a backend or mode, and picks a backend for it.
        compile_flags = {name: getattr(self, name) for name in ("torch_compile", "torch_compile_backend",
                                                                  "torch_compile_mode") if getattr(self, name)}
        if compile_flags:
            given = ", ".join(f"{name}={value!r}" for name, value in compile_flags.items())
            raise ValueError(
                f"SplatTrainingArguments: {given} would change nothing: torch.compile wraps the model's forward, and "
                "SplatTrainer renders through GaussianModel.render (gsplat's CUDA rasteriser, or the CPU renderer's "
                f"tile compositing), which it does not compile; leave {', '.join(compile_flags)} unset"
            )
        super().__post_init__()
        unused = {}
        for name, default in TRAINER_OPTIMIZER_DEFAULTS.items():
            value = getattr(self, name)
            # None and an empty dict / string both mean no scheduler or optimizer arguments.
            if value != default and (value or default):
                unused[name] = getattr(value, "value", value)  # the name given, not Trainer's enum
        if unused:
            given = ", ".join(f"{name}={value!r}" for name, value in unused.items())
            raise ValueError(
                f"SplatTrainingArguments: {given} would be ignored: SplatTrainer trains one Adam per Gaussian "
                "parameter with the 3DGS learning rates, set by means_lr, scales_lr, quats_lr, opacities_lr, "
                "sh0_lr and shN_lr, and decays the means LR by means_lr_final_ratio and means_lr_decay; leave "
                f"{', '.join(unused)} at Trainer's default"
            )
        # Pinned on CUDA (CudaPinningArgumentsMixin: an unpinned copy waits for the GPU's queued work; a view
        # at 1600x1200 is 23 MB), where the copy runs without waiting only with non_blocking.
        if self.dataloader_pin_memory and not accelerator_config_given:
            self.accelerator_config.non_blocking = True
        if self.do_train and (self.max_steps is None or self.max_steps <= 0):
            raise ValueError(
                f"SplatTrainingArguments.max_steps must be > 0 to train, got {self.max_steps}: splatting counts "
                "optimizer iterations (3DGS: 30000) and scales its schedule by them; num_train_epochs is not used. "
                "do_train=False (evaluation only) needs no max_steps"
            )
        if self.strategy not in ("default", "g2l"):
            raise ValueError(f"SplatTrainingArguments.strategy must be 'default' or 'g2l', got {self.strategy!r}")
        if self.gradient_accumulation_steps != 1:
            raise ValueError(
                "SplatTrainingArguments.gradient_accumulation_steps must be 1: densification reads the screen-space "
                "gradient of each render; use per_device_train_batch_size for several views per step"
            )
        if not 0 < self.prune_opa < 0.5:
            raise ValueError(
                f"SplatTrainingArguments.prune_opa must be in (0, 0.5), got {self.prune_opa}: the opacity reset "
                "sets opacities to 2 * prune_opa"
            )
        # fp16's GradScaler scales the loss, so the screen-space gradients densification reads from the
        # rasterizer's info (not optimizer parameters, never unscaled) would pass every threshold.
        # mixed_precision (transformers 5) also holds accelerate launch's --mixed_precision
        if self.fp16 or getattr(self, "mixed_precision", None) == "fp16":
            raise ValueError(
                "SplatTrainingArguments: fp16 mixed precision is not supported: its loss scaling also scales the "
                "screen-space gradients that densification thresholds (every Gaussian would be split); train in "
                "float32"
            )
        # The flag only: a launch configuration's bf16 (accelerate's, which every example shares: trainers/accelerate/
        # gpu_1.yaml) stays accepted, and changes nothing either.
        if self.bf16:
            raise ValueError(
                "SplatTrainingArguments: bf16 mixed precision is not supported: it would change nothing, as "
                "accelerate's autocast wraps the model's forward, which SplatTrainer never calls (it renders through "
                "GaussianModel.render, in float32), and the Gaussians must stay float32 for the 3DGS learning rates' "
                "small steps; train in float32"
            )
        for name in ("bf16_full_eval", "fp16_full_eval"):
            if getattr(self, name):
                raise ValueError(
                    f"SplatTrainingArguments: {name} is not supported: it would change nothing, as Trainer casts the "
                    "model in its evaluation_loop, which SplatTrainer's evaluate and predict never run (they render "
                    "through GaussianModel.render, in float32); evaluate in float32"
                )
        # None is the scaled default (not any falsy value: 0 is refused); a period under 1 divides by zero.
        for name, least in (("refine_start_steps", 0), ("refine_every", 1), ("reset_every", 1), ("sh_degree_interval", 1)):
            value = getattr(self, name)
            if value is not None and value < least:
                how_to_stop = "; to turn opacity resets off, set reset_stop_fraction=0" if name == "reset_every" else ""
                raise ValueError(f"SplatTrainingArguments.{name} must be None (the paper's value scaled by max_steps) "
                                 f"or >= {least}, got {value}{how_to_stop}")
        if self.c2f_levels < 1:
            raise ValueError(f"SplatTrainingArguments.c2f_levels must be >= 1, got {self.c2f_levels}")
        for name in ("densify_stop_fraction", "reset_stop_fraction", "prune_stop_fraction"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"SplatTrainingArguments.{name} must be in [0, 1], got {value}")
        # `not x > 0` (and `not x >= 0` below), not `x <= 0`: NaN compares False, so it is refused too.
        if not self.grow_grad2d > 0:
            # checked here, or g2l's local-phase clone threshold (clone_grad2d_factor * grow_grad2d) names it
            raise ValueError(f"SplatTrainingArguments.grow_grad2d must be > 0, got {self.grow_grad2d} (g2l's clone "
                             "threshold, clone_grad2d_factor * grow_grad2d, is derived from it)")
        if not self.clone_grad2d_factor > 0:
            raise ValueError(f"SplatTrainingArguments.clone_grad2d_factor must be > 0, got {self.clone_grad2d_factor}")
        # 0 freezes that parameter; a negative rate climbs the loss.
        for name in LEARNING_RATE_FIELDS:
            if not getattr(self, name) >= 0:
                raise ValueError(f"SplatTrainingArguments.{name} must be >= 0 (0 freezes those parameters), "
                                 f"got {getattr(self, name)}")
        if not 0 <= self.ssim_weight <= 1:
            raise ValueError(f"SplatTrainingArguments.ssim_weight must be in [0, 1] (lambda of (1 - lambda) L1 + "
                             f"lambda D-SSIM), got {self.ssim_weight}")
        check_prune_ratio(self.prune_ratio, "SplatTrainingArguments")
        if not 0 <= self.prune_opa_max <= 1:
            raise ValueError(f"SplatTrainingArguments.prune_opa_max must be in [0, 1] (an opacity), got {self.prune_opa_max}")
        if self.prune_pause_after_reset < 0:
            raise ValueError(f"SplatTrainingArguments.prune_pause_after_reset must be >= 0, got {self.prune_pause_after_reset}")
        if not 0 < self.means_lr_final_ratio <= 1:
            raise ValueError(f"SplatTrainingArguments.means_lr_final_ratio must be in (0, 1], got {self.means_lr_final_ratio}")
        if self.sh_degree_start not in ("start", "full_resolution"):
            raise ValueError(f"SplatTrainingArguments.sh_degree_start must be 'start' or 'full_resolution', got {self.sh_degree_start!r}")
        if self.means_lr_decay not in ("remaining", "paused"):
            raise ValueError(f"SplatTrainingArguments.means_lr_decay must be 'remaining' or 'paused', got {self.means_lr_decay!r}")
        if self.finite_check_steps < 1:
            raise ValueError(f"SplatTrainingArguments.finite_check_steps must be >= 1, got {self.finite_check_steps}")
        for name in ("opacity_reg", "scale_reg"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"SplatTrainingArguments.{name} must be >= 0 (0: off), got {getattr(self, name)}")
        for name in ("pose_opt_lr", "pose_opt_reg", "pose_noise"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"SplatTrainingArguments.{name} must be a finite number >= 0, got "
                                 f"{getattr(self, name)}")
        if self.eval_render_images < 0:
            raise ValueError(f"SplatTrainingArguments.eval_render_images must be >= 0 (0 renders none), got {self.eval_render_images}")
        for name in ("ssim_padding", "eval_ssim_padding"):
            if getattr(self, name) not in SSIM_PADDINGS:
                raise ValueError(f"SplatTrainingArguments.{name} must be 'same' (3DGS) or 'valid' (gsplat), "
                                 f"got {getattr(self, name)!r}")
        if self.rasterize_mode is not None and self.rasterize_mode not in RASTERIZE_MODES:
            raise ValueError(f"SplatTrainingArguments.rasterize_mode must be 'classic' or 'antialiased' (gsplat's "
                             f"--antialiased), got {self.rasterize_mode!r}")
        if self.render_backend not in ("auto", "cpu", "gsplat"):
            raise ValueError(f"SplatTrainingArguments.render_backend must be auto, cpu or gsplat, got {self.render_backend!r}")

    def take_model_render_settings(self, model) -> None:
        """``rasterize_mode`` and ``white_background`` left None become ``model``'s (a `GaussianModel`'s: a
        loaded one keeps how it was trained), else 'classic' and False; values given win."""
        if self.rasterize_mode is None:
            self.rasterize_mode = getattr(model, "rasterize_mode", None) or "classic"
        if self.white_background is None:
            self.white_background = bool(getattr(model, "white_background", None))

    def steps_at(self, fraction: float | None) -> int | None:
        """The step at this fraction of max_steps; None stays None."""
        return None if fraction is None else round(fraction * self.max_steps)

    def scaled_steps(self, paper_value: int) -> int:
        """A step count of the 30k-step reference run, scaled to max_steps (at least 1)."""
        return max(1, round(paper_value * self.max_steps / PAPER_STEPS))

    @property
    def uses_coarse_to_fine(self) -> bool:
        return self.strategy == "g2l" and self.c2f

    @property
    def densify_stop_steps(self) -> int:
        """T_densify."""
        if self.densify_stop_fraction is not None:
            return self.steps_at(self.densify_stop_fraction)
        return self.scaled_steps(25_000 if self.strategy == "g2l" else 15_000)

    @property
    def active_reset_every(self) -> int:
        """The opacity reset period: reset_every, else 3DGS's scaled, at least RESET_RECOVERY_STEPS."""
        if self.reset_every is not None:
            return self.reset_every
        return max(RESET_RECOVERY_STEPS, self.scaled_steps(3000))

    @property
    def reset_stop_steps(self) -> int | None:
        """No opacity reset from this step on; None: the end of densification (3DGS).

        Under the default period, none either within 2 * RESET_RECOVERY_STEPS of max_steps.
        """
        if self.reset_stop_fraction is not None:
            return self.steps_at(self.reset_stop_fraction)
        paper_stop = self.steps_at(0.7) if self.strategy == "g2l" else None
        recovered_stop = max(0, self.max_steps - 2 * RESET_RECOVERY_STEPS)
        if self.reset_every is not None or recovered_stop >= (paper_stop or self.densify_stop_steps):
            return paper_stop
        return recovered_stop

    @property
    def active_sh_interval(self) -> int:
        return self.sh_degree_interval if self.sh_degree_interval is not None else self.scaled_steps(1000)

    def build_strategy(self):
        """The densification strategy these arguments describe (a gsplat `Strategy`).

        For 'g2l', `global_stop_iter` (T_2) is left for `SplatTrainer` to fill from the energy
        schedule, unless --g2l is off (0: split and clone from the start).
        """
        from hf_eff.splat.strategy import FixedDefaultStrategy, GlobalToLocalStrategy

        common = dict(
            prune_opa=self.prune_opa,
            grow_grad2d=self.grow_grad2d,
            refine_start_iter=self.refine_start_steps if self.refine_start_steps is not None else self.scaled_steps(500),
            refine_stop_iter=self.densify_stop_steps,
            refine_every=self.refine_every if self.refine_every is not None else max(10, self.scaled_steps(100)),
            reset_every=self.active_reset_every,
            # None: FixedDefaultStrategy resets until refine_stop_iter.
            reset_stop_iter=self.reset_stop_steps,
        )
        if self.strategy == "default":
            return FixedDefaultStrategy(**common)
        return GlobalToLocalStrategy(
            **common,
            global_stop_iter=None if self.g2l else 0,
            adaptive_pruning=self.adaptive_pruning,
            prune_ratio=self.prune_ratio,
            prune_opa_max=self.prune_opa_max,
            prune_stop_iter=self.steps_at(self.prune_stop_fraction),
            prune_pause_after_reset=self.prune_pause_after_reset,
            # Part of G2L's local phase: without --g2l cloning keeps the 3DGS rule.
            clone_grad2d=(self.clone_grad2d_factor * self.grow_grad2d
                          if self.g2l and self.clone_grad2d_factor != 1 else None),
        )
