"""`GaussianModel`: the parameters of a 3D Gaussian splat, Hub-native, `.ply`-compatible and
exported for web viewers (`export`: antimatter15's `.splat`, SuperSplat's compressed `.ply`).

The parameters live in ``model.splats``, an ``nn.ParameterDict`` with exactly the keys of
gsplat's ``simple_trainer`` (means, scales, quats, opacities, sh0, shN), so gsplat's
densification strategies (``gsplat.strategy``) operate on it directly and may change the
number of Gaussians during training.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin, constants
from torch import nn

from hf_eff.hub.cards import model_card_template
from hf_eff.hub.push import PushesWithoutLocalPaths
from hf_eff.hub.sources import check_weights_file, naming_missing_folder
from hf_eff.splat.cameras import check_world_to_normalized, original_points

__all__ = ["GaussianModel", "rgb_to_sh", "sh_to_rgb"]

# Zeroth-order real spherical harmonic, Y_0^0 = 1 / (2 sqrt(pi)).
SH_C0 = 0.28209479177387814
MAX_SH_DEGREE = 4  # gsplat's spherical-harmonic evaluation goes no higher
SPLAT_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")
# GaussianModel.export's formats, and the file names it recognises them by (the longest first).
EXPORT_FORMATS = ("ply", "splat", "ply_compressed")
_EXPORT_SUFFIXES = ((".compressed.ply", "ply_compressed"), (".splat", "splat"), (".ply", "ply"))
# gsplat's compressed PLY drops the Gaussians at or below this opacity (splat2ply_bytes_compressed's default).
COMPRESSED_PLY_MIN_OPACITY = 1 / 255


# gsplat ships these two conversions only in its examples, not in the package.
def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0, 1] -> DC spherical-harmonic coefficient (gsplat's convention, offset 0.5)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    return sh0 * SH_C0 + 0.5


def _num_sh_rest(sh_degree: int) -> int:
    return (sh_degree + 1) ** 2 - 1


def _check_sh_degree(sh_degree: int) -> None:
    # Before shN is sized: torch.zeros would refuse a negative size without naming sh_degree.
    if not 0 <= sh_degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE} (gsplat's range), got {sh_degree}")


class GaussianModel(
    nn.Module,
    PushesWithoutLocalPaths,
    PyTorchModelHubMixin,
    library_name="hf-eff",
    tags=["gaussian-splatting", "3d-reconstruction", "gsplat"],
    model_card_template=model_card_template("splat_model"),
):
    """A set of 3D Gaussians with spherical-harmonic colour.

    Args:
        sh_degree: the highest spherical-harmonic degree stored (0-4; shN has
            ``(sh_degree + 1)**2 - 1`` coefficients per colour channel).
        num_gaussians: how many Gaussians to allocate. The constructor makes a placeholder
            (zero means, unit scales, identity rotations); use `from_points`, `random`,
            `from_ply` or `from_pretrained` for a real model.
        rasterize_mode: how `render` rasterizes unless told otherwise: "classic" or "antialiased"
            (gsplat's modes, see `hf_eff.splat.rendering.rasterize`). A model renders best in the
            mode it was trained in: `SplatTrainer` sets this to its ``rasterize_mode``, and it is
            saved in config.json, so `from_pretrained` and `render_trajectory` render in that mode
            (a config.json without it, saved before this field, loads as "classic";
            ``from_pretrained(..., rasterize_mode=...)`` overrides it). The `.ply` and `.splat`
            exports cannot record it: most viewers render them classic.
        white_background: whether the model was fitted against white (3DGS's ``--white_background``:
            transparent pixels composited onto white), so that `render` draws onto white by default.
            `SplatTrainer` sets it from its arguments, and config.json keeps it. None: not known (a
            config.json saved before this field, a `.ply`); `render` draws onto black.
        world_to_normalized: None, or the similarity [4, 4] (float64; a uniform scale and a
            translation) that mapped the capture's world into the normalised coordinates the model
            was trained in (`Scene.world_to_normalized`, ``load_scene(..., normalize_world_space=True)``).
            config.json keeps it; ``save_ply(path, original_frame=True)`` maps the Gaussians back.
            `SplatTrainer` sets it from the split it trains on, when that split names one
            (`hf_eff.splat.scene.data_world_to_normalized`), and refuses a model that records another.
        data_split: None, or what a training run trained on, as examples/splat_train.py records it (the scene
            as a card shows it, its revision and the flags that split its views into train and test), so that an
            evaluation on other views is warned of. config.json keeps it.

    Storage follows gsplat: ``scales`` are log-scales, ``opacities`` are logits and
    ``quats`` are unnormalised (w, x, y, z); `render` applies exp / sigmoid.
    """

    def __init__(self, sh_degree: int = 3, num_gaussians: int = 0, rasterize_mode: str = "classic",
                 white_background: bool | None = None, world_to_normalized=None, data_split: dict | None = None):
        from hf_eff.splat.rendering import RASTERIZE_MODES

        super().__init__()
        if num_gaussians < 0:
            raise ValueError(f"num_gaussians must be >= 0, got {num_gaussians}")
        if rasterize_mode not in RASTERIZE_MODES:
            raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
        _check_sh_degree(sh_degree)
        self.sh_degree = sh_degree
        self.rasterize_mode = rasterize_mode
        self.white_background = white_background
        self.world_to_normalized = (None if world_to_normalized is None
                                    else check_world_to_normalized(world_to_normalized, "GaussianModel"))
        self.data_split = data_split
        n = num_gaussians
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        self.splats = nn.ParameterDict(
            {
                "means": nn.Parameter(torch.zeros(n, 3)),
                "scales": nn.Parameter(torch.zeros(n, 3)),
                "quats": nn.Parameter(quats),
                "opacities": nn.Parameter(torch.zeros(n)),
                "sh0": nn.Parameter(torch.zeros(n, 1, 3)),
                "shN": nn.Parameter(torch.zeros(n, _num_sh_rest(sh_degree), 3)),
            }
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tensors(cls, sh_degree: int = 3, **tensors: torch.Tensor) -> GaussianModel:
        """Builds a model from raw parameter tensors (the keys of ``splats``), checking shapes."""
        missing = [key for key in SPLAT_KEYS if key not in tensors]
        extra = [key for key in tensors if key not in SPLAT_KEYS]
        if missing or extra:
            raise ValueError(f"GaussianModel tensors: missing {missing}, unexpected {extra}")
        model = cls(sh_degree=sh_degree, num_gaussians=0)
        model._set_splats({key: tensors[key] for key in SPLAT_KEYS})
        return model

    @classmethod
    def from_points(
        cls,
        xyz,
        rgb,
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
        world_to_normalized=None,
    ) -> GaussianModel:
        """One Gaussian per point, as gsplat's simple_trainer initialises from an SfM cloud.

        Args:
            xyz: [N, 3] positions.
            rgb: [N, 3] colours, uint8 in 0..255 or float in [0, 1].
            init_opacity: initial opacity of every Gaussian (simple_trainer's 0.1).
            init_scale: multiplier on the isotropic scale, which is the mean distance to
                the 3 nearest neighbours.
            generator: seeds the random initial rotations.
            world_to_normalized: the frame of ``xyz`` (``scene.world_to_normalized`` for
                ``scene.point_arrays()``), recorded on the model; `SplatTrainer` also sets it from the
                split it trains on.
        """
        xyz = torch.as_tensor(np.asarray(xyz), dtype=torch.float32)
        rgb_array = np.asarray(rgb)
        if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0:
            raise ValueError(f"from_points: xyz must have shape [N>0, 3], got {tuple(xyz.shape)}")
        if rgb_array.shape != tuple(xyz.shape):
            raise ValueError(
                f"from_points: rgb shape {rgb_array.shape} does not match xyz {tuple(xyz.shape)}"
            )
        if rgb_array.dtype == np.uint8:
            colors = torch.as_tensor(rgb_array, dtype=torch.float32) / 255.0
        else:
            colors = torch.as_tensor(rgb_array, dtype=torch.float32)
            if colors.min() < 0 or colors.max() > 1:
                raise ValueError("from_points: float rgb must lie in [0, 1] (or pass uint8 0..255)")
        if not torch.isfinite(xyz).all():
            raise ValueError("from_points: xyz contains NaN or infinite values")
        scales = torch.log(_mean_neighbour_distance(xyz) * init_scale).unsqueeze(-1).repeat(1, 3)
        model = cls._initial(xyz, colors, scales, sh_degree, init_opacity, generator)
        if world_to_normalized is not None:
            model.world_to_normalized = check_world_to_normalized(world_to_normalized, "from_points")
        return model

    @classmethod
    def random(
        cls,
        center,
        radius: float,
        num_gaussians: int,
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> GaussianModel:
        """Gaussians uniform in the cube ``center +- radius`` with random colours
        (simple_trainer's ``init_type="random"``)."""
        if radius <= 0 or not math.isfinite(radius):
            raise ValueError(f"random: radius must be positive and finite, got {radius}")
        if num_gaussians <= 0:
            raise ValueError(f"random: num_gaussians must be positive, got {num_gaussians}")
        center = torch.as_tensor(center, dtype=torch.float32).reshape(3)
        xyz = center + radius * (2 * torch.rand(num_gaussians, 3, generator=generator) - 1)
        colors = torch.rand(num_gaussians, 3, generator=generator)
        scales = torch.log(_mean_neighbour_distance(xyz) * init_scale).unsqueeze(-1).repeat(1, 3)
        return cls._initial(xyz, colors, scales, sh_degree, init_opacity, generator)

    @classmethod
    def _initial(cls, xyz, colors, log_scales, sh_degree, init_opacity, generator=None):
        if not 0 < init_opacity < 1:
            raise ValueError(f"init_opacity must be in (0, 1), got {init_opacity}")
        _check_sh_degree(sh_degree)
        n = len(xyz)
        return cls.from_tensors(
            sh_degree=sh_degree,
            means=xyz,
            scales=log_scales,
            # Random rotations as simple_trainer does; the scales start isotropic anyway.
            quats=torch.rand(n, 4, generator=generator),
            opacities=torch.logit(torch.full((n,), init_opacity)),
            sh0=rgb_to_sh(colors).unsqueeze(1),
            shN=torch.zeros(n, _num_sh_rest(sh_degree), 3),
        )

    def _set_splats(self, tensors: dict[str, torch.Tensor]) -> None:
        n = len(tensors["means"])
        expected = {
            "means": (n, 3),
            "scales": (n, 3),
            "quats": (n, 4),
            "opacities": (n,),
            "sh0": (n, 1, 3),
            "shN": (n, _num_sh_rest(self.sh_degree), 3),
        }
        for key, shape in expected.items():
            if tuple(tensors[key].shape) != shape:
                raise ValueError(
                    f"GaussianModel.{key}: expected shape {shape} for {n} Gaussians with "
                    f"sh_degree={self.sh_degree}, got {tuple(tensors[key].shape)}"
                )
        for key in SPLAT_KEYS:
            value = tensors[key].detach().to(torch.float32).contiguous()
            self.splats[key] = nn.Parameter(value)

    # ------------------------------------------------------------------ properties
    @property
    def num_gaussians(self) -> int:
        return len(self.splats["means"])

    def __len__(self) -> int:
        return self.num_gaussians

    def extra_repr(self) -> str:
        return (f"num_gaussians={self.num_gaussians}, sh_degree={self.sh_degree}, "
                f"rasterize_mode={self.rasterize_mode!r}, white_background={self.white_background}")

    def colors(self) -> torch.Tensor:
        """SH coefficients [N, (sh_degree+1)^2, 3], the layout gsplat's rasterizer takes."""
        return torch.cat([self.splats["sh0"], self.splats["shN"]], dim=1)

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        viewmats: torch.Tensor,
        Ks: torch.Tensor,
        width: int,
        height: int,
        sh_degree: int | None = None,
        backgrounds: torch.Tensor | None = None,
        **kwargs,
    ):
        """Renders C cameras. Returns ``(colors [C,H,W,3], alphas [C,H,W,1], info)`` from
        `hf_eff.splat.rendering.rasterize` (gsplat on CUDA, the PyTorch backend on CPU).

        Args:
            viewmats: [C, 4, 4] world-to-camera matrices (OpenCV).
            Ks: [C, 3, 3] pinhole intrinsics in pixels.
            sh_degree: SH degree to evaluate (<= the stored degree); None uses all of it.
            backgrounds: [C, 3] colours behind the Gaussians; None: white with `white_background`, else black.
            kwargs: passed to ``rasterize`` (near_plane, packed, absgrad, backend, ...);
                ``rasterize_mode`` defaults to the model's (`rasterize_mode`).
        """
        from hf_eff.splat.rendering import rasterize

        if sh_degree is None:
            sh_degree = self.sh_degree
        if not 0 <= sh_degree <= self.sh_degree:
            raise ValueError(f"render: sh_degree must be in 0..{self.sh_degree}, got {sh_degree}")
        # Cameras read from a dataset sit on the CPU, trained Gaussians often on CUDA, where gsplat refuses
        # them ("viewmats must be a CUDA tensor"): render where the Gaussians are (.to keeps gradients).
        device = self.splats["means"].device
        viewmats, Ks = viewmats.to(device), Ks.to(device)
        if backgrounds is not None:
            backgrounds = backgrounds.to(device)
        elif self.white_background:
            backgrounds = viewmats.new_ones(len(viewmats), 3)
        return rasterize(
            means=self.splats["means"],
            quats=self.splats["quats"],
            scales=torch.exp(self.splats["scales"]),
            opacities=torch.sigmoid(self.splats["opacities"]),
            colors=self.colors(),
            viewmats=viewmats,
            Ks=Ks,
            width=width,
            height=height,
            sh_degree=sh_degree,
            backgrounds=backgrounds,
            **{"rasterize_mode": self.rasterize_mode, **kwargs},
        )

    # ------------------------------------------------------------------ Hub serialisation
    def save_pretrained(self, save_directory, *, config: dict | None = None, **kwargs):
        """`PyTorchModelHubMixin.save_pretrained`; config.json is the model's own settings, which `from_pretrained`
        rebuilds it from, so a ``config`` (which the mixin would drop unseen) is refused before anything is written."""
        # save_pretrained(push_to_hub=True) hands the mixin's own record of the constructor's arguments to push_to_hub
        if config is not None and config is not self._hub_mixin_config:
            raise ValueError(
                "GaussianModel takes no config=...: config.json holds the model's own settings (sh_degree, "
                "num_gaussians, rasterize_mode, white_background, world_to_normalized, data_split), which from_pretrained "
                "rebuilds it from; set rasterize_mode, white_background or world_to_normalized on the model instead"
            )
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        # The mixin would store the constructor's arguments; the count changes in training.
        config = {"sh_degree": self.sh_degree, "num_gaussians": self.num_gaussians,
                  "rasterize_mode": self.rasterize_mode, "white_background": self.white_background}
        if self.world_to_normalized is not None:
            # Checked before anything is written: the attribute may have been set (from a scene) since construction.
            config["world_to_normalized"] = check_world_to_normalized(self.world_to_normalized, "GaussianModel").tolist()
        if self.data_split is not None:
            config["data_split"] = self.data_split
        super()._save_pretrained(save_directory)
        (save_directory / constants.CONFIG_NAME).write_text(json.dumps(config, indent=2))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool = False, revision: str | None = None,
                        **model_kwargs) -> GaussianModel:
        """`PyTorchModelHubMixin.from_pretrained` (a local folder or a Hub repo id, its keyword arguments, which
        go to the download unchanged; `model_kwargs` go to the mixin, e.g. `map_location`), with errors that name
        a path that is neither, or a folder without the weights."""
        with naming_missing_folder("cannot load a GaussianModel", pretrained_model_name_or_path):
            return super().from_pretrained(pretrained_model_name_or_path, force_download=force_download, token=token,
                                           cache_dir=cache_dir, local_files_only=local_files_only, revision=revision,
                                           **model_kwargs)

    @classmethod
    def _load_as_safetensor(cls, model, model_file, map_location, strict):
        from safetensors.torch import load_file

        check_weights_file(model_file, "GaussianModel")
        device = map_location if isinstance(map_location, str) else str(map_location)
        state = load_file(model_file, device=device)
        prefix = "splats."
        found = {
            key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)
        }
        if sorted(found) != sorted(SPLAT_KEYS) or len(found) != len(state):
            raise ValueError(
                f"{model_file}: expected tensors {[prefix + k for k in SPLAT_KEYS]}, "
                f"found {sorted(state)}"
            )
        config = Path(model_file).parent / constants.CONFIG_NAME
        try:
            # The file decides the number of Gaussians, whatever the config says.
            model._set_splats(found)
        except ValueError as error:
            # Without config.json the mixin built the model from the constructor's defaults: an shN that holds the
            # coefficients of another sh_degree is their mismatch, not the file's; other shape errors are the file's.
            n_rest = found["shN"].shape[1] if found["shN"].dim() == 3 else None
            if (config.is_file() or n_rest is None or n_rest == _num_sh_rest(model.sh_degree)
                    or math.isqrt(n_rest + 1) ** 2 != n_rest + 1):
                raise
            raise ValueError(
                f"{model_file}: its folder holds no {constants.CONFIG_NAME}, which records the model's sh_degree and "
                f"other settings (the weights hold {n_rest} higher-order SH coefficients per Gaussian, "
                f"sh_degree {math.isqrt(n_rest + 1) - 1}); put back the {constants.CONFIG_NAME} saved "
                "with them"
            ) from error
        model.eval()
        return model

    # ------------------------------------------------------------------ .ply (3DGS format)
    def ply_property_names(self) -> list[str]:
        """The standard 3DGS vertex properties, in the reference implementation's order."""
        n_rest = 3 * _num_sh_rest(self.sh_degree)
        return (
            ["x", "y", "z", "nx", "ny", "nz"]
            + [f"f_dc_{i}" for i in range(3)]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity"]
            + [f"scale_{i}" for i in range(3)]
            + [f"rot_{i}" for i in range(4)]
        )

    def save_ply(self, path, original_frame: bool = False) -> Path:
        """Writes the standard 3DGS binary `.ply` (read by common splat viewers).

        ``original_frame``: for a model trained in normalised coordinates (`world_to_normalized`), the
        Gaussians mapped back into the capture's world (positions in float64, log-scales minus log s;
        rotations and colours are unchanged by a scale and a translation), then stored as the format's
        float32: far from the world origin (a georegistered capture) the positions round as coarsely as
        float32 does there. A model without `world_to_normalized` is refused: its frame is not known.

        Values are stored raw as in the reference implementation: log-scales, opacity
        logits, unnormalised (w, x, y, z) quaternions, and f_rest channel-major. A model with
        no Gaussian writes a valid file with 0 vertices; NaN or infinite parameters are refused
        (viewers cannot draw them; gsplat's export drops them). The format cannot record
        `rasterize_mode` (`from_ply` loads "classic"): `save_pretrained` keeps it.
        """
        from plyfile import PlyData, PlyElement

        path = Path(path)
        s = self._finite_splats("save_ply")
        if original_frame:
            s = self._in_original_frame(s)
        self._warn_mode_not_exported(path)
        with torch.no_grad():
            n = self.num_gaussians
            n_rest = 3 * _num_sh_rest(self.sh_degree)
            columns = torch.cat(
                [
                    s["means"],
                    torch.zeros(n, 3),
                    s["sh0"].reshape(n, 3),
                    s["shN"].transpose(1, 2).reshape(n, n_rest),  # [N, 3, K-1]: channel-major
                    s["opacities"].reshape(n, 1),
                    s["scales"],
                    s["quats"],
                ],
                dim=1,
            ).numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        vertex = np.empty(n, dtype=[(name, "f4") for name in self.ply_property_names()])
        for i, name in enumerate(vertex.dtype.names):
            vertex[name] = columns[:, i]
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))
        return path

    def _in_original_frame(self, splats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``splats`` (float32 CPU) with means and log-scales mapped by the inverse of `world_to_normalized`."""
        if self.world_to_normalized is None:
            raise ValueError(
                "GaussianModel.save_ply(original_frame=True): this model records no world_to_normalized (it was not "
                "trained in normalised coordinates, or was saved without them): its Gaussians are in the frame of "
                "the scene it was trained on; set model.world_to_normalized = scene.world_to_normalized first if "
                "that scene was normalised"
            )
        transform = check_world_to_normalized(self.world_to_normalized, "GaussianModel")  # it may have been set since
        means = original_points(transform, splats["means"].numpy())
        return {**splats, "means": torch.from_numpy(means.astype(np.float32)),
                "scales": splats["scales"] - float(np.log(transform[0, 0]))}

    def _warn_mode_not_exported(self, path: Path) -> None:
        if self.rasterize_mode != "classic":
            warnings.warn(
                f"{path.name} cannot record rasterize_mode={self.rasterize_mode!r}: most viewers render it classic, "
                "which shows this model's small Gaussians larger and more opaque than trained; save_pretrained "
                "keeps the mode",
                stacklevel=3,
            )

    def _finite_splats(self, caller: str) -> dict[str, torch.Tensor]:
        """The parameters as float32 CPU tensors, refusing NaN or infinite values by name."""
        s = {key: value.detach().cpu().float() for key, value in self.splats.items()}
        for key, value in s.items():
            bad = ~torch.isfinite(value)
            bad = (bad.flatten(1).any(1) if bad.dim() > 1 else bad).nonzero()
            if len(bad):
                raise ValueError(
                    f"GaussianModel.{caller}: {key} of {len(bad)} Gaussian(s) (first: index "
                    f"{bad[0].item()}) contains NaN or infinite values"
                )
        return s

    def export(self, path, format: str | None = None) -> Path:
        """Writes the Gaussians in a web viewer's format, through gsplat's exporter
        (``gsplat.exporter.export_splats``, which runs on the CPU).

        Formats (None: from the file name, ``.splat``, ``.compressed.ply`` or ``.ply``):

        - ``"splat"``: antimatter15's splat viewer. 32 bytes a Gaussian: position and scale
          (float32), RGBA and the normalised (w, x, y, z) rotation (uint8), in Morton order. Colour
          is the SH DC term only (no view dependence), opacity and colour are truncated to 1/255.
        - ``"ply_compressed"``: SuperSplat / PlayCanvas's compressed PLY. Chunks of 256 Gaussians
          (Morton order) store float bounds; each Gaussian packs its position and log-scale into
          11/10/11 bits, its rotation into 2 + 3 x 10 bits, its colour and opacity into 8 bits each,
          and higher SH coefficients into one byte each (range +-4). Gaussians with opacity at or
          below 1/255 are dropped, as gsplat does.
        - ``"ply"``: the standard 3DGS `.ply`, written by `save_ply` (gsplat's own lacks the
          reference implementation's normals; `save_ply` round-trips through `from_ply`).

        None of these formats records `rasterize_mode`: most viewers render classic, where a model
        trained antialiased shows its small Gaussians larger and more opaque than trained (rendered
        classic, the validation scenes' antialiased models lost 2.3-2.9 dB of test PSNR);
        `save_pretrained` keeps the mode.

        NaN or infinite parameters are refused, naming the parameter. gsplat's exporter would drop
        those Gaussians, but it reduces the opacity check over all Gaussians, so one non-finite
        opacity drops every Gaussian. gsplat cannot write an empty set: a model with no Gaussian
        to write is refused for ``splat`` and ``ply_compressed``. A refused export leaves an
        earlier file at ``path`` as it was.
        """
        from gsplat.exporter import export_splats

        path = Path(path)
        if format is None:
            format = next(
                (fmt for suffix, fmt in _EXPORT_SUFFIXES if path.name.lower().endswith(suffix)),
                None,
            )
            if format is None:
                raise ValueError(
                    f"GaussianModel.export: cannot tell the format from {path.name!r}; pass format= one of "
                    f"{EXPORT_FORMATS} (or name the file *.splat, *.compressed.ply or *.ply)"
                )
        if format not in EXPORT_FORMATS:
            raise ValueError(
                f"GaussianModel.export: format must be one of {EXPORT_FORMATS}, got {format!r}"
            )
        if format == "ply":
            return self.save_ply(path)
        s = self._finite_splats("export")
        self._warn_mode_not_exported(path)
        kept = self.num_gaussians
        if format == "ply_compressed":
            kept = int((torch.sigmoid(s["opacities"]) > COMPRESSED_PLY_MIN_OPACITY).sum())
        if kept == 0:
            raise ValueError(
                f"GaussianModel.export: no Gaussian to write as {format!r} (the model has "
                f"{self.num_gaussians}; the compressed PLY drops those with opacity <= 1/255)"
            )
        data = export_splats(**s, format=format)  # encoded in memory: a failure writes nothing
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    @classmethod
    def from_ply(cls, path) -> GaussianModel:
        """Reads a standard 3DGS `.ply`; the SH degree follows from the f_rest count."""
        from plyfile import PlyData

        path = Path(path)
        ply = PlyData.read(str(path))
        if "vertex" not in ply:
            raise ValueError(f"{path}: no 'vertex' element, not a Gaussian-splat .ply")
        vertex = ply["vertex"].data
        names = set(vertex.dtype.names)
        n_rest = sum(1 for name in names if name.startswith("f_rest_"))
        sh_degree = round(math.sqrt(n_rest // 3 + 1)) - 1
        if n_rest % 3 or not 0 <= sh_degree <= MAX_SH_DEGREE or _num_sh_rest(sh_degree) * 3 != n_rest:
            raise ValueError(f"{path}: {n_rest} f_rest_* properties match no SH degree in 0..{MAX_SH_DEGREE} "
                             "(gsplat's range)")
        model = cls(sh_degree=sh_degree)
        missing = [name for name in model.ply_property_names() if name not in names]
        missing = [name for name in missing if name not in ("nx", "ny", "nz")]
        if missing:
            hint = ""
            if "chunk" in ply:
                hint = ("; it is a compressed PLY (SuperSplat's, `export(..., 'ply_compressed')`), which from_ply does "
                        "not read: load the standard .ply it was made from")
            elif {"x", "y", "z"} <= names and "f_dc_0" not in names:
                hint = "; it looks like a point cloud: GaussianModel.from_points(xyz, rgb) makes Gaussians of one"
            raise ValueError(f"{path}: missing 3DGS vertex properties {missing}{hint}")

        n = len(vertex)

        def stack(prefix, count):
            columns = [np.asarray(vertex[f"{prefix}{i}"], dtype=np.float32) for i in range(count)]
            return torch.from_numpy(
                np.stack(columns, 1) if columns else np.zeros((n, 0), np.float32)
            )

        model._set_splats(
            {
                "means": torch.from_numpy(
                    np.stack([np.asarray(vertex[c], dtype=np.float32) for c in "xyz"], 1)
                ),
                "scales": stack("scale_", 3),
                "quats": stack("rot_", 4),
                "opacities": torch.from_numpy(np.asarray(vertex["opacity"], dtype=np.float32)),
                "sh0": stack("f_dc_", 3).reshape(n, 1, 3),
                "shN": stack("f_rest_", n_rest).reshape(n, 3, n_rest // 3).transpose(1, 2),
            }
        )
        return model


def _mean_neighbour_distance(xyz: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Mean distance of each point to its k nearest neighbours (simple_trainer's scale init)."""
    from sklearn.neighbors import NearestNeighbors

    points = xyz.detach().cpu().numpy()
    if len(points) < 2:
        return torch.full((len(points),), 0.01)
    k = min(k, len(points) - 1)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    mean = torch.from_numpy(distances[:, 1:].mean(1)).float()
    # Duplicate points would give log(0); clamp to a tiny positive scale.
    return mean.clamp_min(1e-7)
