"""HaLoRA: hardware-aware LoRA for hybrid compute-in-memory chips (Wu et al., arXiv 2502.19747).

Importing this package registers the ``HALORA`` PEFT type, so ``get_peft_model``,
``PeftConfig.from_pretrained`` and ``PeftModel.from_pretrained`` handle HaLoRA adapters.
"""


from peft.utils import PeftType, register_peft_method


def _add_peft_type(name: str) -> None:
    """Adds a member to PEFT's closed ``PeftType`` enum (PEFT has no API for out-of-tree methods;
    ``register_peft_method`` requires the member to exist). Idempotent."""
    if name in PeftType.__members__:
        return
    member = str.__new__(PeftType, name)
    member._name_, member._value_ = name, name
    member.__init__(name)
    type.__setattr__(PeftType, name, member)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)


_add_peft_type("HALORA")

from hf_eff.halora.config import HaLoRAConfig  # noqa: E402
from hf_eff.halora.model import HaLoRAModel  # noqa: E402
from hf_eff.halora.noise import RRAMNoise, rram_linear_modules, rram_noise  # noqa: E402
from hf_eff.halora.regularizer import halora_regularizer  # noqa: E402


def _register() -> None:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    if PeftType.HALORA not in PEFT_TYPE_TO_CONFIG_MAPPING:
        register_peft_method(name="halora", config_cls=HaLoRAConfig, model_cls=HaLoRAModel, prefix="lora_")


_register()

__all__ = [
    "HaLoRAConfig",
    "HaLoRAModel",
    "RRAMNoise",
    "halora_regularizer",
    "rram_linear_modules",
    "rram_noise",
]
