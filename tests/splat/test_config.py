import dataclasses
import math
from typing import get_type_hints

import pytest
import torch
from transformers import HfArgumentParser, TrainingArguments

from hf_eff.splat.config import (
    RESET_RECOVERY_STEPS,
    TRAINER_OPTIMIZER_DEFAULTS,
    SplatTrainingArguments,
)
from hf_eff.splat.model import GaussianModel
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.trainer import SplatTrainer


@pytest.mark.parametrize("name, value, least", [
    ("reset_every", 0, 1),
    ("reset_every", -100, 1),
    ("refine_every", 0, 1),
    ("sh_degree_interval", 0, 1),
    ("refine_start_steps", -5, 0),
])
def test_step_counts_are_none_or_valid(tmp_path, name, value, least):
    # 0 used to become the scaled default (`value or default`) and negatives passed.
    with pytest.raises(ValueError, match=rf"{name} must be None \(the paper's value scaled by max_steps\) "
                                         rf"or >= {least}, got {value}"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, **{name: value})


@pytest.mark.parametrize("strategy", ["default", "g2l"])
def test_reset_every_error_names_the_way_to_turn_resets_off_and_that_way_works(tmp_path, strategy):
    with pytest.raises(ValueError, match="to turn opacity resets off, set reset_stop_fraction=0"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, strategy=strategy, reset_every=0)
    built = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000, strategy=strategy,
                                   reset_stop_fraction=0).build_strategy()
    assert not any(built.is_reset_step(step) for step in range(3001))


def reset_steps(tmp_path, max_steps, **kwargs) -> list[int]:
    strategy = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=max_steps, **kwargs).build_strategy()
    return [step for step in range(max_steps + 1) if strategy.is_reset_step(step)]


@pytest.mark.parametrize("max_steps, strategy, expected", [
    # 3DGS's every 3k of 30k, until 15k ('default') or 21k ('g2l'), scaled: the demo's and the benchmark's runs.
    (1000, "default", [100, 200, 300, 400]),
    (1000, "g2l", [100, 200, 300, 400, 500, 600]),
    (1500, "default", [150, 300, 450, 600]),
    (1500, "g2l", [150, 300, 450, 600, 750, 900]),
])
def test_runs_of_1000_steps_and_more_keep_the_paper_reset_steps(tmp_path, max_steps, strategy, expected):
    assert reset_steps(tmp_path, max_steps, strategy=strategy) == expected


@pytest.mark.parametrize("strategy", ["default", "g2l"])
@pytest.mark.parametrize("max_steps", [40, 60, 90, 120, 200, 400, 999])
def test_default_resets_leave_each_reset_time_to_recover(tmp_path, strategy, max_steps):
    # The scaled period alone reset a 40-step run every 4 steps, and a 60-step g2l run 20 steps before its end.
    steps = reset_steps(tmp_path, max_steps, strategy=strategy)
    assert all(later - earlier >= RESET_RECOVERY_STEPS for earlier, later in zip([0, *steps], steps))
    assert all(max_steps - step > 2 * RESET_RECOVERY_STEPS for step in steps)


@pytest.mark.parametrize("max_steps, strategy, expected", [
    (40, "g2l", []),
    (90, "g2l", []),  # the paper's stop alone (63) would reset at 40
    (110, "default", []),  # and here (55) at 40
    (150, "default", [40]),
    (200, "g2l", [40, 80]),  # and here (140) at 120
    (200, "default", [40, 80]),
])
def test_short_runs_reset_at_the_recovery_floor(tmp_path, max_steps, strategy, expected):
    assert reset_steps(tmp_path, max_steps, strategy=strategy) == expected


def test_explicit_reset_period_or_stop_wins_over_the_recovery_margin(tmp_path):
    assert reset_steps(tmp_path, 40, strategy="g2l", reset_every=4) == [4, 8, 12, 16, 20, 24]
    assert reset_steps(tmp_path, 40, strategy="default", reset_every=4) == [4, 8, 12, 16]
    assert reset_steps(tmp_path, 90, strategy="g2l", reset_every=40) == [40]
    assert reset_steps(tmp_path, 120, strategy="g2l", reset_stop_fraction=0.9) == [40, 80]


