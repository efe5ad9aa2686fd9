"""What an example's training run refuses to write over: an ``--output_dir`` holding an earlier run.

transformers' examples (run_clm.py and the others) refused a non-empty output_dir unless ``--overwrite_output_dir``
or a resume; transformers 5 dropped that flag from TrainingArguments, so each example's arguments take it from
``OverwriteOutputDirArguments`` and the example calls ``check_output_dir`` before loading any data or model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_eff.utils.resume import check_resume
from hf_eff.utils.training_failures import CHECKPOINT_WEIGHTS

# What marks an earlier run: the results files every example writes as transformers' examples do (all_results.json and
# eval_results.json, training run or evaluation; a training run's train_results.json and trainer_state.json, its log),
# and the weights a save writes (a model's, a PEFT adapter's), which are what a run cost to make. Not README.md,
# config.json or other files a user may keep in any folder.
RUN_FILES = ("all_results.json", "eval_results.json", "train_results.json", "trainer_state.json", *CHECKPOINT_WEIGHTS)


@dataclass
class OverwriteOutputDirArguments:
    """The ``--overwrite_output_dir`` flag, for an example's arguments dataclass to inherit (HfArgumentParser reads
    inherited fields)."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an --output_dir that holds an earlier run (its results, weights or checkpoints), "
                  "which is refused otherwise: this run's files replace the earlier run's."},
    )


def check_output_dir(args: TrainingArguments, overwrite_output_dir: bool) -> None:
    """Refuses a training run (``args.do_train``) into an ``output_dir`` holding an earlier run's results, weights or
    checkpoints (checkpoint-N folders: a new run's would replace them), unless ``overwrite_output_dir`` or a resume of
    that run (``args.resume_from_checkpoint`` True, its last checkpoint, or a checkpoint inside it). A resume from
    another folder's checkpoint writes into ``output_dir`` all the same, so it is checked. Evaluation-only and
    prediction runs are not checked here. A training run's resume is then checked by ``check_resume``, overwrite or
    not."""
    if args.do_train:
        _check_not_overwritten(args, overwrite_output_dir)
        check_resume(args)


def _check_not_overwritten(args: TrainingArguments, overwrite_output_dir: bool) -> None:
    output_dir = Path(args.output_dir)
    if overwrite_output_dir or _resumes_a_run_of(output_dir, args.resume_from_checkpoint):
        return
    if not output_dir.is_dir():
        return
    held = [name for name in RUN_FILES if (output_dir / name).is_file()]
    checkpoints = sorted(path.name for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if path.is_dir())
    if checkpoints:
        held.append(f"{len(checkpoints)} checkpoint(s) ({', '.join(checkpoints[:3])}{', ...' if len(checkpoints) > 3 else ''})")
    if not held:
        return
    elsewhere = (f" (--resume_from_checkpoint {args.resume_from_checkpoint} is not one of its checkpoints)"
                 if args.resume_from_checkpoint else "")
    resume = ", or continue it with --resume_from_checkpoint True" if checkpoints else ""
    raise FileExistsError(f"--output_dir {output_dir} already holds a run ({', '.join(held)}), which this training run "
                          f"would overwrite{elsewhere}: give another --output_dir or add --overwrite_output_dir{resume}")


def _resumes_a_run_of(output_dir: Path, resume_from_checkpoint: bool | str | None) -> bool:
    if resume_from_checkpoint is True:  # Trainer.train: the last checkpoint in output_dir
        return True
    return bool(resume_from_checkpoint) and output_dir.resolve() in Path(resume_from_checkpoint).resolve().parents
