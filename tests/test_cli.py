import json
import subprocess
import sys

import pytest

from hf_eff.cli import build_parser, main
from hf_eff.demo import run_demo
from hf_eff.demo.report import SectionResult, markdown_table, write_report


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "hf_eff.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "env", "push"):
        assert command in out.stdout


def test_env_reports_versions_and_device(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "gsplat CUDA" in out and "torch device" in out


def test_unknown_command_is_refused():
    parser = build_parser()
    try:
        parser.parse_args(["nope"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("an unknown command was accepted")


def test_misspelt_demo_section_is_refused(capsys, tmp_path):
    try:
        main(["demo", "--only", "grant,spalt", "--out", str(tmp_path)])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("a misspelt section was accepted")
    assert "unknown section(s) ['spalt']" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran
    assert build_parser().parse_args(["demo", "--only", "grant,splat"]).only == ["grant", "splat"]
    with pytest.raises(ValueError, match="unknown demo section"):
        run_demo(tmp_path, only=["spalt"])


def test_report_writes_markdown_and_json(tmp_path):
    section = SectionResult("T", ["method", "score"], [{"method": "a", "score": 0.5}], summary="s")
    write_report(tmp_path, {"t": section, "Later": "Not built yet"}, "header")
    text = (tmp_path / "report.md").read_text()
    assert "| a | 0.5 |" in text and "Not built yet" in text
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["t"]["rows"] == [{"method": "a", "score": 0.5}]
    assert results["Later"]["status"] == "Not built yet"
    assert markdown_table(["x"], [{}]).endswith("|  |")
