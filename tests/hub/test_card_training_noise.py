"""A HaLoRA trainer's card says how many noise draws the run trained under: a run no longer than
`noise_resample_steps` trained under one draw, not "a new draw every N optimizer steps"."""

import torch
from datasets import Dataset
from huggingface_hub import ModelCard

from hf_eff.hub.cards import training_noise_description


def _trained_card(tmp_path, max_steps: int, **noise) -> str:
    from peft import get_peft_model
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from hf_eff.halora import HaLoRAConfig, HaLoRATrainer, HaLoRATrainingArguments

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, num_labels=3, max_position_embeddings=32)
    model = get_peft_model(RobertaForSequenceClassification(config),
                           HaLoRAConfig(task_type="SEQ_CLS", r=2, target_modules=["query"], **noise))
    data = Dataset.from_dict({"input_ids": [[0, 5 + i % 7, 9, 2] for i in range(8)], "labels": [i % 3 for i in range(8)]})
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=max_steps,
                                   report_to=[], eval_sigmas=[0], eval_noise_seeds=1, use_cpu=True, save_strategy="no")
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    trainer.create_model_card()
    return ModelCard.load(tmp_path / "README.md").text


def test_a_run_shorter_than_the_resample_interval_is_said_to_train_under_one_draw(tmp_path):
    text = _trained_card(tmp_path, max_steps=2, noise_sigma=0.01, noise_resample_steps=10)
    assert "a new draw every" not in text
    assert ("(tile_additive, sigma = 0.01; one draw for the whole run: its 2 optimizer steps are no more than "
            "noise_resample_steps = 10)") in text


def test_a_run_longer_than_the_resample_interval_keeps_the_draw_interval(tmp_path):
    text = _trained_card(tmp_path, max_steps=3, noise_sigma=0.01, noise_resample_steps=2)
    assert "(tile_additive, sigma = 0.01; a new draw every 2 optimizer steps)" in text


def test_one_draw_under_a_warm_up_is_said_to_be_noise_free():
    config = {"noise_sigma": 0.02, "noise_mode": "tile_additive", "noise_resample_steps": 10, "noise_warmup_steps": 20}
    assert training_noise_description(config, optimizer_steps=4) == (
        "tile_additive, sigma = 0.02; one draw for the whole run, at the warm-up's level 0, so without noise: its 4 "
        "optimizer steps are no more than noise_resample_steps = 10")
    # steps unknown (hf-eff push of a folder) or more than one draw: the settings as configured
    assert training_noise_description(config) == training_noise_description(config, optimizer_steps=11) == (
        "tile_additive, sigma = 0.02; a new draw every 10 optimizer steps; ramped in over the first 20 steps")
