"""examples/grant_train.py with a Hub dataset id as --dataset: graphs and SMILES tables pushed to the local Hub
(tests/hub) with `push_to_hub`, read at a pinned revision and recorded; and what it refuses."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest

from hf_eff.grant import class_names, encode_class_labels
from hf_eff.grant.data import MissingColumnError, split_off_validation
from hf_eff.hub import dataset_commits
from tests.grant.conftest import random_graphs
from tests.hub.conftest import local_hub  # noqa: F401  (the local Hub server fixture)
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "grant_train.py"
COMMON = ["--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--hidden_channels", "8",
          "--report_to", "none", "--save_strategy", "no", "--eval_strategy", "epoch", "--use_cpu", "true",
          "--validation_fraction", "0.2", "--test_fraction", "0.2"]
SMILES = ["CCO", "CCC", "CCN", "c1ccccc1", "CC(=O)O", "CCCl", "CO", "CN", "CCCC", "OCCO"] * 2
# huggingface_hub and datasets read the endpoint when imported: pushes and runs go to fresh processes
PUSH = """
import sys, datasets
print("COMMIT", datasets.load_from_disk(sys.argv[1]).push_to_hub(*sys.argv[2:]).oid)
"""


def _example():
    return load_script(EXAMPLE)


def _push(hub, data: datasets.Dataset | datasets.DatasetDict, repo_id: str, folder: Path, *config_name: str) -> str:
    """Pushes `data` to the dataset repo `repo_id` (as its `config_name`, else the default) as `push_to_hub` does; its
    commit."""
    data.save_to_disk(str(folder))
    process = hub.run_code(PUSH, str(folder), repo_id, *config_name)
    assert process.returncode == 0, process.stderr[-3000:]
    return next(line.split()[1] for line in process.stdout.splitlines() if line.startswith("COMMIT "))


def _run(hub, tmp_path: Path, *flags: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE), *flags], env={**hub.env(**env), "HF_EFF_CACHE": str(tmp_path / "cache")},
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def _succeeded(process: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert process.returncode == 0, process.stderr[-4000:]
    return process


def _labelled(graphs: datasets.Dataset) -> datasets.Dataset:
    """Class names in y, as a user's saved graphs may hold them."""
    return graphs.map(lambda row: {"y": ["active", "inactive"][row["y"]]})


def test_pushed_graphs_train_at_the_pinned_revision_which_the_results_card_and_model_record(tmp_path, local_hub):  # noqa: F811
    api, repo_id = local_hub.api(), local_hub.repo_id("graphs")
    first = _push(local_hub, _labelled(random_graphs(20, "graph_classification")), repo_id, tmp_path / "v1")
    api.create_tag(repo_id, tag="v1", revision=first, repo_type="dataset")
    _push(local_hub, _labelled(random_graphs(30, "graph_classification", seed=1)), repo_id, tmp_path / "v2")
    out = tmp_path / "run"
    _succeeded(_run(local_hub, tmp_path, "--dataset", repo_id, "--dataset_revision", "v1", "--task",
                    "graph_classification", "--output_dir", str(out), *COMMON))
    results = json.loads((out / "all_results.json").read_text())
    assert (results["dataset_name"], results["dataset_revision"]) == (repo_id, "v1")
    assert "dataset_config_name" not in results  # not given: the default configuration
    assert results["class_names"] == ["active", "inactive"]  # names to ids, as a saved folder's
    split = {"dataset_name": repo_id, "dataset_revision": "v1", "dataset_commit": first, "max_graphs": None, "seed": 42,
             "stratify": True, "test_fraction": 0.2, "validation_fraction": 0.2}
    assert results["data_split"] == split == json.loads((out / "config.json").read_text())["data_split"]
    card = (out / "README.md").read_text()
    assert f"datasets:\n- {repo_id}\n" in card
    assert f"name: {repo_id}\n      type: {repo_id}\n      split: test\n      revision: v1\n" in card

    def evaluate(name: str, *flags: str) -> subprocess.CompletedProcess:
        return _succeeded(_run(local_hub, tmp_path, "--dataset", repo_id, *flags, "--task", "graph_classification",
                               "--model_name_or_path", str(out), "--do_train", "False", "--do_predict",
                               "--output_dir", str(tmp_path / name), *COMMON))

    # 20 graphs at v1, 30 on main: the test split (predicted) is a fifth of the revision read
    at_v1 = evaluate("same", "--dataset_revision", "v1")
    assert json.loads((tmp_path / "same" / "all_results.json").read_text())["predict_graphs"] == 4
    assert "differ from the training run" not in at_v1.stderr
    # no --dataset_revision: the commit the model's data split records
    by_default = evaluate("default")
    results = json.loads((tmp_path / "default" / "all_results.json").read_text())
    assert (results["predict_graphs"], results["dataset_revision"]) == (4, first)
    assert (f"--dataset {repo_id} at revision v1 at commit {first}, as --model_name_or_path {out} records its training"
            in by_default.stderr)
    assert "differ from the training run" not in by_default.stderr
    on_main = evaluate("main", "--dataset_revision", "main")
    assert json.loads((tmp_path / "main" / "all_results.json").read_text())["predict_graphs"] == 6
    main = json.loads((tmp_path / "main" / "all_results.json").read_text())["dataset_commit"]
    assert (f"--dataset_revision main at commit {main} (the model's: v1 at commit {first}) differ from the training run "
            f"of --model_name_or_path {out}" in on_main.stderr)


