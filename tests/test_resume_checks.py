"""What a training run refuses to resume from, before anything is written (hf_eff/utils/resume.py), in every example
and in the trainers' train(): a finished run."""

from __future__ import annotations

import pytest
from transformers import TrainingArguments
from transformers.trainer_callback import TrainerState

from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.utils.output_dir import check_output_dir
from tests.splat.test_example import run_example as run_splat_example
from tests.splat.test_trainer import make_trainer as make_splat_trainer


def _args(out, **kwargs) -> TrainingArguments:
    return TrainingArguments(output_dir=str(out), use_cpu=True, report_to=[], **{"do_train": True, **kwargs})


def _checkpoint(out, global_step: int, epoch: float):
    checkpoint = out / f"checkpoint-{global_step}"
    checkpoint.mkdir(parents=True)
    TrainerState(global_step=global_step, epoch=epoch).save_to_json(str(checkpoint / "trainer_state.json"))
    for name in ("optimizer.pt", "scheduler.pt"):
        (checkpoint / name).write_bytes(b"")
    return checkpoint


def _files(folder) -> dict:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*")}


@pytest.mark.parametrize("resume", [True, "{checkpoint}"])
def test_a_resume_of_a_run_that_reached_max_steps_is_refused_naming_the_checkpoint_and_the_steps(tmp_path, resume):
    out = tmp_path / "run"
    checkpoint = _checkpoint(out, 8, 2.0)
    resume = resume if resume is True else resume.format(checkpoint=checkpoint)
    for overwrite in (False, True):
        with pytest.raises(ValueError) as error:
            check_output_dir(_args(out, max_steps=8, resume_from_checkpoint=resume), overwrite_output_dir=overwrite)
        message = str(error.value)
        assert message.startswith(f"--resume_from_checkpoint {checkpoint}: it has already trained 8 steps (2 epochs), "
                                  "and --max_steps 8 leaves none to train")
        assert "raise --max_steps above 8" in message and "give another --output_dir" in message
    check_output_dir(_args(out, max_steps=9, resume_from_checkpoint=resume), overwrite_output_dir=False)


def test_a_resume_of_a_run_that_trained_its_epochs_is_refused(tmp_path):
    out = tmp_path / "run"
    checkpoint = _checkpoint(out, 8, 4.0)
    with pytest.raises(ValueError, match=rf"^--resume_from_checkpoint {checkpoint}: it has already trained 8 steps "
                                         r"\(4 epochs\), and --num_train_epochs 4 leaves none to train.*"
                                         r"raise --num_train_epochs above 4"):
        check_output_dir(_args(out, num_train_epochs=4, resume_from_checkpoint=True), overwrite_output_dir=False)
    check_output_dir(_args(out, num_train_epochs=5, resume_from_checkpoint=True), overwrite_output_dir=False)
    check_output_dir(_args(out, do_train=False, resume_from_checkpoint=True), overwrite_output_dir=False)  # no training


def test_a_resume_inside_the_last_epoch_goes_on(tmp_path):
    out = tmp_path / "run"
    _checkpoint(out, 7, 3.5)
    check_output_dir(_args(out, num_train_epochs=4, resume_from_checkpoint=True), overwrite_output_dir=False)


def test_the_splat_example_refuses_to_resume_its_finished_run_and_keeps_its_results(tmp_path, monkeypatch):
    out = tmp_path / "run"
    flags = ("--max_steps", "3", "--save_strategy", "steps", "--save_steps", "3", "--render_trajectory", "none",
             "--output_dir", str(out))
    run_splat_example(monkeypatch, *flags)
    written = _files(out)
    with pytest.raises(ValueError, match=r"checkpoint-3: it has already trained 3 steps .* --max_steps 3 leaves none"):
        run_splat_example(monkeypatch, *flags, "--resume_from_checkpoint", "True")
    assert _files(out) == written


