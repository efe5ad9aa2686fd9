"""What a training run refuses to resume from, before anything is loaded or written: a checkpoint missing the state
a resume reads (``Trainer.train`` would restart the optimizer or the learning-rate schedule without a word, or fail
on a bare FileNotFoundError), and one of a run that has already trained what these arguments ask for (it would train
nothing, then write its empty training's results over the finished run's).

Every example calls ``check_resume`` through ``check_output_dir``, before anything is written; HaLoRA's
``train_and_evaluate`` calls it too, and HaLoRATrainer's, GraNTTrainer's and SplatTrainer's ``train`` check the
checkpoint they are given.
"""

from __future__ import annotations

import os

from transformers import TrainingArguments
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
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


def check_resume(args: TrainingArguments, resume_from_checkpoint: bool | str | None = None) -> None:
    """Refuses a training run that resumes from a checkpoint missing trainer_state.json, the optimizer's or the
    scheduler's state (naming the file), or one whose trainer_state.json has already reached ``args.max_steps`` (or,
    without max_steps, ``args.num_train_epochs``), naming the checkpoint, the steps and the ways on.
    ``resume_from_checkpoint``: as ``Trainer.train`` takes it; None: ``args.resume_from_checkpoint``."""
    if resume_from_checkpoint is None:
        resume_from_checkpoint = args.resume_from_checkpoint
    checkpoint = resumed_checkpoint(args.output_dir, resume_from_checkpoint)
    if checkpoint is None:
        return
    _check_complete(checkpoint, args)
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


def _check_complete(checkpoint: str, args: TrainingArguments) -> None:
    required = {TRAINER_STATE_NAME: "the step, epoch and log it stopped at"}
    # DeepSpeed keeps the optimizer and scheduler in its own global_step folder; `accelerate launch --use_deepspeed`
    # sets only the plugin
    if not (args.deepspeed or getattr(args, "deepspeed_plugin", None)):
        # optimizer.pt, or Trainer's other forms: optimizer.bin, an FSDP optimizer folder, SageMaker's optimizer.pt_*,
        # TPU FSDP's rank*-of-*-optimizer.pt
        if not any("optimizer" in name for name in os.listdir(checkpoint)):
            required[OPTIMIZER_NAME] = "the optimizer's moments and steps, which would restart"
        required[SCHEDULER_NAME] = "the learning-rate schedule, which would restart"
    missing = [f"{name} ({what})" for name, what in required.items() if not os.path.isfile(os.path.join(checkpoint, name))]
    if missing:
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: it holds no {', no '.join(missing)}, which a resume "
                         "reads: it was saved with save_only_model=True, or the file was lost. Resume from another "
                         "checkpoint-N of the run, or start a new run from its weights; the checkpoint is left as it is")