def test_a_pushed_smiles_table_with_splits_is_read_as_a_csv_and_used_as_split(tmp_path, local_hub):  # noqa: F811
    table = datasets.Dataset.from_dict({"smiles": SMILES, "label": ["x", "y", "z", "x", "y"] * 4})
    # the validation split lacks class y: its ids still follow all the splits' names
    splits = datasets.DatasetDict({"train": table.select(range(12)), "validation": table.select([12, 15, 17]),
                                   "test": table.select([13, 14, 16, 18, 19])})
    repo_id = local_hub.repo_id("molecules")
    commit = _push(local_hub, splits, repo_id, tmp_path / "table")
    out = tmp_path / "run"
    run = _succeeded(_run(local_hub, tmp_path, "--dataset", repo_id, "--target_column", "label", "--task",
                          "graph_classification", "--do_predict", "--output_dir", str(out), *COMMON))
    assert f"--dataset {repo_id} (graph_classification): {{'train': 12, 'validation': 3, 'test': 5}}" in run.stderr
    results = json.loads((out / "all_results.json").read_text())
    assert (results["class_names"], results["target_columns"]) == (["x", "y", "z"], ["label"])
    # as saved: no seed or fractions
    assert results["data_split"] == {"dataset_name": repo_id, "dataset_commit": commit, "max_graphs": None}
    predicted = (out / "predict_results.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in predicted[1:]] == splits["test"]["smiles"]


def test_hub_data_the_example_cannot_read_is_named_in_one_line(tmp_path, local_hub):  # noqa: F811
    repo_id = local_hub.repo_id("texts")
    _push(local_hub, datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}), repo_id, tmp_path / "texts")
    flags = ["--task", "graph_regression", "--output_dir", str(tmp_path / "out"), *COMMON]

    def error(*data: str, **env: str) -> str:
        process = _run(local_hub, tmp_path, *data, *flags, **env)
        assert process.returncode != 0
        return process.stderr.strip().splitlines()[-1]

    assert error("--dataset", repo_id) == (
        f"hf_eff.grant.data.MissingColumnError: --dataset {repo_id} has columns ['text', 'label']: give graphs (columns "
        "['x', 'edge_index', 'y', 'num_nodes']) or molecules (SMILES in the column --smiles_column names, 'smiles', "
        "and the --target_column(s))")
    missing = local_hub.repo_id("absent")
    # a typo'd local folder falls through to the Hub: the error names the path looked for too
    assert error("--dataset", missing) == (
        f"FileNotFoundError: --dataset {missing}: there is no such folder {missing} ({ROOT / missing}), and no Hub "
        f"dataset {missing} that this token can read (Dataset '{missing}' doesn't exist on the Hub or cannot be "
        "accessed.)")
    assert error("--dataset", missing, HF_HUB_OFFLINE="1") == (
        f"FileNotFoundError: --dataset {missing}: there is no such folder {missing} ({ROOT / missing}), and the Hub "
        f"could not be reached to look for a repo {missing}, which is not in the local cache (Couldn't reach "
        f"'{missing}' on the Hub (OfflineModeIsEnabled))")
    assert error("--dataset", repo_id, "--dataset_revision", "v9") == (
        f"FileNotFoundError: --dataset_revision v9: the Hub repo {repo_id} has no such branch, tag or commit")
    _push(local_hub, datasets.Dataset.from_dict({"text": ["c"], "label": [2]}), repo_id, tmp_path / "small", "small")
    assert error("--dataset", repo_id, "--dataset_config_name", "smal") == (
        f"ValueError: --dataset_config_name smal: the Hub dataset {repo_id} has no such configuration; its "
        "configurations are ['default', 'small']")


