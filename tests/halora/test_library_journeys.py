"""A user's own script: their causal LM built from a config, their data and metrics, the library API only."""

import math
import warnings

import pytest
import torch
from datasets import Dataset
from peft import PeftModel, get_peft_model
from transformers import (
    DataCollatorForLanguageModeling,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from hf_eff import HaLoRAConfig, HaLoRATrainer, HaLoRATrainingArguments, rram_noise
from tests.halora.conftest import make_tiny_llama

OUTSIDE = "outside HaLoRATrainer"


def _tiny_causal_lm(architecture: str, vocab_size: int):
    torch.manual_seed(0)
    if architecture == "gpt2":  # Conv1D layers
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    shape = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2)
    return LlamaForCausalLM(LlamaConfig(**shape)) if architecture == "llama" else Qwen2ForCausalLM(Qwen2Config(**shape))


def _perplexity(eval_prediction):
    logits, labels = (torch.as_tensor(array) for array in eval_prediction)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    return {"perplexity": math.exp(loss.item())}


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "qwen2"])
def test_causal_lm_with_own_metric_is_trained_and_evaluated_under_noise(architecture, char_tokenizer, tmp_path):
    model = get_peft_model(_tiny_causal_lm(architecture, len(char_tokenizer)),
                           HaLoRAConfig(r=4, task_type="CAUSAL_LM", noise_resample_steps=1))
    texts = Dataset.from_dict({"text": ["the quick brown fox", "hello world"] * 4})
    data = texts.map(lambda batch: char_tokenizer(batch["text"]), batched=True, remove_columns=["text"])
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, report_to=[],
                                   use_cpu=True, save_strategy="no", eval_sigmas=[0.0, 0.05], eval_noise_seeds=2)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=data, eval_dataset=data, compute_metrics=_perplexity,
                            data_collator=DataCollatorForLanguageModeling(char_tokenizer, mlm=False))
    trainer.train()
    clean = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    metrics = trainer.evaluate()
    assert metrics["eval_perplexity"] == metrics["eval_perplexity_sigma_0_mean"]
    assert metrics["eval_perplexity_sigma_0.05_std"] > 0  # two seeds, two draws
    assert metrics["eval_perplexity_sigma_0.05_mean"] != metrics["eval_perplexity"]
    assert all(torch.equal(clean[name], tensor) for name, tensor in model.state_dict().items())


def test_inference_on_a_new_peft_model_is_not_taken_for_training():
    # get_peft_model leaves its wrapper in train mode around a base in eval mode: README's rram_noise example
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with rram_noise(model, sigma=0.02, seed=3):
            model(torch.tensor([[1, 2, 3]]))
    assert not [w for w in caught if OUTSIDE in str(w.message)]
    model.train()  # a training loop of one's own
    with pytest.warns(UserWarning, match=OUTSIDE):
        model(torch.tensor([[1, 2, 3]]))


@pytest.mark.parametrize("target_modules, problem", [(5, "got 5"), (["q_proj", 3], "list of module-name suffixes"),
                                                     ("*proj", "not a valid regex")])
def test_malformed_noise_target_modules_are_refused_naming_the_field(target_modules, problem):
    with pytest.raises(ValueError, match=rf"HaLoRAConfig\.noise_target_modules.*{problem}"):
        HaLoRAConfig(noise_target_modules=target_modules)
    with pytest.raises(ValueError, match=rf"eval_noise_target_modules.*{problem}"):
        HaLoRATrainingArguments(output_dir="unused", report_to=[], eval_noise_target_modules=target_modules)
    with pytest.raises(ValueError, match=rf"^target_modules.*{problem}"):  # the context manager's argument
        with rram_noise(make_tiny_llama(), sigma=0.01, target_modules=target_modules):
            pass


def test_eval_sigmas_that_are_not_numbers_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"eval_sigmas must be a list of noise levels \(numbers\), got \['low'\]"):
        HaLoRATrainingArguments(output_dir="unused", report_to=[], eval_sigmas=["low"])


def test_training_an_adapter_loaded_frozen_is_refused_naming_is_trainable(tmp_path):
    get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2)).save_pretrained(tmp_path / "adapter")
    model = PeftModel.from_pretrained(make_tiny_llama(), tmp_path / "adapter")  # PEFT's default: inference only
    args = HaLoRATrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1, report_to=[], use_cpu=True,
                                   save_strategy="no", eval_sigmas=[0.0])
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=[{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}])
    with pytest.raises(ValueError, match="no trainable parameters.*is_trainable=True"):
        trainer.train()


def test_each_adapter_brings_its_noise_and_the_base_is_restored_after_disable_adapter():
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2, noise_mode="multiplicative"))
    model.add_adapter("second", HaLoRAConfig(r=2, noise_mode="absolute", noise_target_modules=["down_proj"]))
    clean = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    inputs = torch.tensor([[1, 2, 3]])
    for adapter, mode, layers in (("default", "multiplicative", 14), ("second", "absolute", 2)):
        model.set_adapter(adapter)
        with rram_noise(model, sigma=0.01, seed=1) as noise, model.disable_adapter():
            model(inputs)
        assert (noise.mode, len(noise.layers)) == (mode, layers)
    assert all(torch.equal(clean[name], tensor) for name, tensor in model.state_dict().items())


def test_predict_is_noise_free_unless_wrapped_in_rram_noise(tmp_path):
    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=2))
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, eval_sigmas=[0.0, 0.05])
    trainer = HaLoRATrainer(model=model, args=args)
    rows = [{"input_ids": [1, 2, 3, 4], "labels": [1, 2, 3, 4]}] * 2
    clean = trainer.predict(rows).predictions
    with rram_noise(trainer.model, sigma=0.05, seed=3):
        noisy = trainer.predict(rows).predictions
    assert not (noisy == clean).all()
    assert (trainer.predict(rows).predictions == clean).all()
