"""RRAM weight-noise simulation for any torch model, with or without adapters.

The noise is written into the frozen weights in place, so a noisy forward (and backward) costs
nothing extra. Exit restores the clean weights bit-exactly without keeping a second copy: the
noise is regenerated from its seed and undone, and the few elements whose float rounding does not
invert (plus stuck cells) are stored as a sparse list of exact values. The overhead is
``RRAMNoise.overhead_bytes`` (about 5-10% of the noised weights at sigma 0.01, see the tests).

Each layer's draw comes from (seed, draw index, layer name) only, never from the global RNG, so
every process of a distributed run draws identical noise, and LoRA, HaLoRA and plain models see the
same noise for the same seed and settings (layer names are taken without PEFT/DDP/torch.compile wrapper parts).
Without explicit settings a HaLoRA model uses its adapter's mode, tile size and layers, other models
the defaults: pass them explicitly (HaLoRATrainer's ``eval_noise_*`` arguments) to compare models under one noise.
Draws come from a generator on the weight's device, so they are identical across processes on one
kind of device, but CPU and CUDA draws differ (CUDA's can also differ between GPU models): compare
noisy accuracies measured on the same hardware.

Only frozen weights are on RRAM. Adapter-side weights (SRAM) are never noised: the LoRA factors,
the trainable copies peft keeps for ``modules_to_save`` (a classifier head), and in a PEFT model
every other weight that requires grad. Noising a weight that is being trained would also be wrong
mechanically: restore cannot give back exact weights that changed meanwhile (it names them instead).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import sys
import traceback
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import ModulesToSaveWrapper
from torch import nn
from transformers.pytorch_utils import Conv1D

from hf_eff.halora.config import (
    HaLoRAConfig,
    check_draw_key,
    check_noise_target_modules,
    validate_noise,
)

# transformers' Conv1D (the GPT-2 family) is a Linear whose weight is stored transposed; a tile of
# the transpose is the transpose of a tile, so tile-relative noise means the same on both.
RRAM_LAYER_TYPES = (nn.Linear, Conv1D)

_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def canonical_layer_name(name: str) -> str:
    """Module name without DDP / PEFT / torch.compile wrapper parts, so a layer draws the same noise
    however wrapped (``base_layer`` of a LoRA layer, ``original_module`` of a ``modules_to_save`` wrapper,
    ``_orig_mod`` of a compiled model)."""
    name = ".".join(part for part in name.split(".") if part != "_orig_mod")
    name = name.removeprefix("module.").removeprefix("base_model.model.")
    return ".".join(part for part in name.split(".") if part not in ("base_layer", "original_module"))


def _layer_root(model: nn.Module) -> nn.Module:
    """The module whose layer names draw the noise: a PEFT tuner given on its own (``peft_model.base_model``)
    stands for its PeftModel, whose names carry one more ``model.`` (the tuner's own names would draw other noise)."""
    return model.model if isinstance(model, BaseTuner) else model


def active_halora_config(model: nn.Module) -> HaLoRAConfig | None:
    """The active adapter's ``HaLoRAConfig`` of a PEFT model (or its tuner), or None."""
    peft_config, adapter = getattr(model, "peft_config", None), getattr(model, "active_adapter", None)
    if not isinstance(peft_config, dict) or not isinstance(adapter, str):
        return None
    config = peft_config.get(adapter)
    return config if isinstance(config, HaLoRAConfig) else None


def noise_settings(model: nn.Module, mode: str | None = None, tile_size: int | None = None,
                   target_modules: list[str] | str | None = None) -> dict:
    """mode, tile_size and target_modules for noising ``model``: the values given, else the active
    HaLoRA adapter's, else the defaults (tile_additive, 64, every Linear inside the blocks)."""
    config = active_halora_config(model)
    if config is not None:
        mode = config.noise_mode if mode is None else mode
        tile_size = config.noise_tile_size if tile_size is None else tile_size
        target_modules = config.noise_target_modules if target_modules is None else target_modules
    return {"mode": "tile_additive" if mode is None else mode, "tile_size": 64 if tile_size is None else tile_size,
            "target_modules": target_modules}


def setting_field(model: nn.Module, setting: str, given, field: str) -> str:
    """How errors name the field that set noise ``setting`` (mode, tile_size or target_modules) for ``noise_settings``:
    the active HaLoRA adapter's ``noise_<setting>`` where ``given`` is None and the adapter sets it, else ``field``
    (the caller's own argument, which also holds the defaults)."""
    if given is None and getattr(active_halora_config(model), f"noise_{setting}", None) is not None:
        return f"the adapter's noise_{setting}"
    return field


def _adapter_side_modules(model: nn.Module) -> tuple[set[int], bool]:
    """ids of the modules that live on SRAM (LoRA factors and peft's trainable ``modules_to_save``
    copies, of every adapter, active or not), and whether the model carries PEFT adapters at all.
    A wrapper's ``original_module`` is the frozen pretrained layer: it stays on RRAM (it is what runs
    when the adapter is disabled)."""
    adapter_modules: set[int] = set()
    peft_adapted = False
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            peft_adapted = True
            for attr in module.adapter_layer_names:
                adapter_modules.update(id(m) for m in getattr(module, attr).modules())
        elif isinstance(module, ModulesToSaveWrapper):
            peft_adapted = True
            adapter_modules.update(id(m) for m in module.modules_to_save.modules())
    return adapter_modules, peft_adapted


def draw_seed(seed: int, draw_index: int, layer_name: str) -> int:
    """A 63-bit generator seed from (seed, draw index, canonical layer name); stable across processes
    (Python's own ``hash`` is salted per process)."""
    digest = hashlib.blake2b(f"{seed}/{draw_index}/{canonical_layer_name(layer_name)}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# Modules the warning below has named: it is shown once per model, not at every draw (HaLoRATrainer checks the
# selection when it is built, then each noise it draws selects again).
_REPORTED_UNSIMULATED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _user_stacklevel() -> int:
    """The ``stacklevel`` that credits a warning raised by the caller of this function to the first frame outside
    hf-eff (and contextlib, which enters ``rram_noise``): the user's line, however deep the library's call."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and (frame.f_code.co_filename.startswith(_PACKAGE_DIR)
                                        or frame.f_code.co_filename == contextlib.__file__):
        level, frame = level + 1, frame.f_back
    return level


def _warn_of_unsimulated_block_weights(model: nn.Module, inside_blocks: set[int], adapter_modules: set[int],
                                       peft_adapted: bool) -> None:
    """Warns, once per model, when the transformer blocks hold frozen weight matrices that are not
    ``RRAM_LAYER_TYPES`` (the 3-D fused experts of transformers' MoE models, convolutions): they stay exact, so
    the blocks are not wholly on RRAM as the default selection means. Embeddings (tables looked up, not
    multiplied; BERT lists its embeddings among its blocks, T5 its relative position biases) are not matrix
    products to simulate."""
    left_out = [
        (module, f"{canonical_layer_name(name)}.{param_name}", tuple(param.shape))
        for name, module in model.named_modules()
        if id(module) in inside_blocks and id(module) not in adapter_modules
        and not isinstance(module, (*RRAM_LAYER_TYPES, nn.Embedding))
        for param_name, param in module.named_parameters(recurse=False)
        if param.dim() >= 2 and not (peft_adapted and param.requires_grad)
    ]
    if left_out and not all(module in _REPORTED_UNSIMULATED for module, _, _ in left_out):
        _REPORTED_UNSIMULATED.update(module for module, _, _ in left_out)
        total = sum(math.prod(shape) for _, _, shape in left_out)
        _, name, shape = max(left_out, key=lambda item: math.prod(item[2]))
        warnings.warn(
            f"RRAM noise: {len(left_out)} weight tensor(s) inside the transformer blocks ({total} weights, e.g. "
            f"{name} {shape}) are not nn.Linear / Conv1D layers (fused MoE experts, convolutions) "
            "and are not simulated on RRAM: they stay exact",
            stacklevel=_user_stacklevel(),
        )


def rram_linear_modules(model: nn.Module, target_modules: list[str] | str | None = None,
                        field: str = "target_modules") -> dict[str, nn.Module]:
    """The frozen ``nn.Linear`` (or transformers ``Conv1D``) modules that sit on RRAM, by module name;
    never adapter-side weights.

    ``field``: what errors call ``target_modules`` (where the caller's user set it, e.g.
    ``HaLoRAConfig.noise_target_modules``). ``target_modules=None`` takes every such layer inside the transformer blocks (the classes the
    model lists in ``_no_split_modules``); a list matches name suffixes, a string is a regex matched
    against the canonical name. Adapter-side layers that the selection also matches are left out
    silently (RoBERTa's ``dense`` names attention, MLP and classifier-head layers alike): the LoRA
    factors, peft's trainable ``modules_to_save`` copies, and in a PEFT model any other layer whose
    weight requires grad (unfrozen by hand, so trained). A plain model (no PEFT layers) is taken as
    deployed whole, whatever its ``requires_grad`` flags. A selection that matches only adapter-side
    layers raises ``ValueError`` naming them. Only these two layer types are simulated: with
    ``target_modules=None`` other frozen weight matrices in the blocks (the fused 3-D experts of MoE models;
    not embeddings) stay exact, with a warning (once per model).
    """
    check_noise_target_modules(target_modules, field)
    model = _layer_root(model)
    adapter_modules, peft_adapted = _adapter_side_modules(model)
    if target_modules is None:
        block_classes = {
            cls_name for m in model.modules() for cls_name in (getattr(m, "_no_split_modules", None) or ())
        }
        if not block_classes:
            raise ValueError(
                f"{field}: the model declares no transformer block classes (_no_split_modules); "
                "pass the names of the layers on RRAM explicitly"
            )
        inside_blocks = {
            id(sub) for m in model.modules() if type(m).__name__ in block_classes for sub in m.modules()
        }
        selected = lambda name, module: id(module) in inside_blocks  # noqa: E731
        _warn_of_unsimulated_block_weights(model, inside_blocks, adapter_modules, peft_adapted)
    elif isinstance(target_modules, str):
        pattern = re.compile(target_modules)
        selected = lambda name, module: pattern.fullmatch(canonical_layer_name(name)) is not None  # noqa: E731
    else:
        suffixes = tuple(target_modules)
        selected = lambda name, module: any(  # noqa: E731
            canonical_layer_name(name) == s or canonical_layer_name(name).endswith("." + s) for s in suffixes
        )
    layers: dict[str, nn.Module] = {}
    adapter_side: list[str] = []
    seen_weights: set[int] = set()
    for name, module in model.named_modules():
        if not isinstance(module, RRAM_LAYER_TYPES) or not selected(name, module):
            continue
        if id(module) in adapter_modules or (peft_adapted and module.weight.requires_grad):
            adapter_side.append(name)
            continue
        if module.weight.data_ptr() in seen_weights:  # tied weights are one physical array
            continue
        seen_weights.add(module.weight.data_ptr())
        layers[name] = module
    if not layers:
        more = f" and {len(adapter_side) - 3} more" if len(adapter_side) > 3 else ""
        trained = f"; it matches only adapter-side (trained, SRAM) layers, never noised: {adapter_side[:3]}{more}" if adapter_side else ""
        # PEFT habits ("all-linear", also as a command line's one-item list, or one name as a string) meet the
        # regex reading of a string here
        regex = (" (a string is a regex matched against the whole module name, e.g. r'.*\\.q_proj'; a list holds "
                 "name suffixes; None takes every Linear in the transformer blocks)"
                 ) if isinstance(target_modules, str) or target_modules == ["all-linear"] else ""
        raise ValueError(
            f"{field}={target_modules!r} matches no frozen nn.Linear (or Conv1D) layer of the model{trained}{regex}"
        )
    return layers


def _tile_abs_max(weight: torch.Tensor, tile: int) -> torch.Tensor:
    """max|W| over each tile x tile block, shape (ceil(out/tile), 1, ceil(in/tile), 1): the shape that broadcasts
    over the blocked view ``_scale_by_tiles_`` multiplies, so it needs no view of its own."""
    rows, cols = weight.shape
    pad_rows, pad_cols = -rows % tile, -cols % tile
    magnitudes = weight.abs()
    if pad_rows or pad_cols:  # padding copies the layer: only where the tiles overhang it
        magnitudes = nn.functional.pad(magnitudes, (0, pad_cols, 0, pad_rows))
    return magnitudes.view((rows + pad_rows) // tile, tile, (cols + pad_cols) // tile, tile).amax(dim=(1, 3),
                                                                                                  keepdim=True)


def _expand_tiles(tile_values: torch.Tensor, tile: int, shape: torch.Size) -> torch.Tensor:
    return tile_values.repeat_interleave(tile, 0)[: shape[0]].repeat_interleave(tile, 1)[:, : shape[1]]


def _scale_by_tiles_(values: torch.Tensor, tile_values: torch.Tensor, tile: int) -> torch.Tensor:
    """``values *= expand(tile_values)`` in place; ``tile_values`` (tiles down, tiles across), or in the shape
    ``_tile_abs_max`` gives, which takes one view call fewer. When the shape tiles evenly (every layer of the
    usual LLMs) the tile values broadcast over a blocked view: no weight-sized expanded copy."""
    rows, cols = values.shape
    if rows % tile or cols % tile:
        return values.mul_(_expand_tiles(tile_values.flatten(1), tile, values.shape))
    if tile_values.dim() == 2:
        tile_values = tile_values.view(rows // tile, 1, cols // tile, 1)
    values.view(rows // tile, tile, cols // tile, tile).mul_(tile_values)
    return values


# The redraw works in row bands to cut its transient memory; each band costs one host synchronisation
# on CUDA (the `nonzero` of its fix-ups), plus one finiteness read per layer. Beside the layer's float32
# draw (4 bytes a weight, one generator call) a band holds up to about 3.5 float32 band-sized
# temporaries, so smaller bands hold less but sync more: bands of 2**18 elements (at least 64 rows)
# made a 7B model's apply sync ~40k times (whole layers: 2 per layer, ~450). Bands of at least 2**22
# elements and at most 4 per layer sync at most 5 times per layer (~1.1k for a 7B model's 224 layers);
# a model of 2048x8192 layers then peaks at 3.3-5.0x one bf16 layer (1.6-3.1x float32; the top is
# absolute noise's large fix-ups), vs 4.1-5.1x with the smaller bands and 10-13x whole-layer
# (benchmarks/halora_noise_memory.py).
_MIN_BAND_ELEMENTS = 2**22
_MAX_BANDS = 4


def _row_bands(shape: torch.Size, tile: int) -> list[slice]:
    """At most ``_MAX_BANDS`` slices of whole rows, each a multiple of ``tile`` rows (so whole tiles)
    and, but for the last, at least ``_MIN_BAND_ELEMENTS`` elements."""
    rows, cols = shape
    per_band = max(-(-rows // _MAX_BANDS), -(-_MIN_BAND_ELEMENTS // cols))
    per_band = -(-per_band // tile) * tile
    return [slice(start, min(start + per_band, rows)) for start in range(0, rows, per_band)]


def _rows(tensor: torch.Tensor, band: slice) -> torch.Tensor:
    """``tensor[band]``; ``tensor`` itself where the band holds all its rows (most layers are one band, and a slice is
    one more operator call: the redraw of a small model is launch-bound)."""
    return tensor if band.start == 0 and band.stop >= tensor.shape[0] else tensor[band]


@dataclass
class _LayerNoise:
    """What undoing one layer's noise needs: its generator seed, tile scales (and tile_additive's noise per unit of
    the draw, sigma x them: None in the other modes), and per row band written so far its exact fix-ups (flat indices
    within the band, and values, each a column, as ``nonzero`` gives them), so an apply interrupted part-way is undone
    exactly. Restore drops each band's record once the band is clean again.
    ``written``: the weight's storage and autograd version counter when the noise went in (the noise is
    written through ``.data``, which leaves the counter alone), to tell whether anything else wrote since;
    no version for an inference tensor (a model built under ``torch.inference_mode()``), which has no counter."""

    seed: int
    tile_scale: torch.Tensor | None
    noise_scale: torch.Tensor | None
    bands: list[tuple[slice, torch.Tensor, torch.Tensor]]
    written: tuple[int, int | None]

    @property
    def nbytes(self) -> int:
        tensors = [t for _, index, values in self.bands for t in (index, values)]
        tensors += [scale for scale in (self.tile_scale, self.noise_scale) if scale is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


# What RRAMNoise and rram_noise call sigma, mode and tile size (HaLoRAConfig's fields are noise_sigma, ...).
_ARGUMENT_NAMES = ("sigma", "mode", "tile_size")


class RRAMNoise:
    """Writes RRAM noise into a model's frozen Linear (or Conv1D) weights and takes it out again bit-exactly.

    ``mode``: ``tile_additive`` (W + sigma * max|W_tile| * eps), ``multiplicative``
    (W * (1 + sigma * eps)), ``absolute`` (W + sigma * eps) or ``stuck_at`` (a fraction sigma of the
    cells stuck, half at 0 and half at the tile's max magnitude with the cell's sign).
    ``mode``, ``tile_size`` and ``target_modules`` left as None take the active adapter's
    ``noise_mode``, ``noise_tile_size`` and ``noise_target_modules`` when it is a ``HaLoRAConfig``
    (so a model is evaluated on the hardware it was trained for), else ``tile_additive``, 64 and
    every Linear in the transformer blocks; explicit values win.
    The noised weights must stay frozen while the noise is applied (restore undoes the recorded
    draw, and raises naming a weight changed meanwhile); merge adapters only after ``restore()``. Sharded (FSDP) weights are not supported.
    A merged adapter is noised with W0 (see ``rram_noise``): simulate the hybrid chip on the unmerged model.
    """

    def __init__(
        self,
        model: nn.Module,
        sigma: float,
        mode: str | None = None,
        tile_size: int | None = None,
        target_modules: list[str] | str | None = None,
    ):
        # errors name these arguments; the settings left as None and taken from the adapter its config has checked
        targets_field = setting_field(model, "target_modules", target_modules, "target_modules")
        settings = noise_settings(model, mode, tile_size, target_modules)
        mode, tile_size, target_modules = settings["mode"], settings["tile_size"], settings["target_modules"]
        validate_noise(sigma, mode, tile_size, names=_ARGUMENT_NAMES)
        self.sigma, self.mode, self.tile_size = float(sigma), mode, int(tile_size)
        self.layers = rram_linear_modules(model, target_modules, field=targets_field)
        for name, module in self.layers.items():
            # bitsandbytes' Linear4bit / Linear8bitLt are nn.Linear subclasses holding packed integer codes
            if not module.weight.is_floating_point():
                raise ValueError(
                    f"layer {name}: weight is {module.weight.dtype} (a quantised layer, e.g. bitsandbytes' "
                    "Linear4bit): RRAM noise is defined on float weights; load the base model in a float dtype, or "
                    "leave quantised layers out with target_modules / noise_target_modules"
                )
            # accelerate's disk / CPU offloading (device_map with offload) and empty-weight initialisation
            # leave meta placeholders, loaded only inside each forward: there is nothing to write noise into.
            if module.weight.is_meta:
                raise ValueError(
                    f"layer {name}: weight is on the meta device (not loaded, or offloaded by a device_map with "
                    "accelerate hooks): RRAM noise is written into the weights in memory; load the model without "
                    "offloading, or leave offloaded layers out with target_modules / noise_target_modules"
                )
            # FSDP leaves each rank a flat shard (or an empty view): tiles and draws need whole weights.
            if module.weight.dim() != 2 or module.weight.numel() == 0 or type(module.weight).__name__ == "DTensor":
                raise ValueError(
                    f"layer {name}: weight is sharded or not a 2-D matrix (shape {tuple(module.weight.shape)}); "
                    "RRAM noise needs whole weights on every process: use DDP (or one process), not FSDP"
                )
        # PEFT layers around a noised weight: merged (merge_adapter) it holds W0 + BA, checked at each apply
        noised = {id(module) for module in self.layers.values()}
        self._tuner_layers = {canonical_layer_name(name): module for name, module in _layer_root(model).named_modules()
                              if isinstance(module, BaseTunerLayer) and id(module.get_base_layer()) in noised}
        self._applied: dict[str, _LayerNoise] | None = None
        # Set by redraw for its apply: the layers its restore put back, each with the tile scales (None in the untiled
        # modes) the apply before computed from those very weights, which were found finite
        self._restored_scales: dict[str, torch.Tensor | None] = {}

    @property
    def active(self) -> bool:
        return self._applied is not None

    @property
    def noised_weight_bytes(self) -> int:
        return sum(m.weight.numel() * m.weight.element_size() for m in self.layers.values())

    @property
    def overhead_bytes(self) -> int:
        """Memory held while the noise is applied (tile scales + exact fix-ups)."""
        return sum(state.nbytes for state in (self._applied or {}).values())

    def _draw(self, weight: torch.Tensor, seed: int) -> torch.Tensor:
        """The layer's random numbers, in one generator call: uniform for stuck_at, standard normal
        otherwise."""
        generator = torch.Generator(device=weight.device).manual_seed(seed)
        sample = torch.rand if self.mode == "stuck_at" else torch.randn
        return sample(weight.shape, generator=generator, device=weight.device)

    def _band_operand(self, draw: torch.Tensor, band: slice, noise_scale: torch.Tensor | None) -> torch.Tensor:
        """Turns one band of the draw, in place, into the operand of ``_noisy``: the additive noise
        itself (``noise_scale``, sigma x tile scale, x normal), ``1 + sigma x normal`` for multiplicative, the uniform
        numbers for stuck_at."""
        band_draw = _rows(draw, band)
        if self.mode == "multiplicative":
            return band_draw.mul_(self.sigma).add_(1)
        if self.mode == "absolute":
            return band_draw.mul_(self.sigma)
        if self.mode == "tile_additive":
            return _scale_by_tiles_(band_draw, _rows(noise_scale, self._band_tiles(band)), self.tile_size)
        return band_draw

    def _noisy(self, clean: torch.Tensor, operand: torch.Tensor, tile_scale: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "stuck_at":
            high = _scale_by_tiles_(torch.sign(clean), tile_scale, self.tile_size)
            stuck_zero = (operand >= self.sigma / 2) & (operand < self.sigma)
            return torch.where(operand < self.sigma / 2, high, clean).masked_fill_(stuck_zero, 0.0)
        if self.mode == "multiplicative":
            return clean * operand
        return clean + operand

    def _approx_clean(self, noisy: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        """Inverse of ``_noisy`` up to float rounding (stuck cells are left to the fix-ups)."""
        if self.mode == "stuck_at":
            return noisy
        if self.mode == "multiplicative":
            return noisy / operand
        return noisy - operand

    def _band_tiles(self, band: slice) -> slice:
        return slice(band.start // self.tile_size, -(-band.stop // self.tile_size))

    def apply(self, seed: int, draw_index: int = 0, sigma: float | None = None) -> None:
        """Noises every RRAM layer in place with draw (seed, draw_index, layer name); ``sigma``, if
        given, becomes the noise level from this draw on (``restore`` undoes the draw at its level).

        Each layer is drawn in one generator call, then noised band by band of rows (whole tiles):
        besides the float32 draw, the transient memory is a few band-sized temporaries. If it fails
        part-way (out of memory, an interrupt), what was written is undone before the error propagates."""
        if self._applied is not None:
            raise RuntimeError("RRAM noise is already applied; restore() it before drawing new noise")
        check_draw_key(seed, "seed", minimum=0)
        check_draw_key(draw_index, "draw_index")  # any integer: HaLoRATrainer's evaluation draws are -1
        if sigma is not None:
            validate_noise(sigma, self.mode, self.tile_size, names=_ARGUMENT_NAMES)
            self.sigma = float(sigma)
        merged = [name for name, layer in self._tuner_layers.items() if layer.merged]
        if merged and self.sigma != 0 and self.mode != "absolute":  # absolute noise does not depend on the weight
            more = f" and {len(merged) - 1} more" if len(merged) > 1 else ""
            warnings.warn(
                f"RRAM noise: {merged[0]}{more} hold their merged adapter (merge_adapter), so the noise hits W0 + BA as if "
                "the adapter were on RRAM too; on a hybrid chip it stays on exact SRAM and only W0 is noisy. Call "
                "unmerge_adapter() before simulating the chip (a merge_and_unload() model is a plain model: it is "
                "simulated wholly on RRAM, without a warning)",
                stacklevel=_user_stacklevel(),
            )
        applied: dict[str, _LayerNoise] = {}
        try:
            if self.sigma != 0:
                for name, module in self.layers.items():
                    self._apply_layer(name, module.weight, draw_seed(seed, draw_index, name), applied)
        except BaseException as error:
            # The traceback holds the failed layer's frames and with them its draw and band temporaries:
            # freed before restore draws again, or recovering from an out-of-memory error would need more.
            traceback.clear_frames(error.__traceback__)
            self._applied = applied
            self.restore()
            raise
        self._applied = applied

    @torch.no_grad()  # here, not on apply: its warning names the user's line, which a decorator's frame would hide
    def _apply_layer(self, name: str, parameter: torch.Tensor, seed: int, applied: dict[str, _LayerNoise]) -> None:
        """Noises one layer; its draw and band temporaries are freed when this returns, before the next
        layer allocates its own."""
        weight = parameter.data
        bands = _row_bands(weight.shape, self.tile_size)
        if name in self._restored_scales:
            tile_scale = self._restored_scales[name]
        else:
            tile_scale = self._checked_tile_scale(name, weight, bands)
        # registered before anything is written; restore skips it while no band is recorded
        version = None if parameter.is_inference() else parameter._version
        # once per layer, not per band, and kept: restore then multiplies nothing
        noise_scale = self.sigma * tile_scale if self.mode == "tile_additive" else None
        state = applied[name] = _LayerNoise(seed, tile_scale, noise_scale, [], (weight.data_ptr(), version))
        draw = self._draw(weight, seed)
        for band in bands:
            self._apply_band(weight, band, draw, state)

    def _checked_tile_scale(self, name: str, weight: torch.Tensor, bands: list[slice]) -> torch.Tensor | None:
        """The layer's tile scales (None in the untiled modes), once its weights are found finite."""
        tile_scale = None
        # by bands: a whole-layer abs() is a full-size temporary
        if self.mode in ("tile_additive", "stuck_at"):
            tile_scales = [_tile_abs_max(_rows(weight, band), self.tile_size) for band in bands]
            tile_scale = (tile_scales[0] if len(tile_scales) == 1 else torch.cat(tile_scales)).float()
            largest = tile_scale.amax()
        else:
            maxima = [_rows(weight, band).abs().amax() for band in bands]
            largest = maxima[0] if len(maxima) == 1 else torch.stack(maxima).amax()
        # max |W| is NaN or inf where any weight is (amax propagates NaN, which fails every comparison): one read per
        # layer, and fewer operator calls than isfinite(W).all()
        if not largest < math.inf:
            raise ValueError(f"layer {name}: weight contains NaN or inf; cannot simulate RRAM noise on it")
        return tile_scale

    def _apply_band(self, weight: torch.Tensor, band: slice, draw: torch.Tensor, state: _LayerNoise) -> None:
        """Writes one band's noise and records its fix-ups. Everything the record holds is computed
        before the write, so a failure leaves the band either clean or noisy and recorded."""
        clean = _rows(weight, band)
        operand = self._band_operand(draw, band, state.noise_scale)
        tiles = _rows(state.tile_scale, self._band_tiles(band)) if self.mode == "stuck_at" else None
        noisy = self._noisy(clean.float(), operand, tiles).to(weight.dtype)
        back = self._approx_clean(noisy.float(), operand).to(weight.dtype)
        int_dtype = _INT_VIEW[weight.element_size()]
        # Bitwise comparison: catches -0.0 vs 0.0 too.
        mismatch = (back.view(int_dtype) != clean.view(int_dtype)).flatten().nonzero()  # a column of flat indices
        # flat within the band: int32 but for a band of 2**31 elements (a layer of over 2**33 weights)
        index = mismatch.to(torch.int32 if clean.numel() < 2**31 else torch.int64)
        values = clean.flatten()[mismatch]
        clean.copy_(noisy)
        state.bands.append((band, index, values))

    def redraw(self, seed: int, draw_index: int = 0, sigma: float | None = None) -> None:
        """``restore()``, then ``apply(seed, draw_index, sigma)``: how training changes its noise. The weights restore
        puts back are, to the bit, those the last apply read, so this apply reuses that one's finiteness check and
        tile scales instead of reading every layer again (a launch-bound redraw's calls, and on CUDA a host
        synchronisation per layer). A restore that raises (a layer changed meanwhile) applies nothing.

        Only for callers where nothing else writes the noised weights between draws, as ``HaLoRATrainer`` between its
        steps: a write through ``.data`` (PEFT's unsafe merge) goes unseen by restore, and this apply would reuse the
        check and tile scales of the weights before it (a NaN written so would not be refused). Where other code may
        write them meanwhile, call ``restore()`` then ``apply()``, which reads them again."""
        restored = {name: state.tile_scale for name, state in (self._applied or {}).items() if state.bands}
        self.restore()
        self._restored_scales = restored
        try:
            self.apply(seed, draw_index, sigma)
        finally:
            self._restored_scales = {}

    @torch.no_grad()
    def restore(self) -> None:
        """Puts the clean weights back, bit-exactly. Each band's and each layer's record is dropped as
        soon as it is undone, so a restore that fails part-way (out of memory) can be called again.

        A noised weight that an autograd-visible in-place write changed meanwhile (an optimizer step on a
        weight that requires grad; writes through ``.data``, as PEFT's unsafe merge makes, go unseen) cannot
        come back exactly: it is restored as far as the record allows (the change kept, but for the fix-up
        cells, which get their clean values). One replaced meanwhile (``model.to(dtype)``, a move) keeps its
        noise: the record is of the old tensor. Either way RuntimeError names it, once every other layer is clean."""
        applied = self._applied or {}
        changed = []
        for name in list(applied):
            parameter = self.layers[name].weight
            if applied[name].bands:  # an apply may have failed before writing this layer
                storage, version = applied[name].written
                if parameter.data_ptr() != storage:
                    changed.append(name)
                else:
                    if version is not None and parameter._version != version:
                        changed.append(name)
                    self._restore_layer(parameter.data, applied[name])
            del applied[name]
        self._applied = None
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise RuntimeError(
                f"RRAM noise: {changed[:3]}{more} changed or replaced while the noise was applied (an optimizer step on "
                "weights that require grad, a dtype cast or a move?), so their clean weights could not be restored "
                "exactly. The noise simulates fixed deployed weights: cast or move the model before the noise goes in, "
                "freeze the noised weights (requires_grad_(False)) and train an adapter, with HaLoRATrainer for "
                "noise-aware training"
            )

    def _restore_layer(self, weight: torch.Tensor, state: _LayerNoise) -> None:
        """Undoes one layer's recorded bands, the last first, dropping each record once its band is clean."""
        # stuck_at needs no draw: its fix-ups hold every stuck cell's clean value
        draw = None if self.mode == "stuck_at" else self._draw(weight, state.seed)
        while state.bands:
            band, index, values = state.bands[-1]
            noisy = _rows(weight, band).float()
            if draw is not None:
                noisy = self._approx_clean(noisy, self._band_operand(draw, band, state.noise_scale))
            # contiguous: the fix-up indices are flat in row-major order, whatever the weight's strides
            back = noisy.to(weight.dtype).contiguous()
            back.view(-1)[index] = values  # int32 indices index as int64 ones do
            _rows(weight, band).copy_(back)
            state.bands.pop()


@contextlib.contextmanager
def rram_noise(
    model: nn.Module,
    sigma: float,
    mode: str | None = None,
    seed: int = 0,
    tile_size: int | None = None,
    target_modules: list[str] | str | None = None,
    draw_index: int = 0,
) -> Iterator[RRAMNoise]:
    """``with rram_noise(model, sigma=0.02, seed=3): ...`` runs the body on noisy RRAM weights.

    On a PEFT model whose active adapter is a ``HaLoRAConfig``, ``mode``, ``tile_size`` and
    ``target_modules`` left as None are the adapter's (``noise_mode``, ``noise_tile_size``,
    ``noise_target_modules``), as ``HaLoRATrainer.evaluate`` uses them; otherwise ``tile_additive``,
    64 and every Linear in the transformer blocks. Explicit arguments win. LoRA / adapter-side weights
    are never touched; the clean weights come back bit-exactly on exit.

    Simulate the hybrid chip on the unmerged adapter model. Merged weights hold W0 + BA, and the noise then
    hits the adapter too (its tile scale, its share of a multiplicative draw, its stuck cells): a different
    number, for a chip with the adapter on RRAM (but for ``absolute`` noise, which does not depend on the
    weight). A PEFT model after ``merge_adapter()`` gets a warning; a
    model from ``merge_and_unload()`` is a plain model and cannot be told apart, so evaluate before merging.
    """
    noise = RRAMNoise(model, sigma, mode=mode, tile_size=tile_size, target_modules=target_modules)
    noise.apply(seed, draw_index)
    try:
        yield noise
    finally:
        noise.restore()