def _with_bad_edge(graphs: datasets.Dataset, row: int) -> datasets.Dataset:
    """`graphs` with an edge of graph `row` pointing past its nodes."""
    return graphs.map(lambda graph, i: {"edge_index": [[0], [graph["num_nodes"]]] if i == row else graph["edge_index"]},
                      with_indices=True)


def test_a_bad_row_of_pushed_graphs_is_named_by_its_hub_split_and_index_before_the_run(tmp_path, local_hub):  # noqa: F811
    repo_id = local_hub.repo_id("graphs")
    _push(local_hub, _with_bad_edge(random_graphs(20, "graph_regression"), 17), repo_id, tmp_path / "graphs")
    out = tmp_path / "run"
    process = _run(local_hub, tmp_path, "--dataset", repo_id, "--task", "graph_regression", "--output_dir", str(out),
                   *COMMON)
    assert process.returncode != 0
    # not its place in the training part of the example's own shuffled split
    assert (f"ValueError: --dataset {repo_id} (train split) row 17 (0-based, as dataset[17]): edge_index refers to node"
            in process.stderr.strip().splitlines()[-1])
    assert not out.exists()


# reads --dataset as the example does, in a process of its own (offline or not, as its environment says)
READ = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("grant_train", sys.argv[1])
example = importlib.util.module_from_spec(spec)
sys.modules["grant_train"] = example
spec.loader.exec_module(example)
try:
    print("ROWS", len(example.download_hub_dataset(sys.argv[2], None, sys.argv[3] or None)[0]["train"]))
except Exception as error:
    print("ERROR", type(error).__name__, error)
"""


def test_offline_a_revision_is_read_only_where_the_cache_shows_its_commit(tmp_path, local_hub):  # noqa: F811
    api, repo_id = local_hub.api(), local_hub.repo_id("graphs")
    first = _push(local_hub, random_graphs(4, "graph_regression"), repo_id, tmp_path / "v1")
    api.create_tag(repo_id, tag="v1", revision=first, repo_type="dataset")
    second = _push(local_hub, random_graphs(6, "graph_regression"), repo_id, tmp_path / "v2")

    def read(revision: str, **env: str) -> str:
        process = subprocess.run([sys.executable, "-c", READ, str(EXAMPLE), repo_id, revision], env=local_hub.env(**env),
                                 cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, process.stderr[-3000:]
        return process.stdout.strip().splitlines()[-1]

    assert (read(""), read(first)) == ("ROWS 6", "ROWS 4")  # both cached; the first commit's last
    assert read(first, HF_HUB_OFFLINE="1") == "ROWS 4"
    # datasets would read the latest cached copy, the first commit's, for any revision
    refused = read(second, HF_HUB_OFFLINE="1")
    assert refused == (f"ERROR ValueError --dataset_revision {second}: offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE) "
                       f"the cached copy of {repo_id} read is of commit {first}; go online, or pin the commit cached")
    for tag, offline in (("v1", "HF_HUB_OFFLINE"), ("v9", "HF_DATASETS_OFFLINE")):  # v9: no such tag
        assert read(tag, **{offline: "1"}) == (
            f"ERROR ValueError --dataset_revision {tag}: offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE) the datasets "
            "cache cannot show which commit this branch or tag names; go online, or pin the dataset's 40-character "
            "commit hash")


# In-process from here: datasets.load_dataset stands in for the Hub, as the HaLoRA example's tests have it

SERVED_COMMIT = "c" * 40


@pytest.fixture
def hub_datasets(monkeypatch):
    """`serve(data)`: datasets.load_dataset returns `data` (a DatasetDict); the calls it got are listed. Data held in
    memory names no commit: the Hub's dataset_info answers SERVED_COMMIT."""
    calls = []

    def serve(data: datasets.DatasetDict) -> list:
        def load_dataset(path, name=None, revision=None):
            calls.append((path, name, revision))
            return data

        monkeypatch.setattr(datasets, "load_dataset", load_dataset)
        monkeypatch.setattr(dataset_commits, "HfApi", lambda: SimpleNamespace(
            dataset_info=lambda repo_id, revision=None: SimpleNamespace(sha=SERVED_COMMIT)))
        return calls

    return serve


def _load(tmp_path: Path, *flags: str):
    example = _example()
    _, data_args, training_args = example.parse_args([*flags, "--output_dir", str(tmp_path / "out")])
    return example.load_graphs(data_args, training_args.task, seed=0)


