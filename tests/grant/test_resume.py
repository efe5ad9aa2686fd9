"""Resumes the GraNT example and GraNTTrainer refuse before anything is written."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from transformers.trainer_callback import TrainerState

from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments
from tests.grant.test_example import COMMON, _example

GENERATED = ["--task", "gen-cls", "--num_generated_graphs", "30", "--min_nodes", "4", "--max_nodes", "6"]


def _files(folder) -> dict:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*")}


def test_a_finished_run_is_not_resumed_and_keeps_its_results(tmp_path):
    out = tmp_path / "run"
    flags = [*GENERATED, *COMMON, "--save_strategy", "epoch", "--output_dir", str(out)]
    _example().main(flags)
    written = _files(out)
    with pytest.raises(ValueError, match=r"checkpoint-\d+: it has already trained \d+ steps \(2 epochs\), and "
                                         r"--num_train_epochs 2 leaves none to train"):
        _example().main([*flags, "--resume_from_checkpoint", "True"])
    assert _files(out) == written


def test_a_checkpoint_without_its_optimizer_is_refused_naming_the_file(tmp_path):
    out = tmp_path / "run"
    flags = [*GENERATED, *COMMON, "--save_strategy", "epoch", "--output_dir", str(out)]
    _example().main([*flags, "--num_train_epochs", "1"])
    checkpoint = next(out.glob("checkpoint-*"))
    (checkpoint / "optimizer.pt").unlink()
    written = _files(out)
    with pytest.raises(ValueError, match=rf"^--resume_from_checkpoint {checkpoint}: it holds no optimizer.pt \(the "
                                         "optimizer's moments"):
        _example().main([*flags, "--resume_from_checkpoint", "True"])
    assert _files(out) == written


@pytest.mark.parametrize("trained, resumed, refusal", [
    ("grant", "none", r"with teacher='none': it was saved by a GraNT run with a teacher \(grant_teacher.json"),
    ("none", "grant", r"it has no grant_teacher.json .*by a run with teacher='none' \(resume it with teacher='none'\)"),
])
def test_a_resume_with_or_without_a_teacher_unlike_its_checkpoint_is_refused(tmp_path, trained, resumed, refusal):
    out = tmp_path / "run"
    flags = [*GENERATED, *COMMON, "--save_strategy", "epoch", "--output_dir", str(out)]
    _example().main([*flags, "--num_train_epochs", "1", "--teacher", trained])
    written = _files(out)
    with pytest.raises(ValueError, match=refusal):
        _example().main([*flags, "--teacher", resumed, "--resume_from_checkpoint", "True"])
    assert _files(out) == written


def _another_trainers_checkpoint(checkpoint, weights: dict[str, dict]) -> None:
    """A checkpoint-N holding what any Trainer's does, and ``weights`` (file name: tensors by name)."""
    checkpoint.mkdir(parents=True)
    TrainerState(global_step=1, epoch=1.0).save_to_json(str(checkpoint / "trainer_state.json"))
    for name in ("optimizer.pt", "scheduler.pt"):
        (checkpoint / name).write_bytes(b"")
    for name, tensors in weights.items():
        save_file(tensors, str(checkpoint / name))


@pytest.mark.parametrize("teacher", ["grant", "none"])
@pytest.mark.parametrize("weights, refusal", [
    ({"adapter_model.safetensors": {"base_model.model.q_proj.lora_A.weight": torch.zeros(2, 2)}},
     r"it holds no model.safetensors \(GrantGCN's weights\): it was saved by another trainer"),
    ({"model.safetensors": {"means": torch.zeros(4, 3), "opacities": torch.zeros(4)}},
     r"its model.safetensors holds none of GrantGCN's weights \(it holds means, opacities\)"),
])
def test_another_trainers_checkpoint_is_refused_with_or_without_a_teacher(tmp_path, make_graphs, teacher, weights,
                                                                           refusal):
    checkpoint = tmp_path / "out" / "checkpoint-1"
    _another_trainers_checkpoint(checkpoint, weights)
    if teacher == "grant":  # past the teacher's check, to the weights'
        (checkpoint / "grant_teacher.json").write_text("{}")
    args = GraNTTrainingArguments(output_dir=str(tmp_path / "out"), task="graph_regression", teacher=teacher,
                                  num_train_epochs=2, report_to="none", use_cpu=True)
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args,
                           train_dataset=make_graphs(16, "graph_regression"))
    with pytest.raises(ValueError, match=rf"^cannot resume from {checkpoint}: {refusal}"):
        trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 0


@pytest.mark.parametrize("flag, shards", [("is_deepspeed_enabled", "global_step1"),
                                          ("is_fsdp_enabled", "pytorch_model_fsdp_0")])
def test_a_sharded_checkpoint_without_model_safetensors_is_not_taken_for_another_trainers(tmp_path, make_graphs,
                                                                                          monkeypatch, flag, shards):
    checkpoint = tmp_path / "out" / "checkpoint-1"
    _another_trainers_checkpoint(checkpoint, {})
    (checkpoint / shards).mkdir()  # ZeRO-3's or FSDP's sharded weights, no model.safetensors
    args = GraNTTrainingArguments(output_dir=str(tmp_path / "out"), task="graph_regression", teacher="none",
                                  num_train_epochs=2, report_to="none", use_cpu=True)
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args,
                           train_dataset=make_graphs(16, "graph_regression"))
    with pytest.raises(ValueError, match="it holds no model.safetensors"):  # the same checkpoint, unsharded
        trainer._check_resumable(str(checkpoint))
    monkeypatch.setattr(trainer, flag, True)
    trainer._check_resumable(str(checkpoint))


@pytest.mark.parametrize("teacher, lost, refusal", [
    ("none", None, r"it has already trained 4 steps \(2 epochs\), and --num_train_epochs 2 leaves none to train"),
    ("grant", "optimizer.pt", r"it holds no optimizer.pt \(the optimizer's moments"),
])
def test_train_from_python_refuses_a_finished_run_or_one_missing_its_optimizer(tmp_path, make_graphs, teacher, lost,
                                                                               refusal):
    out = tmp_path / "out"
    args = GraNTTrainingArguments(output_dir=str(out), task="graph_regression", teacher=teacher, num_train_epochs=2,
                                  per_device_train_batch_size=8, save_strategy="epoch", report_to="none", use_cpu=True)
    train = make_graphs(16, "graph_regression")
    GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train).train()
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    checkpoint = checkpoints[0] if lost else checkpoints[-1]  # one epoch in, or the finished run's
    if lost:
        (checkpoint / lost).unlink()
    written = _files(out)
    trainer = GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=train)
    with pytest.raises(ValueError, match=rf"^--resume_from_checkpoint {checkpoint}: {refusal}"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert trainer.state.global_step == 0 and _files(out) == written
