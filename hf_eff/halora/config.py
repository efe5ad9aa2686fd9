"""HaLoRAConfig: LoRA plus the RRAM noise model and the robustness regulariser."""

from __future__ import annotations

import numbers
import re
import warnings
from dataclasses import dataclass, field

from peft import LoraConfig
from peft.utils import PeftType

NOISE_MODES = ("tile_additive", "multiplicative", "absolute", "stuck_at")
REG_NORMS = ("spectral", "frobenius")
REG_REDUCTIONS = ("sum", "mean")
REG_APPLICATIONS = ("decoupled", "loss")
SIGMA_SAMPLINGS = ("fixed", "uniform")


@dataclass
class HaLoRAConfig(LoraConfig):
    """Configuration of a [`HaLoRAModel`]: a LoRA adapter trained for hybrid compute-in-memory chips.

    The frozen weights W0 sit on noisy analog RRAM, the adapter (A, B) on exact digital SRAM. Training
    runs the forward pass with noisy W0 and adds ``reg_weight * L_reg`` with
    ``L_reg = sum over adapted layers (||A A^T|| + ||B^T B||)`` (Wu et al., arXiv 2502.19747).

    Where the paper is silent the defaults are ours: the noise is additive with a std of
    ``noise_sigma * max|W0|`` per ``noise_tile_size`` x ``noise_tile_size`` tile, every ``nn.Linear``
    inside the transformer blocks is on RRAM (adapted or not), and the regulariser sums spectral norms.

    The noise and the regulariser are applied by [`HaLoRATrainer`] (``training_step``, ``compute_loss``
    and an optimizer hook), not by the model's forward. Any other trainer (a plain ``Trainer``, TRL's
    ``SFTTrainer(peft_config=HaLoRAConfig(...))``) trains this adapter as a plain LoRA: no noise, no
    regulariser, though the saved adapter is still typed HALORA (the model warns once at the first such
    training forward). To keep another trainer's data handling, put ``HaLoRATrainer`` first in a
    subclass (``class T(HaLoRATrainer, SFTTrainer)``, arguments a dataclass of both: ``@dataclass class
    A(HaLoRATrainingArguments, SFTConfig)``, which takes transformers' defaults over SFTConfig's, so set the
    learning rate, logging_steps, bf16 and activation_checkpointing yourself). ``rram_noise`` and ``HaLoRATrainer.evaluate`` read the noise model (mode, tile,
    layers) from this config where not given explicitly (``HaLoRATrainingArguments.eval_noise_*``).

    Args:
        noise_sigma (`float`): noise level used in training (paper: 0.01). For ``stuck_at`` it is the
            fraction of stuck cells.
        noise_mode (`str`): ``tile_additive`` (default), ``multiplicative`` (W0 * (1 + sigma * eps)),
            ``absolute`` (W0 + sigma * eps) or ``stuck_at`` (a fraction of cells stuck at 0 or at the tile max).
        noise_tile_size (`int`): side of the square RRAM tile the relative noise scale is taken over.
        noise_target_modules (`list[str]` or `str`, optional): which frozen ``nn.Linear`` modules are on
            RRAM: module-name suffixes or one regex; ``None`` means every ``nn.Linear`` in the transformer blocks.
        noise_resample_steps (`int`): optimizer steps between two noise draws in training (paper: 400, out of many
            thousands of steps). Short runs need a short interval: with a few draws the adapter learns to compensate
            those draws and loses clean accuracy.
        noise_sigma_sampling (`str`): ``fixed`` (default): every draw uses ``noise_sigma``. ``uniform``: each draw's
            level is drawn from U(0, ``noise_sigma``) (seeded by the noise seed and draw index), so training sees
            weights from clean to the full noise level. Measured (SmolLM2-135M, 50 steps, a draw every step, 300
            questions): a fixed 0.02 left clean accuracy 16 points below LoRA's, U(0, 0.02) level with it.
        noise_warmup_steps (`int`): the training noise level ramps linearly from 0 at step 0 to ``noise_sigma`` at
            this step (taken at each draw's first step), so the adapter learns the task before the noise; 0: no ramp.
            It ramps only over several draws: one not longer than ``noise_resample_steps`` leaves the first draw
            noise-free and the next at the full level (``HaLoRATrainer`` warns).
        reg_weight (`float`): mu, the weight of the regulariser (paper: 0.1); 0 disables it.
        reg_norm (`str`): ``spectral`` (paper) or ``frobenius`` norm of the r x r Gram matrices.
        reg_reduction (`str`): ``sum`` (default) or ``mean`` over the adapted layers.
        reg_application (`str`): how ``reg_weight * L_reg`` reaches the adapter. ``decoupled`` (default, ours):
            after each optimizer step the factors take a plain gradient step ``-lr * reg_weight * grad(L_reg)``,
            as AdamW decouples weight decay. ``loss``: it is added to the training loss, so Adam rescales its
            gradient too. The paper states the objective but not the optimizer; its bound is derived for SGD
            steps. Under Adam the ``loss`` form shrinks A at about ``lr`` per element per step whatever mu is
            (LoRA starts with B = 0, so at first A gets no task gradient to normalise against): on SmolLM2-135M
            L_reg fell from 53 to 15 in 50 steps and both clean and noisy accuracy fell below LoRA's. The
            decoupled step keeps the regulariser's strength set by mu.
    """

    noise_sigma: float = field(default=0.01, metadata={"help": "Training noise level (fraction of stuck cells for stuck_at)."})
    noise_mode: str = field(default="tile_additive", metadata={"help": f"RRAM noise model, one of {NOISE_MODES}."})
    noise_tile_size: int = field(default=64, metadata={"help": "Side of the square RRAM tile."})
    noise_target_modules: list[str] | str | None = field(
        default=None,
        metadata={"help": "Frozen nn.Linear modules on RRAM (name suffixes or a regex); None: all in the transformer blocks."},
    )
    noise_resample_steps: int = field(default=400, metadata={"help": "Optimizer steps between noise draws in training."})
    noise_sigma_sampling: str = field(
        default="fixed", metadata={"help": f"One of {SIGMA_SAMPLINGS}: every draw at noise_sigma, or at a level drawn from U(0, noise_sigma)."}
    )
    noise_warmup_steps: int = field(
        default=0, metadata={"help": "Steps over which the training noise level ramps linearly from 0 to noise_sigma; 0: none."}
    )
    reg_weight: float = field(default=0.1, metadata={"help": "mu: weight of the regulariser."})
    reg_norm: str = field(default="spectral", metadata={"help": f"Norm of the r x r Gram matrices, one of {REG_NORMS}."})
    reg_reduction: str = field(default="sum", metadata={"help": f"Reduction over adapted layers, one of {REG_REDUCTIONS}."})
    reg_application: str = field(
        default="decoupled",
        metadata={"help": f"One of {REG_APPLICATIONS}: a plain gradient step of lr * mu * grad(L_reg) after each optimizer "
                          "step (decoupled from Adam, like AdamW's weight decay), or mu * L_reg added to the loss."},
    )

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = PeftType.HALORA
        if self.use_dora:
            raise ValueError("HaLoRAConfig.use_dora: HaLoRA regularises plain LoRA factors; DoRA is not supported")
        # PEFT accepts it; a layer alpha_pattern gives another alpha is scaled by that one
        if self.lora_alpha == 0 and not any((self.alpha_pattern or {}).values()):
            warnings.warn("HaLoRAConfig.lora_alpha=0 scales the adapter's update to 0, so it changes no output; give "
                          "lora_alpha > 0 (PEFT's default is 8)", stacklevel=3)
        # NumPy numbers (a sweep's values) become Python ones: they would not serialise to adapter_config.json
        for name, kind, cast in (("noise_sigma", numbers.Real, float), ("reg_weight", numbers.Real, float),
                                 ("noise_tile_size", numbers.Integral, int),
                                 ("noise_resample_steps", numbers.Integral, int),
                                 ("noise_warmup_steps", numbers.Integral, int)):
            value = getattr(self, name)
            if isinstance(value, kind) and not isinstance(value, bool):
                setattr(self, name, cast(value))
        validate_noise(self.noise_sigma, self.noise_mode, self.noise_tile_size, prefix="HaLoRAConfig.")
        check_noise_target_modules(self.noise_target_modules, "HaLoRAConfig.noise_target_modules")
        if isinstance(self.noise_target_modules, (list, tuple)):
            self.noise_target_modules = list(self.noise_target_modules)
        if not _is_int(self.noise_resample_steps) or self.noise_resample_steps < 1:
            raise ValueError(f"HaLoRAConfig.noise_resample_steps must be a positive integer, got {self.noise_resample_steps!r}")
        if self.noise_sigma_sampling not in SIGMA_SAMPLINGS:
            raise ValueError(f"HaLoRAConfig.noise_sigma_sampling must be one of {SIGMA_SAMPLINGS}, got {self.noise_sigma_sampling!r}")
        if not _is_int(self.noise_warmup_steps) or self.noise_warmup_steps < 0:
            raise ValueError(f"HaLoRAConfig.noise_warmup_steps must be an integer >= 0, got {self.noise_warmup_steps!r}")
        if not (isinstance(self.reg_weight, float) and self.reg_weight >= 0):  # also catches NaN
            raise ValueError(f"HaLoRAConfig.reg_weight must be a number >= 0, got {self.reg_weight!r}")
        if self.reg_norm not in REG_NORMS:
            raise ValueError(f"HaLoRAConfig.reg_norm must be one of {REG_NORMS}, got {self.reg_norm!r}")
        if self.reg_reduction not in REG_REDUCTIONS:
            raise ValueError(f"HaLoRAConfig.reg_reduction must be one of {REG_REDUCTIONS}, got {self.reg_reduction!r}")
        if self.reg_application not in REG_APPLICATIONS:
            raise ValueError(f"HaLoRAConfig.reg_application must be one of {REG_APPLICATIONS}, got {self.reg_application!r}")