def test_a_single_split_of_smiles_is_read_with_the_csv_checks(tmp_path, hub_datasets):
    table = datasets.Dataset.from_dict({"mol": SMILES[:6], "logp": [0.5, 1.0, None, 2.0, 2.5, 3.0]})
    calls = hub_datasets(datasets.DatasetDict({"train": table}))
    flags = ["--dataset", "me/mols", "--smiles_column", "mol", "--target_column", "logp", "--task", "graph_regression"]
    with pytest.raises(ValueError, match=r"^--dataset me/mols \(train split\), column 'logp', row 2 \(0-based, as "
                                         r"dataset\[2\]\): the target is empty"):
        _load(tmp_path, *flags, "--dataset_config_name", "small", "--dataset_revision", "v2")
    assert calls == [("me/mols", "small", "v2")]
    hub_datasets(datasets.DatasetDict({"train": table.select([0, 1, 3, 4, 5])}))
    graphs = _load(tmp_path, *flags)
    assert graphs["smiles"] == [SMILES[i] for i in (0, 1, 3, 4, 5)] and graphs["y"] == [[0.5], [1.0], [2.0], [2.5], [3.0]]
    with pytest.raises(ValueError, match=r"^--dataset me/mols \(SMILES in column 'mol'\) needs --target_column"):
        _load(tmp_path, *flags[:4], "--task", "graph_regression")
    with pytest.raises(ValueError, match="^--dataset me/mols holds molecules, one row of targets per molecule: give a "
                                         "graph task kind"):
        _load(tmp_path, *flags[:6], "--task", "node_regression")


CASED = ["a", "A", "b", "B", "c", "C", "d", "D", "e", "E", "f"]


@pytest.mark.parametrize(("labels", "names"), [(list(range(11)), [str(i) for i in range(11)]),
                                               ([str(i) for i in range(11)], sorted(str(i) for i in range(11))),
                                               (CASED, sorted(CASED))],
                         ids=["numbers by value", "text as text", "cases apart"])
def test_class_labels_of_several_splits_share_the_order_a_csv_gives_them(tmp_path, hub_datasets, labels, names):
    # the validation and test splits hold a few classes each, numbered by their own labels until all splits share one
    rows = {"train": list(range(11)), "validation": [2, 10], "test": [10, 9, 1]}
    smiles = SMILES + ["CCCCC"]
    hub_datasets(datasets.DatasetDict({split: datasets.Dataset.from_dict({"smiles": [smiles[i] for i in chosen],
                                                                          "label": [labels[i] for i in chosen]})
                                       for split, chosen in rows.items()}))
    splits = _load(tmp_path, "--dataset", "me/mols", "--target_column", "label", "--task", "graph_classification")
    for split, chosen in rows.items():
        assert class_names(splits[split]) == names, split
        assert [names[y] for y in splits[split]["y"]] == [str(labels[i]) for i in chosen], split


