"""What marks an earlier run for a training run's refusal (hf_eff/utils/output_dir.py RUN_FILES): each results file the
examples write."""

from __future__ import annotations

import pytest
from transformers import TrainingArguments

from hf_eff.utils.output_dir import check_output_dir


@pytest.mark.parametrize("saved", ["eval_results.json", "trainer_state.json"])
def test_a_folder_holding_any_results_file_of_a_run_is_refused_naming_it(tmp_path, saved):
    # a training run replaced them unasked where the folder held no all_results.json or weights beside them
    (tmp_path / saved).write_text("{}")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], do_train=True)
    with pytest.raises(FileExistsError, match=f"already holds a run \\({saved}\\)"):
        check_output_dir(args, overwrite_output_dir=False)
    check_output_dir(args, overwrite_output_dir=True)


def test_a_finished_runs_files_are_all_named(tmp_path):
    for name in ("all_results.json", "eval_results.json", "train_results.json", "trainer_state.json",
                 "model.safetensors"):
        (tmp_path / name).write_text("{}")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], do_train=True)
    with pytest.raises(FileExistsError, match=r"already holds a run \(all_results.json, eval_results.json, "
                                              r"train_results.json, trainer_state.json, model.safetensors\)"):
        check_output_dir(args, overwrite_output_dir=False)
