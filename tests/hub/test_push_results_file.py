"""`hf-eff push` of a run folder whose all_results.json is no JSON object: an error naming the file and what is
wrong, and nothing pushed (no repo created, no commit to an existing one, the folder as it was)."""

import json
import re

import pytest
from huggingface_hub import constants

from hf_eff.hub.push import push_output_dir
from tests.hub.conftest import OWNER

# (what all_results.json holds, what the refusal says of it)
BROKEN_RESULTS = {
    "truncated": (b'{"eval_mae": 0.5', r"is not JSON \(Expecting"),
    "not text": (b"\xff\xfe\x00binary", r"is not JSON \('utf-8' codec can't decode"),
    "a list": (b"[1, 2]", r"must hold a JSON object of metrics, got list"),
}


@pytest.fixture
def run(local_hub, tmp_path, monkeypatch):
    """A finished GraNT run folder; push_output_dir's HfApi talks to the local Hub."""
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    run = tmp_path / "run"
    run.mkdir()
    config = {"in_channels": 4, "out_channels": 1, "task": "graph_regression", "target_names": ["logS"]}
    for name, text in (("config.json", json.dumps(config)), ("model.safetensors", "{}"),
                       ("README.md", "the run's own card\n")):
        (run / name).write_text(text)
    return run


def _files(folder) -> dict:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("content", list(BROKEN_RESULTS))
def test_results_that_are_no_json_object_are_refused_naming_the_file_and_nothing_is_pushed(local_hub, run, content):
    data, problem = BROKEN_RESULTS[content]
    (run / "all_results.json").write_bytes(data)
    before = _files(run)
    existing = local_hub.repo_id("existing")
    local_hub.api().create_repo(existing)
    commits = len(local_hub.api().list_repo_commits(existing))
    new_name = local_hub.repo_id("new").split("/")[1]
    for repo_id in (existing, new_name, f"{OWNER}/{new_name}"):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(run / 'all_results.json'))} {problem}"):
            push_output_dir(run, repo_id, token=local_hub.token)
    assert len(local_hub.api().list_repo_commits(existing)) == commits
    assert ("model", f"{OWNER}/{new_name}") not in local_hub.server.repos
    assert _files(run) == before


def test_cli_push_of_results_that_are_not_json_is_a_usage_error_naming_the_file(local_hub, run, capsys):
    from hf_eff.cli import main

    (run / "all_results.json").write_text('{"eval_mae": 0.5,}')
    repo_id = local_hub.repo_id("cli")
    with pytest.raises(SystemExit) as exit_:
        main(["push", str(run), repo_id, "--token", local_hub.token])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{run / 'all_results.json'} is not JSON (" in err.strip().splitlines()[-1]
    assert ("model", repo_id) not in local_hub.server.repos
