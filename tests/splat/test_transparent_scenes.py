"""Views kept with their alpha (views_dataset(..., background=None)): stored, converted, and composited by
SplatTrainer onto the colour it renders onto (random under random_bkgd, else the fixed background)."""

import io
import json
import runpy

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict, load_from_disk
from PIL import Image

from hf_eff.splat.coarse_to_fine import EnergyCoarseToFine, energy_schedule
from hf_eff.splat.config import SplatTrainingArguments
from hf_eff.splat.converters import scene_from_nerf_synthetic, write_colmap, write_nerf_synthetic
from hf_eff.splat.model import GaussianModel
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.scene import (
    ALPHA_IMAGE_FEATURE,
    VIEW_FEATURES,
    Scene,
    images_to_float,
    keeps_alpha,
    load_scene,
    scene_views_images,
    views_dataset,
)
from hf_eff.splat.trainer import SceneViews, SplatTrainer

SIZE = 16
_rows, _columns = np.mgrid[:SIZE, :SIZE]
# Opaque in the middle, fading to transparent (0) in the corners.
RAMP = np.clip(np.round(255 * (1.2 - np.hypot(_rows - 7.5, _columns - 7.5) / 8)), 0, 255).astype(np.uint8)
CLEAR = np.zeros((SIZE, SIZE), dtype=np.uint8)


@pytest.fixture(scope="module")
def procedural():
    return make_procedural_scene(seed=3, num_train=3, num_test=2, width=SIZE, height=SIZE, num_points=200,
                                 supersample=1)


def rgba_images(split, alpha, seed=0, hidden=None):
    """The split's images with ``alpha``; the colours of its transparent pixels (or of ``hidden`` [H, W] bool)
    replaced by random ones, which nothing may train on."""
    rng = np.random.default_rng(seed)
    hidden = alpha == 0 if hidden is None else hidden
    images = []
    for row in split:
        rgb = np.asarray(row["image"]).copy()
        rgb[hidden] = rng.integers(0, 256, size=(int(hidden.sum()), 3), dtype=np.uint8)
        images.append(np.dstack([rgb, alpha]))
    return images


def views(split, images, **kwargs):
    table = split.with_format("numpy")
    return views_dataset(images, table["K"], table["world_to_camera"], **kwargs)


def kept_and_composited(split, alpha=RAMP, background=(0.0, 0.0, 0.0)):
    """The split with ``alpha`` kept, and the same images composited onto ``background``."""
    images = rgba_images(split, alpha)
    return views(split, images, background=None), views(split, images, background=background)


def transparent_scene(procedural, alpha=RAMP):
    train, _ = kept_and_composited(procedural.views["train"], alpha)
    test, _ = kept_and_composited(procedural.views["test"], alpha)
    return Scene.from_views(DatasetDict({"train": train, "test": test}), procedural.points)


def make_trainer(train, test, output_dir, opacity=None, **overrides):
    torch.manual_seed(0)
    xyz, rgb = make_procedural_scene(seed=3, num_train=1, num_test=0, width=8, height=8,
                                     num_points=200).point_arrays()
    model = GaussianModel.from_points(xyz, rgb, sh_degree=0)
    if opacity is not None:
        with torch.no_grad():
            model.splats["opacities"].fill_(opacity)
    settings = dict(output_dir=str(output_dir), max_steps=4, strategy="default", refine_every=2,
                    refine_start_steps=1, reset_every=1000, seed=0, disable_tqdm=True, logging_steps=1,
                    eval_render_images=0, save_strategy="no", report_to=[])
    settings.update(overrides)
    return SplatTrainer(model=model, args=SplatTrainingArguments(**settings), train_dataset=train,
                        eval_dataset=test)


def first_view_loss(trainer, seed=0):
    """compute_loss on the first training view, and its gradients."""
    inputs = {key: value[None] for key, value in trainer.train_dataset[0].items()}
    trainer.model.zero_grad()
    torch.manual_seed(seed)
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.detach(), {key: param.grad.clone() for key, param in trainer.model.splats.items()}


def assert_same_first_view_loss(trainer, other, seeds=(0, 1)):
    """The two trainers' first-view loss and gradients are equal to the bit, for each seed of the random background."""
    for seed in seeds:
        loss, grads = first_view_loss(trainer, seed)
        other_loss, other_grads = first_view_loss(other, seed)
        assert loss.item() == other_loss.item()
        for key in grads:
            torch.testing.assert_close(grads[key], other_grads[key], rtol=0, atol=0)


