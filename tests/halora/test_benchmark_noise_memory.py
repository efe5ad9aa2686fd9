import json
from pathlib import Path

from tests.scripts import load_script

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "halora_noise_memory.py"
NOISE = Path(__file__).parents[2] / "hf_eff" / "halora" / "noise.py"


def test_noise_memory_benchmark_measures_at_least_the_draw_it_holds(tmp_path, capsys):
    module = load_script(BENCHMARK)
    module.main(["--output_dir", str(tmp_path), "--rows", "128", "--cols", "256", "--modes", "tile_additive",
                 "--dtypes", "bfloat16", "--repeats", "1", "--compare_with", str(NOISE)])
    results = json.loads((tmp_path / "halora_noise_memory.json").read_text())["results"]
    assert [row["version"] for row in results] == ["current", "compared"]
    for row in results:
        # the layer's float32 draw is alive during apply: the profiler-based peak must see it
        assert row["apply_peak_bytes"] >= 128 * 256 * 4 and row["kept_bytes"] > 0
        assert row["apply_peak_x_layer"] == row["apply_peak_bytes"] / (128 * 256 * 2)
    assert "| bfloat16 | tile_additive | current |" in capsys.readouterr().out
