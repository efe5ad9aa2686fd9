import pytest
import torch

from hf_eff.splat.losses import photometric_loss, psnr, ssim


def test_identical_images_have_zero_loss_and_unit_ssim():
    image = torch.rand(2, 16, 16, 3)
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-5)
    assert photometric_loss(image, image).item() == pytest.approx(0.0, abs=1e-5)


def test_loss_mixes_l1_and_dssim():
    render, target = torch.rand(1, 24, 24, 3), torch.rand(1, 24, 24, 3)
    l1 = (render - target).abs().mean()
    expected = 0.8 * l1 + 0.2 * (1 - ssim(render, target))
    assert photometric_loss(render, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_tiny_images_work_without_smoothing_warnings(recwarn):
    render, target = torch.rand(1, 8, 6, 3), torch.rand(1, 8, 6, 3)
    photometric_loss(render, target)
    assert not [w for w in recwarn if "Skipping Gaussian Smoothing" in str(w.message)]


def test_psnr_of_a_known_error():
    target = torch.zeros(1, 4, 4, 3)
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-4)


def test_nan_render_is_reported():
    with pytest.raises(ValueError, match="NaN"):
        photometric_loss(torch.full((1, 8, 8, 3), float("nan")), torch.zeros(1, 8, 8, 3))
