import json
from pathlib import Path

from tests.scripts import load_script

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "grant_data_speed.py"


def test_data_speed_benchmark_compares_both_paths_on_a_small_qm9(tmp_path, capsys):
    module = load_script(BENCHMARK)
    module.main(["--output_dir", str(tmp_path), "--max_graphs", "200", "--batch_size", "32"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["graphs"] == 160 and results["identical_batches"] is True
    assert [(row["step"], row["path"]) for row in results["rows"]] == [
        ("check", "row by row"), ("check", "column-wise (Arrow)"), ("collate", "rows as python lists"),
        ("collate", "Arrow columns"), ("score (model only)", "GrantGCN hidden 64")]
    assert "| check | column-wise (Arrow) |" in capsys.readouterr().out
