"""examples/grant_train.py records the commit a Hub --dataset was read at (dataset_commit, beside the revision given),
and a model evaluated later without --dataset_revision reads that commit: the data its training saw, after its branch
moved, and offline from the cache."""

import json
import subprocess
from pathlib import Path

from tests.grant.conftest import random_graphs
from tests.grant.test_hub_dataset import COMMON, _example, _push, _run, _succeeded
from tests.hub.conftest import local_hub  # noqa: F401  (the local Hub server fixture)


def _results(folder: Path) -> dict:
    return json.loads((folder / "all_results.json").read_text())


def test_a_model_trained_on_main_is_evaluated_on_the_commit_it_saw_after_main_moves(tmp_path, local_hub):  # noqa: F811
    repo_id = local_hub.repo_id("graphs")
    first = _push(local_hub, random_graphs(20, "graph_regression"), repo_id, tmp_path / "v1")
    out = tmp_path / "run"
    _succeeded(_run(local_hub, tmp_path, "--dataset", repo_id, "--dataset_revision", "main", "--task",
                    "graph_regression", "--output_dir", str(out), *COMMON))
    results = _results(out)
    assert (results["dataset_revision"], results["dataset_commit"]) == ("main", first)
    split = results["data_split"]
    assert (split["dataset_revision"], split["dataset_commit"]) == ("main", first)
    assert json.loads((out / "config.json").read_text())["data_split"] == split
    assert f'load_dataset("{repo_id}", revision="{first}")' in (out / "README.md").read_text()
    second = _push(local_hub, random_graphs(30, "graph_regression", seed=1), repo_id, tmp_path / "v2")

    def evaluate(name: str, *flags: str, **env: str) -> subprocess.CompletedProcess:
        return _succeeded(_run(local_hub, tmp_path, "--dataset", repo_id, *flags, "--task", "graph_regression",
                               "--model_name_or_path", str(out), "--do_train", "False", "--do_predict",
                               "--output_dir", str(tmp_path / name), *COMMON, **env))

    # the test split predicted is a fifth of the commit read: 4 of the first commit's 20 graphs, 6 of main's 30 now
    for name, env in (("online", {}), ("offline", {"HF_HUB_OFFLINE": "1"})):
        run = evaluate(name, **env)
        results = _results(tmp_path / name)
        assert (results["predict_graphs"], results["dataset_revision"], results["dataset_commit"]) == (4, first, first), name
        assert f"--dataset {repo_id} at revision main at commit {first}, as --model_name_or_path {out}" in run.stderr
        assert "differ from the training run" not in run.stderr, name
    on_main = evaluate("main", "--dataset_revision", "main")
    results = _results(tmp_path / "main")
    assert (results["predict_graphs"], results["dataset_commit"]) == (6, second)
    assert (f"--dataset_revision main at commit {second} (the model's: main at commit {first}) differ from the "
            f"training run of --model_name_or_path {out}") in on_main.stderr


def test_the_revision_is_compared_by_commit_where_both_runs_record_one(caplog):
    from hf_eff.grant import GrantGCN

    first, second = "1" * 40, "2" * 40
    trained = {"dataset_name": "me/graphs", "dataset_revision": "main", "dataset_commit": first, "seed": 42}
    model = GrantGCN(6, 1, hidden_channels=4, task="graph_regression", data_split=trained)
    example = _example()
    for same in ({"dataset_revision": first}, {"dataset_revision": "v1"}):  # by hash, or a tag at the same commit
        example.warn_unless_held_out(model, {**trained, **same}, "m")
    assert "differ from the training run" not in caplog.text
    example.warn_unless_held_out(model, {**trained, "dataset_commit": second}, "m")
    assert (f"--dataset_revision main at commit {second} (the model's: main at commit {first}) differ from the training "
            "run of --model_name_or_path m") in caplog.text
    caplog.clear()
    # a model recorded before commits were: by the revision's name, as before
    example.warn_unless_held_out(GrantGCN(6, 1, hidden_channels=4, task="graph_regression",
                                          data_split={k: v for k, v in trained.items() if k != "dataset_commit"}),
                                 {**trained, "dataset_commit": second}, "m")
    assert "differ from the training run" not in caplog.text


def test_without_a_recorded_commit_the_recorded_revision_is_read(tmp_path):
    from hf_eff.grant import GrantGCN

    example = _example()
    for recorded, read in (({"dataset_revision": "v1", "dataset_commit": "1" * 40}, "1" * 40),
                           ({"dataset_revision": "v1"}, "v1")):
        model = GrantGCN(6, 1, hidden_channels=4, task="graph_regression",
                         data_split={"dataset_name": "me/graphs", **recorded, "seed": 42})
        _, data_args, _ = example.parse_args(["--dataset", "me/graphs", "--task", "graph_regression", "--output_dir",
                                              str(tmp_path / "out")])
        example.default_dataset_revision(data_args, model, "m")
        assert data_args.dataset_revision == read
