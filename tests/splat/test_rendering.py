import math

import pytest
import torch
from gsplat.strategy import DefaultStrategy

from hf_eff.splat.rendering import cpu as cpu_backend
from hf_eff.splat.rendering import rasterize
from hf_eff.splat.rendering.projection import project
from hf_eff.splat.rendering.reference import rasterize_dense

WIDTH, HEIGHT = 24, 20


def random_gaussians(num, dtype=torch.float64, seed=0, opacity_range=(0.05, 0.95), sh_bases=None):
    generator = torch.Generator().manual_seed(seed)
    means = torch.rand(num, 3, generator=generator, dtype=dtype) * 2 - 1
    means[:, 2] *= 0.5
    quats = torch.randn(num, 4, generator=generator, dtype=dtype)
    scales = torch.rand(num, 3, generator=generator, dtype=dtype) * 0.15 + 0.02
    low, high = opacity_range
    opacities = torch.rand(num, generator=generator, dtype=dtype) * (high - low) + low
    if sh_bases is None:
        colors = torch.rand(num, 3, generator=generator, dtype=dtype)
    else:
        colors = torch.randn(num, sh_bases, 3, generator=generator, dtype=dtype) * 0.3
    return means, quats, scales, opacities, colors


def two_cameras(dtype=torch.float64):
    viewmats = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    viewmats[:, 2, 3] = 3.0
    # The second camera is shifted and turned, so the two views differ.
    angle = 0.3
    viewmats[1, :3, :3] = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]],
        dtype=dtype,
    )
    viewmats[1, 0, 3] = 0.3
    Ks = torch.tensor([[30.0, 0, 12], [0, 30.0, 10], [0, 0, 1]], dtype=dtype).repeat(2, 1, 1)
    return viewmats, Ks


def max_pair_alpha(params, viewmats, Ks):
    """Largest opacity * exp(-sigma) over visible (Gaussian, pixel centre) pairs."""
    means, quats, scales, opacities, _ = params
    projection = project(means, quats, scales, opacities, viewmats, Ks, WIDTH, HEIGHT)
    ys, xs = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    centres = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 1, 2).to(means.dtype) + 0.5
    dx, dy = (projection.means2d - centres).unbind(-1)  # [P, C, N]
    a, b, c = projection.conics.unbind(-1)
    alphas = projection.opacities * torch.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy))
    return alphas[:, (projection.radii > 0).all(-1)].max()


