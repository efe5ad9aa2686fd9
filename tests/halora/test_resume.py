"""Resumes the HaLoRA example and train_and_evaluate refuse before anything is written."""

from __future__ import annotations

import json

import pytest
from transformers import default_data_collator

from hf_eff.halora.experiment import train_and_evaluate
from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments
from tests.halora.conftest import make_tiny_llama
from tests.halora.test_example import _load_example
from tests.halora.test_trainer import _args, _halora_model, _token_dataset


def _files(folder) -> dict:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*")}


@pytest.fixture
def run_flags(tmp_path, char_tokenizer):
    """The flags of a tiny HaLoRA run into tmp_path/run, checkpointed every 2 steps (add --max_steps)."""
    model_dir = tmp_path / "base"
    make_tiny_llama(vocab_size=len(char_tokenizer)).save_pretrained(model_dir)
    char_tokenizer.save_pretrained(model_dir)
    return ["--model_name_or_path", str(model_dir), "--method", "halora", "--task_name", "comparison",
            "--train_size", "16", "--eval_size", "4", "--max_length", "64", "--per_device_train_batch_size", "4",
            "--eval_sigmas", "0", "--eval_noise_seeds", "1", "--report_to", "none", "--use_cpu",
            "--disable_tqdm", "true", "--output_dir", str(tmp_path / "run"), "--save_strategy", "steps",
            "--save_steps", "2", "--noise_sigma", "0.05"]


def test_a_finished_run_is_not_resumed_and_keeps_its_card_adapter_and_results(tmp_path, run_flags):
    out = tmp_path / "run"
    _load_example().main([*run_flags, "--max_steps", "2"])
    written = _files(out)
    with pytest.raises(ValueError, match=r"checkpoint-2: it has already trained 2 steps .*--max_steps 2 leaves none"):
        _load_example().main([*run_flags, "--max_steps", "2", "--resume_from_checkpoint", "True"])
    assert _files(out) == written
    with pytest.raises(ValueError, match=r"checkpoint-2: it has already trained 2 steps"):  # the library's entry point
        train_and_evaluate("halora", None, None, None, None, HaLoRATrainingArguments(
            output_dir=str(out), max_steps=2, resume_from_checkpoint=True, use_cpu=True, report_to=[]))
    assert _files(out) == written


def test_a_checkpoint_without_its_trainer_state_is_refused_naming_the_file(tmp_path, run_flags):
    out = tmp_path / "run"
    _load_example().main([*run_flags, "--max_steps", "2"])
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    written = _files(out)
    with pytest.raises(ValueError, match=r"checkpoint-2: it holds no trainer_state.json \(the step, epoch"):
        _load_example().main([*run_flags, "--max_steps", "4", "--resume_from_checkpoint", "True"])
    assert _files(out) == written


@pytest.mark.parametrize("flags, changed", [
    (["--noise_sigma", "0.1"], "noise_sigma 0.05 in the checkpoint, 0.1 now"),
    (["--noise_mode", "stuck_at"], "noise_mode 'tile_additive' in the checkpoint, 'stuck_at' now"),
    (["--method", "lora"], "method halora in the checkpoint, lora now"),
    (["--lora_r", "2"], "r 4 in the checkpoint, 2 now"),
])
def test_a_resume_under_other_adapter_settings_is_refused_naming_each(tmp_path, run_flags, flags, changed):
    out = tmp_path / "run"
    _load_example().main([*run_flags, "--max_steps", "2"])
    written = _files(out)
    with pytest.raises(ValueError) as error:
        _load_example().main([*run_flags, "--max_steps", "4", *flags, "--resume_from_checkpoint", "True"])
    message = str(error.value)
    assert message.startswith(f"--resume_from_checkpoint {out / 'checkpoint-2'}: its adapter was trained under other "
                              "settings than this run's")
    assert changed in message and "Resume with the settings it was trained with" in message
    assert _files(out) == written


def test_a_resume_under_the_same_settings_goes_on(tmp_path, run_flags):
    out = tmp_path / "run"
    _load_example().main([*run_flags, "--max_steps", "2", "--target_modules", "v_proj", "q_proj"])
    _load_example().main([*run_flags, "--max_steps", "4", "--target_modules", "q_proj", "v_proj",
                          "--resume_from_checkpoint", "True"])
    assert (out / "checkpoint-4").is_dir()


def test_a_checkpoint_that_lost_its_adapter_config_is_named_so_not_another_trainers(tmp_path, run_flags):
    out = tmp_path / "run"
    _load_example().main([*run_flags, "--max_steps", "2"])
    checkpoint = out / "checkpoint-2"
    (checkpoint / "adapter_config.json").unlink()
    written = _files(out)
    with pytest.raises(ValueError) as error:
        _load_example().main([*run_flags, "--max_steps", "4", "--resume_from_checkpoint", "True"])
    message = str(error.value)
    assert message.startswith(f"--resume_from_checkpoint {checkpoint}: it holds {checkpoint / 'adapter_model.safetensors'}"
                              " but no adapter_config.json beside it")
    assert "the file was lost" in message and "another trainer" not in message
    assert _files(out) == written


def test_train_from_python_refuses_a_finished_run(tmp_path):
    out = tmp_path / "run"
    args = _args(out, per_device_train_batch_size=4, max_steps=2, save_strategy="steps", save_steps=2)
    HaLoRATrainer(model=_halora_model(0.0, "loss"), args=args, train_dataset=_token_dataset(),
                  data_collator=default_data_collator).train()
    written = _files(out)
    trainer = HaLoRATrainer(model=_halora_model(0.0, "loss"), args=args, train_dataset=_token_dataset(),
                            data_collator=default_data_collator)
    with pytest.raises(ValueError, match=rf"^--resume_from_checkpoint {out / 'checkpoint-2'}: it has already trained 2 "
                                         r"steps .*--max_steps 2 leaves none to train"):
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 0 and _files(out) == written


def test_a_resume_whose_adapter_config_differs_only_in_what_does_not_define_the_adapter_goes_on(tmp_path, run_flags):
    out = tmp_path / "run"
    _load_example().main([*run_flags, "--max_steps", "2"])
    config_path = out / "checkpoint-2" / "adapter_config.json"
    saved = json.loads(config_path.read_text())
    # a base model since moved, a revision named, a config saved for inference, an adapter built without a task
    saved.update(base_model_name_or_path=str(tmp_path / "moved"), revision="main", inference_mode=True, task_type=None)
    config_path.write_text(json.dumps(saved))
    _load_example().main([*run_flags, "--max_steps", "4", "--resume_from_checkpoint", "True"])
    assert (out / "checkpoint-4").is_dir()
