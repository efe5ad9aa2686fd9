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


def _usage_error(capsys, argv) -> str:
    """Runs the CLI, expects argparse's usage error (exit 2) and returns its one error line."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_empty_demo_selection_is_refused(capsys, tmp_path):
    for only in (",", ""):
        line = _usage_error(capsys, ["demo", "--only", only, "--out", str(tmp_path)])
        assert line.startswith("hf-eff demo: error: argument --only: no section named")
    assert not any(tmp_path.iterdir())  # nothing ran


def test_unknown_option_is_reported_with_its_commands_usage(capsys):
    with pytest.raises(SystemExit):
        main(["env", "--bogus"])
    err = capsys.readouterr().err
    assert "usage: hf-eff env" in err and "hf-eff env: error: unrecognized arguments: --bogus" in err


def test_push_errors_are_one_line_usage_errors(capsys, tmp_path, monkeypatch):
    from hf_eff.hub import push

    assert _usage_error(capsys, ["push", str(tmp_path / "absent"), "me/x"]) == (
        f"hf-eff push: error: {tmp_path / 'absent'} is not a folder; pass the output_dir of a finished example run")
    assert "holds no hf-eff artifact" in _usage_error(capsys, ["push", str(tmp_path), "me/x"])
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "all_results.json").write_text(json.dumps([0.5]))
    assert "all_results.json must hold a JSON object" in _usage_error(capsys, ["push", str(tmp_path), "me/x",
                                                                               "--token", "hf_x"])
    (tmp_path / "all_results.json").write_text(json.dumps({"eval_mae": 0.5}))
    assert "Repo id must" in _usage_error(capsys, ["push", str(tmp_path), "not a/repo id", "--token", "hf_x"])
    # the CLI has no repo_type argument: push picks the type, and says so
    line = _usage_error(capsys, ["push", str(tmp_path), "datasets/me/x", "--token", "hf_x"])
    assert "repo_type" not in line and "a scene goes to a dataset repo, so give no 'datasets/' prefix" in line
    monkeypatch.setattr(push, "get_token", lambda: None)
    assert "no Hugging Face token" in _usage_error(capsys, ["push", str(tmp_path), "me/x"])


def test_demo_help_says_what_quick_shows(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--quick smallest sizes, under a minute on 2 cores: shows that every pipeline runs" in out
    assert "not the methods' gains" in out and "a report already in --out are kept" in out
    # what the command does, and where the report goes unless told
    assert "Trains each method beside its baseline on small built-in data" in out
    assert "writes the comparison to a report folder: report.md, results.json and PNG plots" in out
    assert "--out OUT report folder (report.md, results.json, PNGs; default: hf_eff_report)" in out


def test_push_help_says_what_each_argument_takes(capsys):
    with pytest.raises(SystemExit):
        main(["push", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "output_dir --output_dir of a finished example run" in out and "scene folder written by Scene.save" in out
    assert "a folder a model's save_pretrained wrote (a HaLoRA adapter, GrantGCN or GaussianModel" in out
    assert "repo_id USER/NAME or ORG/NAME (a bare NAME is the token's user's)" in out
    assert "--private create the repo private" in out
    assert "--revision REVISION the branch to push to, created from main if missing" in out


def test_demo_report_folder_that_cannot_be_made_is_a_usage_error(capsys, tmp_path):
    a_file = tmp_path / "report.md"
    a_file.write_text("an earlier report")
    for out in (a_file, a_file / "sub"):
        line = _usage_error(capsys, ["demo", "--only", "grant", "--out", str(out)])
        assert line.startswith(f"hf-eff demo: error: --out {out}: cannot create the report folder:")
    assert a_file.read_text() == "an earlier report"
