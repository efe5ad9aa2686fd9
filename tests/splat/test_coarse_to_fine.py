import pytest
import torch

from hf_eff.splat.coarse_to_fine import (
    EnergyCoarseToFine,
    downscale_images,
    energy_schedule,
    scale_intrinsics,
    spectral_energy,
)


def textured_images(n=3, size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.linspace(0, 1, size)[None, :, None, None].expand(n, size, size, 3)
    noise = torch.rand(n, size, size, 3, generator=generator)
    return (0.5 * smooth + 0.5 * noise).contiguous()


def test_energy_matches_the_definition_at_full_resolution():
    images = textured_images()
    expected = torch.fft.fft2(images.permute(0, 3, 1, 2)).abs().sum(dim=(1, 2, 3)).mean().item()
    assert spectral_energy(images, 1) == pytest.approx(expected, rel=1e-5)


def test_schedule_decreases_with_downscale_and_starts_at_t_densify():
    schedule = energy_schedule(textured_images(), densify_steps=1000, num_levels=8)
    assert len(schedule) == 8 and schedule[0] == 1000
    assert all(a >= b for a, b in zip(schedule, schedule[1:]))
    # High-frequency noise is removed by downscaling: coarse levels hold much less energy.
    assert schedule[-1] < schedule[1] < 1000


def test_chunked_energies_equal_the_all_at_once_ones():
    # Odd sizes so that the downscales do not divide evenly; 7 images split unevenly by 3.
    images = textured_images(n=7, size=45, seed=1)[:, :, :38]
    all_at_once = [spectral_energy(images, factor, chunk_size=len(images)) for factor in range(1, 6)]
    for chunk_size in (1, 3):
        chunked = [spectral_energy(images, factor, chunk_size=chunk_size) for factor in range(1, 6)]
        assert chunked == pytest.approx(all_at_once, rel=1e-6)
        assert energy_schedule(images, 10_000, 5, chunk_size=chunk_size) == energy_schedule(
            images, 10_000, 5, chunk_size=len(images)
        )
    # The mean is over images, not chunks: a chunking that weighted chunks equally would differ.
    per_image = [spectral_energy(images[i : i + 1], 2, chunk_size=1) for i in range(len(images))]
    assert all_at_once[1] == pytest.approx(sum(per_image) / len(per_image), rel=1e-6)


def test_flat_images_spend_their_whole_budget_downscaled():
    # A constant image has only the DC term, which r^2 keeps equal at every level.
    schedule = energy_schedule(torch.full((2, 32, 32, 3), 0.5), densify_steps=100, num_levels=4)
    assert schedule == [100, 100, 100, 100]


def test_factor_at_runs_coarsest_first():
    c2f = EnergyCoarseToFine([100, 60, 30, 10])
    assert [c2f.factor_at(s) for s in (0, 9, 10, 29, 30, 59, 60, 500)] == [4, 4, 3, 3, 2, 2, 1, 1]
    assert c2f.full_resolution_step == 60
    assert EnergyCoarseToFine.from_state_dict(c2f.state_dict()) == c2f


def test_downscale_and_intrinsics_agree():
    images = textured_images(n=1, size=64)
    Ks = torch.tensor([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]])
    small = downscale_images(images, 4)
    scaled, width, height = scale_intrinsics(Ks, 64, 64, 4)
    assert small.shape == (1, 16, 16, 3) and (width, height) == (16, 16)
    assert torch.allclose(scaled[:2], Ks[:2] / 4) and scaled[2, 2] == 1


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        energy_schedule(torch.full((1, 8, 8, 3), float("nan")), 10)
    with pytest.raises(ValueError, match="zero spectral energy"):
        energy_schedule(torch.zeros(1, 8, 8, 3), 10)
    with pytest.raises(ValueError, match="image 3 contains NaN"):
        # A bad image in a later chunk is found and named.
        energy_schedule(torch.cat([torch.rand(3, 8, 8, 3), torch.full((1, 8, 8, 3), float("inf"))]), 10, chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size"):
        energy_schedule(torch.rand(2, 8, 8, 3), 10, chunk_size=0)
    with pytest.raises(ValueError, match="non-empty"):
        energy_schedule(torch.rand(0, 8, 8, 3), 10)
