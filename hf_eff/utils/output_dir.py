"""What an example's training run refuses to write over: an ``--output_dir`` holding an earlier run.

transformers' examples (run_clm.py and the others) refused a non-empty output_dir unless ``--overwrite_output_dir``
or a resume; transformers 5 dropped that flag from TrainingArguments, so each example declares it on its own
arguments and calls ``check_output_dir`` before loading any data or model.
"""

from __future__ import annotations

from pathlib import Path

from peft.utils import SAFETENSORS_WEIGHTS_NAME as ADAPTER_SAFETENSORS
from peft.utils import WEIGHTS_NAME as ADAPTER_BIN
from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_NAME, WEIGHTS_NAME

# What marks an earlier run: the results file each example writes last, training run or evaluation (all_results.json;
# the splat example's train_results.json too), and the weights a save writes (a PEFT adapter's, a model's), which are
# what a run cost to make. Not README.md, config.json or other files a user may keep in any folder.
RUN_FILES = ("all_results.json", "train_results.json", ADAPTER_SAFETENSORS, ADAPTER_BIN, SAFE_WEIGHTS_NAME,
             WEIGHTS_NAME)


def check_output_dir(args: TrainingArguments, overwrite_output_dir: bool) -> None:
    """Refuses a training run (``args.do_train``) into an ``output_dir`` holding an earlier run's results, weights or
    checkpoints (checkpoint-N folders: a new run's would replace them), unless ``overwrite_output_dir`` or a resume
    (``args.resume_from_checkpoint``). Evaluation-only and prediction runs are not checked here."""
    if not args.do_train or overwrite_output_dir or args.resume_from_checkpoint:
        return
    output_dir = Path(args.output_dir)
    if not output_dir.is_dir():
        return
    held = [name for name in RUN_FILES if (output_dir / name).is_file()]
    checkpoints = sorted(path.name for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if path.is_dir())
    if checkpoints:
        held.append(f"{len(checkpoints)} checkpoint(s) ({', '.join(checkpoints[:3])}{', ...' if len(checkpoints) > 3 else ''})")
    if not held:
        return
    resume = ("--resume_from_checkpoint True to continue from its last checkpoint" if checkpoints else
              "--resume_from_checkpoint <a checkpoint-N folder> to continue a run (this folder holds no checkpoint)")
    raise FileExistsError(f"--output_dir {output_dir} already holds a run ({', '.join(held)}), which this training run "
                          f"would overwrite: give another --output_dir, add --overwrite_output_dir to write over it "
                          f"(this run's files replace the earlier run's; the others stay), or {resume}")
