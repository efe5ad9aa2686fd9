"""Tiny random Llama models and a character-level tokenizer: fast, offline HaLoRA tests."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import hf_eff  # noqa: F401  (registers HALORA)
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
