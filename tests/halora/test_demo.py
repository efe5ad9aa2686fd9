from hf_eff.demo import halora as demo
from hf_eff.halora.experiment import ResidentMemory


def test_quick_demo_section_runs_and_reports_both_methods(tmp_path):
    result = demo.run(tmp_path, quick=True)
    assert [row["method"] for row in result.rows] == ["LoRA", "HaLoRA"]
    for row in result.rows:
        for column in ("accuracy at sigma 0", "accuracy at sigma 0.02"):
            assert 0.0 <= row[column] <= 1.0
    assert (tmp_path / result.plots[0]).is_file()
    runs = result.extra["runs"]
    assert runs["halora"]["noise_overhead_fraction"] > 0
    if ResidentMemory.available():  # the CPU's peak memory of training
        assert all(r["train_peak_rss_mb"] >= r["train_start_rss_mb"] > 0 for r in runs.values())