def render_and_grads(render_fn, params, viewmats, Ks, **kwargs):
    leaves = [p.detach().clone().requires_grad_() for p in params]
    colors, alphas, *_ = render_fn(*leaves, viewmats, Ks, WIDTH, HEIGHT, **kwargs)
    weights = torch.rand(
        colors.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    weights = weights.to(colors.device, colors.dtype)
    ((colors * weights).sum() + alphas.square().sum()).backward()
    return colors.detach(), alphas.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize(
    "case",
    ["rgb", "sh_degree_1", "opaque_early_stop", "clamped_alpha", "unpacked"],
)
def test_cpu_backend_matches_dense_reference_in_values_and_gradients(case):
    sh_degree = 1 if case == "sh_degree_1" else None
    opacity_range = {"opaque_early_stop": (0.9, 0.99), "clamped_alpha": (0.9995, 1.0)}.get(
        case, (0.05, 0.95)
    )
    num = 150 if case == "opaque_early_stop" else 60
    params = list(
        random_gaussians(num, opacity_range=opacity_range, sh_bases=4 if sh_degree else None)
    )
    if case == "clamped_alpha":
        params[2] *= 5  # wide Gaussians: their alpha reaches 0.999 over some pixel centre
    viewmats, Ks = two_cameras()
    backgrounds = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]], dtype=torch.float64)
    kwargs = dict(sh_degree=sh_degree, backgrounds=backgrounds)

    cpu = render_and_grads(rasterize, params, viewmats, Ks, packed=case != "unpacked", **kwargs)
    dense = render_and_grads(rasterize_dense, params, viewmats, Ks, **kwargs)

    assert cpu[1].mean() > 0.2, "the scene should cover a good part of the image"
    if case == "opaque_early_stop":
        assert (1 - dense[1]).min() < 1e-3, "some pixel should reach the transmittance stop"
    if case == "clamped_alpha":
        assert max_pair_alpha(params, viewmats, Ks) >= 0.999, (
            "some pair should hit the 0.999 alpha clamp"
        )
    torch.testing.assert_close(cpu[0], dense[0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(cpu[1], dense[1], rtol=1e-9, atol=1e-10)
    for name, grad_cpu, grad_dense in zip(
        ["means", "quats", "scales", "opacities", "colors"], cpu[2], dense[2]
    ):
        assert grad_dense.abs().max() > 0, name
        torch.testing.assert_close(
            grad_cpu, grad_dense, rtol=1e-7, atol=1e-9, msg=f"gradient of {name}"
        )


def dense_with_depth(means, quats, scales, opacities, colors, viewmats, Ks, width, height, render_mode,
                     backgrounds):
    """gsplat's depth modes stated through the dense reference: the camera-space z as a channel
    composited onto 0, divided by the alpha for the expected depth."""
    depths = (means @ viewmats[:, :3, :3].transpose(1, 2) + viewmats[:, None, :3, 3])[..., 2:]  # [C, N, 1]
    zeros = backgrounds.new_zeros(len(viewmats), 1)
    if render_mode in ("D", "ED"):
        channels, backgrounds = depths, zeros
    else:
        channels = torch.cat([colors.expand(len(viewmats), -1, -1), depths], dim=-1)
        backgrounds = torch.cat([backgrounds, zeros], dim=1)
    render, alphas, means2d = rasterize_dense(means, quats, scales, opacities, channels, viewmats, Ks, width,
                                              height, backgrounds=backgrounds)
    if render_mode.endswith("ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)
    return render, alphas, means2d


@pytest.mark.parametrize("render_mode", ["D", "ED", "RGB+D", "RGB+ED"])
@pytest.mark.parametrize("packed", [True, False])
def test_depth_render_modes_match_gsplats_definition(render_mode, packed):
    # Depth maps are gsplat's render_mode; the CPU backend refused every mode but RGB.
    params = random_gaussians(60, seed=3)
    viewmats, Ks = two_cameras()
    backgrounds = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]], dtype=torch.float64)
    cpu = render_and_grads(rasterize, params, viewmats, Ks, render_mode=render_mode, backgrounds=backgrounds,
                           packed=packed)
    dense = render_and_grads(dense_with_depth, params, viewmats, Ks, render_mode=render_mode,
                             backgrounds=backgrounds)
    assert cpu[0].shape == (2, HEIGHT, WIDTH, 1 if render_mode in ("D", "ED") else 4)
    assert cpu[0][..., -1].max() > 2.0  # depths of a scene 3 units away, not colours
    torch.testing.assert_close(cpu[0], dense[0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(cpu[1], dense[1], rtol=1e-9, atol=1e-10)
    for name, grad_cpu, grad_dense in zip(["means", "quats", "scales", "opacities", "colors"], cpu[2], dense[2]):
        if name == "colors" and render_mode in ("D", "ED"):
            assert grad_cpu is None and grad_dense is None  # depth alone reads no colour
            continue
        torch.testing.assert_close(grad_cpu, grad_dense, rtol=1e-7, atol=1e-9, msg=f"gradient of {name}")


@pytest.mark.parametrize("tile_size, chunk_elements", [(2, 16), (4, 64), (8, 64)])
def test_tile_sizes_and_many_chunks_give_the_reference_result(
    monkeypatch, tile_size, chunk_elements
):
    # Tiny chunks split the work into many runs of tiles; results must not depend on them.
    monkeypatch.setattr(cpu_backend, "TILE_SIZE", tile_size)
    monkeypatch.setattr(cpu_backend, "CHUNK_ELEMENTS", chunk_elements)
    params = random_gaussians(40, seed=7, opacity_range=(0.5, 0.99))
    viewmats, Ks = two_cameras()
    cpu = render_and_grads(rasterize, params, viewmats, Ks)
    dense = render_and_grads(rasterize_dense, params, viewmats, Ks)
    torch.testing.assert_close(cpu[0], dense[0], rtol=1e-9, atol=1e-10)
    for grad_cpu, grad_dense in zip(cpu[2], dense[2]):
        torch.testing.assert_close(grad_cpu, grad_dense, rtol=1e-7, atol=1e-9)


def test_tile_culling_bound_is_the_minimum_of_sigma_over_the_square():
    generator = torch.Generator().manual_seed(4)
    u, v = (torch.rand(2, 500, generator=generator, dtype=torch.float64) - 0.5) * 12
    factor = torch.randn(500, 2, 2, generator=generator, dtype=torch.float64)
    precision = factor @ factor.transpose(1, 2) + 0.05 * torch.eye(2, dtype=torch.float64)
    conics = torch.stack([precision[:, 0, 0], precision[:, 0, 1], precision[:, 1, 1]], dim=1)
    bound = cpu_backend._min_sigma_over_square(u, v, conics, 1.5)
    grid = torch.linspace(-1.5, 1.5, 61, dtype=torch.float64)
    dx = u[:, None, None] + grid[None, :, None]
    dy = v[:, None, None] + grid[None, None, :]
    a, b, c = (conics[:, i, None, None] for i in range(3))
    sampled = (0.5 * a * dx * dx + b * dx * dy + 0.5 * c * dy * dy).flatten(1).amin(1)
    # Never above any point of the square (the culling stays exact), and tight.
    assert (bound <= sampled + 1e-12).all()
    assert (sampled - bound).max() < 0.05 * sampled.max()


@pytest.mark.parametrize("packed", [True, False])
def test_absgrad_sums_absolute_per_pixel_gradients(packed):
    params = [p.requires_grad_() for p in random_gaussians(40, seed=2)]
    viewmats, Ks = two_cameras()
    colors, _, info = rasterize(*params, viewmats, Ks, WIDTH, HEIGHT, packed=packed, absgrad=True)
    info["means2d"].retain_grad()
    weights = torch.randn(
        colors.shape, generator=torch.Generator().manual_seed(3), dtype=colors.dtype
    )
    (colors * weights).sum().backward()
    grad, absgrad = info["means2d"].grad, info["means2d"].absgrad
    assert absgrad.shape == grad.shape
    # |sum of per-pixel terms| <= sum of |terms|, strictly where the signs differ.
    assert (absgrad >= grad.abs() - 1e-12).all()
    assert (absgrad > grad.abs() + 1e-6).any()


def test_cpu_backend_matches_reference_in_float32():
    params = random_gaussians(80, dtype=torch.float32, seed=3)
    viewmats, Ks = two_cameras(torch.float32)
    cpu = render_and_grads(rasterize, params, viewmats, Ks)
    dense = render_and_grads(
        rasterize_dense, [p.double() for p in params], viewmats.double(), Ks.double()
    )
    assert cpu[0].dtype == torch.float32
    torch.testing.assert_close(cpu[0].double(), dense[0], rtol=1e-4, atol=1e-5)
    for grad_cpu, grad_dense in zip(cpu[2], dense[2]):
        torch.testing.assert_close(grad_cpu.double(), grad_dense, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("packed", [True, False])
def test_info_has_the_strategy_keys_and_means2d_gradient(packed):
    params = [p.float().requires_grad_() for p in random_gaussians(40)]
    viewmats, Ks = two_cameras(torch.float32)
    colors, alphas, info = rasterize(*params, viewmats, Ks, WIDTH, HEIGHT, packed=packed)
    assert colors.shape == (2, HEIGHT, WIDTH, 3) and alphas.shape == (2, HEIGHT, WIDTH, 1)
    info["means2d"].retain_grad()
    colors.sum().backward()
    grad = info["means2d"].grad
    assert info["width"] == WIDTH and info["height"] == HEIGHT and info["n_cameras"] == 2
    if packed:
        nnz = info["gaussian_ids"].numel()
        assert grad.shape == (nnz, 2) and info["radii"].shape == (nnz, 2)
        assert (info["radii"] > 0).all()
    else:
        assert grad.shape == (2, 40, 2) and info["radii"].shape == (2, 40, 2)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("packed", [True, False])
def test_default_strategy_densifies_on_the_cpu_backend(packed):
    means, quats, scales, opacities, colors = random_gaussians(30, dtype=torch.float32)
    params = torch.nn.ParameterDict(
        {
            "means": means,
            "quats": quats,
            "scales": scales.log(),
            "opacities": torch.logit(opacities),
            "colors": colors,
        }
    )
    optimizers = {name: torch.optim.Adam([param], lr=1e-3) for name, param in params.items()}
    strategy = DefaultStrategy(refine_start_iter=2, refine_every=2, grow_grad2d=1e-6, verbose=False)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state()
    viewmats, Ks = two_cameras(torch.float32)
    target = torch.full((2, HEIGHT, WIDTH, 3), 0.5)
    for step in range(5):
        colors, _, info = rasterize(
            params["means"],
            params["quats"],
            params["scales"].exp(),
            params["opacities"].sigmoid(),
            params["colors"],
            viewmats,
            Ks,
            WIDTH,
            HEIGHT,
            packed=packed,
        )
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (colors - target).abs().mean().backward()
        strategy.step_post_backward(params, optimizers, state, step, info, packed=packed)
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad()
    assert len(params["means"]) > 30
    assert state["grad2d"].shape == (len(params["means"]),)


def test_invisible_scene_renders_background():
    params = [p.float() for p in random_gaussians(10)]
    params[0] = params[0] + torch.tensor([0.0, 0.0, -10.0])  # behind both cameras
    viewmats, Ks = two_cameras(torch.float32)
    backgrounds = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    colors, alphas, info = rasterize(*params, viewmats, Ks, WIDTH, HEIGHT, backgrounds=backgrounds)
    assert info["gaussian_ids"].numel() == 0
    assert torch.equal(alphas, torch.zeros_like(alphas))
    torch.testing.assert_close(colors, backgrounds[:, None, None, :].expand_as(colors))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: {**p, "quats": p["quats"][:, :3]}, "quats must be"),
        (lambda p: {**p, "Ks": p["Ks"][:1]}, "Ks must be"),
        (
            lambda p: {
                **p,
                "means": p["means"].clone().index_fill_(0, torch.tensor([2]), float("nan")),
            },
            "NaN",
        ),
        (
            lambda p: {**p, "viewmats": p["viewmats"].clone().index_fill_(0, torch.tensor([1]), float("nan"))},
            r"viewmats contains NaN or infinite values \(camera 1\)",
        ),
        (
            lambda p: {**p, "Ks": p["Ks"].clone().index_fill_(0, torch.tensor([0]), float("inf"))},
            r"Ks contains NaN or infinite values \(camera 0\)",
        ),
        (lambda p: {**p, "sh_degree": 2}, "SH colors must be"),
        (
            lambda p: {**p, "colors": p["colors"].expand(3, -1, -1)},
            r"colors \(3, 5, 3\) are per camera for 3 cameras, but viewmats \(2, 4, 4\) has 2",
        ),
        (
            lambda p: {**p, "colors": p["colors"][None, :, None].expand(1, -1, 4, -1), "sh_degree": 1},
            r"colors \(1, 5, 4, 3\) are per camera for 1 cameras, but viewmats \(2, 4, 4\) has 2",
        ),
        (lambda p: {**p, "backend": "metal"}, "backend must be"),
        (lambda p: {**p, "render_mode": "RGB+N"}, r"render_mode must be one of \('RGB', 'D'"),
    ],
)
def test_bad_input_raises_a_named_error(change, message):
    means, quats, scales, opacities, colors = [p.float() for p in random_gaussians(5)]
    viewmats, Ks = two_cameras(torch.float32)
    arguments = dict(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=colors,
        viewmats=viewmats,
        Ks=Ks,
        width=WIDTH,
        height=HEIGHT,
    )
    with pytest.raises(ValueError, match=message):
        rasterize(**change(arguments))


