"""A diverged run stops by name at its first non-finite training loss (under fp16 loss scaling, at several in a row),
a damaged checkpoint is named, and a checkpoint of another model is told from it (hf_eff/utils/training_failures.py)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_eff.utils.training_failures import TrainingFailuresMixin


class _Scale(torch.nn.Module):
    def __init__(self, shape=()):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(shape))

    def forward(self, x, labels=None):
        return {"loss": (self.weight * x).pow(2).mean()}


class _StoppingTrainer(TrainingFailuresMixin, Trainer):
    pass


def _train(tmp_path, trainer_class, xs, loss_scaling=False):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], per_device_train_batch_size=1,
                             max_steps=len(xs), save_strategy="steps", save_steps=1, learning_rate=1e-3,
                             logging_steps=1, disable_tqdm=True)
    trainer = trainer_class(model=_Scale(), args=args, train_dataset=Dataset.from_dict({"x": [[x] for x in xs]}))
    # the loader keeps its order: the NaN input is the third step's
    trainer._get_train_sampler = lambda *_: torch.utils.data.SequentialSampler(trainer.train_dataset)
    if loss_scaling:
        # what accelerate sets up for --fp16 on a GPU; train() hands it to the optimizer it prepares
        trainer.accelerator.scaler = torch.amp.GradScaler("cpu")
    trainer.train()
    return trainer


def test_the_first_non_finite_loss_stops_training_naming_the_step_and_the_fix(tmp_path):
    with pytest.raises(FloatingPointError) as error:
        _train(tmp_path, _StoppingTrainer, [1.0, 1.0, float("nan"), 1.0])
    message = str(error.value)
    assert "training diverged at step 3: the training loss is nan" in message
    assert "--learning_rate, now 0.001" in message and "--max_grad_norm, now 1" in message
    assert f"(the last: {tmp_path / 'out' / 'checkpoint-2'}) are kept" in message
    saved = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert saved == ["checkpoint-1", "checkpoint-2"]  # nothing saved after it


def test_without_the_mixin_trainer_trains_on_through_nan(tmp_path):
    """What the mixin prevents: Trainer's logging_nan_inf_filter hides the NaN, and the run saves on."""
    trainer = _train(tmp_path, Trainer, [1.0, 1.0, float("nan"), 1.0])
    assert (tmp_path / "out" / "checkpoint-4").is_dir() and trainer.state.global_step == 4


def test_no_checkpoint_written_is_said(tmp_path):
    with pytest.raises(FloatingPointError, match="step 1: the training loss is inf.*no checkpoint had been written"):
        _train(tmp_path, _StoppingTrainer, [float("inf")])


class _FewerStrikesTrainer(_StoppingTrainer):
    non_finite_losses_under_loss_scaling = 3


def test_under_fp16_loss_scaling_a_one_off_non_finite_loss_skips_its_step_and_training_goes_on(tmp_path):
    trainer = _train(tmp_path, _FewerStrikesTrainer, [1.0, float("inf"), float("nan"), 1.0, float("inf"), 1.0],
                     loss_scaling=True)
    assert trainer.state.global_step == 6 and (tmp_path / "out" / "checkpoint-6").is_dir()
    assert torch.isfinite(trainer.model.weight)  # the scaler skipped the non-finite steps


def test_under_fp16_loss_scaling_non_finite_losses_in_a_row_stop_training(tmp_path):
    with pytest.raises(FloatingPointError, match=r"training diverged at step 4: the training loss is inf, non-finite "
                                                 r"in the last 3 batches in a row \(fp16 loss scaling skipped"):
        _train(tmp_path, _FewerStrikesTrainer, [1.0, float("nan"), float("inf"), float("inf"), 1.0], loss_scaling=True)
    assert _StoppingTrainer.non_finite_losses_under_loss_scaling == 10


def _resume(tmp_path, model):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], max_steps=3,
                             per_device_train_batch_size=1, save_strategy="no", disable_tqdm=True)
    trainer = _StoppingTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"x": [[1.0]] * 3}))
    trainer.train(resume_from_checkpoint=True)


def test_a_resume_from_a_damaged_checkpoint_names_the_file_and_leaves_it(tmp_path):
    _train(tmp_path, _StoppingTrainer, [1.0, 1.0])
    weights = tmp_path / "out" / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # truncated
    damaged = weights.read_bytes()
    with pytest.raises(ValueError, match=f"--resume_from_checkpoint: {weights} does not load \\(SafetensorError: .*"
                                         "it is left as it is"):
        _resume(tmp_path, _Scale())
    assert weights.read_bytes() == damaged


def test_a_damaged_torch_checkpoint_is_named_too(tmp_path):
    _train(tmp_path, _StoppingTrainer, [1.0, 1.0])
    checkpoint = tmp_path / "out" / "checkpoint-2"
    (checkpoint / "model.safetensors").unlink()
    torch.save({"weight": torch.ones(())}, checkpoint / "pytorch_model.bin")
    weights = checkpoint / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:-30])  # truncated: torch.load's RuntimeError
    with pytest.raises(ValueError, match=f"--resume_from_checkpoint: {weights} does not load \\(RuntimeError: "
                                         "PytorchStreamReader failed"):
        _resume(tmp_path, _Scale())


def test_load_best_model_at_end_from_a_damaged_best_checkpoint_names_the_file_and_keeps_the_last_model(tmp_path):
    # was a bare SafetensorError naming no file, after the whole run (HaLoRA's and GraNT's trainers through the mixin)
    trainer = _train(tmp_path, _StoppingTrainer, [1.0, 1.0])
    weights = tmp_path / "out" / "checkpoint-1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # truncated
    damaged, last = weights.read_bytes(), trainer.model.weight.detach().clone()
    trainer.state.best_model_checkpoint = str(weights.parent)
    with pytest.raises(ValueError, match=f"^load_best_model_at_end: the best checkpoint's {weights} does not load "
                                         r"\(SafetensorError: .*it is left as it is\. Training finished and its "
                                         "checkpoints are kept; the model in memory is the last step's"):
        trainer._load_best_model()
    assert weights.read_bytes() == damaged and torch.equal(trainer.model.weight, last)
    assert (tmp_path / "out" / "checkpoint-2" / "model.safetensors").is_file()


def test_a_checkpoint_of_another_model_shape_is_not_called_damaged(tmp_path):
    """A resume after changing an architecture flag: the weights load, but do not fit the model."""
    _train(tmp_path, _StoppingTrainer, [1.0, 1.0])
    with pytest.raises(ValueError) as error:
        _resume(tmp_path, _Scale(shape=(2,)))
    message = str(error.value)
    assert message.startswith(f"--resume_from_checkpoint: the weights of {tmp_path / 'out' / 'checkpoint-2'} do not "
                              "match this run's model (size mismatch for weight: copying a param with shape "
                              "torch.Size([]) from checkpoint")
    assert "resume with the model settings (flags or recipe) that wrote the checkpoint" in message
    assert "does not load" not in message


def test_other_errors_of_a_resume_pass_unchanged(tmp_path, monkeypatch):
    _train(tmp_path, _StoppingTrainer, [1.0, 1.0])

    def out_of_memory(*_):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Trainer, "_load_from_checkpoint", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError, match="^CUDA out of memory$"):
        _resume(tmp_path, _Scale())
