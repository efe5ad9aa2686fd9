"""What an example's evaluation-only run (``--do_train False``) refuses before any work."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainingArguments


def check_evaluation_only(args: TrainingArguments, model_flag: str, model: str | None, needs_model: bool = True) -> None:
    """Refuses, for ``args.do_train`` False: no model to evaluate (``model_flag`` names the flag), a push or a
    resume (an evaluation trains and saves no model), and an ``output_dir`` holding a training run, whose
    results the evaluation's would overwrite (a recipe's ``output_dir`` is its training run's folder)."""
    if args.do_train:
        return
    if needs_model and model is None:
        raise ValueError(f"--do_train False evaluates a trained model: name it with {model_flag} (a folder a "
                         "training run of this example wrote, or a Hub repo id)")
    if args.push_to_hub:
        raise ValueError("--push_to_hub with --do_train False: an evaluation writes no model to push; leave "
                         "--push_to_hub out (its all_results.json is written to --output_dir)")
    if args.resume_from_checkpoint:
        raise ValueError("--resume_from_checkpoint resumes training, and --do_train False trains nothing; to "
                         f"evaluate a checkpoint, give its folder as {model_flag}")
    output_dir = Path(args.output_dir)
    results = output_dir / "all_results.json"
    if (output_dir / "train_results.json").is_file() or (
            results.is_file() and "train_runtime" in json.loads(results.read_text())):
        raise ValueError(f"--output_dir {args.output_dir} holds a training run (train metrics in its results), "
                         "which an evaluation would overwrite; give another --output_dir")
    if (output_dir / "trainer_state.json").is_file():
        raise ValueError(f"--output_dir {args.output_dir} holds a training run (its log, trainer_state.json): an "
                         "evaluation writes no trainer_state.json to replace it, and the training's log would pass "
                         "for the evaluation's; give another --output_dir")