def test_a_bare_hub_id_is_carded_as_a_hub_dataset_not_built_in_data(tmp_path, hub_datasets, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no local "mols" here
    hub_datasets(datasets.DatasetDict({"train": datasets.Dataset.from_dict({"smiles": SMILES, "logp": list(range(20))})}))
    out = tmp_path / "run"
    results = _example().main(["--dataset", "mols", "--target_column", "logp", "--task", "graph_regression",
                               "--output_dir", str(out), *COMMON])
    assert results["dataset_from_hub"] is True
    card = (out / "README.md").read_text()
    assert "datasets:\n- mols\n" in card and "name: mols\n      type: mols\n" in card and "hf-eff/builtin" not in card


def test_pushed_graphs_are_used_as_a_saved_folder_is(tmp_path, hub_datasets):
    graphs = random_graphs(12, "graph_regression")
    hub_datasets(datasets.DatasetDict({"train": graphs}))
    assert _load(tmp_path, "--dataset", "me/graphs", "--task", "graph_regression", "--max_graphs", "5")["y"] == graphs["y"][:5]
    with pytest.raises(ValueError, match=r"^--target_column does not apply to --dataset me/graphs \(rows of graphs, not "
                                         "SMILES\\): --target_column is for a CSV --dataset"):
        _load(tmp_path, "--dataset", "me/graphs", "--target_column", "y", "--task", "graph_regression")
    hub_datasets(datasets.DatasetDict({"train": graphs, "validation": graphs}))
    with pytest.raises(ValueError, match=r"^--dataset me/graphs has splits \['train', 'validation'\], missing \['test'\]: "
                                         r"a Hub dataset of several splits needs train and test \(and validation, valid "
                                         r"or dev, else --validation_fraction of train is held out for validation\)"):
        _load(tmp_path, "--dataset", "me/graphs", "--task", "graph_regression")
    hub_datasets(datasets.DatasetDict({"train": graphs, "validation": graphs.select(range(3)), "test": graphs}))
    splits = _load(tmp_path, "--dataset", "me/graphs", "--task", "graph_regression", "--max_graphs", "4")
    assert {name: len(split) for name, split in splits.items()} == {"train": 4, "validation": 3, "test": 4}


def test_a_missing_folder_that_is_no_hub_id_either_is_named(tmp_path, hub_datasets, monkeypatch):
    calls = hub_datasets(datasets.DatasetDict())
    monkeypatch.setenv("HOME", str(tmp_path))
    for dataset in (str(tmp_path / "graphs"), "~/graphs"):  # the folder named as looked for, ~ expanded
        with pytest.raises(FileNotFoundError, match=f"^--dataset {dataset}: there is no such folder "
                                                    f"{tmp_path}/graphs, and it is not a Hub repo id either$"):
            _load(tmp_path, "--dataset", dataset, "--task", "graph_regression")
    assert calls == []  # not looked for on the Hub


@pytest.mark.parametrize("data", [["--dataset", "{tmp_path}/mols.csv"], ["--dataset", "{tmp_path}/folder"],
                                  ["--dataset", "{tmp_path}/missing.csv"], ["--task", "freesolv"]])
@pytest.mark.parametrize("flag", ["--dataset_config_name", "--dataset_revision"])
def test_dataset_config_and_revision_are_refused_without_a_hub_dataset(tmp_path, data, flag):
    (tmp_path / "mols.csv").write_text("smiles,logp\nCCO,1.0\n")
    random_graphs(5, "graph_regression").save_to_disk(str(tmp_path / "folder"))
    data = [part.format(tmp_path=tmp_path) for part in data]
    kind = [] if data[0] == "--task" else ["--task", "graph_regression", "--target_column", "logp"][:2 + 2 * data[1].endswith(".csv")]
    refusal = (f"^--dataset {data[1]} is local data, which has no Hub configuration or revision: leave out {flag}$"
               if data[0] == "--dataset" else f"^{flag} is for a Hub --dataset: --task freesolv has no configurations "
                                              f"or revisions to choose; give --dataset <Hub id>, or leave {flag} out$")
    with pytest.raises(ValueError, match=refusal):
        _load(tmp_path, *data, *kind, flag, "x")


def test_a_model_is_warned_of_only_on_its_own_configuration_of_the_hub_data(caplog):
    from hf_eff.grant import GrantGCN

    trained = {"dataset_name": "me/graphs", "dataset_config_name": "small", "dataset_revision": "v1", "seed": 42}
    model = GrantGCN(6, 1, hidden_channels=4, task="graph_regression", data_split=trained)
    example = _example()
    example.warn_unless_held_out(model, {**trained, "dataset_config_name": "large", "dataset_revision": "v2"}, "m")
    assert "differ from the training run" not in caplog.text  # another configuration is other data
    example.warn_unless_held_out(model, {**trained, "dataset_revision": "v2"}, "m")
    assert "--dataset_revision v2 (the model's: v1) differ from the training run of --model_name_or_path m" in caplog.text
    caplog.clear()
    example.warn_unless_held_out(model, {**trained, "dataset_revision": None}, "m")
    assert "--dataset_revision the default (the model's: v1) differ" in caplog.text
    caplog.clear()
    at_default = GrantGCN(6, 1, hidden_channels=4, task="graph_regression", data_split={**trained, "dataset_revision": None})
    example.warn_unless_held_out(at_default, {**trained, "dataset_revision": "v2"}, "m")
    assert "--dataset_revision v2 (the model's: the default) differ" in caplog.text


@pytest.mark.parametrize(("flags", "revision"), [
    ([], "v1"),  # the model's
    (["--dataset_revision", "v2"], "v2"),  # given
    (["--dataset_config_name", "large"], None),  # other data: the default
])
def test_a_hub_dataset_without_a_revision_is_read_at_the_one_the_model_records(tmp_path, flags, revision):
    from hf_eff.grant import GrantGCN

    trained = {"dataset_name": "me/graphs", "dataset_config_name": "small", "dataset_revision": "v1", "seed": 42}
    model = GrantGCN(6, 1, hidden_channels=4, task="graph_regression", data_split=trained)
    example = _example()
    config = [] if "--dataset_config_name" in flags else ["--dataset_config_name", "small"]
    _, data_args, _ = example.parse_args(["--dataset", "me/graphs", *config, *flags, "--task", "graph_regression",
                                          "--output_dir", str(tmp_path / "out")])
    example.default_dataset_revision(data_args, model, "m")
    assert data_args.dataset_revision == revision
    _, other_data, _ = example.parse_args(["--dataset", "me/other", "--dataset_config_name", "small", "--task",
                                           "graph_regression", "--output_dir", str(tmp_path / "out")])
    example.default_dataset_revision(other_data, model, "m")
    assert other_data.dataset_revision is None


@pytest.mark.parametrize("task", ["graph_regression", "graph_classification"])
def test_a_bad_row_of_hub_splits_is_named_by_the_hubs_split_name_and_its_index_in_it(tmp_path, hub_datasets, task):
    graphs = random_graphs(12, task)
    hub_datasets(datasets.DatasetDict({"train": graphs.select(range(8)), "dev": _with_bad_edge(graphs.select(range(8, 11)), 2),
                                       "test": graphs.select(range(11, 12))}))
    with pytest.raises(ValueError, match=r"^--dataset me/graphs \(dev split\) row 2 \(0-based, as dataset\[2\]\): "
                                         "edge_index refers to node"):
        _load(tmp_path, "--dataset", "me/graphs", "--task", task)
    # --max_graphs leaves the bad row out, as it leaves it out of a saved folder's split
    assert len(_load(tmp_path, "--dataset", "me/graphs", "--task", task, "--max_graphs", "2")["validation"]) == 2
    hub_datasets(datasets.DatasetDict({"train": graphs, "test": graphs.remove_columns("num_nodes")}))
    with pytest.raises(MissingColumnError, match=r"^--dataset me/graphs \(test split\): missing column\(s\) "
                                                 r"\['num_nodes'\]"):
        _load(tmp_path, "--dataset", "me/graphs", "--task", task)


@pytest.mark.parametrize("validation", ["validation", "valid", "dev"])
def test_a_hub_validation_split_may_be_named_valid_or_dev(tmp_path, hub_datasets, validation):
    graphs = random_graphs(12, "graph_regression")
    hub_datasets(datasets.DatasetDict({"train": graphs.select(range(8)), validation: graphs.select(range(8, 10)),
                                       "test": graphs.select(range(10, 12))}))
    splits = _load(tmp_path, "--dataset", "me/graphs", "--task", "graph_regression")
    assert {name: split["y"] for name, split in splits.items()} == {
        "train": graphs["y"][:8], "validation": graphs["y"][8:10], "test": graphs["y"][10:]}


def test_a_hub_dataset_of_train_and_test_holds_validation_out_of_train_and_records_how(tmp_path, hub_datasets):
    graphs = random_graphs(30, "graph_classification").add_column("graph", list(range(30)))
    hub_datasets(datasets.DatasetDict({"train": graphs.select(range(20)), "test": graphs.select(range(20, 30))}))
    example = _example()
    _, data_args, training_args = example.parse_args(["--dataset", "me/graphs", "--task", "graph_classification",
                                                      "--validation_fraction", "0.25", "--output_dir", str(tmp_path)])
    loaded = example.load_graphs(data_args, "graph_classification", seed=3)
    splits = example.split_graphs(loaded, data_args, "graph_classification", seed=3)
    assert {name: len(split) for name, split in splits.items()} == {"train": 15, "validation": 5, "test": 10}
    assert sorted([*splits["train"]["graph"], *splits["validation"]["graph"]]) == list(range(20))
    assert splits["test"]["graph"] == list(range(20, 30))
    assert splits["validation"]["graph"] == split_off_validation(graphs.select(range(20)), 0.25, 3, True)["validation"]["graph"]
    assert example.split_settings(loaded, data_args, "graph_classification", seed=3) == {
        "dataset_name": "me/graphs", "dataset_commit": SERVED_COMMIT, "max_graphs": None, "seed": 3,
        "validation_fraction": 0.25, "stratify": True}


def test_too_few_pushed_training_graphs_to_hold_validation_out_of_are_refused_naming_the_flag(tmp_path, local_hub):  # noqa: F811
    repo_id = local_hub.repo_id("graphs")
    graphs = random_graphs(4, "graph_regression")
    _push(local_hub, datasets.DatasetDict(train=graphs.select([0]), test=graphs.select(range(1, 4))), repo_id,
          tmp_path / "graphs")
    out = tmp_path / "run"
    process = _run(local_hub, tmp_path, "--dataset", repo_id, "--task", "graph_regression", "--output_dir", str(out),
                   *COMMON)
    assert process.returncode != 0
    assert process.stderr.strip().splitlines()[-1] == (
        f"ValueError: --dataset {repo_id} (train split): 1 graph is too few to split: --validation_fraction 0.2 holds "
        "out 1 of them (rounded up), leaving none to train; give more graphs or a smaller fraction (the test split is "
        "the data's own)")
    assert not out.exists()


def test_pushed_training_graphs_that_leave_grant_one_graph_are_refused_before_output_dir_is_made(tmp_path, local_hub):  # noqa: F811
    repo_id = local_hub.repo_id("graphs")
    graphs = random_graphs(5, "graph_regression")
    _push(local_hub, datasets.DatasetDict(train=graphs.select([0, 1]), test=graphs.select(range(2, 5))), repo_id,
          tmp_path / "graphs")
    out = tmp_path / "run"
    # --validation_fraction 0.2 holds 1 of the 2 out: a split, but GraNT cannot thin out the one graph left
    process = _run(local_hub, tmp_path, "--dataset", repo_id, "--task", "graph_regression", "--output_dir", str(out),
                   *COMMON)
    assert process.returncode != 0
    assert process.stderr.strip().splitlines()[-1].startswith(
        "ValueError: the training set is a single graph, and GraNT selects whole graphs")
    assert not out.exists()


def test_an_empty_hub_train_split_is_refused_not_split_into_empty_sets(tmp_path, hub_datasets):
    graphs = random_graphs(3, "graph_regression")
    hub_datasets(datasets.DatasetDict(train=graphs.select([]), test=graphs))
    example = _example()
    _, data_args, _ = example.parse_args(["--dataset", "me/graphs", "--task", "graph_regression", "--output_dir",
                                          str(tmp_path / "out")])
    loaded = example.load_graphs(data_args, "graph_regression", seed=0)
    with pytest.raises(ValueError, match=r"^--dataset me/graphs \(train split\): 0 graphs are too few to split: "
                                         r"--validation_fraction 0.1 holds out 0 of them"):
        example.split_graphs(loaded, data_args, "graph_regression", seed=0)
    for train, count in ((graphs.select([]), "0 graphs are"), (graphs.select([0]), "1 graph is")):  # without the flag
        with pytest.raises(ValueError, match=rf"^{count} too few to split: validation_fraction=0.5 "
                                             rf"holds out {len(train)} of them"):
            split_off_validation(train, 0.5, seed=0)


def test_a_recipes_hub_revision_and_configuration_go_with_its_dataset(tmp_path, caplog):
    recipe = tmp_path / "hub.yaml"
    recipe.write_text("dataset: me/graphs\ndataset_config_name: small\ndataset_revision: v1\ntask: graph_regression\n"
                      "output_dir: unused\n")
    example = _example()
    with caplog.at_level("INFO"):
        _, data_args, _ = example.parse_args([str(recipe), "--dataset", "me/other"])
    assert (data_args.dataset, data_args.dataset_config_name, data_args.dataset_revision) == ("me/other", None, None)
    assert (f"--dataset me/other replaces recipe {recipe}'s dataset: me/graphs and its dataset_config_name, "
            "dataset_revision") in caplog.text
    _, data_args, _ = example.parse_args([str(recipe), "--dataset", "me/other", "--dataset_revision", "v2"])
    assert (data_args.dataset_config_name, data_args.dataset_revision) == (None, "v2")  # given on the command line
    _, data_args, _ = example.parse_args([str(recipe)])
    assert (data_args.dataset_config_name, data_args.dataset_revision) == ("small", "v1")  # its own data: kept


def test_only_an_unknown_configuration_is_looked_up_other_errors_surface_as_they_are(monkeypatch):
    lookups = []

    def load_dataset(path, name=None, revision=None):
        raise ValueError(f"BuilderConfig '{name}' not found. Available: ['default']" if name == "smal" else "bad data")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda path, revision=None: lookups.append(path) or ["default"])
    example = _example()
    with pytest.raises(ValueError, match="^bad data$"):
        example.download_hub_dataset("me/mols", "small", None)
    assert lookups == []
    with pytest.raises(ValueError, match=r"^--dataset_config_name smal: the Hub dataset me/mols has no such "
                                         r"configuration; its configurations are \['default'\]$"):
        example.download_hub_dataset("me/mols", "smal", None)


