import subprocess
import sys
import textwrap

import pytest
import torch
from peft import get_peft_model

from hf_eff import HaLoRAConfig
from tests.halora.conftest import make_tiny_llama

INPUT = torch.arange(3, 23).reshape(2, 10)


def _adapted(seed=0):
    config = HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    return get_peft_model(make_tiny_llama(seed), config)


def test_save_load_round_trip_in_a_fresh_process(tmp_path):
    model = _adapted()
    model.save_pretrained(tmp_path / "adapter")
    make_tiny_llama().save_pretrained(tmp_path / "base")
    with torch.no_grad():
        torch.save(model(INPUT).logits, tmp_path / "logits.pt")
    script = textwrap.dedent(f"""
        import torch, hf_eff
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        base = AutoModelForCausalLM.from_pretrained({str(tmp_path / "base")!r})
        model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r}).eval()
        assert type(model.peft_config["default"]).__name__ == "HaLoRAConfig"
        with torch.no_grad():
            logits = model(torch.arange(3, 23).reshape(2, 10)).logits
        expected = torch.load({str(tmp_path / "logits.pt")!r})
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)
        print("ROUND_TRIP_OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "ROUND_TRIP_OK" in result.stdout, result.stderr[-3000:]


def test_merge_and_disable_behave_like_lora():
    model = _adapted().eval()
    base_logits = make_tiny_llama()(INPUT).logits
    with torch.no_grad():
        adapted_logits = model(INPUT).logits
        with model.disable_adapter():
            torch.testing.assert_close(model(INPUT).logits, base_logits)
    assert not torch.allclose(adapted_logits, base_logits)
    merged = model.merge_and_unload()
    with torch.no_grad():
        torch.testing.assert_close(merged(INPUT).logits, adapted_logits, rtol=1e-4, atol=1e-5)


def test_several_adapters_and_delete():
    model = _adapted()
    model.add_adapter("second", HaLoRAConfig(r=2, target_modules=["q_proj"], reg_norm="frobenius"))
    assert model.base_model.get_regularization_loss("second").ndim == 0
    model.set_adapter("second")
    assert model.active_adapter == "second"
    model.delete_adapter("second")
    assert set(model.peft_config) == {"default"}
    assert not any("second" in name for name, _ in model.named_parameters())


def test_adapter_relative_norms_measure_the_merged_weight_change():
    from hf_eff.halora.experiment import adapter_relative_norms

    fresh = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["q_proj"]))
    assert adapter_relative_norms(fresh)["adapter_relative_norm_max"] == 0.0  # B starts at zero
    model = _adapted()
    norms = adapter_relative_norms(model)
    base = make_tiny_llama()
    merged = model.merge_and_unload()
    ratios = [float((merged.get_submodule(name).weight - module.weight).norm() / module.weight.norm())
              for name, module in base.named_modules() if name.endswith(("q_proj", "v_proj", "up_proj"))]
    assert norms["adapter_layers"] == len(ratios) == 6
    assert abs(norms["adapter_relative_norm_max"] - max(ratios)) < 1e-5
    assert abs(norms["adapter_relative_norm_mean"] - sum(ratios) / len(ratios)) < 1e-5
    with pytest.raises(ValueError, match="no LoRA layer"):
        adapter_relative_norms(base)


def test_noise_targets_matching_no_layer_are_refused_when_the_adapter_is_built():
    with pytest.raises(ValueError, match=r"noise_target_modules=\['nonexistent'\] matches no frozen nn.Linear"):
        get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2, target_modules=["q_proj"], noise_target_modules=["nonexistent"]))
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2, target_modules=["q_proj"], noise_target_modules=["o_proj"]))
    with pytest.raises(ValueError, match="matches no frozen"):
        model.add_adapter("second", HaLoRAConfig(r=2, target_modules=["q_proj"], noise_target_modules="nothing.*"))
