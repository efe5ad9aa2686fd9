from hf_eff.demo import halora as demo


def test_quick_demo_section_runs_and_reports_both_methods(tmp_path):
    result = demo.run(tmp_path, quick=True)
    assert [row["method"] for row in result.rows] == ["LoRA", "HaLoRA"]
    for row in result.rows:
        for column in ("acc@0", "acc@0.02"):
            assert 0.0 <= row[column] <= 1.0
    assert (tmp_path / result.plots[0]).is_file()
    assert result.extra["runs"]["halora"]["noise_overhead_fraction"] > 0
