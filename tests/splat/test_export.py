import numpy as np
import pytest
import torch

from hf_eff.splat.model import GaussianModel, sh_to_rgb

SPLAT_RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])
CHUNK_FLOATS = 18  # min/max of position, log-scale and colour


def random_model(num=40, sh_degree=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    model = GaussianModel.random((0.5, 0.0, -1.0), 2.0, num, sh_degree=sh_degree, generator=generator)
    with torch.no_grad():
        for key in ("quats", "opacities", "sh0", "shN"):
            model.splats[key].add_(torch.randn(model.splats[key].shape, generator=generator))
    return model


def splats(model):
    return {key: value.detach().numpy().astype(np.float64) for key, value in model.splats.items()}


def split_header(data: bytes) -> tuple[list[str], bytes]:
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].decode("ascii").splitlines(), data[end:]


def match_rows(decoded, original, atol):
    """Index of the original row each decoded row is (each exactly once, within atol)."""
    distance = np.abs(decoded[:, None, :] - original[None, :, :]).max(-1)
    index = distance.argmin(1)
    assert (distance[np.arange(len(decoded)), index] <= atol).all()
    assert len(set(index.tolist())) == len(decoded)
    return index


def test_splat_file_holds_every_gaussian_as_a_32_byte_record(tmp_path):
    model = random_model(num=40)
    path = model.export(tmp_path / "scene.splat")
    data = path.read_bytes()
    assert len(data) == 40 * 32
    records = np.frombuffer(data, dtype=SPLAT_RECORD)
    s = splats(model)
    # Positions are stored raw (float32): each record is one Gaussian, each Gaussian once.
    order = match_rows(records["position"].astype(np.float64), s["means"], atol=0)
    assert (order != np.arange(40)).any()  # reordered (Morton), so the matching matters
    np.testing.assert_allclose(records["scale"], np.exp(s["scales"][order]), rtol=1e-6)
    rgb = sh_to_rgb(torch.from_numpy(s["sh0"][order, 0])).numpy()
    opacity = 1 / (1 + np.exp(-s["opacities"][order]))
    expected_rgba = np.clip(np.concatenate([rgb, opacity[:, None]], 1) * 255, 0, 255)
    assert np.abs(records["rgba"] - expected_rgba).max() <= 1
    quats = s["quats"][order] / np.linalg.norm(s["quats"][order], axis=1, keepdims=True)
    assert np.abs(records["rotation"] - np.clip(quats * 128 + 128, 0, 255)).max() <= 1  # (w, x, y, z)


def unpack_111011(words):
    """[N, 3] values in [0, 1] from gsplat's pack_111011: 11, 10 and 11 bits, x in the top bits."""
    return np.stack([(words >> 21) & 0x7FF, (words >> 11) & 0x3FF, words & 0x7FF], 1) / [2047, 1023, 2047]


