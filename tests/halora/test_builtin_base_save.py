"""A user's own ``save_pretrained`` of an adapter: PEFT's "auto" embedding rule answered locally for the built-in base
(whose recorded name is no Hub repo), PEFT's own lookup for any other base."""

import warnings

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file

from hf_eff import HaLoRAConfig
from hf_eff.halora.base_model import DEFAULT_BASE_MODEL, load_base_model

from .conftest import make_tiny_llama


def _adapter(base_name, targets, vocab_size):
    model, _ = load_base_model(base_name)
    if vocab_size is not None:
        model.resize_token_embeddings(vocab_size)
    torch.manual_seed(0)
    return get_peft_model(model, HaLoRAConfig(r=2, target_modules=targets))


def test_a_builtin_base_adapter_saves_what_peft_rule_decides_without_asking_the_hub(tmp_path, builtin_folder,
                                                                                      hub_lookups):
    """The same files as PEFT's "auto" saves for that base given as its local folder (whose config PEFT reads)."""
    cases = (("unchanged", ["q_proj"], None, False), ("targeted", ["q_proj", "embed_tokens"], None, True),
             ("resized", ["q_proj"], 130, True))
    for name, targets, vocab_size, embeddings_saved in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _adapter(None, targets, vocab_size).save_pretrained(tmp_path / name)
        assert not [str(w.message) for w in caught if DEFAULT_BASE_MODEL in str(w.message)], name
        assert hub_lookups == [], name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PEFT warns whenever its rule says True
            _adapter(str(builtin_folder), targets, vocab_size).save_pretrained(tmp_path / f"{name}_by_peft")
        saved = load_file(tmp_path / name / "adapter_model.safetensors")
        torch.testing.assert_close(saved, load_file(tmp_path / f"{name}_by_peft" / "adapter_model.safetensors"))
        assert any("embed_tokens" in key and "lora_" not in key for key in saved) is embeddings_saved, name
    # a value the caller gives is PEFT's to apply
    _adapter(None, ["q_proj"], None).save_pretrained(tmp_path / "asked", save_embedding_layers=True)
    assert any("embed_tokens" in key for key in load_file(tmp_path / "asked" / "adapter_model.safetensors"))


def test_a_users_own_base_keeps_peft_rule_and_lookup(tmp_path, hub_lookups, char_tokenizer):
    folder = tmp_path / "base"
    make_tiny_llama().save_pretrained(folder)
    char_tokenizer.save_pretrained(folder)
    # "auto" reaches PEFT, which says so when the rule saves targeted embeddings
    with pytest.warns(UserWarning, match="Setting `save_embedding_layers` to `True` as embedding layers found"):
        _adapter(str(folder), ["q_proj", "embed_tokens"], None).save_pretrained(tmp_path / "local")
    model = make_tiny_llama()
    model.name_or_path = "someone/tiny-llama"  # as from_pretrained of a Hub repo records it
    with pytest.warns(UserWarning, match="Could not find a config file in someone/tiny-llama"):
        get_peft_model(model, HaLoRAConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "hub")
    assert hub_lookups == ["someone/tiny-llama"]


def test_only_the_selected_adapters_decide_whether_embeddings_are_saved(tmp_path, builtin_folder, hub_lookups):
    """An adapter left out of ``selected_adapters`` is not saved: that PEFT's rule answers it otherwise sends no save
    to PEFT's Hub lookup."""
    model = _adapter(None, ["q_proj"], None)
    model.add_adapter("head", HaLoRAConfig(r=2, target_modules=["lm_head"]))  # PEFT's rule: embeddings saved
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save_pretrained(tmp_path / "default", selected_adapters=["default"])
        model.save_pretrained(tmp_path / "head", selected_adapters=["head"])
    assert not [str(w.message) for w in caught if DEFAULT_BASE_MODEL in str(w.message)]
    assert hub_lookups == []
    for folder, embeddings_saved in ((tmp_path / "default", False), (tmp_path / "head" / "head", True)):
        saved = load_file(folder / "adapter_model.safetensors")
        assert any("lm_head" in key and "lora_" not in key for key in saved) is embeddings_saved, folder
