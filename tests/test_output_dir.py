"""The examples' refusal to train over an earlier run (hf_eff/utils/output_dir.py)."""

from __future__ import annotations

import pytest
from transformers import TrainingArguments
from transformers.trainer_callback import TrainerState

from hf_eff.utils.output_dir import check_output_dir


def _args(out, **kwargs) -> TrainingArguments:
    return TrainingArguments(output_dir=str(out), use_cpu=True, report_to=[], **{"do_train": True, **kwargs})


def _resumable_checkpoint(checkpoint) -> None:
    """A checkpoint-N folder holding what a resume reads (check_resume), one step in."""
    checkpoint.mkdir(parents=True)
    TrainerState(global_step=1, epoch=0.5).save_to_json(str(checkpoint / "trainer_state.json"))
    for name in ("optimizer.pt", "scheduler.pt"):
        (checkpoint / name).write_bytes(b"")


@pytest.mark.parametrize("saved", ["all_results.json", "train_results.json", "adapter_model.safetensors",
                                   "adapter_model.bin", "model.safetensors", "pytorch_model.bin"])
def test_a_training_run_into_a_finished_run_is_refused_naming_the_folder_and_the_ways_on(tmp_path, saved):
    out = tmp_path / "out"
    out.mkdir()
    (out / saved).write_text("{}")
    with pytest.raises(FileExistsError) as error:
        check_output_dir(_args(out), overwrite_output_dir=False)
    message = str(error.value)
    assert f"--output_dir {out} already holds a run ({saved})" in message
    assert "give another --output_dir" in message and "--overwrite_output_dir" in message
    assert "--resume_from_checkpoint" not in message  # it holds no checkpoint to resume


def test_checkpoints_are_a_run_too_and_the_resume_is_offered(tmp_path):
    out = tmp_path / "out"
    for step in (2, 4):
        (out / f"checkpoint-{step}").mkdir(parents=True)
    with pytest.raises(FileExistsError, match=r"2 checkpoint\(s\) \(checkpoint-2, checkpoint-4\).*"
                                              r"or continue it with --resume_from_checkpoint True$"):
        check_output_dir(_args(out), overwrite_output_dir=False)


@pytest.mark.parametrize("kwargs, overwrite", [
    ({}, True),  # --overwrite_output_dir
    ({"resume_from_checkpoint": True}, False),  # its last checkpoint
    ({"resume_from_checkpoint": "{out}/checkpoint-2"}, False),
    ({"resume_from_checkpoint": "{out}/../out/checkpoint-2"}, False),
    ({"do_train": False}, False),  # an evaluation or a prediction: check_evaluation_only's to judge
])
def test_overwrite_a_resume_of_its_run_or_no_training_write_into_a_finished_run(tmp_path, kwargs, overwrite):
    out = tmp_path / "out"
    _resumable_checkpoint(out / "checkpoint-2")
    (out / "all_results.json").write_text("{}")
    kwargs = {name: value.format(out=out) if isinstance(value, str) else value for name, value in kwargs.items()}
    check_output_dir(_args(out, **kwargs), overwrite_output_dir=overwrite)


@pytest.mark.parametrize("resume", ["{tmp}/other_run/checkpoint-3", "{tmp}/out_v2/checkpoint-3", False])
def test_a_resume_from_another_runs_checkpoint_into_a_finished_run_is_refused(tmp_path, resume):
    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "all_results.json").write_text("{}")
    resume = resume.format(tmp=tmp_path) if isinstance(resume, str) else resume
    _resumable_checkpoint(tmp_path / "other_run" / "checkpoint-3")
    with pytest.raises(FileExistsError) as error:
        check_output_dir(_args(out, resume_from_checkpoint=resume), overwrite_output_dir=False)
    message = str(error.value)
    assert message.startswith(f"--output_dir {out} already holds a run (all_results.json, 1 checkpoint(s) "
                              "(checkpoint-2)), which this training run would overwrite")
    if resume:
        assert f"(--resume_from_checkpoint {resume} is not one of its checkpoints)" in message
    check_output_dir(_args(tmp_path / "new", resume_from_checkpoint=resume), overwrite_output_dir=False)


def test_a_new_empty_or_unrelated_folder_is_trained_into(tmp_path):
    check_output_dir(_args(tmp_path / "absent"), overwrite_output_dir=False)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")  # a user's files, not a run's
    (out / "config.json").write_text("{}")
    check_output_dir(_args(out), overwrite_output_dir=False)