def validate_noise(sigma: float, mode: str, tile_size: int, prefix: str = "",
                   names: tuple[str, str, str] = ("noise_sigma", "noise_mode", "noise_tile_size")) -> None:
    """Raises ValueError for an invalid noise setting, naming it as the caller's user wrote it: ``prefix`` and
    ``names`` (of sigma, mode and tile size; the config's fields and the example's flags by default,
    ``rram_noise``'s arguments there)."""
    sigma_name, mode_name, tile_size_name = (prefix + name for name in names)
    if mode not in NOISE_MODES:
        raise ValueError(f"{mode_name} must be one of {NOISE_MODES}, got {mode!r}")
    # any real number (a NumPy float32 from a sweep too), not a bool
    if not (isinstance(sigma, numbers.Real) and not isinstance(sigma, bool) and sigma >= 0 and sigma != float("inf")):
        raise ValueError(f"{sigma_name} must be a finite number >= 0, got {sigma!r}")
    if mode == "stuck_at" and sigma > 1:
        raise ValueError(f"{sigma_name} is the stuck-cell fraction for stuck_at and must be <= 1, got {sigma!r}")
    check_tile_size(tile_size, tile_size_name)


def check_noise_target_modules(target_modules, field: str) -> None:
    """Raises ValueError naming ``field`` unless ``target_modules`` is None, a valid regex or a list of names."""
    if target_modules is None:
        return
    if isinstance(target_modules, str):
        try:
            re.compile(target_modules)
        except re.error as error:
            raise ValueError(f"{field}={target_modules!r} is not a valid regex ({error}); a list holds name suffixes") from None
        return
    if not (isinstance(target_modules, (list, tuple)) and all(isinstance(name, str) for name in target_modules)):
        raise ValueError(f"{field} must be None, a regex string or a list of module-name suffixes, got {target_modules!r}")


def check_tile_size(tile_size, field: str) -> None:
    """Raises ValueError naming ``field`` unless ``tile_size`` is a positive integer (a NumPy one too)."""
    if not _is_int(tile_size) or tile_size < 1:
        raise ValueError(f"{field} must be a positive integer, got {tile_size!r}")


def _is_int(value) -> bool:
    """An integer (a NumPy one too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_draw_key(value, field: str, minimum: int | None = None) -> None:
    """Raises ValueError naming ``field`` unless ``value`` is an integer (a NumPy one too) of at least ``minimum``:
    a draw hashes its seed and draw index as written, so a seed of 3.0 would silently draw other noise than 3."""
    if not _is_int(value) or (minimum is not None and value < minimum):
        raise ValueError(f"{field} must be an integer{'' if minimum is None else f' >= {minimum}'}, got {value!r}")
