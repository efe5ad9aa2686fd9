"""What a training run refuses to resume from, before anything is loaded or written: a checkpoint of a run that has
already trained what these arguments ask for (``Trainer.train`` would train nothing, then write its empty training's
results over the finished run's).

Every example calls ``check_resume`` through ``check_output_dir``; HaLoRA's ``train_and_evaluate`` calls it too.
"""

from __future__ import annotations

import os

from transformers import TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import get_last_checkpoint


def resumed_checkpoint(output_dir: str, resume_from_checkpoint: bool | str | None) -> str | None:
    """The checkpoint folder ``Trainer.train(resume_from_checkpoint=...)`` resumes from (``True``: the last
    checkpoint in ``output_dir``); None when it resumes from none, or from one that does not exist (Trainer names
    that)."""
    checkpoint = resume_from_checkpoint
    if checkpoint is True:
        checkpoint = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if not checkpoint or not os.path.isdir(checkpoint):
        return None
    return checkpoint


def check_resume(args: TrainingArguments) -> None:
    """Refuses a training run that resumes from a checkpoint whose trainer_state.json has already
    reached ``args.max_steps`` (or, without max_steps, ``args.num_train_epochs``), naming the checkpoint, the steps
    and the ways on."""
    checkpoint = resumed_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if checkpoint is None or not os.path.isfile(os.path.join(checkpoint, TRAINER_STATE_NAME)):
        return
    state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
    trained = f"{state.global_step} steps ({state.epoch or 0:g} epochs)"
    if args.max_steps > 0:
        if state.global_step < args.max_steps:
            return
        limit, raise_it = f"--max_steps {args.max_steps}", f"raise --max_steps above {state.global_step}"
    else:
        if (state.epoch or 0) < args.num_train_epochs:
            return
        limit, raise_it = f"--num_train_epochs {args.num_train_epochs:g}", f"raise --num_train_epochs above {state.epoch:g}"
    raise ValueError(f"--resume_from_checkpoint {checkpoint}: it has already trained {trained}, and {limit} leaves "
                     f"none to train: the run is finished, and resuming it would only write an empty training's "
                     f"results over its own. To train on, {raise_it}; for a new run, give another --output_dir. "
                     "Nothing was written")
