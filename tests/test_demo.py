import importlib
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
    # every figure's header names its unit or setting: no bare result keys
    headers = {name: section["columns"] for name, section in results.items()}
    assert headers["halora"] == ["method", "accuracy at sigma 0", "accuracy at sigma 0.02", "train step (s)"]
    grant = {"train time (s)", "time to full's best validation (s)", "test ROC-AUC (end of training)"}
    assert grant <= set(headers["grant"])
    assert "test SSIM (3DGS's zero-padded)" in headers["splat"]
    from PIL import Image

    with Image.open(out / "splat_g2l_orbit.gif") as orbit:  # the fast run's novel views
        assert orbit.n_frames == 12 and "![splat_g2l_orbit](splat_g2l_orbit.gif)" in report
    for name, section in results.items():
        assert not any("_" in column or "@" in column for column in section["columns"]), (name, section["columns"])
        assert "evaluations excluded" in section["summary"] or name == "halora"


def test_only_rewrites_its_sections_and_keeps_the_rest_of_an_earlier_report(tmp_path, monkeypatch):
    from hf_eff import demo
    from hf_eff.demo.report import SectionResult

    def fake(name, score):
        def run(out_dir, quick=False):
            return SectionResult(f"{name} title", ["method", "score"], [{"method": name, "score": score}], summary=name)
        monkeypatch.setattr(importlib.import_module(f"hf_eff.demo.{name}"), "run", run)

    for name in demo.SECTIONS:
        fake(name, 1.0)
    assert demo.run_demo(tmp_path)
    fake("grant", 2.0)
    assert demo.run_demo(tmp_path, only=["grant"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == list(demo.SECTIONS)  # the sections not rerun are still there, in order
    assert [results[name]["rows"][0]["score"] for name in demo.SECTIONS] == [1.0, 2.0, 1.0]
    report = (tmp_path / "report.md").read_text()
    assert "| halora | 1 |" in report and "| grant | 2 |" in report and "| splat | 1 |" in report
    # an earlier results.json that does not read back is no reason to stop: its sections are left out
    for text in ('{"halora": {"status": "ok"}, "splat": 3}', "[1, 2]", "not json"):
        (tmp_path / "results.json").write_text(text)
        assert demo.run_demo(tmp_path, only=["grant"])
        assert list(json.loads((tmp_path / "results.json").read_text())) == ["grant"]