@pytest.mark.gpu
@pytest.mark.parametrize("sh_degree", [None, 2])
def test_cpu_backend_matches_gsplat_cuda(sh_degree):
    params = random_gaussians(300, dtype=torch.float32, sh_bases=9 if sh_degree else None, seed=5)
    viewmats, Ks = two_cameras(torch.float32)
    kwargs = dict(sh_degree=sh_degree, packed=False)
    cpu = render_and_grads(rasterize, params, viewmats, Ks, **kwargs)
    cuda = render_and_grads(
        rasterize, [p.cuda() for p in params], viewmats.cuda(), Ks.cuda(), **kwargs
    )
    _, _, cpu_info = rasterize(*params, viewmats, Ks, WIDTH, HEIGHT, **kwargs)
    _, _, cuda_info = rasterize(
        *[p.cuda() for p in params], viewmats.cuda(), Ks.cuda(), WIDTH, HEIGHT, **kwargs
    )
    # Both cull by the same opacity-aware bounding box; ceil() may flip on rounding.
    assert (cuda_info["radii"].cpu() == cpu_info["radii"]).float().mean() > 0.99
    # gsplat computes in float32 with fast-math exp; a pair near the alpha = 1/255 or the
    # transmittance = 1e-4 cut-off may flip, which moves a pixel by at most ~1/255.
    for cuda_image, cpu_image in ((cuda[0], cpu[0]), (cuda[1], cpu[1])):
        difference = (cuda_image.cpu() - cpu_image).abs()
        assert difference.max() < 1e-2 and difference.mean() < 1e-4
    for name, grad_cuda, grad_cpu in zip(
        ["means", "quats", "scales", "opacities", "colors"], cuda[2], cpu[2]
    ):
        relative = (grad_cuda.cpu() - grad_cpu).norm() / grad_cpu.norm()
        assert relative < 2e-2, f"gradient of {name} differs by {relative:.2%}"