def over(images, background):
    """RGBA uint8 images composited onto ``background`` as floats in [0, 1]."""
    rgba = np.stack(images).astype(np.float64) / 255
    return rgba[..., :3] * rgba[..., 3:] + np.asarray(background) * (1 - rgba[..., 3:])


# ---------------------------------------------------------------- storage


def test_background_none_keeps_the_alpha_and_every_view_of_the_split_decodes_as_rgba(procedural):
    split = procedural.views["train"]
    images = rgba_images(split, RAMP)
    kept, composited = views(split, images, background=None), views(split, images)
    assert keeps_alpha(kept) and kept.features["image"] == ALPHA_IMAGE_FEATURE
    assert not keeps_alpha(composited)
    # the stored RGBA, hidden colours included (what training does with them is the trainer's)
    np.testing.assert_array_equal(scene_views_images(kept).numpy(), np.stack(images))
    assert scene_views_images(composited).shape[-1] == 3
    # a split mixing transparent and opaque views: the RGB ones (an encoded JPEG, kept as it is) read as opaque
    jpeg = io.BytesIO()
    Image.fromarray(np.asarray(split[0]["image"])).save(jpeg, format="JPEG")
    mixed = views(split, [images[0], jpeg.getvalue(), np.asarray(split[2]["image"])], background=None)
    assert mixed.with_format("arrow")[1:2].column("image")[0]["bytes"].as_py() == jpeg.getvalue()
    decoded = scene_views_images(mixed).numpy()
    np.testing.assert_array_equal(decoded[0], images[0])
    assert (decoded[1:, ..., 3] == 255).all()
    np.testing.assert_array_equal(decoded[2, ..., :3], np.asarray(split[2]["image"]))


CHECK_HUB_SCRIPT = """
import json, sys
from hf_eff.splat.scene import keeps_alpha, load_scene
folder, repo_id = sys.argv[1], sys.argv[2]
saved = load_scene(folder)
saved.push_to_hub(repo_id)
pulled = load_scene(repo_id)
print("PULLED " + json.dumps({"same": pulled == saved,
                              "keeps_alpha": {split: keeps_alpha(views) for split, views in pulled.views.items()}}))
"""


def test_kept_alpha_survives_save_save_to_disk_and_the_hub(procedural, tmp_path, local_hub):
    scene = transparent_scene(procedural)
    loaded = load_scene(scene.save(tmp_path / "parquet"))
    assert loaded == scene  # the features (Image(mode="RGBA")) and the RGBA bytes
    assert all(keeps_alpha(split) for split in loaded.views.values())
    np.testing.assert_array_equal(scene_views_images(loaded.views["test"]), scene_views_images(scene.views["test"]))
    scene.views.save_to_disk(str(tmp_path / "disk" / "views"))
    assert load_scene(tmp_path / "disk").views["train"].features["image"] == ALPHA_IMAGE_FEATURE
    assert load_from_disk(str(tmp_path / "disk" / "views"))["train"].features == scene.views["train"].features
    repo_id = local_hub.repo_id("transparent-scene")
    process = local_hub.run_code(CHECK_HUB_SCRIPT, str(tmp_path / "parquet"), repo_id)
    printed = [line for line in process.stdout.splitlines() if line.startswith("PULLED ")]
    assert process.returncode == 0 and printed, process.stderr[-4000:]
    assert json.loads(printed[0].removeprefix("PULLED ")) == {"same": True,
                                                              "keeps_alpha": {"train": True, "test": True}}


def test_nerf_and_colmap_folders_keep_the_alpha_with_background_none(procedural, tmp_path):
    scene = transparent_scene(procedural)
    stored = scene_views_images(scene.views["train"]).numpy()
    nerf = write_nerf_synthetic(scene, tmp_path / "nerf")
    with Image.open(nerf / "train" / "r_0.png") as written:
        assert written.mode == "RGBA"  # as RGB, the hidden colours would show
    for converted in (scene_from_nerf_synthetic(nerf, background=None), load_scene(nerf, background=None)):
        assert keeps_alpha(converted.views["train"]) and keeps_alpha(converted.views["test"])
        np.testing.assert_array_equal(scene_views_images(converted.views["train"]).numpy(), stored)
    white = load_scene(nerf, background=(1.0, 1.0, 1.0))
    assert not keeps_alpha(white.views["train"])
    np.testing.assert_allclose(scene_views_images(white.views["train"]).numpy() / 255,
                               over(list(stored), (1.0, 1.0, 1.0)), atol=0.5 / 255 + 1e-9)
    pytest.importorskip("pycolmap")
    colmap = write_colmap(Scene.from_views(DatasetDict({"train": scene.views["train"]}), scene.points),
                          tmp_path / "colmap")
    from_colmap = load_scene(colmap, background=None, test_every=0)
    assert keeps_alpha(from_colmap.views["train"])
    np.testing.assert_array_equal(scene_views_images(from_colmap.views["train"]).numpy(), stored)