def test_a_class_label_column_keeps_its_names_and_ids_across_splits(tmp_path, hub_datasets):
    labels = datasets.ClassLabel(names=["toxic", "inert"])  # the Hub's names, not sorted: kept, as are the ids
    features = datasets.Features(smiles=datasets.Value("string"), label=labels)
    hub_datasets(datasets.DatasetDict({split: datasets.Dataset.from_dict({"smiles": SMILES[:4], "label": ids},
                                                                         features=features)
                                       for split, ids in (("train", [0, 1, 1, 0]), ("validation", [1] * 4),
                                                          ("test", [0] * 4))}))
    splits = _load(tmp_path, "--dataset", "me/mols", "--target_column", "label", "--task", "graph_classification")
    assert {name: (class_names(split), split["y"]) for name, split in splits.items()} == {
        "train": (["toxic", "inert"], [0, 1, 1, 0]), "validation": (["toxic", "inert"], [1] * 4),
        "test": (["toxic", "inert"], [0] * 4)}


def test_a_trained_classifiers_classes_keep_names_that_differ_only_in_case_apart():
    graphs = encode_class_labels(datasets.Dataset.from_dict({"y": ["a", "A", "a"]}))
    renumbered = _example().as_model_classes(graphs, ["A", "B", "a"])
    assert (class_names(renumbered), renumbered["y"]) == (["A", "B", "a"], [2, 0, 2])


