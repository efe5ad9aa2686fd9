"""A user's own ``save_pretrained`` of an adapter on the built-in base: ``save_embedding_layers(model)``, passed as
PEFT's ``save_embedding_layers=``, answers PEFT's "auto" embedding rule locally (the recorded name is no Hub repo);
importing hf-eff leaves PEFT's save as it is."""

import subprocess
import sys
import warnings

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file

from hf_eff import HaLoRAConfig
from hf_eff.halora import save_embedding_layers
from hf_eff.halora.base_model import DEFAULT_BASE_MODEL, load_base_model


def _adapter(base_name, targets, vocab_size):
    model, _ = load_base_model(base_name)
    if vocab_size is not None:
        model.resize_token_embeddings(vocab_size)
    torch.manual_seed(0)
    return get_peft_model(model, HaLoRAConfig(r=2, target_modules=targets))


def _warnings_naming_the_builtin_base(caught):
    return [str(w.message) for w in caught if DEFAULT_BASE_MODEL in str(w.message)]


def test_the_answer_saves_what_peft_rule_decides_without_asking_the_hub(tmp_path, builtin_folder, hub_lookups):
    """The same files as PEFT's "auto" saves for that base given as its local folder (whose config PEFT reads)."""
    cases = (("unchanged", ["q_proj"], None, False), ("targeted", ["q_proj", "embed_tokens"], None, True),
             ("resized", ["q_proj"], 130, True))
    for name, targets, vocab_size, embeddings_saved in cases:
        model = _adapter(None, targets, vocab_size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.save_pretrained(tmp_path / name, save_embedding_layers=save_embedding_layers(model))
        assert not _warnings_naming_the_builtin_base(caught), name
        assert hub_lookups == [], name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PEFT warns whenever its rule says True
            _adapter(str(builtin_folder), targets, vocab_size).save_pretrained(tmp_path / f"{name}_by_peft")
        saved = load_file(tmp_path / name / "adapter_model.safetensors")
        torch.testing.assert_close(saved, load_file(tmp_path / f"{name}_by_peft" / "adapter_model.safetensors"))
        assert any("embed_tokens" in key and "lora_" not in key for key in saved) is embeddings_saved, name


def test_only_the_selected_adapters_decide_whether_embeddings_are_saved(tmp_path, builtin_folder, hub_lookups):
    """An adapter left out of ``selected_adapters`` is not saved: that PEFT's rule answers it otherwise must not leave
    the save to PEFT's Hub lookup."""
    model = _adapter(None, ["q_proj"], None)
    model.add_adapter("head", HaLoRAConfig(r=2, target_modules=["lm_head"]))  # PEFT's rule: embeddings saved
    assert save_embedding_layers(model) == "auto"  # all adapters: answered differently, PEFT decides
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("default", "head"):
            model.save_pretrained(tmp_path / name, selected_adapters=[name],
                                  save_embedding_layers=save_embedding_layers(model, [name]))
    assert not _warnings_naming_the_builtin_base(caught)
    assert hub_lookups == []
    for folder, embeddings_saved in ((tmp_path / "default", False), (tmp_path / "head" / "head", True)):
        saved = load_file(folder / "adapter_model.safetensors")
        assert any("lm_head" in key and "lora_" not in key for key in saved) is embeddings_saved, folder


def test_importing_hf_eff_leaves_peft_save_pretrained_as_it_is(tmp_path, builtin_folder, hub_lookups):
    code = ("from peft import PeftModel; peft_save = PeftModel.save_pretrained; "
            "import hf_eff, hf_eff.halora.trainer, hf_eff.halora.experiment; "
            "assert PeftModel.save_pretrained is peft_save, PeftModel.save_pretrained")
    subprocess.run([sys.executable, "-c", code], check=True)
    # without the answer, PEFT's own "auto" looks the built-in base's name up on the Hub
    with pytest.warns(UserWarning, match=f"Could not find a config file in {DEFAULT_BASE_MODEL}"):
        _adapter(None, ["q_proj"], None).save_pretrained(tmp_path / "by_peft")
    assert hub_lookups == [DEFAULT_BASE_MODEL]
