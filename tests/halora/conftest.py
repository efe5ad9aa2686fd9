"""Tiny random Llama models and a character-level tokenizer: fast, offline HaLoRA tests."""

import pytest
import torch
from peft.utils import save_and_load
from transformers import LlamaConfig, LlamaForCausalLM

import hf_eff  # noqa: F401  (registers HALORA)
from hf_eff.halora import base_model
from hf_eff.halora.base_model import DEFAULT_BASE_MODEL
from hf_eff.halora.tasks import character_tokenizer


def make_tiny_llama(seed: int = 0, vocab_size: int = 128, hidden_size: int = 64) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_llama():
    return make_tiny_llama()


@pytest.fixture(scope="session")
def char_tokenizer():
    return character_tokenizer()


@pytest.fixture
def hub_lookups(monkeypatch):
    """PEFT's Hub lookups of a base config while saving, offline (HF_HUB_OFFLINE, read at call time)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lookups = []
    peft_lookup = save_and_load.check_file_exists_on_hf_hub

    def recording(repo_id, filename, **kwargs):
        lookups.append(repo_id)
        return peft_lookup(repo_id, filename, **kwargs)

    monkeypatch.setattr(save_and_load, "check_file_exists_on_hf_hub", recording)
    return lookups


@pytest.fixture
def builtin_folder(monkeypatch, tmp_path, char_tokenizer):
    """A tiny model standing in for the converted SmolLM2 (its conversion takes about 15 s)."""
    folder = tmp_path / "cache" / DEFAULT_BASE_MODEL
    make_tiny_llama().save_pretrained(folder)
    char_tokenizer.save_pretrained(folder)
    monkeypatch.setattr(base_model, "ensure_converted_smollm2", lambda: folder)
    return folder
