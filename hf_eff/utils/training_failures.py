"""A training run's failures, stopped by name: a diverged run at its first non-finite training loss, and a resume
at a checkpoint's model file that does not load.

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

# The weights Trainer._load_from_checkpoint reads, in its order: a full model's, else a PEFT adapter's
CHECKPOINT_WEIGHTS = (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, ADAPTER_SAFETENSORS, ADAPTER_BIN)


class TrainingFailuresMixin:
    """For a ``Trainer`` subclass (listed before ``Trainer``).

    ``training_step`` raises a ``FloatingPointError`` at the first non-finite training loss, naming the step, the loss
    and the usual fix, so that nothing is trained or saved after it (the checkpoints already written stay);
    ``divergence_error`` builds that error for other signs of the same divergence (HaLoRA's regulariser on
    non-finite LoRA factors). A resume whose checkpoint's weights do not load is refused naming the file, which is
    left as it is."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # One device-to-host read of the loss per micro-batch. With logging_nan_inf_filter (the default) Trainer's
        # loop reads it right after this returns (torch.isnan / torch.isinf on it), so this read only takes that
        # wait for the step's kernels earlier, and the filter's reads then find the device idle (microseconds);
        # with the filter off, it is the one wait per micro-batch that stopping at the first non-finite loss needs.
        if not loss.isfinite():
            raise self.divergence_error(f"the training loss is {loss.item()}")
        return loss

    def divergence_error(self, what: str) -> FloatingPointError:
        """The error that stops a diverged run: ``what`` went non-finite in the optimizer step being taken."""
        args = self.args
        checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        kept = (f"the checkpoints already written (the last: {checkpoint}) are kept" if checkpoint else
                "no checkpoint had been written")
        return FloatingPointError(
            f"training diverged at step {self.state.global_step + 1}: {what}. The usual fix is a lower learning rate "
            f"(--learning_rate, now {args.learning_rate:g}) or gradient clipping (--max_grad_norm, now "
            f"{args.max_grad_norm:g}). Training stopped here and nothing more is saved; {kept}"
        )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        try:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError) as error:  # truncated, corrupt
            weights = next((Path(resume_from_checkpoint, name) for name in CHECKPOINT_WEIGHTS
                            if Path(resume_from_checkpoint, name).is_file()), Path(resume_from_checkpoint))
            raise ValueError(f"--resume_from_checkpoint: {weights} does not load ({type(error).__name__}: {error}); it "
                             "is left as it is. Resume from an earlier checkpoint-N of the run, or start over") from error
