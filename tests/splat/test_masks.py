"""Per-pixel masks of a scene's views: stored, converted from nerfstudio, trained and measured."""

import json

import numpy as np
import pytest
import torch
from datasets import DatasetDict
from PIL import Image

from hf_eff.splat.coarse_to_fine import downscale_images
from hf_eff.splat.config import SplatTrainingArguments
from hf_eff.splat.converters import scene_from_nerf_synthetic, write_colmap, write_nerf_synthetic
from hf_eff.splat.losses import photometric_loss, psnr, ssim
from hf_eff.splat.model import GaussianModel
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.scene import Scene, load_scene, validate_views_split, views_dataset
from hf_eff.splat.trainer import SceneViews, SplatTrainer

SIZE = 32


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=1, num_train=4, num_test=2, width=SIZE, height=SIZE, num_points=300)


def left_half_ignored(count):
    mask = np.ones((SIZE, SIZE), dtype=bool)
    mask[:, : SIZE // 2] = False
    return [mask] * count


def rebuilt(split, masks=None, scribble=None):
    """The split rebuilt with views_dataset, with masks, and with ``scribble`` (a [H, W] bool of
    pixels) painted over in random colours."""
    rng = np.random.default_rng(7)
    images = []
    for row in split:
        pixels = np.asarray(row["image"]).copy()
        if scribble is not None:
            pixels[scribble] = rng.integers(0, 256, size=(int(scribble.sum()), 3), dtype=np.uint8)
        images.append(pixels)
    table = split.with_format("numpy")
    return views_dataset(images, table["K"], table["world_to_camera"], masks=masks)


def make_trainer(train, test, output_dir, trainer_class=SplatTrainer, **overrides):
    torch.manual_seed(0)
    xyz, rgb = make_procedural_scene(seed=1, num_train=1, num_test=0, width=8, height=8,
                                     num_points=300).point_arrays()
    model = GaussianModel.from_points(xyz, rgb, sh_degree=1)
    settings = dict(output_dir=str(output_dir), max_steps=6, refine_every=2, refine_start_steps=1,
                    reset_every=1000, seed=0, disable_tqdm=True, logging_steps=1, eval_render_images=0,
                    save_strategy="no", report_to=[])
    settings.update(overrides)
    return trainer_class(model=model, args=SplatTrainingArguments(**settings), train_dataset=train,
                         eval_dataset=test)


def loss_and_gradients(trainer):
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.zero_grad()
    loss, outputs = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    renders = outputs["renders"]
    renders.retain_grad()
    loss.backward()
    if "mask" in batch:  # the render's ignored pixels get no gradient: they are not fitted (to black or anything)
        weights = downscale_images(batch["mask"].float(), trainer.resolution_factor(0)).expand_as(renders)
        assert (weights == 0).any() and renders.grad[weights == 0].abs().max() == 0
        assert renders.grad[weights > 0].abs().max() > 0
    gradients = {key: param.grad.clone() for key, param in trainer.splats.items()}
    # what densification accumulates (gsplat's grad2d): the screen-space means' gradient
    gradients["means2d"] = trainer._last_info["means2d"].grad.clone()
    return loss.detach(), gradients


@pytest.mark.parametrize("c2f", [False, True], ids=["full-resolution", "coarse-to-fine"])
def test_a_masked_regions_content_changes_neither_the_loss_nor_the_gradients(scene, tmp_path, c2f):
    ignored = ~left_half_ignored(1)[0]
    masks = left_half_ignored(len(scene.views["train"]))

    def run(train):
        trainer = make_trainer(train, None, tmp_path, c2f=c2f, per_device_train_batch_size=2)
        if c2f:  # the downscaled path is the one under test
            assert trainer.resolution_factor(0) > 1
        return loss_and_gradients(trainer)

    loss, gradients = run(rebuilt(scene.views["train"], masks))
    other_loss, other_gradients = run(rebuilt(scene.views["train"], masks, scribble=ignored))
    assert loss > 0
    assert torch.equal(loss, other_loss)
    for key in gradients:
        assert torch.equal(gradients[key], other_gradients[key]), key
    # The same scribble on trained pixels, or without a mask, does change them.
    trained_loss, _ = run(rebuilt(scene.views["train"], masks, scribble=~ignored))
    unmasked_loss, _ = run(rebuilt(scene.views["train"], None, scribble=ignored))
    assert trained_loss != loss and unmasked_loss != run(rebuilt(scene.views["train"]))[0]


class MainTrainer(SplatTrainer):
    """compute_loss as it was before masks existed (main at cec57d0), the reference of unmasked runs."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from hf_eff.splat.coarse_to_fine import downscale_images, scale_intrinsics

        step = self.state.global_step
        images, viewmats, Ks = inputs["image"], inputs["viewmat"], inputs["K"]
        height, width = images.shape[1:3]
        factor = self.resolution_factor(step)
        if factor > 1:
            images = downscale_images(images, factor)
            Ks, width, height = scale_intrinsics(Ks, width, height, factor)
        renders, _, info = self.render(model, viewmats, Ks, width, height, self.active_sh_degree(step),
                                       check_finite=False)
        self._non_finite.update(step, {**self.splats, "render": renders})
        self.strategy.step_pre_backward(self.splats, self.optimizers_by_key, self.strategy_state, step, info)
        self._last_info = info
        loss = photometric_loss(renders, images, self.args.ssim_weight, self.args.ssim_padding, check_finite=False)
        return (loss, {"renders": renders}) if return_outputs else loss


def training_losses(trainer):
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses, {key: value.detach().clone() for key, value in trainer.splats.items()}


def test_a_scene_without_masks_trains_bit_identically_to_before(scene, tmp_path):
    train = scene.views["train"]
    assert "mask" not in SceneViews(train)[0]  # an unmasked split's batches carry nothing new
    expected_losses, expected = training_losses(make_trainer(train, None, tmp_path / "main", MainTrainer))
    losses, splats = training_losses(make_trainer(train, None, tmp_path / "now"))
    assert len(losses) == 6 and losses == expected_losses
    for key in expected:
        assert torch.equal(splats[key], expected[key]), key
    # A split whose mask column holds no mask (a saved unmasked test split beside a masked train split) too.
    unmasked_column = rebuilt(train, [None] * len(train))
    assert "mask" in unmasked_column.column_names and SceneViews(unmasked_column).masks is None
    losses, _ = training_losses(make_trainer(unmasked_column, None, tmp_path / "none"))
    assert losses == expected_losses


def test_masked_metrics_count_the_kept_pixels_only(scene, tmp_path):
    torch.manual_seed(0)
    render, target = torch.rand(2, SIZE, SIZE, 3), torch.rand(2, SIZE, SIZE, 3)
    mask = torch.zeros(2, SIZE, SIZE, 1)
    mask[:, 4:28, 8:30] = 1
    scribbled = torch.where(mask > 0, target, torch.rand_like(target))
    kept = mask[..., 0] > 0
    mse = ((render[0][kept[0]] - target[0][kept[0]]) ** 2).mean()
    assert torch.allclose(psnr(render, target, mask)[0], -10 * torch.log10(mse))
    assert torch.equal(psnr(render, target, mask), psnr(render, scribbled, mask))
    for padding in ("same", "valid"):
        # unrelated random images: SSIM near 0 over the kept pixels (the ignored ones, 0 in both, would count as 1)
        assert ssim(render, target, padding, mask) < 0.2
        assert ssim(render, target, padding, mask) == ssim(render, scribbled, padding, mask)
        assert ssim(render, target, padding, mask) != ssim(render, scribbled, padding)
        every = torch.ones_like(mask)
        assert torch.allclose(ssim(render, target, padding, every), ssim(render, target, padding), atol=1e-6)
        assert torch.allclose(psnr(render, target, every), psnr(render, target))

    # The trainer's evaluation of a masked test split: the ignored pixels' content does not count.
    test_masks = left_half_ignored(len(scene.views["test"]))
    ignored = ~test_masks[0]

    def evaluated(test):
        trainer = make_trainer(scene.views["train"], test, tmp_path, max_steps=2)
        trainer.train()
        metrics = trainer.evaluate()
        return metrics["eval_psnr"], metrics["eval_ssim"]

    masked = evaluated(rebuilt(scene.views["test"], test_masks))
    assert masked == evaluated(rebuilt(scene.views["test"], test_masks, scribble=ignored))
    assert masked != evaluated(rebuilt(scene.views["test"], None, scribble=ignored))


def test_masks_without_an_ssim_window_are_refused_before_training(scene, tmp_path):
    border = np.zeros((SIZE, SIZE), dtype=bool)
    border[:, :3] = True  # no pixel 5 px (half of 'valid''s window) from the border
    border_masks = [np.ones((SIZE, SIZE), dtype=bool), border]
    with pytest.raises(ValueError, match="SSIM padding 'valid': the mask of image 1 keeps no pixel at least 5 pixels"):
        ssim(torch.rand(2, SIZE, SIZE, 3), torch.rand(2, SIZE, SIZE, 3), "valid",
             torch.as_tensor(np.stack(border_masks))[..., None].float())
    with pytest.raises(ValueError, match="the mask of image 0 keeps no pixel"):  # was a NaN PSNR
        psnr(torch.rand(1, SIZE, SIZE, 3), torch.rand(1, SIZE, SIZE, 3), torch.zeros(1, SIZE, SIZE, 1))
    # The trainer refuses such test views when given them: the evaluation failed after training.
    test = rebuilt(scene.views["test"], border_masks)
    message = r"the masks of eval_dataset views \[1\] keep no pixel at least 5 pixels from the border, where " \
              "eval_ssim_padding='valid'"
    with pytest.raises(ValueError, match=message):
        make_trainer(scene.views["train"], test, tmp_path, eval_ssim_padding="valid")
    with pytest.raises(ValueError, match=r"the masks of eval_dataset\['test'\] views \[1\] keep no pixel"):
        make_trainer(scene.views["train"], {"test": test}, tmp_path, eval_ssim_padding="valid")
    trainer = make_trainer(scene.views["train"], None, tmp_path, eval_ssim_padding="valid")
    with pytest.raises(ValueError, match=message):
        trainer.evaluate(test)
    # 3DGS's padding centres a window on every pixel
    assert make_trainer(scene.views["train"], test, tmp_path, eval_ssim_padding="same").evaluate()["eval_ssim"] > 0


def masked_scene(scene):
    train_masks = left_half_ignored(len(scene.views["train"]))
    train_masks[1] = np.ones((SIZE, SIZE), dtype=np.uint8) * 255  # 8-bit masks: non-zero trains
    train_masks[1][:5] = 0
    return Scene.from_views(
        DatasetDict({"train": rebuilt(scene.views["train"], train_masks), "test": scene.views["test"]}),
        scene.points,
    )


def stored_masks(split):
    return [None if mask is None else np.asarray(mask) for mask in split["mask"]]


def assert_same_masks(a, b):
    assert len(a) == len(b)
    for mask, other in zip(a, b):
        assert (mask is None and other is None) or np.array_equal(mask, other)


def test_masks_survive_save_and_load(scene, tmp_path):
    saved = masked_scene(scene)
    masks = stored_masks(saved.views["train"])
    assert set(np.unique(masks[1])) == {0, 255} and masks[1][:5].max() == 0 and masks[0][:, SIZE // 2:].min() == 255
    loaded = load_scene(saved.save(tmp_path / "scene"))
    assert_same_masks(stored_masks(loaded.views["train"]), masks)
    # The unmasked test split is stored in the same configuration: its views come back without masks.
    assert all(mask is None for mask in stored_masks(loaded.views["test"]))
    assert SceneViews(loaded.views["test"]).masks is None
    train_views = SceneViews(loaded.views["train"])
    assert torch.equal(train_views.masks, torch.as_tensor(np.stack(masks) > 0))
    # each batch carries its masks as bool, a byte a pixel (the loss makes them float on the device)
    item_mask = train_views[1]["mask"]
    assert item_mask.dtype == torch.bool and torch.equal(item_mask, train_views.masks[1, :, :, None])


def test_masks_on_the_test_split_only_survive_save_and_load(scene, tmp_path):
    # datasets reads a configuration's columns from its first split: a masked test split beside an
    # unmasked train split was saved, then failed to load ("column names don't match")
    test_masks = left_half_ignored(len(scene.views["test"]))
    saved = Scene.from_views(
        DatasetDict({"train": scene.views["train"], "test": rebuilt(scene.views["test"], test_masks)}), scene.points
    )
    loaded = load_scene(saved.save(tmp_path / "scene"))
    assert_same_masks(stored_masks(loaded.views["test"]), stored_masks(saved.views["test"]))
    assert SceneViews(loaded.views["train"]).masks is None
    assert "mask" not in saved.views["train"].column_names  # the scene saved is left as it was


HUB_ROUND_TRIP = """
import json, sys
import numpy as np
from hf_eff.splat.scene import load_scene
folder, repo_id = sys.argv[1], sys.argv[2]
scene = load_scene(folder)
scene.push_to_hub(repo_id)
pulled = load_scene(repo_id)
print("MASKS " + json.dumps({split: [None if m is None else np.asarray(m).tolist() for m in views["mask"]]
                             for split, views in pulled.views.items()}))
from huggingface_hub import DatasetCard
print("CARD " + json.dumps(DatasetCard.load(repo_id).text))
"""


def test_masks_survive_a_push_to_the_hub_and_back(scene, tmp_path, local_hub):
    saved = masked_scene(scene)
    saved.save(tmp_path / "scene")
    process = local_hub.run_code(HUB_ROUND_TRIP, str(tmp_path / "scene"), local_hub.repo_id("masked-scene"))
    lines = [line for line in process.stdout.splitlines() if line.startswith("MASKS ")]
    assert process.returncode == 0 and lines, process.stderr[-4000:]
    pulled = json.loads(lines[-1][len("MASKS "):])
    card = json.loads(next(line for line in process.stdout.splitlines() if line.startswith("CARD "))[len("CARD "):])
    masked = sum(mask is not None for mask in stored_masks(saved.views["train"]))
    assert 0 < masked and f"| train views with a mask | {masked} |" in card and "test views with a mask" not in card
    assert_same_masks([None if m is None else np.asarray(m, dtype=np.uint8) for m in pulled["train"]],
                      stored_masks(saved.views["train"]))
    assert pulled["test"] == [None] * len(saved.views["test"])


def write_nerfstudio(folder, count=3, size=(24, 16), mask_size=None, mask_mode="L"):
    """A nerfstudio transforms.json whose frames name masks under masks/ (relative to the file)."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    frames, expected = [], []
    for index in range(count):
        camera_to_world = np.eye(4)
        camera_to_world[:3, 3] = [0.1 * index, 0, 4]
        Image.new("RGB", size, (40 * index, 90, 200)).save(folder / "images" / f"frame_{index}.png")
        mask = np.zeros(size[::-1], dtype=np.uint8)
        mask[index:, 2 * index:] = 255 if index != 1 else 7  # nerfstudio: any non-zero value is kept
        Image.fromarray(mask).convert(mask_mode).resize(mask_size or size).save(folder / "masks" / f"frame_{index}.png")
        expected.append(np.where(mask > 0, 255, 0))
        frames.append({"file_path": f"images/frame_{index}.png", "mask_path": f"masks/frame_{index}.png",
                       "transform_matrix": camera_to_world.tolist()})
    meta = {"fl_x": 30.0, "fl_y": 30.0, "cx": size[0] / 2, "cy": size[1] / 2, "w": size[0], "h": size[1],
            "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(meta))
    return meta, expected


def test_nerfstudio_conversion_reads_the_masks_and_writes_them_back(tmp_path):
    meta, expected = write_nerfstudio(tmp_path / "capture")
    converted = load_scene(tmp_path / "capture", test_every=0)
    assert_same_masks(stored_masks(converted.views["train"]), expected)
    assert stored_masks(converted.views["train"])[1].max() == 255  # stored as 0 / 255
    # write_nerf_synthetic names the masks with mask_path, and the scene reads back the same.
    written = write_nerf_synthetic(converted, tmp_path / "written")
    again = scene_from_nerf_synthetic(written)
    assert_same_masks(stored_masks(again.views["train"]), expected)
    frame = json.loads((written / "transforms_train.json").read_text())["frames"][0]
    assert (written / frame["mask_path"]).is_file()


def test_bad_masks_are_named(scene, tmp_path):
    # nerfstudio folders: a missing file, a mask of another size or with colour channels, masks on some frames only
    meta, _ = write_nerfstudio(tmp_path / "missing")
    (tmp_path / "missing" / "masks" / "frame_2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"transforms.json frame 2: mask .*frame_2.png not found"):
        load_scene(tmp_path / "missing")
    write_nerfstudio(tmp_path / "size", mask_size=(12, 8))
    with pytest.raises(ValueError, match=r"transforms.json frame 0: mask frame_0.png is 12x8 but its image is 24x16"):
        load_scene(tmp_path / "size")
    write_nerfstudio(tmp_path / "colour", mask_mode="RGB")
    with pytest.raises(ValueError, match=r"transforms.json frame 0: mask frame_0.png is a RGB image; a mask has one"):
        load_scene(tmp_path / "colour")
    meta, _ = write_nerfstudio(tmp_path / "jpeg")  # JPEG noise makes ignored pixels non-zero: trained
    Image.open(tmp_path / "jpeg" / "masks" / "frame_1.png").save(tmp_path / "jpeg" / "masks" / "frame_1.jpg")
    meta["frames"][1]["mask_path"] = "masks/frame_1.jpg"
    (tmp_path / "jpeg" / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"transforms.json frame 1: mask frame_1.jpg is a JPEG, .* save masks "
                                         "losslessly, as PNG"):
        load_scene(tmp_path / "jpeg")
    meta, _ = write_nerfstudio(tmp_path / "some")
    del meta["frames"][0]["mask_path"], meta["frames"][2]["mask_path"]
    (tmp_path / "some" / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"transforms.json: 1 of 3 frames name a mask_path, frame\(s\) \[0, 2\] do not"):
        load_scene(tmp_path / "some")

    # views_dataset
    train = scene.views["train"]
    masks = left_half_ignored(len(train))
    with pytest.raises(ValueError, match="views_dataset: 3 masks for 4 images"):
        rebuilt(train, masks[:3])
    with pytest.raises(ValueError, match="views_dataset mask 2: the mask is 16x32 but its image is 32x32"):
        rebuilt(train, masks[:2] + [masks[2][:, :16]] + masks[3:])
    with pytest.raises(ValueError, match="views_dataset mask 0: float masks must hold only 0 .* and 1"):
        rebuilt(train, [np.full((SIZE, SIZE), 0.5)] + masks[1:])
    with pytest.raises(ValueError, match="views_dataset mask 1: mask is a RGB image; a mask has one channel"):
        rebuilt(train, masks[:1] + [Image.new("RGB", (SIZE, SIZE))] + masks[2:])
    jpeg = tmp_path / "mask.jpg"
    Image.fromarray(masks[0]).convert("L").save(jpeg)
    for given in (jpeg, str(jpeg), jpeg.read_bytes(), Image.open(jpeg)):
        with pytest.raises(ValueError, match="views_dataset mask 3: mask( mask.jpg)? is a JPEG"):
            rebuilt(train, masks[:3] + [given])

    # a split built by hand: a colour mask, or one of another size, is named by view
    good = rebuilt(train, masks)

    def replace_view_3(row, index, bad):
        return {"mask": bad} if index == 3 else {}

    for bad, message in ((Image.new("RGB", (SIZE, SIZE)), "mask is a RGB image; a mask has one channel"),
                         (Image.new("L", (SIZE, 8)), "mask is 32x8 but its image is 32x32"),
                         ({"bytes": jpeg.read_bytes(), "path": None}, "mask is a JPEG")):
        split = good.map(replace_view_3, with_indices=True, fn_kwargs={"bad": bad}, features=good.features)
        with pytest.raises(ValueError, match=f"scene view 3 \\(train\\): {message}"):
            validate_views_split(split, "train")
    # a mask that keeps no pixel: nothing to train on or measure (refused when built, a nerfstudio frame's by
    # its number: the trainer could only count the views of a split)
    with pytest.raises(ValueError, match="views_dataset mask 2: the mask keeps no pixel"):
        rebuilt(train, masks[:2] + [np.zeros((SIZE, SIZE), dtype=bool)] + masks[3:])
    write_nerfstudio(tmp_path / "black")
    Image.new("L", (24, 16)).save(tmp_path / "black" / "masks" / "frame_2.png")
    with pytest.raises(ValueError, match="transforms.json frame 2: the mask keeps no pixel"):
        load_scene(tmp_path / "black")
    empty = good.map(replace_view_3, with_indices=True, fn_kwargs={"bad": Image.new("L", (SIZE, SIZE))},
                     features=good.features)
    with pytest.raises(ValueError, match=r"scene view 3 \(train_dataset\): its mask keeps no pixel"):
        SceneViews(empty)


def test_colmap_masks_are_read_as_nerfstudio_reads_them(scene, tmp_path):
    # nerfstudio's COLMAP dataparser: --masks-path masks reads masks/<image name>.png
    pytest.importorskip("pycolmap")
    saved = masked_scene(scene)
    folder = write_colmap(saved, tmp_path / "colmap")
    converted = load_scene(folder, masks="masks", test_every=0)
    train_masks = stored_masks(saved.views["train"])
    white = np.full((SIZE, SIZE), 255, dtype=np.uint8)  # the unmasked test views, written all white
    assert_same_masks(stored_masks(converted.views["train"]), train_masks + [white] * len(saved.views["test"]))
    assert "mask" not in load_scene(folder, test_every=0).views["train"].column_names  # masks only when asked

    with pytest.raises(ValueError, match="masks='masks' picks the masks folder of a COLMAP project"):
        load_scene(saved.save(tmp_path / "stored"), masks="masks")
    with pytest.raises(FileNotFoundError, match="COLMAP masks folder .*elsewhere not found"):
        load_scene(folder, masks="elsewhere")
    # named by image, not by its place in its split (00003.png is the second test view with test_every=2)
    Image.new("L", (SIZE, SIZE)).save(folder / "masks" / "00003.png")
    with pytest.raises(ValueError, match=r"COLMAP image '00003.png': the mask keeps no pixel"):
        load_scene(folder, masks="masks", test_every=2)
    Image.fromarray(white).save(folder / "masks" / "00003.png")
    Image.new("L", (SIZE, 8)).save(folder / "masks" / "00002.png")
    with pytest.raises(ValueError, match=r"COLMAP image '00002.png': mask 00002.png is 32x8 but its image is 32x32"):
        load_scene(folder, masks="masks")
    (folder / "masks" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"COLMAP image '00002.png': mask .*00002.png not found"):
        load_scene(folder, masks="masks")
