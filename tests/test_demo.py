import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_demo_runs_every_section_and_writes_the_report(tmp_path):
    out = tmp_path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "hf_eff.cli", "demo", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"halora", "grant", "splat"}
    for name, section in results.items():
        assert section["status"] == "ok", name
        assert len(section["rows"]) >= 2, f"{name}: the method and its baseline"
        for plot in section["plots"]:
            assert (out / plot).is_file(), plot
    report = (out / "report.md").read_text()
    assert "HaLoRA" in report and "GraNT" in report and "G2L" in report
