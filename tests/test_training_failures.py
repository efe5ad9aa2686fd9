"""A diverged run stops by name at its first non-finite training loss, and a damaged checkpoint is named
(hf_eff/utils/training_failures.py)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_eff.utils.training_failures import TrainingFailuresMixin


class _Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, labels=None):
        return {"loss": (self.weight * x).pow(2).mean()}


class _StoppingTrainer(TrainingFailuresMixin, Trainer):
    pass


def _train(tmp_path, trainer_class, xs):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], per_device_train_batch_size=1,
                             max_steps=len(xs), save_strategy="steps", save_steps=1, learning_rate=1e-3,
                             logging_steps=1, disable_tqdm=True)
    trainer = trainer_class(model=_Scale(), args=args, train_dataset=Dataset.from_dict({"x": [[x] for x in xs]}))
    # the loader keeps its order: the NaN input is the third step's
    trainer._get_train_sampler = lambda *_: torch.utils.data.SequentialSampler(trainer.train_dataset)
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


def test_a_resume_from_a_damaged_checkpoint_names_the_file_and_leaves_it(tmp_path):
    _train(tmp_path, _StoppingTrainer, [1.0, 1.0])
    weights = tmp_path / "out" / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])  # truncated
    damaged = weights.read_bytes()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], max_steps=3,
                             per_device_train_batch_size=1, save_strategy="no", disable_tqdm=True)
    trainer = _StoppingTrainer(model=_Scale(), args=args, train_dataset=Dataset.from_dict({"x": [[1.0]] * 3}))
    with pytest.raises(ValueError, match=f"--resume_from_checkpoint: {weights} does not load \\(SafetensorError: .*"
                                         "it is left as it is"):
        trainer.train(resume_from_checkpoint=True)
    assert weights.read_bytes() == damaged
