import argparse
import json
from pathlib import Path

import pytest

from tests.scripts import load_script

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "grant_speed.py"


@pytest.fixture(scope="module")
def grant_speed():
    return load_script(BENCHMARK)


def test_several_seeds_are_run_recorded_and_summarised_per_task(grant_speed, tmp_path, capsys):
    grant_speed.main(["--tasks", "node_regression", "--num_generated_graphs", "30", "--epochs", "4",
                      "--seeds", "3,5", "--output_dir", str(tmp_path)])
    results = json.loads((tmp_path / "grant_speed.json").read_text())["results"]
    assert [(r["task"], r["seed"]) for r in results] == [("node_regression", 3), ("node_regression", 5)]
    assert [[row["seed"] for row in r["rows"]] for r in results] == [[3, 3], [5, 5]]
    # another seed initialises the model otherwise: the full runs differ
    assert results[0]["curves"]["none"] != results[1]["curves"]["none"]
    assert (tmp_path / "grant_speed_seed3.png").is_file() and (tmp_path / "grant_speed_seed5.png").is_file()
    summary = json.loads((tmp_path / "grant_speed_summary.json").read_text())
    assert [(s["task"], s["method"], s["seeds"]) for s in summary] == [("node_regression", "GraNT(S)", 2)]
    assert "| within_0.5x_cpu |" in (tmp_path / "grant_speed.md").read_text()
    assert "| median_time_to_target_cpu_x |" in capsys.readouterr().out


def test_one_seed_writes_one_plot_and_no_summary(grant_speed, tmp_path):
    grant_speed.main(["--tasks", "node_regression", "--num_generated_graphs", "30", "--epochs", "4", "--seed", "2",
                      "--output_dir", str(tmp_path)])
    assert json.loads((tmp_path / "grant_speed.json").read_text())["results"][0]["seed"] == 2
    assert (tmp_path / "grant_speed.png").is_file()
    assert not (tmp_path / "grant_speed_summary.json").exists()


def _result(task, higher, *taught):
    rows = [{"method": "full"}] + [{"method": "GraNT(S)", "time_to_target_cpu_x": ratio, "test_change_%": change}
                                   for ratio, change in taught]
    return {"task": task, "higher_is_better": higher, "rows": rows}


def test_the_summary_counts_the_targets_with_the_metrics_direction(grant_speed):
    results = [
        # MAE: lower is better, so +0.5% is within 1% and -3% (better) counts as kept
        _result("node_regression", False, (0.4, 0.5)),
        _result("node_regression", False, (0.6, -3.0)),
        _result("node_regression", False, (None, 2.0)),
        # ROC-AUC: higher is better, so -2% is worse and +2% is kept
        _result("graph_classification", True, (0.3, -2.0)),
        _result("graph_classification", True, (0.5, 2.0)),
    ]
    by_task = {s["task"]: s for s in grant_speed.seed_summary(results)}
    assert by_task["node_regression"] == {
        "task": "node_regression", "method": "GraNT(S)", "seeds": 3, "reach_target": 2, "within_0.5x_cpu": 1,
        "test_not_1%_worse": 2, "both": 1, "median_time_to_target_cpu_x": 0.5}
    assert by_task["graph_classification"] == {
        "task": "graph_classification", "method": "GraNT(S)", "seeds": 2, "reach_target": 2, "within_0.5x_cpu": 2,
        "test_not_1%_worse": 1, "both": 1, "median_time_to_target_cpu_x": 0.4}


@pytest.mark.parametrize("text", ["0,x", "1,1"])
def test_bad_seeds_are_named(grant_speed, text):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
        grant_speed.parse_seeds(text)
