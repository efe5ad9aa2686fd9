"""A training run's failures, stopped by name: a diverged run at its first non-finite training loss (under fp16 loss
scaling, at the last of several in a row), a resume at a checkpoint whose model file does not load or does not fit
the model, and a best checkpoint (``load_best_model_at_end``) whose model file does not load.

transformers' Trainer trains on through NaN: with ``logging_nan_inf_filter`` (the default) it logs each non-finite
loss as the average of the finite ones before it (a log of 'loss': 0 beside 'grad_norm': nan) and saves the NaN
model at the end as if it were trained. A damaged checkpoint's weights fail in safetensors or torch.load with an
error naming no file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from peft.utils import SAFETENSORS_WEIGHTS_NAME as ADAPTER_SAFETENSORS
from peft.utils import WEIGHTS_NAME as ADAPTER_BIN
from safetensors import SafetensorError
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import SAFE_WEIGHTS_NAME, WEIGHTS_NAME

# The weights a save writes and Trainer._load_from_checkpoint reads, in its order: a full model's, else a PEFT adapter's
CHECKPOINT_WEIGHTS = (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, ADAPTER_SAFETENSORS, ADAPTER_BIN)
# The RuntimeErrors told apart by their messages' starts: torch.load's for a truncated or corrupt file, and
# Module.load_state_dict's for weights of other names or shapes (PEFT's load_adapter raises it too)
TORCH_LOAD_UNREADABLE = "PytorchStreamReader failed"
STATE_DICT_MISMATCH = "Error(s) in loading state_dict"
# What safetensors and torch.load raise for a truncated or corrupt weights file, besides TORCH_LOAD_UNREADABLE's
UNREADABLE_WEIGHTS = (SafetensorError, pickle.UnpicklingError, EOFError)


def is_unreadable(error: Exception) -> bool:
    """Whether loading a checkpoint's weights failed on the file itself (truncated, corrupt), not on the model."""
    return isinstance(error, UNREADABLE_WEIGHTS) or str(error).startswith(TORCH_LOAD_UNREADABLE)


class TrainingFailuresMixin:
    """For a ``Trainer`` subclass (listed before ``Trainer``).

    ``training_step`` raises a ``FloatingPointError`` at the first non-finite training loss, naming the step, the loss
    and the usual fix, so that nothing is trained or saved after it (the checkpoints already written stay); under fp16
    loss scaling (a GradScaler), which skips the optimizer step of a non-finite loss, at the
    ``non_finite_losses_under_loss_scaling``-th in a row. ``divergence_error`` builds that error for other signs of
    the same divergence (HaLoRA's regulariser on non-finite LoRA factors). A resume whose checkpoint's weights do not
    read is refused naming the file, which is left as it is; one whose weights do not fit the model, naming the
    checkpoint and the mismatch. ``load_best_model_at_end`` at a best checkpoint whose weights do not read is refused
    naming the file.

    Under DDP each rank checks its own loss: the rank that raises exits, and torchrun (or accelerate launch) then
    tears the other ranks down, which wait for it in the next gradient all-reduce; no collective is added here."""

    # A GradScaler skips the optimizer step of a non-finite loss (its gradients are inf or NaN) and lowers its scale,
    # as Trainer relies on: an fp16 overflow in one batch costs that step and nothing else. A skipped step leaves the
    # weights as they were, so the next batches' losses are finite again unless the forward pass overflows on most
    # batches: 10 in a row, far past a one-off, means the run learns nothing any more.
    non_finite_losses_under_loss_scaling = 10
    _non_finite_losses_in_a_row = 0

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # One device-to-host read of the loss per micro-batch. With logging_nan_inf_filter (the default) Trainer's
        # loop reads it right after this returns (torch.isnan / torch.isinf on it), so this read only takes that
        # wait for the step's kernels earlier, and the filter's reads then find the device idle (microseconds);
        # with the filter off, it is the one wait per micro-batch that stopping at the first non-finite loss needs.
        if loss.isfinite():
            self._non_finite_losses_in_a_row = 0
            return loss
        self._non_finite_losses_in_a_row += 1
        if self.accelerator.scaler is None:
            raise self.divergence_error(f"the training loss is {loss.item()}")
        if self._non_finite_losses_in_a_row >= self.non_finite_losses_under_loss_scaling:
            raise self.divergence_error(f"the training loss is {loss.item()}, non-finite in the last "
                                        f"{self._non_finite_losses_in_a_row} batches in a row (fp16 loss scaling "
                                        "skipped each one's step; --bf16 instead of --fp16 has float32's range)")
        return loss

    def divergence_error(self, what: str) -> FloatingPointError:
        """The error that stops a diverged run: ``what`` went non-finite in the optimizer step being taken."""
        args = self.args
        checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        kept = (f"the checkpoints already written (the last: {checkpoint}) are kept" if checkpoint else
                "no checkpoint had been written")
        return FloatingPointError(
            f"training diverged at step {self.state.global_step + 1}: {what}; lower the learning rate (--learning_rate, "
            f"now {args.learning_rate:g}) or clip the gradients (--max_grad_norm, now {args.max_grad_norm:g}). Nothing "
            f"more is saved; {kept}"
        )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        try:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        except (*UNREADABLE_WEIGHTS, RuntimeError) as error:
            if is_unreadable(error):
                raise unreadable_weights_error(resume_from_checkpoint, error) from error
            if not str(error).startswith(STATE_DICT_MISMATCH):
                raise
            mismatch = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "")
            raise ValueError(f"--resume_from_checkpoint: the weights of {resume_from_checkpoint} do not match this "
                             f"run's model ({mismatch}): resume with the model settings (flags or recipe) that wrote "
                             "the checkpoint, or start over; the checkpoint is left as it is") from error

    def _load_best_model(self):
        try:
            super()._load_best_model()
        except (*UNREADABLE_WEIGHTS, RuntimeError) as error:
            if not is_unreadable(error):
                raise
            raise unreadable_best_weights_error(self.state.best_model_checkpoint, error) from error


def unreadable_weights_error(resume_from_checkpoint, error: Exception) -> ValueError:
    """The error naming a checkpoint's weights file that does not load (truncated, corrupt); the splat trainer
    raises it too."""
    return ValueError(f"--resume_from_checkpoint: {_weights_file(resume_from_checkpoint)} does not load "
                      f"({type(error).__name__}: {error}); it is left as it is. Resume from an earlier checkpoint-N of "
                      "the run, or start over")


def unreadable_best_weights_error(best_model_checkpoint, error: Exception) -> ValueError:
    """``unreadable_weights_error`` for ``load_best_model_at_end``, raised after the last step; the splat trainer
    raises it too."""
    return ValueError(f"load_best_model_at_end: the best checkpoint's {_weights_file(best_model_checkpoint)} does not "
                      f"load ({type(error).__name__}: {error}); it is left as it is. Training finished and its "
                      "checkpoints are kept; the model in memory is the last step's, not the best. Load another "
                      "checkpoint-N of the run instead")


def _weights_file(checkpoint) -> Path:
    # the file Trainer reads first, else the folder (sharded weights, or none of these)
    return next((Path(checkpoint, name) for name in CHECKPOINT_WEIGHTS if Path(checkpoint, name).is_file()),
                Path(checkpoint))
