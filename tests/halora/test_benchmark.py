import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts import load_script

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "halora_robustness.py"


def _load_benchmark():
    return load_script(BENCHMARK)


def _run(clean, noisy, step_s, step_cpu_s):
    return {"eval_accuracy_sigma_0_mean": clean, "eval_accuracy_sigma_0_std": 0.0,
            "eval_accuracy_sigma_0.02_mean": noisy, "eval_accuracy_sigma_0.02_std": 0.01,
            "train_step_seconds": step_s, "train_step_cpu_seconds": step_cpu_s,
            "adapter_relative_norm_mean": 0.0123, "adapter_relative_norm_max": 0.0456}


def test_summary_checks_the_issue_targets_on_wall_and_cpu_time():
    benchmark = _load_benchmark()
    runs = {"lora": _run(0.70, 0.55, 2.0, 2.0), "halora": _run(0.695, 0.66, 2.6, 2.2)}
    table, verdict = benchmark.summarise(runs, [0.0, 0.02])
    targets, checks = verdict["targets"], verdict["checks"]
    assert targets["drop_ratio"] == pytest.approx(0.035 / 0.15)
    assert targets["clean_accuracy_difference"] == pytest.approx(-0.005)
    assert targets["step_time_ratio"] == pytest.approx(1.3) and targets["step_cpu_time_ratio"] == pytest.approx(1.1)
    assert checks == {"drop ratio <= 1/3": True, "clean accuracy >= LoRA - 1 point": True,
                      "step time <= 1.15x": False, "step CPU time <= 1.15x": True}
    assert "step CPU s" in table and "|dW|/|W0| mean" in table and "0.0456" in table
    args = benchmark.parse_args(["--noise_sigma_sampling", "uniform", "--noise_warmup_steps", "10"])
    assert (args.noise_sigma_sampling, args.noise_warmup_steps) == ("uniform", 10)


def test_old_flag_names_still_parse():
    args = _load_benchmark().parse_args(["--out", "bench", "--train_sigma", "0.02", "--sigma_sampling", "uniform",
                                         "--resample_steps", "4"])
    assert (args.output_dir, args.noise_sigma, args.noise_sigma_sampling, args.noise_resample_steps) == (
        "bench", 0.02, "uniform", 4)


@pytest.mark.slow
def test_both_methods_at_once_write_each_ones_results_and_the_table(tmp_path, builtin_folder):
    """--parallel runs LoRA and HaLoRA in two processes at once, on a tiny model standing in for SmolLM2."""
    out = tmp_path / "bench"
    process = subprocess.run(
        [sys.executable, str(BENCHMARK), "--output_dir", str(out), "--model_name_or_path", str(builtin_folder),
         "--max_steps", "2", "--train_size", "40", "--eval_size", "8", "--sigmas", "0", "0.02", "--noise_seeds", "1",
         "--max_length", "32", "--parallel"],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(BENCHMARK.parents[1])},
        capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    for method in ("lora", "halora"):
        results = json.loads((out / f"{method}_results.json").read_text())
        assert results["method"] == method and "eval_accuracy_sigma_0.02_mean" in results
    summary = json.loads((out / "halora_robustness.json").read_text())
    assert set(summary["runs"]) == {"lora", "halora"} and summary["settings"]["parallel"] is True
    assert "(both methods at once: step times not comparable)" in (out / "halora_robustness.md").read_text()