def test_local_data_is_recorded_as_not_from_the_hub_and_a_home_folder_is_local(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    random_graphs(5, "graph_regression").save_to_disk(str(tmp_path / "data" / "graphs"))
    example = _example()
    for dataset in ("data/graphs", "~/data/graphs"):
        model_args, data_args, _ = example.parse_args(["--dataset", dataset, "--task", "graph_regression",
                                                       "--output_dir", str(tmp_path / "out")])
        assert len(example.load_graphs(data_args, "graph_regression", seed=0)) == 5, dataset
        assert example.described_run(model_args, data_args, "graph_regression", None, None, {})["dataset_from_hub"] is False


def test_a_predict_file_named_as_a_hub_id_is_said_to_be_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"^--predict_file me/mols: no such file or folder \\({tmp_path}/me/mols\\); "
                                                "a --predict_file is local, a CSV of SMILES or a folder written by "
                                                "save_to_disk, not a Hub dataset$"):
        _example().read_predict_file("me/mols", "smiles", False)


def test_split_fractions_that_data_arriving_split_does_not_use_are_warned_of_once(tmp_path, hub_datasets, caplog):
    graphs = random_graphs(12, "graph_regression")
    folder, recipe = tmp_path / "splits", tmp_path / "recipe.json"
    datasets.DatasetDict(train=graphs, validation=graphs, test=graphs).save_to_disk(str(folder))
    recipe.write_text(json.dumps({"task": "graph_regression", "test_fraction": 0.3}))
    hub_datasets(datasets.DatasetDict(train=graphs, test=graphs))
    training = ["--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--hidden_channels", "8", "--report_to",
                "none", "--save_strategy", "no",
                "--use_cpu", "true"]

    def warnings(*flags: str, run: str) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING"):
            _example().main([*flags, *training, "--output_dir", str(tmp_path / run)])
        return [record.getMessage() for record in caplog.records if " not used: " in record.getMessage()]

    # one flag given on the command line, the other in the recipe
    assert warnings(str(recipe), "--dataset", str(folder), "--validation_fraction", "0.2", run="saved") == [
        f"--validation_fraction 0.2 and --test_fraction 0.3 are not used: --dataset {folder} comes with its own "
        "validation and test splits, used as they are"]
    assert warnings("--dataset", str(folder), "--task", "graph_regression", run="defaults") == []  # none given
    # a Hub dataset's train and test: --validation_fraction holds validation out of train
    assert warnings("--dataset", "me/graphs", "--task", "graph_regression", "--validation_fraction", "0.25",
                    "--test_fraction", "0.2", run="hub") == [
        "--test_fraction 0.2 is not used: --dataset me/graphs comes with its own test split, used as it is"]
    hub_datasets(datasets.DatasetDict(train=graphs))  # one split: divided by both
    assert warnings("--dataset", "me/graphs", "--task", "graph_regression", "--validation_fraction", "0.25",
                    "--test_fraction", "0.25", run="single") == []
