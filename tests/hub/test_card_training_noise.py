"""A HaLoRA trainer's card says how many noise draws the run trained under: a run no longer than
`noise_resample_steps` trained under one draw, not "a new draw every N optimizer steps"."""

import json
import re

import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard

from hf_eff.hub.cards import training_noise_description
from hf_eff.hub.push import build_card


def _trained_card(tmp_path, max_steps: int, save_strategy: str = "no", save_state: bool = False, **noise) -> str:
    """The card a trainer writes of its run, with the adapter saved in ``tmp_path`` (and, with ``save_strategy``
    "steps", the final checkpoint; with ``save_state``, the trainer state) for ``hf-eff push``."""
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
                                   report_to=[], eval_sigmas=[0], eval_noise_seeds=1, use_cpu=True,
                                   save_strategy=save_strategy)
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    trainer.save_model()
    if save_state:
        trainer.save_state()
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


def _training_noise(card_text: str) -> str:
    return re.search(r"Training injects the RRAM noise \((.+?)\) into", card_text, re.DOTALL)[1]


@pytest.mark.parametrize(("max_steps", "resample_steps", "save_strategy", "save_state", "phrase"), [
    (2, 10, "steps", False, "one draw for the whole run"),  # the final checkpoint's trainer_state.json
    (3, 2, "no", True, "a new draw every 2 optimizer steps"),  # the folder's own, from Trainer.save_state
])
def test_hf_eff_push_of_the_run_folder_states_the_noise_draws_as_the_trainers_card(
        tmp_path, max_steps, resample_steps, save_strategy, save_state, phrase):
    trainer_card = _trained_card(tmp_path, max_steps=max_steps, save_strategy=save_strategy, save_state=save_state,
                                 noise_sigma=0.01, noise_resample_steps=resample_steps)
    push_card = build_card("halora_adapter", tmp_path, "me/adapter").text
    assert phrase in _training_noise(push_card)
    assert _training_noise(push_card) == _training_noise(trainer_card)


def test_hf_eff_push_of_a_folder_without_a_step_count_words_the_draws_true_for_any_run_length(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "HALORA", "noise_sigma": 0.01, "noise_mode": "tile_additive", "noise_resample_steps": 10}))
    (tmp_path / "all_results.json").write_text(json.dumps({"train_loss": 1.0, "epoch": 1.0}))
    assert _training_noise(build_card("halora_adapter", tmp_path, "me/adapter").text) == (
        "tile_additive, sigma = 0.01; a new draw every 10 optimizer steps, one in all for a run of at most 10 steps")


def test_a_trainer_state_that_is_no_json_object_is_refused_naming_the_file(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "HALORA", "noise_sigma": 0.01}))
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("[4]")
    with pytest.raises(ValueError, match="checkpoint-4/trainer_state.json must hold a JSON object of training state"):
        build_card("halora_adapter", tmp_path, "me/adapter")


def test_one_draw_under_a_warm_up_is_said_to_be_noise_free():
    config = {"noise_sigma": 0.02, "noise_mode": "tile_additive", "noise_resample_steps": 10, "noise_warmup_steps": 20}
    assert training_noise_description(config, optimizer_steps=4) == (
        "tile_additive, sigma = 0.02; one draw for the whole run, at the warm-up's level 0, so without noise: its 4 "
        "optimizer steps are no more than noise_resample_steps = 10")
    # more than one draw: the settings as configured; steps unknown: true of one draw too
    assert training_noise_description(config, optimizer_steps=11) == (
        "tile_additive, sigma = 0.02; a new draw every 10 optimizer steps; ramped in over the first 20 steps")
    assert training_noise_description(config) == (
        "tile_additive, sigma = 0.02; a new draw every 10 optimizer steps, one in all for a run of at most 10 steps; "
        "ramped in over the first 20 steps")
