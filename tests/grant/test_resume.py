"""Resumes the GraNT example and GraNTTrainer refuse before anything is written."""

from __future__ import annotations

import pytest

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
