import importlib
import json
import warnings

import pytest
from peft import LoraConfig, PeftConfig, get_peft_model
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.tuners.lora import LoraModel
from peft.utils import PeftType

import hf_eff
from hf_eff import HaLoRAConfig, HaLoRAModel


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"noise_sigma": -0.1}, "noise_sigma"),
        ({"noise_sigma": float("nan")}, "noise_sigma"),
        ({"noise_sigma": True}, "noise_sigma"),
        ({"noise_mode": "gaussian"}, "noise_mode"),
        ({"noise_mode": "stuck_at", "noise_sigma": 1.5}, "noise_sigma"),
        ({"noise_tile_size": 0}, "noise_tile_size"),
        ({"noise_tile_size": 64.0}, "noise_tile_size"),
        ({"noise_resample_steps": 0}, "noise_resample_steps"),
        ({"noise_resample_steps": True}, "noise_resample_steps"),
        ({"noise_sigma_sampling": "normal"}, "noise_sigma_sampling"),
        ({"noise_warmup_steps": -1}, "noise_warmup_steps"),
        ({"noise_warmup_steps": 2.5}, "noise_warmup_steps"),
        ({"reg_weight": -1.0}, "reg_weight"),
        ({"reg_weight": "0.1"}, "reg_weight"),
        ({"reg_norm": "nuclear"}, "reg_norm"),
        ({"reg_reduction": "max"}, "reg_reduction"),
        ({"reg_application": "adam"}, "reg_application"),
        ({"use_dora": True}, "use_dora"),
    ],
)
def test_invalid_values_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        HaLoRAConfig(**kwargs)


def test_a_lora_alpha_of_zero_is_warned_of_not_refused(tiny_llama):
    with pytest.warns(UserWarning, match=r"^HaLoRAConfig.lora_alpha=0 scales the adapter's update to 0, so it changes "
                                         r"no output; give lora_alpha > 0"):
        config = HaLoRAConfig(r=4, lora_alpha=0, target_modules=["q_proj"])
    model = get_peft_model(tiny_llama, config)  # PEFT accepts it, as the config does
    assert {layer.scaling["default"] for layer in model.modules() if isinstance(getattr(layer, "scaling", None), dict)} == {0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HaLoRAConfig(r=4, lora_alpha=8, target_modules=["q_proj"])


def test_a_lora_alpha_of_zero_is_not_warned_of_when_alpha_pattern_scales_layers(tiny_llama):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = HaLoRAConfig(r=4, lora_alpha=0, alpha_pattern={"q_proj": 8}, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(tiny_llama, config)
    scalings = {name.rsplit(".", 1)[-1]: layer.scaling["default"] for name, layer in model.named_modules()
                if isinstance(getattr(layer, "scaling", None), dict)}
    assert scalings == {"q_proj": 2.0, "v_proj": 0.0}  # the pattern's layers change the output
    for alpha_pattern in ({"q_proj": 0}, None):  # a pattern alpha of 0, or none, changes nothing
        with pytest.warns(UserWarning, match="changes no output"):
            HaLoRAConfig(r=4, lora_alpha=0, alpha_pattern=alpha_pattern, target_modules=["q_proj"])


def test_numpy_numbers_are_accepted_and_saved_as_python_numbers(tiny_llama, tmp_path):
    import numpy as np

    from hf_eff import rram_noise

    for sigma in np.linspace(0, 0.02, 3, dtype=np.float32):  # a sweep's levels
        with rram_noise(tiny_llama, sigma, seed=0, tile_size=np.int64(32)) as noise:
            assert noise.sigma == float(sigma) and noise.tile_size == 32
    numbers = {"noise_sigma": np.float32(0.02), "reg_weight": np.float32(0.1), "noise_tile_size": np.int64(32),
               "noise_resample_steps": np.int32(5), "noise_warmup_steps": np.int64(10)}
    config = HaLoRAConfig(r=4, target_modules=["q_proj"], **numbers)
    get_peft_model(tiny_llama, config).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert {name: saved[name] for name in numbers} == {name: value.item() for name, value in numbers.items()}


def test_defaults_follow_the_paper():
    config = HaLoRAConfig()
    assert config.peft_type == PeftType.HALORA
    assert (config.noise_resample_steps, config.reg_weight, config.reg_norm, config.reg_application) == (400, 0.1, "spectral", "decoupled")


def test_registration_is_idempotent_and_leaves_peft_types_alone():
    importlib.reload(importlib.import_module("hf_eff.halora"))
    importlib.reload(hf_eff)
    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.HALORA].__name__ == "HaLoRAModel"
    assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.LORA] is LoraConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.LORA] is LoraModel
    assert PeftType("LORA") is PeftType.LORA and PeftType("HALORA") is PeftType.HALORA


def test_adapter_config_records_type_and_every_field(tiny_llama, tmp_path):
    config = HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], noise_sigma=0.02, noise_mode="stuck_at",
                          noise_tile_size=32, noise_target_modules=["down_proj"], noise_resample_steps=7,
                          noise_sigma_sampling="uniform", noise_warmup_steps=20, reg_weight=0.3, reg_norm="frobenius", reg_reduction="mean", reg_application="loss")
    model = get_peft_model(tiny_llama, config)
    assert isinstance(model.base_model, HaLoRAModel)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "HALORA"
    for field in ("noise_sigma", "noise_mode", "noise_tile_size", "noise_target_modules", "noise_resample_steps",
                  "noise_sigma_sampling", "noise_warmup_steps", "reg_weight", "reg_norm", "reg_reduction", "reg_application"):
        assert saved[field] == getattr(config, field), field
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "HaLoRAConfig" and loaded.reg_norm == "frobenius" and loaded.noise_tile_size == 32


def test_public_names_export_from_hf_eff():
    from hf_eff import (
        HaLoRATrainer,
        HaLoRATrainingArguments,
        builtin_task,
        load_base_model,
        rram_noise,
    )

    assert HaLoRATrainer.__name__ == "HaLoRATrainer" and HaLoRATrainingArguments.__name__ == "HaLoRATrainingArguments"
    assert callable(builtin_task) and callable(load_base_model) and callable(rram_noise)