@pytest.mark.parametrize("option", [
    dict(learning_rate=1.0),
    dict(lr_scheduler_type="constant"),
    dict(lr_scheduler_kwargs={"min_lr": 1e-6}),
    dict(warmup_steps=10),
    dict(weight_decay=0.5),
    dict(optim="sgd"),
    dict(adam_epsilon=1e-15),
])
def test_trainer_optimizer_options_that_splat_ignores_are_refused(tmp_path, option):
    ((name, value),) = option.items()
    with pytest.raises(ValueError, match=rf"{name}={value!r} would be ignored: SplatTrainer trains one Adam per "
                                         r"Gaussian parameter with the 3DGS learning rates, set by means_lr, .*shN_lr"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, **option)


def test_trainer_flags_splat_refuses_or_requires_say_so_and_keep_trainers_defaults_and_types():
    # --help read "The initial learning rate for the optimizer" (5e-05) and showed max_steps -1 as optional.
    splat = {f.name: f for f in dataclasses.fields(SplatTrainingArguments)}
    trainer = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    splat_types, trainer_types = get_type_hints(SplatTrainingArguments), get_type_hints(TrainingArguments)
    for name in [*TRAINER_OPTIMIZER_DEFAULTS, "max_steps", "num_train_epochs"]:
        assert (splat[name].default, splat_types[name]) == (trainer[name].default, trainer_types[name]), name
    for name in TRAINER_OPTIMIZER_DEFAULTS:
        assert splat[name].metadata["help"].startswith("Not used by SplatTrainer, and refused unless left at its "
                                                       "default"), name
    assert "The logged learning_rate is the means'" in splat["learning_rate"].metadata["help"]
    assert splat["max_steps"].metadata["help"].startswith("Required to train (> 0)")
    assert splat["num_train_epochs"].metadata["help"].startswith("Not used: --max_steps")


def test_trainer_optimizer_options_at_their_defaults_are_accepted(tmp_path):
    SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, learning_rate=5e-5, lr_scheduler_type="linear",
                           lr_scheduler_kwargs={}, warmup_steps=0, weight_decay=0.0)


@pytest.mark.parametrize("option", [dict(torch_compile=True), dict(torch_compile_backend="inductor"),
                                    dict(torch_compile_mode="max-autotune")])
def test_torch_compile_is_refused_by_name_as_it_would_compile_nothing_splat_runs(tmp_path, option):
    # It was accepted and ignored: rendering calls GaussianModel.render, never the forward torch.compile wraps.
    ((name, value),) = option.items()
    with pytest.raises(ValueError, match=rf"{name}={value!r} would change nothing: torch.compile wraps the model's "
                                         rf"forward, .*; leave {name} unset"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, **option)


def test_load_best_model_at_end_compares_psnr_unless_told_otherwise(tmp_path):
    best = dict(output_dir=str(tmp_path), max_steps=10, load_best_model_at_end=True, eval_strategy="steps",
                save_strategy="steps", eval_render_images=0)
    args = SplatTrainingArguments(**best)
    assert (args.metric_for_best_model, args.greater_is_better) == ("psnr", True)
    explicit = SplatTrainingArguments(**best, metric_for_best_model="num_gaussians", greater_is_better=False)
    assert (explicit.metric_for_best_model, explicit.greater_is_better) == ("num_gaussians", False)
    assert SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10).metric_for_best_model is None
    kept_best = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, save_strategy="best", eval_strategy="steps")
    assert (kept_best.metric_for_best_model, kept_best.greater_is_better) == ("psnr", True)
    # The default names a metric the evaluation reports (Trainer's "loss" is not one).
    scene = make_procedural_scene(seed=1, num_train=2, num_test=1, width=16, height=16, num_points=50)
    xyz, rgb = scene.point_arrays()
    trainer = SplatTrainer(model=GaussianModel.from_points(xyz, rgb, sh_degree=0),
                           args=args,
                           train_dataset=scene.views["train"], eval_dataset=scene.views["test"])
    assert f"eval_{args.metric_for_best_model}" in trainer.evaluate()


