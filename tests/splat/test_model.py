import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gsplat.strategy import ops

from hf_eff.splat.model import GaussianModel, sh_to_rgb


def random_model(num=50, sh_degree=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    model = GaussianModel.random(
        (0.5, 0.0, -1.0), 2.0, num, sh_degree=sh_degree, generator=generator
    )
    with torch.no_grad():
        for param in model.splats.values():
            param.add_(torch.randn(param.shape, generator=generator))  # every value distinct
    return model


def test_parameters_use_gsplat_simple_trainer_keys_and_shapes():
    model = GaussianModel(sh_degree=2, num_gaussians=7)
    shapes = {key: tuple(p.shape) for key, p in model.splats.items()}
    assert shapes == {
        "means": (7, 3),
        "scales": (7, 3),
        "quats": (7, 4),
        "opacities": (7,),
        "sh0": (7, 1, 3),
        "shN": (7, 8, 3),
    }
    assert len(model) == 7


def test_from_points_sets_colour_scale_and_opacity():
    grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rgb = np.random.default_rng(0).integers(0, 256, grid.shape).astype(np.uint8)
    model = GaussianModel.from_points(grid, rgb, sh_degree=1, init_opacity=0.2)
    torch.testing.assert_close(model.splats["means"], torch.tensor(grid, dtype=torch.float32))
    torch.testing.assert_close(
        sh_to_rgb(model.splats["sh0"][:, 0]), torch.tensor(rgb / 255.0, dtype=torch.float32)
    )
    # Nearest neighbours on a unit grid are at distance 1: log-scale 0.
    torch.testing.assert_close(model.splats["scales"], torch.zeros(64, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.sigmoid(model.splats["opacities"]), torch.full((64,), 0.2))
    assert (model.splats["shN"] == 0).all() and model.splats["shN"].shape == (64, 3, 3)


def test_from_points_rejects_bad_input():
    xyz = np.zeros((5, 3))
    with pytest.raises(ValueError, match="rgb shape"):
        GaussianModel.from_points(xyz, np.zeros((4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GaussianModel.from_points(xyz, np.full((5, 3), 2.0))
    with pytest.raises(ValueError, match="NaN"):
        GaussianModel.from_points(np.full((5, 3), np.nan), np.zeros((5, 3), np.uint8))
    with pytest.raises(ValueError, match="sh_degree"):
        GaussianModel(sh_degree=5)


def test_random_init_stays_in_the_cube():
    model = GaussianModel.random((1.0, 2.0, 3.0), 0.5, 200, sh_degree=0)
    means = model.splats["means"]
    assert ((means - torch.tensor([1.0, 2.0, 3.0])).abs() <= 0.5).all()
    assert model.splats["shN"].shape == (200, 0, 3)


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_ply_round_trip_is_exact(tmp_path, sh_degree):
    model = random_model(sh_degree=sh_degree)
    loaded = GaussianModel.from_ply(model.save_ply(tmp_path / "splat.ply"))
    assert loaded.sh_degree == sh_degree
    for key, param in model.splats.items():
        assert torch.equal(loaded.splats[key], param), key


def test_ply_uses_the_standard_3dgs_layout(tmp_path):
    from plyfile import PlyData

    model = random_model(num=3, sh_degree=1)
    vertex = PlyData.read(str(model.save_ply(tmp_path / "splat.ply")))["vertex"].data
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(9)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    expected += ["rot_0", "rot_1", "rot_2", "rot_3"]
    assert list(vertex.dtype.names) == expected
    shN = model.splats["shN"].detach()
    # Channel-major as the reference implementation: f_rest_(c*3 + k) = shN[:, k, c].
    assert vertex["f_rest_4"][1] == shN[1, 1, 1] and vertex["f_rest_2"][0] == shN[0, 2, 0]
    assert vertex["f_rest_3"][2] == shN[2, 0, 1]
    assert vertex["rot_0"][0] == model.splats["quats"][0, 0]  # w first


def test_ply_of_an_empty_model_is_valid_and_reads_back(tmp_path):
    model = random_model(num=5, sh_degree=2)
    model._set_splats({key: value[:0] for key, value in model.splats.items()})
    loaded = GaussianModel.from_ply(model.save_ply(tmp_path / "empty.ply"))
    assert loaded.num_gaussians == 0 and loaded.sh_degree == 2


def test_save_ply_refuses_non_finite_parameters(tmp_path):
    model = random_model(num=5, sh_degree=1)
    with torch.no_grad():
        model.splats["scales"][3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"save_ply: scales of 1 Gaussian\(s\) \(first: index 3\)"):
        model.save_ply(tmp_path / "nan.ply")
    assert not (tmp_path / "nan.ply").exists()


def test_from_ply_names_missing_properties(tmp_path):
    from plyfile import PlyData, PlyElement

    vertex = np.zeros(
        2, dtype=[(name, "f4") for name in ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"]]
    )
    path = tmp_path / "points.ply"
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
    with pytest.raises(ValueError, match="opacity"):
        GaussianModel.from_ply(path)


@pytest.mark.parametrize("n_rest", [120, 105])  # 105: the count of degree 5, beyond gsplat's 0..4
def test_from_ply_names_the_file_whose_f_rest_count_matches_no_sh_degree(tmp_path, n_rest):
    from plyfile import PlyData, PlyElement

    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(n_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    path = tmp_path / "degree5.ply"
    PlyData([PlyElement.describe(np.zeros(2, dtype=[(name, "f4") for name in names]), "vertex")]).write(str(path))
    with pytest.raises(ValueError, match=rf"{path}: {n_rest} f_rest_\* properties match no SH degree in 0\.\.4"):
        GaussianModel.from_ply(path)


def test_pretrained_round_trip_after_densification_changes_the_count(tmp_path):
    model = random_model(num=40, sh_degree=1)
    optimizers = {key: torch.optim.Adam([param], lr=1e-3) for key, param in model.splats.items()}
    ops.duplicate(model.splats, optimizers, {}, torch.arange(40) < 15)  # gsplat's own surgery
    assert len(model) == 55
    model.save_pretrained(tmp_path / "splat")
    assert json.loads((tmp_path / "splat" / "config.json").read_text()) == {
        "sh_degree": 1,
        "num_gaussians": 55,
        "rasterize_mode": "classic",
        "white_background": None,
    }
    loaded = GaussianModel.from_pretrained(tmp_path / "splat")
    assert len(loaded) == 55 and loaded.sh_degree == 1
    for key, param in model.splats.items():
        assert torch.equal(loaded.splats[key], param), key
    card = (tmp_path / "splat" / "README.md").read_text()
    assert "gaussian-splatting" in card and "hf-eff" in card


def test_render_returns_images_alpha_and_strategy_info():
    model = GaussianModel.random(
        (0.0, 0.0, 0.0), 0.5, 30, sh_degree=1, generator=torch.Generator().manual_seed(0)
    )
    viewmats = torch.eye(4).repeat(2, 1, 1)
    viewmats[:, 2, 3] = 3.0
    Ks = torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]]).repeat(2, 1, 1)
    colors, alphas, info = model.render(viewmats, Ks, 16, 12, sh_degree=0)
    assert colors.shape == (2, 12, 16, 3) and alphas.shape == (2, 12, 16, 1)
    assert alphas.max() > 0.1
    info["means2d"].retain_grad()
    colors.sum().backward()
    assert info["means2d"].grad is not None and model.splats["means"].grad.abs().sum() > 0
    assert model.splats["shN"].grad.abs().sum() == 0, "degree 0 ignores shN"
    with pytest.raises(ValueError, match="sh_degree"):
        model.render(viewmats, Ks, 16, 12, sh_degree=2)
    # A NaN camera rendered a black image without a word; check_finite=False (the trainer's step) skips the check.
    nan_viewmats = viewmats.clone()
    nan_viewmats[1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"viewmats contains NaN or infinite values \(camera 1\)"):
        model.render(nan_viewmats, Ks, 16, 12)
    assert model.render(nan_viewmats, Ks, 16, 12, check_finite=False)[0].shape == (2, 12, 16, 3)


def test_a_config_is_refused_by_name_before_anything_is_saved_or_a_repo_is_created(tmp_path, monkeypatch):
    from hf_eff.hub import push

    model = random_model(num=4, sh_degree=0)
    model.save_pretrained(tmp_path / "splat")
    saved = (tmp_path / "splat" / "config.json").read_text()
    with pytest.raises(ValueError, match=r"^GaussianModel takes no config=\.\.\.: config.json holds the model's own "
                                         r"settings \(sh_degree, num_gaussians"):
        model.save_pretrained(tmp_path / "splat", config={"sh_degree": 3})
    assert (tmp_path / "splat" / "config.json").read_text() == saved

    uploaded = {}

    class OfflineApi:  # the Hub calls of PushesWithoutLocalPaths.push_to_hub, recorded
        def __init__(self, token=None):
            pass

        def whoami(self, token=None):
            raise OSError("offline")  # no answer: the push goes on to create_repo

        def create_repo(self, repo_id, **kwargs):
            uploaded["created"] = repo_id
            return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(api, *, repo_id, folder_path, **kwargs):
        uploaded["config"] = json.loads((Path(folder_path) / "config.json").read_text())

    monkeypatch.setattr(push, "HfApi", OfflineApi)
    monkeypatch.setattr(push, "upload_folder", upload_folder)
    with pytest.raises(ValueError, match="^GaussianModel takes no config=..."):
        model.push_to_hub("me/splats", config={"sh_degree": 3})
    assert uploaded == {}
    # the mixin's save_pretrained(push_to_hub=True) passes its own config on to push_to_hub: still taken
    model.save_pretrained(tmp_path / "pushed", push_to_hub=True, repo_id="me/splats")
    assert uploaded == {"created": "me/splats", "config": json.loads(saved)}


def test_a_model_fitted_on_white_renders_onto_white_and_keeps_it_in_its_config(tmp_path):
    model = GaussianModel.random((0.0, 0.0, 0.0), 0.1, 5, sh_degree=0)
    model.white_background = True  # as SplatTrainer(white_background=True) sets it
    viewmats = torch.eye(4)[None].clone()
    viewmats[0, 2, 3] = 3.0
    Ks = torch.tensor([[[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]])
    corner = (0, 0, 0)  # far from the small cluster at the centre: background only
    with torch.no_grad():
        torch.testing.assert_close(model.render(viewmats, Ks, 16, 16)[0][corner], torch.ones(3))
        black = viewmats.new_zeros(1, 3)
        torch.testing.assert_close(model.render(viewmats, Ks, 16, 16, backgrounds=black)[0][corner], torch.zeros(3))
    model.save_pretrained(tmp_path / "white")
    assert GaussianModel.from_pretrained(tmp_path / "white").white_background is True
    # A config.json saved before the field: not known, rendered onto black.
    config = tmp_path / "white" / "config.json"
    config.write_text(json.dumps({key: value for key, value in json.loads(config.read_text()).items()
                                  if key != "white_background"}))
    old = GaussianModel.from_pretrained(tmp_path / "white")
    assert old.white_background is None
    with torch.no_grad():
        torch.testing.assert_close(old.render(viewmats, Ks, 16, 16)[0][corner], torch.zeros(3))


@pytest.mark.gpu
def test_model_on_cuda_renders_with_gsplat_like_the_cpu_backend(tmp_path):
    model = GaussianModel.random(
        (0.0, 0.0, 0.0), 0.5, 200, sh_degree=1, generator=torch.Generator().manual_seed(0)
    )
    viewmats = torch.eye(4).repeat(2, 1, 1)
    viewmats[:, 2, 3] = 3.0
    Ks = torch.tensor([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]).repeat(2, 1, 1)
    with torch.no_grad():
        cpu_colors, cpu_alphas, _ = model.render(viewmats, Ks, 32, 24)
    model.save_pretrained(tmp_path / "splat")
    cuda_model = GaussianModel.from_pretrained(tmp_path / "splat", map_location="cuda")
    assert cuda_model.splats["means"].is_cuda
    with torch.no_grad():
        colors, alphas, _ = cuda_model.render(viewmats.cuda(), Ks.cuda(), 32, 24)
    torch.testing.assert_close(colors.cpu(), cpu_colors, atol=1e-3, rtol=0)
    torch.testing.assert_close(alphas.cpu(), cpu_alphas, atol=1e-3, rtol=0)
    # cameras left on the CPU (as a dataset gives them) render where the Gaussians are
    with torch.no_grad():
        from_cpu_cameras = cuda_model.render(viewmats, Ks, 32, 24)[0]
    assert from_cpu_cameras.is_cuda and torch.equal(from_cpu_cameras, colors)


def test_loading_what_is_no_model_folder_names_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError, match=f"cannot load a GaussianModel: there is no such folder {missing}, "
                                                "and it is not a Hub repo id either"):
        GaussianModel.from_pretrained(missing)
    crashed = tmp_path / "crashed"  # a run's output_dir that ended before its final save
    GaussianModel.random(torch.zeros(3), 1.0, 5, sh_degree=0).save_pretrained(crashed / "checkpoint-4")
    (crashed / "config.json").write_text((crashed / "checkpoint-4" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=f"the folder {crashed} holds no GaussianModel weights: it has no "
                                                f"model.safetensors beside its config.json; its last checkpoint that holds "
                                                f"one: {crashed}/checkpoint-4"):
        GaussianModel.from_pretrained(crashed)


@pytest.mark.parametrize("sh_degree", [-1, 5])
def test_an_sh_degree_outside_gsplats_range_is_named_by_every_constructor(sh_degree):
    # -1 used to reach torch.zeros from random / from_points: "Dimension size must be non-negative"
    message = rf"sh_degree must be in 0\.\.4 \(gsplat's range\), got {sh_degree}"
    xyz = torch.rand(4, 3)
    for build in (lambda: GaussianModel(sh_degree=sh_degree, num_gaussians=2),
                  lambda: GaussianModel.random(torch.zeros(3), 1.0, 4, sh_degree=sh_degree),
                  lambda: GaussianModel.from_points(xyz, torch.rand(4, 3), sh_degree=sh_degree)):
        with pytest.raises(ValueError, match=message):
            build()


def test_weights_without_config_blame_it_only_for_an_sh_degree_the_defaults_do_not_hold(tmp_path):
    from safetensors.torch import load_file, save_file

    def saved_without_config(name, sh_degree, **changed):
        folder = tmp_path / name
        GaussianModel.random(torch.zeros(3), 1.0, 5, sh_degree=sh_degree).save_pretrained(folder)
        (folder / "config.json").unlink()  # the mixin builds the model from the constructor's defaults: sh_degree 3
        state = load_file(folder / "model.safetensors")
        save_file({**state, **changed}, folder / "model.safetensors")
        return folder

    with pytest.raises(ValueError, match=r"holds no config.json, which records the model's sh_degree .*3 higher-order "
                                         r"SH coefficients per Gaussian, sh_degree 1\); put back the config.json"):
        GaussianModel.from_pretrained(saved_without_config("degree-1", 1))
    # sh_degree 3 is what the defaults hold: a wrong scales shape is the file's own error, not config.json's
    with pytest.raises(ValueError, match=r"^GaussianModel.scales: expected shape \(5, 3\) for 5 Gaussians with "
                                         r"sh_degree=3, got \(5, 2\)$"):
        GaussianModel.from_pretrained(saved_without_config("bad-scales", 3, **{"splats.scales": torch.zeros(5, 2)}))
    # an shN count that is no sh_degree's is the file's error too
    with pytest.raises(ValueError, match=r"^GaussianModel.shN: expected shape \(5, 15, 3\) .*got \(5, 5, 3\)$"):
        GaussianModel.from_pretrained(saved_without_config("bad-shN", 3, **{"splats.shN": torch.zeros(5, 5, 3)}))
