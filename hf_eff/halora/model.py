"""HaLoRAModel: LoRA's tuner plus the regulariser getter the trainer adds to the loss.

The adapted layers are LoRA's own: HaLoRA changes where W0 lives (noisy RRAM, simulated by
``hf_eff.halora.noise``) and the training objective, not the layer's computation.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from peft.tuners.lora import LoraModel

from hf_eff.halora.config import HaLoRAConfig
from hf_eff.halora.noise import rram_linear_modules
from hf_eff.halora.regularizer import halora_regularizer


class HaLoRAModel(LoraModel):
    """Creates a HaLoRA model from a pretrained transformers model (``get_peft_model(model, HaLoRAConfig())``).

    Everything LoRA offers (merge_and_unload, disable_adapter, several adapters, delete_adapter)
    works unchanged; but evaluate under RRAM noise before merging: merged weights put BA on RRAM with W0
    (``rram_noise`` explains, and warns after ``merge_adapter()``). ``get_regularization_loss`` returns the un-weighted L_reg; ``HaLoRATrainer``
    adds ``reg_weight * L_reg`` with the scaling gradient accumulation needs (like KaSA's loss getter,
    rather than AdaLoRA's in-forward addition, which double-counts under token-count loss scaling).
    The noise and the regulariser come from ``HaLoRATrainer``: a training forward (train mode, grad
    enabled) outside its steps, as under a plain ``Trainer`` or TRL's ``SFTTrainer``, warns once.
    """

    prefix: str = "lora_"
    # Set by HaLoRATrainer around its training steps; a training forward without it gets one warning.
    halora_trainer_step: bool = False
    _warned_plain_training: bool = False

    @contextmanager
    def _enable_peft_forward_hooks(self, *args, **kwargs):
        # PeftModel enters this around every forward with an active adapter, whatever the task type.
        # The wrapped model's mode, not this wrapper's: get_peft_model leaves the wrapper in train mode
        # around a base in eval mode, and inference on it (grad enabled) is no training.
        if self.model.training and torch.is_grad_enabled() and not self.halora_trainer_step and not self._warned_plain_training:
            if isinstance(self.peft_config.get(self.active_adapters[0]), HaLoRAConfig):
                self._warned_plain_training = True
                warnings.warn(
                    "A HaLoRA adapter is being trained outside HaLoRATrainer: no RRAM noise and no regulariser are "
                    "applied, so it trains as a plain LoRA. Train with HaLoRATrainer (or a subclass that puts it "
                    "first, e.g. class T(HaLoRATrainer, SFTTrainer) with arguments @dataclass class A(HaLoRATrainingArguments, "
                    "SFTConfig)); ignore this if your loop applies both itself.",
                    stacklevel=3,
                )
        with super()._enable_peft_forward_hooks(*args, **kwargs):
            yield

    def inject_adapter(self, model: torch.nn.Module, adapter_name: str, *args, **kwargs) -> None:
        super().inject_adapter(model, adapter_name, *args, **kwargs)
        config = self.peft_config[adapter_name]
        if isinstance(config, HaLoRAConfig) and config.noise_target_modules is not None:
            # A name that matches nothing fails here, not at the first noisy step of training.
            rram_linear_modules(model, config.noise_target_modules, field="HaLoRAConfig.noise_target_modules")

    def get_regularization_loss(self, adapter_name: str | None = None) -> torch.Tensor:
        """L_reg of ``adapter_name`` (default: the active adapter) with its config's norm and reduction."""
        adapter_name = adapter_name or self.active_adapters[0]
        config = self.peft_config[adapter_name]
        if not isinstance(config, HaLoRAConfig):
            raise ValueError(f"adapter {adapter_name!r} is not a HaLoRA adapter ({type(config).__name__})")
        return halora_regularizer(self.model, adapter_name, norm=config.reg_norm, reduction=config.reg_reduction)