def test_pruning_after_densification_also_removes_oversized_gaussians_as_the_help_says(tmp_path):
    help_text = next(f.metadata["help"] for f in dataclasses.fields(SplatTrainingArguments)
                     if f.name == "prune_stop_fraction")
    assert "oversized" in help_text and "prune_scale3d" in help_text
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=3000)
    strategy = dataclasses.replace(args.build_strategy(), global_stop_iter=0)
    step = 2800  # a refine step after densification (2500), before prune_stop_iter (3000), no reset pause
    assert strategy.refine_stop_iter < step < strategy.prune_stop_iter and step % strategy.refine_every == 0
    n = 100
    scales = torch.full((n, 3), 0.01)
    scales[0] = 0.5  # above prune_scale3d (0.1) times the scene scale (1)
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.randn(n, 3)),
        "scales": torch.nn.Parameter(scales.log()),
        "quats": torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)),
        "opacities": torch.nn.Parameter(torch.full((n,), 0.9).logit()),  # none under the adaptive opacity bar
        "sh0": torch.nn.Parameter(torch.rand(n, 1, 3)),
    })
    optimizers = {key: torch.optim.Adam([param], lr=1e-3) for key, param in params.items()}
    state = strategy.initialize_state(scene_scale=1.0)
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    means2d.grad = torch.zeros(1, n, 2)
    info = {"means2d": means2d, "radii": torch.ones(1, n, 2, dtype=torch.int32), "width": 100, "height": 100,
            "n_cameras": 1, "gaussian_ids": None}
    strategy.step_post_backward(params, optimizers, state, step=step, info=info)
    assert len(params["means"]) == n - 1
    assert params["scales"].exp().max().item() == pytest.approx(0.01)


def test_the_bare_pin_memory_flag_parses_and_pinning_is_dropped_off_cuda(tmp_path):
    parser = HfArgumentParser(SplatTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--max_steps", "5",
                                                  "--dataloader_pin_memory"])
    assert args.device.type == "cpu" and args.dataloader_pin_memory is False



def test_every_flag_help_renders_as_text():
    # An unescaped % in a help ("1% at") is read by argparse as a format code (%a): --help printed the action's dict.
    help_text = HfArgumentParser(SplatTrainingArguments).format_help()
    assert "option_strings" not in help_text
    assert "decayed exponentially to 1% at max_steps" in " ".join(help_text.split())


def test_unset_render_settings_are_the_models():
    from types import SimpleNamespace

    antialiased_on_white = SimpleNamespace(rasterize_mode="antialiased", white_background=True)
    unset = SplatTrainingArguments(output_dir="unused", max_steps=10)
    assert (unset.rasterize_mode, unset.white_background) == (None, None)
    unset.take_model_render_settings(antialiased_on_white)
    assert (unset.rasterize_mode, unset.white_background) == ("antialiased", True)
    given = SplatTrainingArguments(output_dir="unused", max_steps=10, rasterize_mode="classic", white_background=False)
    given.take_model_render_settings(antialiased_on_white)
    assert (given.rasterize_mode, given.white_background) == ("classic", False)
    # a model that records neither (a .ply's, or an older config.json's background): 3DGS's defaults
    default = SplatTrainingArguments(output_dir="unused", max_steps=10)
    default.take_model_render_settings(SimpleNamespace(white_background=None))
    assert (default.rasterize_mode, default.white_background) == ("classic", False)


def test_a_bare_white_background_flag_means_true_as_in_3dgs():
    parser = HfArgumentParser(SplatTrainingArguments)
    for flags, expected in ((["--white_background"], True), (["--white_background", "False"], False), ([], None)):
        (args,) = parser.parse_args_into_dataclasses(["--output_dir", "out", "--max_steps", "3", *flags])
        assert args.white_background is expected, flags