@pytest.mark.parametrize("lost", ["trainer_state.json", "optimizer.pt", "scheduler.pt"])
def test_a_checkpoint_missing_what_a_resume_reads_is_refused_naming_the_file(tmp_path, lost):
    out = tmp_path / "run"
    checkpoint = _checkpoint(out, 2, 1.0)
    (checkpoint / lost).unlink()
    with pytest.raises(ValueError) as error:
        check_output_dir(_args(out, max_steps=4, resume_from_checkpoint=True), overwrite_output_dir=False)
    message = str(error.value)
    assert message.startswith(f"--resume_from_checkpoint {checkpoint}: it holds no {lost} (")
    assert "save_only_model=True" in message and "Resume from another checkpoint-N" in message


def test_an_optimizer_in_another_of_trainers_forms_is_found(tmp_path):
    out = tmp_path / "run"
    checkpoint = _checkpoint(out, 2, 1.0)
    (checkpoint / "optimizer.pt").rename(checkpoint / "optimizer.bin")
    check_output_dir(_args(out, max_steps=4, resume_from_checkpoint=True), overwrite_output_dir=False)


def test_the_splat_example_refuses_a_checkpoint_without_its_schedule(tmp_path, monkeypatch):
    out = tmp_path / "run"
    flags = ("--save_strategy", "steps", "--save_steps", "3", "--render_trajectory", "none", "--output_dir", str(out))
    run_splat_example(monkeypatch, "--max_steps", "3", *flags)
    (out / "checkpoint-3" / "scheduler.pt").unlink()
    written = _files(out)
    with pytest.raises(ValueError, match=r"checkpoint-3: it holds no scheduler.pt \(the learning-rate schedule"):
        run_splat_example(monkeypatch, "--max_steps", "6", *flags, "--resume_from_checkpoint", "True")
    assert _files(out) == written


def test_a_splat_checkpoint_without_its_config_names_it_not_a_shape(tmp_path, monkeypatch):
    out = tmp_path / "run"
    flags = ("--save_strategy", "steps", "--save_steps", "3", "--render_trajectory", "none", "--output_dir", str(out))
    run_splat_example(monkeypatch, "--max_steps", "3", *flags)  # sh_degree 0: not GaussianModel's default, 3
    (out / "checkpoint-3" / "config.json").unlink()
    written = _files(out)
    with pytest.raises(ValueError, match=r"checkpoint-3/model.safetensors: its folder holds no config.json, which "
                                         r"records the model's sh_degree .*sh_degree 0\); put back the config.json"):
        run_splat_example(monkeypatch, "--max_steps", "6", *flags, "--resume_from_checkpoint", "True")
    assert _files(out) == written


def test_a_tpu_fsdp_optimizer_per_rank_is_found(tmp_path):
    out = tmp_path / "run"
    checkpoint = _checkpoint(out, 2, 1.0)
    (checkpoint / "optimizer.pt").rename(checkpoint / "rank0-of-2-optimizer.pt")
    check_output_dir(_args(out, max_steps=4, resume_from_checkpoint=True), overwrite_output_dir=False)


def test_a_deepspeed_checkpoint_launched_by_accelerate_needs_no_optimizer_or_scheduler_file(tmp_path):
    out = tmp_path / "run"
    checkpoint = _checkpoint(out, 2, 1.0)
    for name in ("optimizer.pt", "scheduler.pt"):  # DeepSpeed's are in its global_step2 folder
        (checkpoint / name).unlink()
    args = _args(out, max_steps=4, resume_from_checkpoint=True)
    args.deepspeed_plugin = object()  # what `accelerate launch --use_deepspeed` sets, with args.deepspeed None
    check_output_dir(args, overwrite_output_dir=False)


def test_splat_train_from_python_refuses_a_finished_run(tmp_path):
    scene = make_procedural_scene(seed=1, num_train=2, num_test=1, width=16, height=16, num_points=50)
    out = tmp_path / "run"
    make_splat_trainer(scene, out, max_steps=3, save_strategy="steps", save_steps=3).train()
    written = _files(out)
    trainer = make_splat_trainer(scene, out, max_steps=3)
    with pytest.raises(ValueError, match=rf"^--resume_from_checkpoint {out / 'checkpoint-3'}: it has already trained 3 "
                                         r"steps .*--max_steps 3 leaves none to train"):
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 0 and _files(out) == written