def test_float64_cameras_render_like_float32_ones():
    params = [p.float() for p in random_gaussians(10)]
    viewmats, Ks = two_cameras(torch.float64)
    backgrounds = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=torch.float64)
    colors, alphas, _ = rasterize(*params, viewmats, Ks, WIDTH, HEIGHT, backgrounds=backgrounds)
    expected, expected_alphas, _ = rasterize(*params, viewmats.float(), Ks.float(), WIDTH, HEIGHT,
                                             backgrounds=backgrounds.float())
    assert colors.dtype == torch.float32
    assert torch.equal(colors, expected) and torch.equal(alphas, expected_alphas)


def test_gsplat_options_at_gsplats_defaults_render_the_same_image_on_the_cpu():
    # as a loop written for gsplat (its simple_trainer) passes them
    params = [p.float() for p in random_gaussians(10)]
    viewmats, Ks = two_cameras(torch.float32)
    expected = rasterize(*params, viewmats, Ks, WIDTH, HEIGHT)
    colors, alphas, _ = rasterize(*params, viewmats, Ks, WIDTH, HEIGHT, camera_model="pinhole", sparse_grad=False,
                                  distributed=False, tile_size=16, covars=None)
    assert torch.equal(colors, expected[0]) and torch.equal(alphas, expected[1])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"camera_model": "fisheye"}, r"camera_model='fisheye' \(gsplat's default: 'pinhole'\)"),
        # tile_size at its default is not named among the refused
        ({"tile_size": 16, "sparse_grad": True}, r"sparse_grad=True \(gsplat's default: False\); they are"),
        ({"radial_coeffs": torch.zeros(2, 6)}, r"radial_coeffs=a tensor of shape \(2, 6\) \(gsplat's default: None\)"),
    ],
)
def test_a_gsplat_option_off_its_default_is_refused_on_the_cpu_by_name(options, message):
    params = [p.float() for p in random_gaussians(5)]
    viewmats, Ks = two_cameras(torch.float32)
    with pytest.raises(ValueError, match=r"^the CPU backend does not support " + message):
        rasterize(*params, viewmats, Ks, WIDTH, HEIGHT, **options)


def test_an_option_gsplat_does_not_take_is_refused_by_name_on_the_cpu():
    params = [p.float() for p in random_gaussians(5)]
    viewmats, Ks = two_cameras(torch.float32)
    with pytest.raises(TypeError, match=r"rasterize got \['tile_sise'\], which gsplat.rendering.rasterization does"):
        rasterize(*params, viewmats, Ks, WIDTH, HEIGHT, tile_sise=16)