def test_training_without_max_steps_says_splatting_counts_iterations_and_ignores_epochs(tmp_path):
    # num_train_epochs=1 used to get only "max_steps must be > 0", as if an epoch count were one way to set the length.
    with pytest.raises(ValueError, match=r"max_steps must be > 0 to train, got -1: splatting counts optimizer "
                                         r"iterations .*num_train_epochs is not used"):
        SplatTrainingArguments(output_dir=str(tmp_path), num_train_epochs=1)


@pytest.mark.parametrize("name", ["opacity_reg", "scale_reg"])
def test_gaussian_regularisers_are_off_by_default_and_not_negative(tmp_path, name):
    assert getattr(SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5), name) == 0.0
    with pytest.raises(ValueError, match=rf"SplatTrainingArguments.{name} must be >= 0 \(0: off\), got -0.1"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5, **{name: -0.1})


def test_random_bkgd_with_a_white_background_is_left_to_the_trainer(tmp_path):
    # Views kept with their alpha train on a random background under white_background (which then fixes evaluation's
    # background); only SplatTrainer knows the views, and refuses the pair for views without alpha
    # (tests/splat/test_transparent_scenes.py).
    assert SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5).random_bkgd is False
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=5, random_bkgd=True, white_background=True)
    assert args.random_bkgd and args.white_background


@pytest.mark.parametrize("name, value, message", [
    ("means_lr", -1.0, r"means_lr must be >= 0 \(0 freezes those parameters\), got -1.0"),
    ("scales_lr", -1.0, r"scales_lr must be >= 0 \(0 freezes those parameters\), got -1.0"),
    ("quats_lr", -1e-3, r"quats_lr must be >= 0"),
    ("opacities_lr", -5.0, r"opacities_lr must be >= 0 \(0 freezes those parameters\), got -5.0"),
    ("sh0_lr", -1.0, r"sh0_lr must be >= 0"),
    ("shN_lr", -1.0, r"shN_lr must be >= 0"),
    ("ssim_weight", 2.0, r"ssim_weight must be in \[0, 1\] .*got 2.0"),
    ("ssim_weight", -1.0, r"ssim_weight must be in \[0, 1\] .*got -1.0"),
    ("prune_opa_max", 2.0, r"prune_opa_max must be in \[0, 1\] \(an opacity\), got 2.0"),
    ("prune_ratio", 1.0, r"prune_ratio must be in \[0, 1\) \(the fraction of opacities under the adaptive "
                         r"threshold\), got 1.0"),
])
def test_out_of_range_rates_weights_and_opacity_bars_are_refused_by_name(tmp_path, name, value, message):
    # each was accepted and trained on (a negative rate climbs the loss; an opacity bar above 1 prunes by rank alone)
    with pytest.raises(ValueError, match=rf"SplatTrainingArguments\.{message}"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, **{name: value})


@pytest.mark.parametrize("name", ["means_lr", "opacities_lr", "shN_lr", "grow_grad2d", "clone_grad2d_factor",
                                  "opacity_reg", "prune_ratio"])
def test_a_nan_rate_threshold_or_weight_is_refused_by_name(tmp_path, name):
    # `nan < 0` is False: a NaN learning rate or grow_grad2d used to pass the range checks
    with pytest.raises(ValueError, match=rf"SplatTrainingArguments\.{name} must be .*got nan"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, **{name: math.nan})


def test_learning_rates_of_zero_and_the_range_ends_are_accepted(tmp_path):
    SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, means_lr=0.0, ssim_weight=1.0, prune_opa_max=1.0)
    SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, ssim_weight=0.0, prune_opa_max=0.0, prune_ratio=0.0)


@pytest.mark.parametrize("value", [-1.0, 0.0])
def test_a_non_positive_grow_grad2d_is_named_not_the_clone_threshold_derived_from_it(tmp_path, value):
    with pytest.raises(ValueError, match=rf"SplatTrainingArguments\.grow_grad2d must be > 0, got {value} \(g2l's "
                                         r"clone threshold, clone_grad2d_factor \* grow_grad2d, is derived from it\)"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, grow_grad2d=value)
