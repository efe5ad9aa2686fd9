"""gsplat's rasterize_mode ("classic" / "antialiased") through rasterize, GaussianModel and SplatTrainer."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

import hf_eff.splat.rendering as rendering
from hf_eff.splat import (
    GaussianModel,
    SplatTrainer,
    SplatTrainingArguments,
    make_procedural_scene,
    render_trajectory,
)
from hf_eff.splat.rendering import rasterize
from hf_eff.splat.scene import scene_views_to_tensors

SIZE = 16


def one_gaussian(scale=0.1, opacity=0.8, depth=4.0, focal=20.0):
    """An isotropic Gaussian on the optical axis of a pinhole camera: its projected 2D covariance is
    (focal * scale / depth)^2 I, centred on the image centre (a pixel corner)."""
    means = torch.tensor([[0.0, 0.0, depth]])
    quats = torch.tensor([[0.3, -0.5, 0.2, 0.7]])  # any rotation: the Gaussian is isotropic
    scales = torch.full((1, 3), scale)
    opacities = torch.tensor([opacity])
    colors = torch.tensor([[1.0, 0.5, 0.25]])
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[focal, 0.0, SIZE / 2], [0.0, focal, SIZE / 2], [0.0, 0.0, 1.0]]])
    return means, quats, scales, opacities, colors, viewmats, Ks


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_a_single_gaussians_pixels_follow_gsplats_formula(mode):
    scale, opacity, depth, focal = 0.1, 0.8, 4.0, 20.0
    colors, alphas, _ = rasterize(*one_gaussian(scale, opacity, depth, focal), SIZE, SIZE, rasterize_mode=mode)
    # By hand (gsplat's rasterization docstring): both modes add eps2d = 0.3 to the 2D covariance;
    # antialiased also scales the opacity by sqrt(det(cov) / det(cov + 0.3 I)).
    variance = (focal * scale / depth) ** 2  # 0.25 pixel^2
    compensation = math.sqrt(variance**2 / (variance + 0.3) ** 2) if mode == "antialiased" else 1.0
    expected = np.zeros((SIZE, SIZE))
    for row in range(SIZE):
        for column in range(SIZE):
            dx, dy = column + 0.5 - SIZE / 2, row + 0.5 - SIZE / 2  # pixel centres at +0.5
            alpha = opacity * compensation * math.exp(-0.5 * (dx * dx + dy * dy) / (variance + 0.3))
            expected[row, column] = alpha if alpha >= 1 / 255 else 0.0
    assert expected[SIZE // 2, SIZE // 2] == pytest.approx(0.8 * compensation * math.exp(-0.25 / 0.55))
    np.testing.assert_allclose(alphas[0, ..., 0].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(colors[0].numpy(), expected[..., None] * np.array([1.0, 0.5, 0.25]), atol=1e-6)


def test_unknown_modes_are_refused_by_name(tmp_path):
    # gsplat itself renders any other string as "classic"
    with pytest.raises(ValueError, match="rasterize_mode must be 'classic' or 'antialiased', got 'antialias'"):
        rasterize(*one_gaussian(), SIZE, SIZE, rasterize_mode="antialias")
    with pytest.raises(ValueError, match="rasterize_mode must be 'classic' or 'antialiased', got 'mip'"):
        GaussianModel(sh_degree=0, rasterize_mode="mip")
    with pytest.raises(ValueError, match="SplatTrainingArguments.rasterize_mode must be 'classic' or 'antialiased'"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=1, rasterize_mode="Antialiased")


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=2, num_train=3, num_test=1, width=SIZE, height=SIZE, num_points=200)


def trained_model(scene):
    torch.manual_seed(0)
    return GaussianModel.from_points(*scene.point_arrays(), sh_degree=1)


def test_a_model_renders_and_saves_its_mode(scene, tmp_path):
    model = trained_model(scene)
    _, viewmats, Ks = scene_views_to_tensors(scene.views["test"])
    classic = model.render(viewmats, Ks, SIZE, SIZE)[0]
    antialiased = model.render(viewmats, Ks, SIZE, SIZE, rasterize_mode="antialiased")[0]
    assert (classic - antialiased).abs().max() > 1e-2

    model.rasterize_mode = "antialiased"
    torch.testing.assert_close(model.render(viewmats, Ks, SIZE, SIZE)[0], antialiased)
    torch.testing.assert_close(model.render(viewmats, Ks, SIZE, SIZE, rasterize_mode="classic")[0], classic)
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["rasterize_mode"] == "antialiased"
    loaded = GaussianModel.from_pretrained(tmp_path / "saved")
    assert loaded.rasterize_mode == "antialiased"
    torch.testing.assert_close(loaded.render(viewmats, Ks, SIZE, SIZE)[0], antialiased)
    # render_trajectory renders with the model's render, so in its mode
    pose = torch.linalg.inv(viewmats[0]).numpy()
    frame = next(iter(render_trajectory(loaded, pose[None], Ks[0], SIZE, SIZE)))
    np.testing.assert_array_equal(frame, (antialiased[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    assert GaussianModel.from_pretrained(tmp_path / "saved", rasterize_mode="classic").rasterize_mode == "classic"

    # the viewers' formats cannot carry the mode: said when they are written
    for name in ("splats.ply", "splats.splat", "splats.compressed.ply"):
        with pytest.warns(UserWarning, match=f"{name} cannot record rasterize_mode='antialiased'"):
            loaded.export(tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianModel.from_pretrained(tmp_path / "saved", rasterize_mode="classic").save_ply(tmp_path / "classic.ply")

    # a model saved before the field existed renders as it was trained then: classic
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    del config["rasterize_mode"]
    (tmp_path / "saved" / "config.json").write_text(json.dumps(config))
    assert GaussianModel.from_pretrained(tmp_path / "saved").rasterize_mode == "classic"


@pytest.fixture
def rendered_modes(monkeypatch):
    """The rasterize_mode of every render, in order."""
    modes = []

    def recording_rasterize(*args, **kwargs):
        modes.append(kwargs.get("rasterize_mode"))
        return rasterize(*args, **kwargs)

    monkeypatch.setattr(rendering, "rasterize", recording_rasterize)
    return modes


def test_the_trainer_renders_saves_and_names_its_mode(scene, tmp_path, rendered_modes, caplog):
    model = trained_model(scene)
    args = SplatTrainingArguments(output_dir=str(tmp_path / "run"), max_steps=3, refine_start_steps=1, refine_every=1,
                                  rasterize_mode="antialiased", disable_tqdm=True, report_to=[], eval_render_images=1)
    trainer = SplatTrainer(model=model, args=args, train_dataset=scene.views["train"],
                           eval_dataset=scene.views["test"])
    assert model.rasterize_mode == "antialiased"
    trainer.train()
    trainer.evaluate()
    assert len(rendered_modes) == 4 and set(rendered_modes) == {"antialiased"}  # 3 steps, 1 test view
    trainer.save_model()
    assert GaussianModel.from_pretrained(tmp_path / "run").rasterize_mode == "antialiased"

    # unset, the mode is the model's
    unset = SplatTrainingArguments(output_dir=str(tmp_path / "kept"), max_steps=1, disable_tqdm=True, report_to=[])
    assert SplatTrainer(model=model, args=unset, train_dataset=scene.views["train"]).args.rasterize_mode == "antialiased"
    # training an antialiased model classic changes its mode: said, not silent
    args = SplatTrainingArguments(output_dir=str(tmp_path / "again"), max_steps=1, disable_tqdm=True, report_to=[],
                                  rasterize_mode="classic")
    from transformers.utils import logging

    logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            SplatTrainer(model=model, args=args, train_dataset=scene.views["train"])
    finally:
        logging.disable_propagation()
    assert "the model renders 'antialiased'" in caplog.text and "pass rasterize_mode='antialiased'" in caplog.text
    assert model.rasterize_mode == "classic"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_gaussians_render_in_float32(scene, dtype):
    model = trained_model(scene)
    _, viewmats, Ks = scene_views_to_tensors(scene.views["test"])
    reference = model.render(viewmats, Ks, SIZE, SIZE)[0]
    model.to(dtype)  # its matrix inverse, among others, has no half-precision kernel on the CPU
    colors, alphas, _ = model.render(viewmats, Ks, SIZE, SIZE)
    assert colors.dtype == alphas.dtype == dtype
    torch.testing.assert_close(colors.float(), reference, atol=2 / 255, rtol=0)
    # training them is refused: Adam's steps would round away in the parameters
    args = SplatTrainingArguments(output_dir="unused", max_steps=1, report_to=[])
    with pytest.raises(ValueError, match=f"the Gaussians are {str(dtype)}, .* train them in float32"):
        SplatTrainer(model=model, args=args, train_dataset=scene.views["train"])
    # the rasterizer itself: the same pixels as from float32 copies of the same values
    inputs = [tensor.to(dtype) for tensor in one_gaussian()]
    for mode in ("classic", "antialiased"):
        half = rasterize(*inputs, SIZE, SIZE, rasterize_mode=mode)
        full = rasterize(*(tensor.float() for tensor in inputs), SIZE, SIZE, rasterize_mode=mode)
        for got, expected in zip(half[:2], full[:2]):
            torch.testing.assert_close(got, expected.to(dtype), atol=0, rtol=0)


def test_the_example_takes_rasterize_mode_from_the_training_arguments(tmp_path, monkeypatch, rendered_modes):
    from tests.splat.test_example import run_example

    with pytest.warns(UserWarning, match="splats.ply cannot record rasterize_mode='antialiased'"):
        run_example(monkeypatch, "--rasterize_mode", "antialiased", "--max_steps", "2", "--trajectory_frames", "2",
                    "--report_to", "none", "--output_dir", str(tmp_path / "run"))
    # 2 steps, the evaluation, the preview and the trajectory's one batch of 2 frames
    assert len(rendered_modes) >= 5 and set(rendered_modes) == {"antialiased"}
    assert GaussianModel.from_pretrained(tmp_path / "run").rasterize_mode == "antialiased"