def test_the_refusals_name_what_keeps_the_alpha(procedural, tmp_path):
    kept, composited = kept_and_composited(procedural.views["train"])
    # one scene, one image feature: a split with alpha beside one without
    with pytest.raises(ValueError, match=r"scene views: split\(s\) \['test'\] keep their alpha .* but \['train'\] do "
                                         r"not: build every split alike, with background=None"):
        Scene.from_views(DatasetDict({"train": composited, "test": kept}))
    # RGBA images in a split of RGB images (built without views_dataset): their hidden colours would train
    buffer = io.BytesIO()
    Image.fromarray(rgba_images(procedural.views["train"], RAMP)[0]).save(buffer, format="PNG")
    row = procedural.views["train"].with_format("numpy")[0]
    by_hand = Dataset.from_dict({"image": [{"bytes": buffer.getvalue(), "path": None}], "K": [row["K"]],
                                 "world_to_camera": [row["world_to_camera"]], "width": [SIZE], "height": [SIZE]},
                                features=VIEW_FEATURES)
    with pytest.raises(ValueError, match=r"scene view 0 \(train_dataset\): image has transparent pixels .* or with "
                                         r"background=None, which keeps the alpha"):
        SceneViews(by_hand)
    # random_bkgd with white_background: refused where the views' transparency is white already
    with pytest.raises(ValueError, match=r"random_bkgd with white_background, and train_dataset keeps no alpha: "
                                         r".*keep the alpha \(views_dataset\(\.\.\., background=None\)"):
        make_trainer(composited, None, tmp_path / "rgb", random_bkgd=True, white_background=True)
    trainer = make_trainer(kept, None, tmp_path / "rgba", random_bkgd=True, white_background=True)
    assert trainer.args.random_bkgd and trainer.args.white_background


