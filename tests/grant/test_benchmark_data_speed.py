import importlib.util
import json
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "grant_data_speed.py"


def test_data_speed_benchmark_compares_both_paths_on_a_small_qm9(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("grant_data_speed", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(["--output_dir", str(tmp_path), "--max_graphs", "200", "--batch_size", "32"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["graphs"] == 160 and results["identical_batches"] is True
    assert [(row["step"], row["path"]) for row in results["rows"]] == [
        ("check", "row by row"), ("check", "column-wise (Arrow)"), ("collate", "rows as python lists"),
        ("collate", "Arrow columns"), ("score (model only)", "GrantGCN hidden 64")]
    assert "| check | column-wise (Arrow) |" in capsys.readouterr().out
