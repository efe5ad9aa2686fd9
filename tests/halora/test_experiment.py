import mmap

import pytest

from hf_eff.halora.experiment import ResidentMemory

pytestmark = pytest.mark.skipif(not ResidentMemory.available(), reason="needs Linux /proc/self/clear_refs")
MIB = 2**20


def _touch_fresh_pages(mebibytes: int) -> None:
    # Anonymous mmap: pages new to the process whatever malloc holds (a test worker's heap may serve
    # a large tensor from memory freed, yet still resident, by earlier tests).
    with mmap.mmap(-1, mebibytes * MIB) as block:
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1


def test_resident_memory_catches_a_peak_already_freed_and_forgets_earlier_ones():
    _touch_fresh_pages(300)  # unmapped before the block: outside its peak
    with ResidentMemory() as quiet:
        pass
    assert quiet.peak_mb - quiet.start_mb < 100  # other threads of a test worker may allocate a little
    with ResidentMemory() as resident:
        _touch_fresh_pages(200)  # unmapped inside the block
    assert resident.peak_mb - resident.start_mb >= 190


def test_the_adapter_is_saved_before_the_evaluation_under_noise(tmp_path, monkeypatch, char_tokenizer):
    from hf_eff.halora.experiment import train_and_evaluate
    from hf_eff.halora.tasks import builtin_task
    from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments
    from tests.halora.conftest import make_tiny_llama

    def failing_evaluation(self, *args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(HaLoRATrainer, "evaluate", failing_evaluation)
    train, evaluation = builtin_task(train_size=4, eval_size=2)
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, report_to=[],
                                   use_cpu=True, save_strategy="no", disable_tqdm=True, eval_sigmas=[0.0])
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train_and_evaluate("halora", make_tiny_llama(vocab_size=len(char_tokenizer)), char_tokenizer, train, evaluation,
                           args, max_length=64)
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "adapter_model.safetensors").is_file()


def test_batches_are_padded_on_the_right_whatever_the_tokenizer_says(tmp_path, char_tokenizer):
    import copy

    from hf_eff.halora.experiment import build_trainer
    from hf_eff.halora.tasks import builtin_task
    from hf_eff.halora.trainer import HaLoRATrainingArguments
    from tests.halora.conftest import make_tiny_llama

    left = copy.deepcopy(char_tokenizer)
    left.padding_side = "left"
    train, evaluation = builtin_task("comparison", train_size=4, eval_size=2)
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, eval_sigmas=[0.0])
    trainer = build_trainer(make_tiny_llama(vocab_size=len(left)), left, train, evaluation, args, max_length=64)
    rows = [trainer.train_dataset[i] for i in range(2)] + [{**trainer.train_dataset[0],
                                                           "input_ids": trainer.train_dataset[0]["input_ids"][:3],
                                                           "attention_mask": [1] * 3, "labels": [-100] * 3}]
    batch = trainer.data_collator(rows)
    assert batch["attention_mask"][2].tolist()[:3] == [1, 1, 1] and batch["attention_mask"][2, -1] == 0
    assert left.padding_side == "left"  # the caller's tokenizer is left as it was


def test_rows_start_with_bos_for_gemma_only_as_the_harness_encodes(tmp_path, char_tokenizer):
    import copy

    from tokenizers import processors
    from transformers import GemmaConfig, GemmaForCausalLM

    from hf_eff.halora.experiment import build_trainer
    from hf_eff.halora.tasks import builtin_task
    from hf_eff.halora.trainer import HaLoRATrainingArguments
    from tests.halora.conftest import make_tiny_llama

    tokenizer = copy.deepcopy(char_tokenizer)
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, bos)])
    gemma = GemmaForCausalLM(GemmaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                         head_dim=8, max_position_embeddings=128))
    train, evaluation = builtin_task("comparison", train_size=4, eval_size=2)
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, eval_sigmas=[0.0])
    for model, starts_with_bos in ((gemma, True), (make_tiny_llama(vocab_size=len(tokenizer)), False)):
        trainer = build_trainer(model, tokenizer, train, evaluation, args, max_length=64)
        firsts = {row["input_ids"][0] == bos for dataset in (trainer.train_dataset, trainer.eval_dataset)
                  for row in dataset}
        assert firsts == {starts_with_bos}


def test_lora_and_halora_start_from_the_same_adapter_whatever_ran_before(tmp_path, monkeypatch, char_tokenizer):
    import copy

    import torch

    from hf_eff.halora import experiment
    from hf_eff.halora.tasks import builtin_task
    from hf_eff.halora.trainer import HaLoRATrainingArguments
    from tests.halora.conftest import make_tiny_llama

    initial = {}
    build = experiment.get_peft_model

    def recording(model, config):
        peft_model = build(model, config)
        initial[type(config).__name__] = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
        return peft_model

    monkeypatch.setattr(experiment, "get_peft_model", recording)
    base = make_tiny_llama(vocab_size=len(char_tokenizer))
    train, evaluation = builtin_task("comparison", train_size=4, eval_size=2)
    for method in ("lora", "halora"):
        torch.rand(7)  # whatever ran before moved the global RNG
        args = HaLoRATrainingArguments(output_dir=str(tmp_path / method), max_steps=1, per_device_train_batch_size=2,
                                       report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, eval_sigmas=[0.0])
        experiment.train_and_evaluate(method, copy.deepcopy(base), char_tokenizer, train, evaluation, args, max_length=64)
    lora, halora = initial["LoraConfig"], initial["HaLoRAConfig"]
    assert lora.keys() == halora.keys() and any(p.abs().sum() > 0 for p in lora.values())
    assert all(torch.equal(lora[name], halora[name]) for name in lora)


def test_adapter_relative_norms_count_an_adapted_embedding():
    from peft import get_peft_model

    from hf_eff import HaLoRAConfig
    from hf_eff.halora.experiment import adapter_relative_norms
    from tests.halora.conftest import make_tiny_llama

    model = get_peft_model(make_tiny_llama(), HaLoRAConfig(r=4, target_modules=["embed_tokens"], init_lora_weights=False))
    embedding = model.base_model.model.model.embed_tokens
    delta = embedding.lora_embedding_B["default"] @ embedding.lora_embedding_A["default"] * embedding.scaling["default"]
    norms = adapter_relative_norms(model)
    assert norms["adapter_layers"] == 1
    assert norms["adapter_relative_norm_max"] == pytest.approx(float(delta.norm() / embedding.get_base_layer().weight.norm()))


def test_a_target_modules_string_reaches_peft_as_the_regex_it_is():
    from peft import get_peft_model

    from hf_eff.halora.experiment import adapter_config
    from tests.halora.conftest import make_tiny_llama

    pattern = r".*layers\.0\.self_attn\.q_proj"
    model = get_peft_model(make_tiny_llama(), adapter_config("halora", target_modules=pattern))
    assert model.peft_config["default"].target_modules == pattern
    assert [name for name, module in model.named_modules() if hasattr(module, "lora_A")] == [
        "base_model.model.model.layers.0.self_attn.q_proj"]