def test_random_bkgd_on_white_is_refused_before_any_image_is_decoded_and_names_the_model_s_white(
        procedural, tmp_path, monkeypatch):
    import hf_eff.splat.trainer as trainer_module

    _, composited = kept_and_composited(procedural.views["train"])

    def decoding(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(trainer_module, "scene_views_images", decoding)
    with pytest.raises(ValueError, match=r"random_bkgd with white_background") as refused:
        make_trainer(composited, composited, tmp_path / "given", random_bkgd=True, white_background=True)
    assert "the model's" not in str(refused.value)  # the white was the arguments'
    # the model's white, filled into the arguments before the trainer (as the example does): the hint names it
    xyz, rgb = procedural.point_arrays()
    model = GaussianModel.from_points(xyz, rgb, sh_degree=0)
    model.white_background = True
    args = SplatTrainingArguments(output_dir=str(tmp_path / "model"), max_steps=4, strategy="default",
                                  random_bkgd=True, report_to=[])
    args.take_model_render_settings(model)
    with pytest.raises(ValueError, match=r"keeps no alpha: .*\(white_background is the model's: it renders onto "
                                         r"white; pass white_background=False to train it onto black\)"):
        SplatTrainer(model=model, args=args, train_dataset=composited)


# ---------------------------------------------------------------- training and evaluation


def test_opaque_views_kept_with_their_alpha_train_exactly_as_plain_views_and_hold_no_alpha(procedural, tmp_path):
    # an opaque capture kept with its alpha (a COLMAP folder the example loads under --random_bkgd)
    opaque = np.full((SIZE, SIZE), 255, dtype=np.uint8)
    kept, plain = kept_and_composited(procedural.views["train"], alpha=opaque)
    assert keeps_alpha(kept) and not keeps_alpha(plain)
    trainer = make_trainer(kept, kept, tmp_path / "kept", random_bkgd=True)
    plain_trainer = make_trainer(plain, plain, tmp_path / "plain", random_bkgd=True)
    for views in (trainer.train_dataset, trainer.eval_dataset):
        assert views.keeps_alpha and views.alphas is None and "alpha" not in views[0]
        torch.testing.assert_close(views.images, plain_trainer.train_dataset.images, rtol=0, atol=0)
    assert_same_first_view_loss(trainer, plain_trainer)
    # stored with alpha, they are not refused with white_background: nothing in them was composited onto white
    assert make_trainer(kept, None, tmp_path / "white", random_bkgd=True, white_background=True).args.random_bkgd


def test_a_kept_alpha_is_split_in_place_from_the_decoded_stack(procedural):
    kept, on_black = kept_and_composited(procedural.views["train"])
    views = SceneViews(kept)
    # colour and alpha: views of one RGBA stack of 4 bytes a pixel
    assert views.images.untyped_storage().data_ptr() == views.alphas.untyped_storage().data_ptr()
    assert views.images.untyped_storage().nbytes() == len(views) * SIZE * SIZE * 4
    np.testing.assert_array_equal(views.alphas.numpy(), np.stack([RAMP] * len(views)))
    # the colour over black, as views_dataset composites onto black
    torch.testing.assert_close(views.images, SceneViews(on_black).images, rtol=0, atol=0)


@pytest.mark.parametrize("settings", [dict(white_background=True), dict(white_background=True, random_bkgd=True),
                                      dict()])
def test_the_energy_schedule_measures_a_kept_alpha_on_the_fixed_background(procedural, tmp_path, settings):
    kept, on_black = kept_and_composited(procedural.views["train"])
    trainer = make_trainer(kept, None, tmp_path / "g2l", strategy="g2l", max_steps=30_000, **settings)
    views = trainer.train_dataset
    background = 1.0 if settings.get("white_background") else 0.0
    # the views as evaluation sees them (and as training does without random_bkgd): onto the fixed background
    seen = images_to_float(views.images) + background * (1 - images_to_float(views.alphas)[..., None])
    thresholds = trainer.coarse_to_fine.thresholds
    expected = energy_schedule(seen, densify_steps=thresholds[0], num_levels=trainer.args.c2f_levels)
    assert thresholds == expected
    assert trainer.strategy.global_stop_iter == expected[1]  # G2L's T_2
    # composited one chunk at a time: the same schedule
    assert energy_schedule(views.images, thresholds[0], trainer.args.c2f_levels, chunk_size=1, alphas=views.alphas,
                           background=(background,) * 3) == expected
    over_black = EnergyCoarseToFine.from_images(SceneViews(on_black).images, thresholds[0],
                                                trainer.args.c2f_levels).thresholds
    assert (thresholds == over_black) == (background == 0.0)


@pytest.mark.parametrize("settings", [dict(random_bkgd=True), dict(random_bkgd=True, white_background=True),
                                      dict(white_background=True), dict()])
def test_a_clear_view_matches_an_empty_render_on_the_background_of_each_step(procedural, tmp_path, settings):
    # Nothing rendered and nothing seen: the render is the background, and so is a target composited onto it.
    kept, composited = kept_and_composited(procedural.views["train"], alpha=CLEAR)
    trainer = make_trainer(kept, None, tmp_path / "kept", opacity=-30.0, **settings)
    for seed in (0, 1):
        loss, _ = first_view_loss(trainer, seed)
        assert loss.item() < 1e-5
    if settings.get("random_bkgd"):
        # onto a fixed colour instead, the target would differ from each step's render
        baked = make_trainer(composited, None, tmp_path / "composited", opacity=-30.0, random_bkgd=True)
        assert first_view_loss(baked)[0].item() > 0.05


def test_a_kept_alpha_trains_as_the_views_composited_onto_the_fixed_background(procedural, tmp_path):
    kept, on_black = kept_and_composited(procedural.views["train"])
    trainer = make_trainer(kept, None, tmp_path / "kept")
    # the colour over black rounds as compositing onto black does: the same loss and gradients, to the bit
    assert_same_first_view_loss(trainer, make_trainer(on_black, None, tmp_path / "black"), seeds=(0,))
    loss, _ = first_view_loss(trainer)
    _, on_white = kept_and_composited(procedural.views["train"], background=(1.0, 1.0, 1.0))
    white_loss, _ = first_view_loss(make_trainer(kept, None, tmp_path / "kept-white", white_background=True))
    composited_loss, _ = first_view_loss(make_trainer(on_white, None, tmp_path / "white", white_background=True))
    assert white_loss.item() == pytest.approx(composited_loss.item(), abs=2e-3)  # rounding of the composite
    assert white_loss.item() != pytest.approx(loss.item(), abs=1e-2)


def test_evaluation_and_predict_composite_onto_the_fixed_background(procedural, tmp_path):
    train, _ = kept_and_composited(procedural.views["train"])
    test_images = rgba_images(procedural.views["test"], RAMP, seed=1)
    test = views(procedural.views["test"], test_images, background=None)
    random = make_trainer(train, test, tmp_path / "random", random_bkgd=True, white_background=True)
    fixed = make_trainer(train, test, tmp_path / "fixed", white_background=True)
    assert random.evaluate()["eval_psnr"] == fixed.evaluate()["eval_psnr"]
    predicted = random.predict(test)
    np.testing.assert_allclose(predicted.label_ids, over(test_images, (1.0, 1.0, 1.0)), atol=0.5 / 255 + 1e-6)
    on_white = views(procedural.views["test"], test_images, background=(1.0, 1.0, 1.0))
    assert predicted.metrics["test_psnr"] == pytest.approx(fixed.predict(on_white).metrics["test_psnr"], abs=0.05)


def test_the_example_s_preview_shows_the_target_as_evaluation_composites_it(procedural, tmp_path):
    from tests.splat.test_example import SCRIPT

    save_preview = runpy.run_path(str(SCRIPT))["save_preview"]
    train, _ = kept_and_composited(procedural.views["train"])
    test_images = rgba_images(procedural.views["test"], RAMP, seed=1)
    test = views(procedural.views["test"], test_images, background=None)
    trainer = make_trainer(train, test, tmp_path / "run", random_bkgd=True, white_background=True)
    save_preview(trainer, tmp_path / "preview.png")
    with Image.open(tmp_path / "preview.png") as preview:
        shown = np.asarray(preview)
    assert shown.shape == (SIZE, 2 * SIZE, 3)
    # render | target: the first test view over white, the fixed background evaluation composites it onto
    np.testing.assert_allclose(shown[:, SIZE:] / 255, over(test_images[:1], (1.0, 1.0, 1.0))[0], atol=1 / 255 + 1e-6)


def test_a_masked_pixel_is_ignored_whatever_its_alpha(procedural, tmp_path):
    ignored = np.zeros((SIZE, SIZE), dtype=bool)
    ignored[:, : SIZE // 2] = True
    split = procedural.views["train"]
    trained_alpha = np.where(ignored, 0, RAMP).astype(np.uint8)
    opaque_alpha = np.where(ignored, 255, RAMP).astype(np.uint8)
    masks = [~ignored] * len(split)
    clear = views(split, rgba_images(split, trained_alpha, seed=1, hidden=ignored | (RAMP == 0)), background=None,
                  masks=masks)
    painted = views(split, rgba_images(split, opaque_alpha, seed=2, hidden=ignored | (RAMP == 0)), background=None,
                    masks=masks)
    kept = SceneViews(clear)
    assert (kept[0]["alpha"][ignored] == 1).all() and (kept[0]["image"][ignored] == 0).all()
    first, second = (make_trainer(split, split, tmp_path / name, random_bkgd=True)
                     for name, split in (("clear", clear), ("painted", painted)))
    assert_same_first_view_loss(first, second)
    assert first.evaluate()["eval_psnr"] == second.evaluate()["eval_psnr"]


# ---------------------------------------------------------------- the example


def test_the_example_keeps_a_converted_folders_alpha_under_random_bkgd(procedural, tmp_path, monkeypatch):
    import hf_eff.splat.scene as scene_module
    from tests.splat.test_example import run_example

    nerf = write_nerf_synthetic(transparent_scene(procedural), tmp_path / "nerf")
    loaded = []
    load_scene_function = scene_module.load_scene

    def recording_load_scene(*args, **kwargs):
        loaded.append(load_scene_function(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(scene_module, "load_scene", recording_load_scene)
    flags = ("--scene", str(nerf), "--max_steps", "2", "--render_trajectory", "none", "--report_to", "none",
             "--strategy", "default")
    # white_background with random_bkgd: the trainer refuses it for views whose transparency is baked in
    run_example(monkeypatch, *flags, "--random_bkgd", "True", "--white_background", "True",
                "--output_dir", str(tmp_path / "random"))
    assert keeps_alpha(loaded[-1].views["train"]) and keeps_alpha(loaded[-1].views["test"])
    assert (tmp_path / "random" / "model.safetensors").is_file()
    run_example(monkeypatch, *flags, "--output_dir", str(tmp_path / "fixed"))
    assert not keeps_alpha(loaded[-1].views["train"])