@pytest.mark.parametrize("sh_degree", [0, 2])
def test_compressed_ply_chunks_and_decodes_to_the_gaussians(tmp_path, sh_degree):
    num = 600  # chunks of 256, 256 and 88
    model = random_model(num=num, sh_degree=sh_degree, seed=1)
    with torch.no_grad():
        model.splats["opacities"][:5] = -10.0  # opacity 4.5e-5: dropped (<= 1/255)
    kept = int((torch.sigmoid(model.splats["opacities"]) > 1 / 255).sum())
    assert kept <= num - 5
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    data = model.export(tmp_path / "scene.compressed.ply").read_bytes()
    header, body = split_header(data)
    assert header[:3] == ["ply", "format binary_little_endian 1.0", "element chunk 3"]
    assert f"element vertex {kept}" in header and f"element sh {kept}" in header
    assert sum(line.startswith("property float") for line in header) == CHUNK_FLOATS
    assert sum(line.startswith("property uint packed_") for line in header) == 4
    assert sum(line.startswith("property uchar f_rest_") for line in header) == n_rest
    assert len(body) == 3 * CHUNK_FLOATS * 4 + kept * 4 * 4 + kept * n_rest

    chunks = np.frombuffer(body[: 3 * CHUNK_FLOATS * 4], dtype="<f4").reshape(3, CHUNK_FLOATS).astype(np.float64)
    packed = np.frombuffer(body[3 * CHUNK_FLOATS * 4 : 3 * CHUNK_FLOATS * 4 + kept * 16], dtype="<u4")
    packed = packed.reshape(kept, 4).astype(np.int64)
    chunk = np.arange(kept) // 256
    low, high = chunks[chunk, 0:3], chunks[chunk, 3:6]
    position = packed[:, 0]
    decoded = low + unpack_111011(position) * (high - low)
    s = splats(model)
    order = match_rows(decoded, s["means"], atol=2.0 * 4 / 1023)  # the scene spans 4: 10 bits at worst
    assert (1 / (1 + np.exp(-s["opacities"][order])) > 1 / 255).all()  # the transparent ones are gone
    # Each Gaussian is closer to its own decoded position than the quantisation step of its chunk.
    step = (high - low) / [2047, 1023, 2047]
    assert (np.abs(decoded - s["means"][order]) <= step + 1e-6).all()
    # Opacity in the colour's low byte, the DC colour in the chunk's colour range.
    opacity = (packed[:, 3] & 0xFF) / 255
    assert np.abs(opacity - 1 / (1 + np.exp(-s["opacities"][order]))).max() <= 1 / 255
    red = chunks[chunk, 12] + ((packed[:, 3] >> 24) & 0xFF) / 255 * (chunks[chunk, 15] - chunks[chunk, 12])
    rgb = sh_to_rgb(torch.from_numpy(s["sh0"][order, 0])).numpy()
    assert np.abs(red - rgb[:, 0]).max() <= (chunks[:, 15] - chunks[:, 12]).max() / 255 + 1e-6
    # Log-scales in the chunk's range, 11/10/11 bits like the position.
    packed_scale = packed[:, 2]
    log_scale = chunks[chunk, 6:9] + unpack_111011(packed_scale) * (chunks[chunk, 9:12] - chunks[chunk, 6:9])
    assert np.abs(log_scale - s["scales"][order]).max() <= (chunks[:, 9:12] - chunks[:, 6:9]).max() / 1023
    # The normalised (w, x, y, z) rotation: the largest component's index in the top 2 bits, the
    # other three in 10 bits each over +-1/sqrt(2); the largest follows from the unit norm.
    rotation = packed[:, 1]
    others = (np.stack([(rotation >> 20) & 0x3FF, (rotation >> 10) & 0x3FF, rotation & 0x3FF], 1) / 1023 - 0.5)
    others *= np.sqrt(2)
    largest = rotation >> 30
    quats = np.zeros((kept, 4))
    quats[np.arange(kept), largest] = np.sqrt(np.clip(1 - (others**2).sum(1), 0, None))
    rest = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    quats[np.arange(kept)[:, None], rest] = others
    expected_quats = s["quats"][order] / np.linalg.norm(s["quats"][order], axis=1, keepdims=True)
    assert np.abs(np.einsum("ni,ni->n", quats, expected_quats)).min() > 0.999  # q and -q: one rotation
    if n_rest:
        sh = np.frombuffer(body[-kept * n_rest :], dtype=np.uint8).reshape(kept, n_rest)
        # f_rest channel-major, as in the standard .ply; quantised (v / 8 + 0.5) * 256.
        expected = s["shN"][order].transpose(0, 2, 1).reshape(kept, n_rest)
        decoded_sh = (sh + 0.5) / 256 * 8 - 4
        inside = np.abs(expected) < 3.9
        assert np.abs(decoded_sh - expected)[inside].max() <= 8 / 256


def test_ply_export_is_save_ply_and_round_trips(tmp_path):
    model = random_model(num=12, sh_degree=2)
    exported = model.export(tmp_path / "a.ply")
    assert exported.read_bytes() == model.save_ply(tmp_path / "b.ply").read_bytes()
    loaded = GaussianModel.from_ply(exported)
    for key in model.splats:
        torch.testing.assert_close(loaded.splats[key], model.splats[key], rtol=0, atol=0)


def test_format_comes_from_the_name_unless_given(tmp_path):
    model = random_model(num=10)
    assert len(model.export(tmp_path / "x.SPLAT").read_bytes()) == 10 * 32
    assert model.export(tmp_path / "x.compressed.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\nelement chunk")
    assert b"element vertex 10\nproperty float x" in model.export(tmp_path / "x.ply").read_bytes()
    assert len(model.export(tmp_path / "viewer.bin", format="splat").read_bytes()) == 10 * 32
    with pytest.raises(ValueError, match=r"cannot tell the format from 'viewer.bin'"):
        model.export(tmp_path / "viewer.bin")
    with pytest.raises(ValueError, match=r"format must be one of \('ply', 'splat', 'ply_compressed'\), got 'spz'"):
        model.export(tmp_path / "x.splat", format="spz")


@pytest.mark.parametrize("name", ["scene.splat", "scene.compressed.ply", "scene.ply"])
@pytest.mark.parametrize("key", ["opacities", "means"])
def test_non_finite_parameters_are_refused_by_name_and_keep_the_earlier_file(tmp_path, name, key):
    # gsplat's exporter would drop them; for one NaN opacity it drops every Gaussian.
    model = random_model(num=10)
    path = model.export(tmp_path / name)
    before = path.read_bytes()
    with torch.no_grad():
        model.splats[key].view(10, -1)[4, 0] = float("nan")
    with pytest.raises(ValueError, match=rf"{key} of 1 Gaussian\(s\) \(first: index 4\) contains NaN"):
        model.export(path)
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == [path]


def test_nothing_to_write_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"no Gaussian to write as 'splat' \(the model has 0"):
        GaussianModel(sh_degree=1).export(tmp_path / "empty.splat")
    model = random_model(num=10)
    with torch.no_grad():
        model.splats["opacities"].fill_(-8.0)
    with pytest.raises(ValueError, match=r"no Gaussian to write as 'ply_compressed' \(the model has 10; .* <= 1/255"):
        model.export(tmp_path / "clear.compressed.ply")
    assert len(model.export(tmp_path / "clear.splat").read_bytes()) == 10 * 32  # .splat keeps them
    assert list(tmp_path.iterdir()) == [tmp_path / "clear.splat"]
