import pytest
import torch
import torch.nn.functional as F

from hf_eff.splat.losses import photometric_loss, psnr, ssim


def ssim_map_3dgs(render, target, window=11, sigma=1.5):
    """3DGS's utils/loss_utils.py formula written out, in float64: the per-pixel SSIM map of
    zero-padded ('same') convolutions with a normalised Gaussian window."""
    coords = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(3, 1, window, window)
    x, y = (image.permute(0, 3, 1, 2).double() for image in (render, target))

    def blur(image):
        return F.conv2d(image, kernel, padding=window // 2, groups=3)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


@pytest.mark.parametrize("shape", [(1, 64, 64, 3), (2, 37, 50, 3), (1, 8, 6, 3)])
def test_same_padding_is_the_3dgs_ssim(shape):
    torch.manual_seed(0)
    target = torch.rand(shape)
    render = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    expected = ssim_map_3dgs(render, target).mean()
    assert ssim(render, target, padding="same").item() == pytest.approx(expected.item(), abs=1e-6)
    assert ssim(render, target).item() == pytest.approx(expected.item(), abs=1e-6)  # the default


def test_valid_padding_averages_the_interior_windows_only():
    # gsplat's fused_ssim(padding="valid") crops the 'same' map by the window radius.
    torch.manual_seed(0)
    target = torch.rand(2, 40, 48, 3)
    render = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    interior = ssim_map_3dgs(render, target)[:, :, 5:-5, 5:-5].mean()
    valid = ssim(render, target, padding="valid")
    assert valid.item() == pytest.approx(interior.item(), abs=1e-6)
    assert abs(valid.item() - ssim(render, target, padding="same").item()) > 1e-3


def test_unknown_padding_is_named():
    image = torch.rand(1, 16, 16, 3)
    with pytest.raises(ValueError, match=r"SSIM padding must be one of \('same', 'valid'\).*got 'reflect'"):
        ssim(image, image, padding="reflect")


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_identical_images_have_zero_loss_and_unit_ssim(padding):
    image = torch.rand(2, 16, 16, 3)
    assert ssim(image, image, padding).item() == pytest.approx(1.0, abs=1e-5)
    assert photometric_loss(image, image, ssim_padding=padding).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_loss_mixes_l1_and_dssim(padding):
    render, target = torch.rand(1, 24, 24, 3), torch.rand(1, 24, 24, 3)
    l1 = (render - target).abs().mean()
    expected = 0.8 * l1 + 0.2 * (1 - ssim(render, target, padding))
    assert photometric_loss(render, target, ssim_padding=padding).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_tiny_images_work_without_smoothing_warnings(recwarn, padding):
    render = torch.rand(1, 8, 6, 3, requires_grad=True)
    photometric_loss(render, torch.rand(1, 8, 6, 3), ssim_padding=padding).backward()
    assert torch.isfinite(render.grad).all()
    assert not [w for w in recwarn if "Skipping Gaussian Smoothing" in str(w.message)]


@pytest.mark.parametrize("shape", [(1, 1, 9, 3), (2, 7, 1, 3), (1, 1, 1, 3)])
def test_images_one_pixel_thin_have_an_ssim(shape):
    # Coarse-to-fine's coarsest level of a thin view: pytorch-msssim's ssim() squeezed the 1-pixel side away.
    torch.manual_seed(0)
    target = torch.rand(shape, dtype=torch.float64)
    render = (target + 0.05 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    assert ssim(render, target, "same").item() == pytest.approx(ssim_map_3dgs(render, target).mean().item(), abs=1e-9)
    # "valid" windows shrink to one pixel: no variance, so SSIM is its luminance term alone
    c1 = 0.01 ** 2
    luminance = (2 * render * target + c1) / (render ** 2 + target ** 2 + c1)
    valid = ssim(render, target, "valid")
    assert valid.item() == pytest.approx(luminance.mean().item(), abs=1e-9)
    valid.backward()
    assert torch.isfinite(render.grad).all() and render.grad.abs().sum() > 0


def test_psnr_of_a_known_error():
    target = torch.zeros(1, 4, 4, 3)
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-4)


def test_nan_render_is_reported():
    with pytest.raises(ValueError, match="NaN"):
        photometric_loss(torch.full((1, 8, 8, 3), float("nan")), torch.zeros(1, 8, 8, 3))
