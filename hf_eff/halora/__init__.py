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

# Imported on first use: the trainer pulls in transformers.Trainer, too heavy for `import hf_eff`.
_LAZY = {
    "HaLoRATrainer": "trainer",
    "HaLoRATrainingArguments": "trainer",
    "load_base_model": "base_model",
    "save_embedding_layers": "base_model",
    "MultipleChoiceScorer": "tasks",
    "builtin_task": "tasks",
    "choice_logprob_sums": "tasks",
    "choice_rows_collator": "tasks",
    "load_task": "tasks",
    "tokenize_for_scoring": "tasks",
    "tokenize_for_training": "tasks",
    "harness_adds_bos": "tasks",
}

__all__ = [
    "HaLoRAConfig",
    "HaLoRAModel",
    "RRAMNoise",
    "halora_regularizer",
    "rram_linear_modules",
    "rram_noise",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"hf_eff.halora.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hf_eff.halora' has no attribute {name!r}")
