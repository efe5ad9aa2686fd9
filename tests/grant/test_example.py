import json
import math
import re
import shutil
import sys
from pathlib import Path

import datasets
import pytest
import torch
import yaml

from hf_eff.grant.data import MissingColumnError
from tests.grant.conftest import random_graphs
from tests.hub.conftest import local_hub  # noqa: F401  (the local Hub server fixture)
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _example():
    return load_script(ROOT / "examples" / "grant_train.py")


COMMON = ["--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--hidden_channels", "8",
          "--report_to", "none", "--save_strategy", "no", "--eval_strategy", "epoch", "--use_cpu", "true",
          "--start_ratio", "0.3", "--reselect_schedule", "constant", "--reselect_interval_start", "1"]


def test_builtin_generator_run_writes_results_and_model(tmp_path, caplog):
    caplog.set_level("INFO")
    out = tmp_path / "run"
    _example().main(["--task", "gen-cls", "--num_generated_graphs", "30", "--min_nodes", "4", "--max_nodes", "6",
                     "--output_dir", str(out), *COMMON])
    results = json.loads((out / "all_results.json").read_text())
    assert results["teacher"] == "grant" and results["task"] == "node_classification"
    assert {"train_runtime", "eval_roc_auc", "test_accuracy", "time_to_target", "grant_selection_seconds"} <= set(results)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    # save_strategy "no" leaves no checkpoint: the run's log is the top-level trainer_state.json, final evaluation in
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [entry for entry in log if "eval_roc_auc" in entry][-1]["eval_roc_auc"] == results["eval_roc_auc"]
    assert [entry for entry in log if "test_accuracy" in entry][-1]["test_accuracy"] == results["test_accuracy"]
    # transformers' examples' split files beside all_results.json
    train_results = json.loads((out / "train_results.json").read_text())
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert train_results["train_runtime"] == results["train_runtime"] and "eval_roc_auc" not in train_results
    assert eval_results["eval_roc_auc"] == results["eval_roc_auc"] and "train_runtime" not in eval_results
    card = (out / "README.md").read_text()  # the card a push writes, not the mixin's template
    assert "## Metrics" in card and f"| time_to_target | {results['time_to_target']:.4g} |" in card
    assert (f"Wrote the model, train_results.json, eval_results.json, all_results.json, trainer_state.json, README.md "
            f"to {out}") in caplog.text  # the run's closing line


def test_user_csv_with_two_targets(tmp_path):
    csv = tmp_path / "mols.csv"
    smiles = ["CCO", "CCC", "CCN", "c1ccccc1", "CC(=O)O", "CCCl", "CO", "CN", "CCCC", "OCCO"] * 2
    csv.write_text("smiles,a,b\n" + "\n".join(f"{s},{i * 0.1},{i % 3}" for i, s in enumerate(smiles)))
    out = tmp_path / "csv"
    results = _example().main(["--dataset", str(csv), "--target_column", "a,b", "--task", "graph_regression",
                               "--teacher", "none", "--output_dir", str(out), "--validation_fraction", "0.2",
                               "--test_fraction", "0.2", *COMMON])
    assert "test_mae" in results and "grant_selection_seconds" not in results
    assert results["target_columns"] == ["a", "b"] and "class_names" not in results
    assert {"test_mae_a", "test_mae_b"} <= set(results)  # per target, besides the mean over both
    assert results["test_mae"] == pytest.approx((results["test_mae_a"] + results["test_mae_b"]) / 2)


def test_user_csv_with_several_labels_and_missing_cells(tmp_path):
    csv = tmp_path / "tox.csv"
    smiles = ["CCO", "CCC", "CCN", "c1ccccc1", "CC(=O)O", "CCCl", "CO", "CN", "CCCC", "OCCO"] * 3
    cells = ["0", "1", ""]  # an empty cell: not labelled
    csv.write_text("smiles,a,b,c\n" + "\n".join(
        f"{s},{cells[i % 2]},{cells[(i + 1) % 3]},{cells[i % 3]}" for i, s in enumerate(smiles)))
    out = tmp_path / "multilabel"
    results = _example().main(["--dataset", str(csv), "--target_column", "a,b,c", "--task", "graph_multilabel",
                               "--output_dir", str(out), "--validation_fraction", "0.3", "--test_fraction", "0.3",
                               *COMMON])
    assert results["task"] == "graph_multilabel" and results["target_columns"] == ["a", "b", "c"]
    assert {"test_ap", "test_roc_auc", "grant_selection_seconds"} <= set(results)
    assert json.loads((out / "config.json").read_text())["out_channels"] == 3


@pytest.mark.parametrize("name", ["MOLS.CSV", "mols.csv.gz"])
def test_user_csv_any_case_or_compressed_with_class_names(tmp_path, name):
    import gzip

    smiles = ["CCO", "CCC", "CCN", "c1ccccc1", "CC(=O)O", "CCCl", "CO", "CN", "CCCC", "OCCO"] * 2
    text = "smiles,kind\n" + "\n".join(f"{s},{['low', 'high', 'mid'][i % 3]}" for i, s in enumerate(smiles))
    csv = tmp_path / name
    csv.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    out = tmp_path / "csv"
    results = _example().main(["--dataset", str(csv), "--target_column", "kind", "--task", "graph_classification",
                               "--teacher", "none", "--output_dir", str(out), "--validation_fraction", "0.2",
                               "--test_fraction", "0.2", *COMMON])
    assert results["class_names"] == ["high", "low", "mid"] and results["target_columns"] == ["kind"]
    assert json.loads((out / "config.json").read_text())["class_names"] == ["high", "low", "mid"]


def test_options_the_data_would_ignore_are_refused(tmp_path):
    example = _example()
    with pytest.raises(ValueError, match="--target_column and --qm9_target do not apply to --task freesolv"):
        example.main(["--task", "freesolv", "--qm9_target", "HOMO_LUMO_gap_au", "--target_column", "calc",
                      "--output_dir", str(tmp_path), *COMMON])
    folder = _saved_graphs(tmp_path / "graphs", [0.5] * 4)
    with pytest.raises(ValueError, match="--target_column does not apply to --dataset .*: --target_column is for a CSV --dataset"):
        example.main(["--dataset", str(folder), "--target_column", "y", "--task", "graph_regression",
                      "--output_dir", str(tmp_path), *COMMON])
    parquet = tmp_path / "mols.parquet"
    parquet.write_text("")
    with pytest.raises(ValueError, match="is a file but not a CSV"):
        example.main(["--dataset", str(parquet), "--task", "graph_regression", "--output_dir", str(tmp_path), *COMMON])


@pytest.mark.parametrize(("flag", "message"), [
    ("--max_graphs", "--max_graphs must be >= 1, got 0"),
    ("--num_generated_graphs", "--num_generated_graphs must be >= 1, got 0"),
    ("--hidden_channels", r"hidden_channels \(the width of every GCN layer\) must be >= 1, got 0"),
    ("--per_device_train_batch_size", r"per_device_train_batch_size must be >= 1 \(graphs per batch\), got 0"),
])
def test_a_size_of_zero_is_refused_naming_its_flag(tmp_path, flag, message):
    # were an IndexError, datasets' "corresponds to no data", a LazyModule error and a ZeroDivisionError
    with pytest.raises(ValueError, match=f"^{message}$"):
        _example().main(["--task", "gen-reg", "--num_generated_graphs", "20", "--min_nodes", "4", "--max_nodes", "6",
                         "--output_dir", str(tmp_path / "run"), *COMMON, flag, "0"])
    assert not (tmp_path / "run" / "all_results.json").exists()


def test_data_source_is_required(tmp_path, capsys):
    with pytest.raises(ValueError, match="exactly one of"):
        _example().main(["--task", "graph_regression", "--output_dir", str(tmp_path), *COMMON])
    with pytest.raises(SystemExit):  # was GraNTTrainingArguments' "task must be one of ..., got None"
        _example().main(["--output_dir", str(tmp_path), *COMMON])
    usage, error = capsys.readouterr().err.splitlines()  # the usage was argparse's, every flag (10,000 characters)
    assert usage == f"usage: {Path(sys.argv[0]).name} [RECIPE.yaml] [--flags]"
    assert error.startswith(f"{Path(sys.argv[0]).name}: error: no data: give --task with a built-in data set, one of ('qm9'")


def test_recipe_with_overriding_flags_and_the_builtin_name_forms():
    example = _example()
    recipe = str(ROOT / "trainers" / "grant" / "gen_reg.yaml")
    _, data_args, training_args = example.parse_args([recipe, "--num_train_epochs", "2", "--builtin", "gen-cls"])
    assert (data_args.builtin, training_args.task, training_args.num_train_epochs) == ("gen-cls", "node_classification", 2)
    assert data_args.num_generated_graphs == 400  # from the recipe
    for argv in (["--task=gen-reg"], ["--builtin", "gen-reg"], ["--builtin=gen-reg", "--task", "node_regression"]):
        _, data_args, training_args = example.parse_args([*argv, "--output_dir", "unused"])
        assert (data_args.builtin, training_args.task) == ("gen-reg", "node_regression"), argv


SMILES = ["CCO", "CCC", "CCN", "c1ccccc1", "CC(=O)O", "CCCl", "CO", "CN", "CCCC", "OCCO"]


def _molecules_csv(path, rows: int = 40, invalid: dict[int, str] | None = None):
    """`rows` molecules with a logp target; `invalid` puts other SMILES cells at some rows."""
    cells = [(invalid or {}).get(i, SMILES[i % len(SMILES)]) for i in range(rows)]
    path.write_text("smiles,logp\n" + "\n".join(f"{cell},{i * 0.1}" for i, cell in enumerate(cells)) + "\n")
    return str(path)


@pytest.mark.parametrize("recipe", sorted((ROOT / "trainers" / "grant").glob("*.yaml")), ids=lambda path: path.name)
def test_every_recipe_runs_with_less_data_and_two_epochs(recipe, tmp_path):
    """The recipe's own model, teacher and batch size train together; only the data and the budget shrink."""
    from hf_eff.grant.metrics import primary_metric

    settings = yaml.safe_load(recipe.read_text())
    example = _example()
    if "builtin" in settings:
        # GraNT(B) keeps whole batches, so its data must make several; the full-batch recipes' GraNT(S) takes any size
        num_graphs = 3 * settings["per_device_train_batch_size"] if settings["variant"] == "batch" else 40
        data = ["--num_generated_graphs" if settings["builtin"].startswith("gen-") else "--max_graphs", str(num_graphs)]
        task = example.BUILTIN_TASKS[settings["builtin"]]
    else:  # your own CSV, named as the recipe's header says
        data, task = ["--dataset", _molecules_csv(tmp_path / "mols.csv"), "--target_column", "logp"], settings["task"]
    results = example.main([str(recipe), *data, "--num_train_epochs", "2", "--output_dir", str(tmp_path / "run")])
    assert (results["teacher"], results["task"]) == ("grant", task)
    assert math.isfinite(results[f"test_{primary_metric(results['task'])[0]}"])


def test_data_on_the_command_line_replaces_the_recipes(tmp_path, caplog):
    """Flags override a recipe: --dataset its built-in data (and that data's options), a built-in --task its dataset."""
    example = _example()
    gen_reg = str(ROOT / "trainers" / "grant" / "gen_reg.yaml")
    csv = _molecules_csv(tmp_path / "mols.csv")
    for given in (["--dataset", csv], [f"--dataset={csv}"]):
        model_args, data_args, training_args = example.parse_args([gen_reg, *given, "--task", "graph_regression"])
        assert (data_args.builtin, data_args.dataset, training_args.task) == (None, csv, "graph_regression"), given
        assert data_args.num_generated_graphs == example.DataArguments().num_generated_graphs  # gen-reg's, dropped
        assert (model_args.hidden_channels, training_args.variant) == (32, "batch")  # the recipe's other settings stay
    with caplog.at_level("INFO"):
        results = example.main([gen_reg, "--dataset", csv, "--task", "graph_regression", "--target_column", "logp",
                                "--num_train_epochs", "1", "--output_dir", str(tmp_path / "run")])
    assert results["dataset_name"] == csv and math.isfinite(results["test_mae"])
    assert (f"--dataset {csv} replaces recipe {gen_reg}'s builtin: gen-reg and its num_generated_graphs, min_nodes, "
            "max_nodes") in caplog.text
    # a recipe's node task with a CSV is named, rather than failing on the model's outputs
    with pytest.raises(ValueError, match="is a CSV of molecules.*not node_regression"):
        example.main([gen_reg, "--dataset", csv, "--target_column", "logp", "--output_dir", str(tmp_path / "refused")])
    _, data_args, _ = example.parse_args([gen_reg, "--task", "freesolv"])  # another built-in set
    assert (data_args.builtin, data_args.num_generated_graphs) == ("freesolv", example.DataArguments().num_generated_graphs)
    _, data_args, _ = example.parse_args([gen_reg, "--task", "gen-cls", "--min_nodes", "5"])  # gen-reg's options apply
    assert (data_args.builtin, data_args.num_generated_graphs, data_args.min_nodes) == ("gen-cls", 400, 5)
    own_data = tmp_path / "own.yaml"
    own_data.write_text(f"dataset: {csv}\ntarget_column: logp\ntask: graph_regression\noutput_dir: unused\n")
    _, data_args, training_args = example.parse_args([str(own_data), "--task", "gen-cls"])
    assert (data_args.builtin, data_args.dataset, data_args.target_column, training_args.task) == (
        "gen-cls", None, "", "node_classification")
    both = tmp_path / "both.yaml"
    both.write_text(f"builtin: qm9\ndataset: {csv}\ntask: graph_regression\noutput_dir: unused\n")
    with pytest.raises(ValueError, match=f"recipe {both} names two data sources, builtin: qm9 and dataset: {csv}"):
        example.parse_args([str(both)])
    with pytest.raises(ValueError, match="give exactly one of"):  # both on the command line: no recipe to replace
        example.main(["--task", "qm9", "--dataset", csv, "--output_dir", str(tmp_path / "refused")])


def test_unparsable_smiles_of_a_csv_are_skipped_on_request(tmp_path, caplog):
    example = _example()
    csv = _molecules_csv(tmp_path / "mols.csv", invalid={3: "C1CC", 7: "not_a_molecule"})
    flags = ["--dataset", csv, "--target_column", "logp", "--task", "graph_regression", "--output_dir",
             str(tmp_path / "run"), *COMMON]
    with pytest.raises(ValueError, match="data row 4 .*: SMILES 'C1CC' could not be parsed"):
        example.main(flags)
    with caplog.at_level("WARNING"):
        results = example.main([*flags, "--skip_invalid_smiles"])
    assert "skipped 2 of 40 SMILES that could not be parsed into a molecule: data row 4: 'C1CC'; data row 8: " \
           "'not_a_molecule'" in caplog.text
    assert math.isfinite(results["test_mae"])
    with pytest.raises(ValueError, match="--skip_invalid_smiles does not apply to --task gen-reg"):
        example.main(["--task", "gen-reg", "--skip_invalid_smiles", "--output_dir", str(tmp_path / "refused"), *COMMON])


def test_saved_dataset_dict_is_used_as_split(tmp_path):
    from datasets import DatasetDict

    from hf_eff.grant import generate_graphon_dataset, split_dataset

    graphs = generate_graphon_dataset("regression", 30, 4, 6, seed=3)
    split_dataset(graphs, 0.2, 0.2, seed=0).save_to_disk(str(tmp_path / "splits"))
    out = tmp_path / "run"
    results = _example().main(["--dataset", str(tmp_path / "splits"), "--task", "node_regression", "--output_dir", str(out),
                               *COMMON])
    assert math.isfinite(results["test_mae"])
    DatasetDict(train=graphs).save_to_disk(str(tmp_path / "train_only"))
    with pytest.raises(ValueError, match=r"DatasetDict with splits \['train'\], missing \['validation', 'test'\]"):
        _example().main(["--dataset", str(tmp_path / "train_only"), "--task", "node_regression", "--output_dir",
                         str(tmp_path / "refused"), *COMMON])


def test_task_help_names_the_task_kinds_and_the_builtin_sets():
    from transformers import HfArgumentParser

    from hf_eff.grant import GraNTTrainingArguments
    from hf_eff.grant.tasks import TASKS

    example = _example()
    parser = HfArgumentParser((example.ModelArguments, example.DataArguments, GraNTTrainingArguments))
    (task_help,) = [action.help for action in parser._actions if "--task" in action.option_strings]
    assert {*TASKS, *example.BUILTIN_TASKS} <= set(re.findall(r"[\w-]+", task_help))
    assert "--task qm9" in " ".join(parser.format_help().split())


def _saved_graphs(path, labels):
    import datasets

    rows = [{"x": [[float(i)], [1.0]], "edge_index": [[0, 1], [1, 0]], "y": y, "num_nodes": 2}
            for i, y in enumerate(labels)]
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("labels", [[[i % 3] for i in range(20)], [["inactive", "active"][i % 2] for i in range(20)]])
def test_saved_folder_with_class_ids_in_lists_or_class_names(tmp_path, labels, caplog):
    folder = _saved_graphs(tmp_path / "graphs", labels)
    results = _example().main(["--dataset", str(folder), "--task", "graph_classification", "--output_dir",
                               str(tmp_path / "out"), "--validation_fraction", "0.2", "--test_fraction", "0.2", *COMMON])
    assert "test_accuracy" in results
    # A split holding one class has no ROC-AUC: the run finishes without a card, saying why.
    undefined = [key for key in ("eval_roc_auc", "test_roc_auc") if math.isnan(results[key])]
    assert bool(undefined) == ("No model card written" in caplog.text)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["out_channels"] == (3 if isinstance(labels[0], list) else 2)


def test_a_saved_folder_without_graph_columns_is_refused_naming_it(tmp_path):
    folder = tmp_path / "questions"  # HaLoRA's multiple-choice rows, not graphs
    datasets.Dataset.from_dict({"question": ["q"], "choices": [["a", "b"]], "answer": [0]}).save_to_disk(str(folder))
    with pytest.raises(MissingColumnError, match=rf"--dataset {folder}: missing column\(s\) \['x', 'edge_index', 'y', "
                                                 r"'num_nodes'\].*has \['question', 'choices', 'answer'\]"):
        _example().main(["--dataset", str(folder), "--task", "graph_classification", "--output_dir",
                         str(tmp_path / "out"), *COMMON])


def test_a_bad_row_of_a_saved_folder_is_named_by_its_place_in_the_folder(tmp_path):
    graphs = random_graphs(20, "graph_regression")
    graphs = graphs.map(lambda row, i: {"edge_index": [[0], [row["num_nodes"]]] if i == 7 else row["edge_index"]},
                        with_indices=True)
    graphs.save_to_disk(str(tmp_path / "graphs"))
    with pytest.raises(ValueError, match=rf"--dataset {tmp_path / 'graphs'} row 7 \(0-based, as dataset\[7\]\): "
                                         "edge_index refers to node"):
        _example().main(["--dataset", str(tmp_path / "graphs"), "--task", "graph_regression", "--output_dir",
                         str(tmp_path / "out"), *COMMON])


def test_a_saved_folder_with_a_split_of_no_graphs_is_named_with_the_split(tmp_path):
    graphs = random_graphs(20, "graph_regression")
    datasets.DatasetDict(train=graphs, validation=graphs.select([]), test=graphs).save_to_disk(str(tmp_path / "graphs"))
    with pytest.raises(ValueError, match=re.escape(f"--dataset {tmp_path / 'graphs'} (validation split) holds no rows")):
        _example().main(["--dataset", str(tmp_path / "graphs"), "--task", "graph_regression", "--output_dir",
                         str(tmp_path / "out"), *COMMON])
    assert not (tmp_path / "out").exists()


def test_too_few_graphs_to_split_are_refused_naming_the_data_and_the_fraction_flags(tmp_path):
    csv = tmp_path / "two.csv"
    csv.write_text("smiles,logp\nCCO,0.1\nCCC,0.5\n")
    with pytest.raises(ValueError, match=rf"--dataset {csv}: 2 graphs are too few to split: --validation_fraction 0.1 "
                                         r"and --test_fraction 0.1 hold out 1 and 1 of them"):
        _example().main(["--dataset", str(csv), "--target_column", "logp", "--task", "graph_regression",
                         "--output_dir", str(tmp_path / "out"), *COMMON])
    assert not (tmp_path / "out").exists()


def test_training_graphs_grant_cannot_thin_out_are_refused_before_output_dir_is_made(tmp_path):
    random_graphs(20, "graph_regression").save_to_disk(str(tmp_path / "graphs"))
    flags = ["--dataset", str(tmp_path / "graphs"), "--task", "graph_regression", "--output_dir", str(tmp_path / "out"),
             *COMMON]
    # 16 training graphs: one batch of 32 for GraNT(B), batches of one graph for GraNT(S)
    for settings, message in ((["--variant", "batch", "--per_device_train_batch_size", "32"], "variant='batch'"),
                              (["--variant", "single", "--per_device_train_batch_size", "1"], "variant='single'")):
        with pytest.raises(ValueError, match=rf"^{message} .* keeps .*every graph at every ratio"):
            _example().main([*flags, *settings])
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("column, message", [
    ("x", "node features x have 7 columns, the train split's 6"),
    ("y", "y holds 2 target(s) per graph, the train split's 1"),
])
def test_a_saved_test_split_unlike_the_train_split_is_refused_before_training(tmp_path, column, message):
    graphs = random_graphs(20, "graph_regression")
    wider = graphs.select(range(5)).map(lambda graph: {"x": [row + [0.0] for row in graph["x"]]} if column == "x"
                                        else {"y": [*graph["y"], 1.0]})
    folder = tmp_path / "graphs"
    datasets.DatasetDict(train=graphs.select(range(5, 20)), validation=graphs.select(range(5)),
                         test=wider).save_to_disk(str(folder))
    # the trainer would refuse it only when it evaluates the test split, after training
    with pytest.raises(ValueError, match=rf"^--dataset {folder} \(test split\): {re.escape(message)}"):
        _example().main(["--dataset", str(folder), "--task", "graph_regression", "--output_dir", str(tmp_path / "out"),
                         *COMMON])
    assert not (tmp_path / "out").exists()


def test_grants_warning_of_a_first_selection_larger_than_start_ratio_is_given_once(tmp_path, caplog):
    random_graphs(20, "graph_regression").save_to_disk(str(tmp_path / "graphs"))
    # 16 training graphs in 4 batches of 4: start_ratio 0.1 keeps one batch (GraNT(B), the default), 25%
    with caplog.at_level("WARNING"):
        _example().main(["--dataset", str(tmp_path / "graphs"), "--task", "graph_regression", "--output_dir",
                         str(tmp_path / "out"), *COMMON, "--per_device_train_batch_size", "4", "--start_ratio", "0.1"])
    assert caplog.text.count("GraNT's first selection keeps 1 of the 4 batches") == 1


# --- a trained model: evaluate only, or fine-tune ------------------------------------------------------------------

# BatchNorm off: a run at learning rate 0 then leaves the weights exactly as loaded
EVAL_COMMON = [*COMMON[:COMMON.index("--start_ratio")], "--teacher", "none", "--batch_norm", "False"]


def _saved_folder(path, task, num_graphs=40, feature_dim=6):
    random_graphs(num_graphs, task, feature_dim=feature_dim).save_to_disk(str(path))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A graph regression run on a saved folder: (data folder, output folder, its all_results)."""
    root = tmp_path_factory.mktemp("trained")
    data = _saved_folder(root / "graphs", "graph_regression")
    results = _example().main(["--dataset", data, "--task", "graph_regression", "--output_dir", str(root / "run"),
                               *EVAL_COMMON])
    return data, root / "run", results


MODEL_FILES = ("config.json", "model.safetensors", "README.md")


def test_evaluate_only_reports_the_metrics_of_the_saved_model_and_writes_no_model(trained, tmp_path, caplog):
    data, run, trained_results = trained
    out = tmp_path / "eval"
    caplog.set_level("INFO")
    results = _example().main(["--dataset", data, "--task", "graph_regression", "--model_name_or_path", str(run),
                               "--no_do_train", "--output_dir", str(out), *EVAL_COMMON])
    assert "differ from the training run" not in caplog.text  # the run's own split: its test graphs were held out
    assert results["test_mae"] == pytest.approx(trained_results["test_mae"], rel=1e-6)  # the weights were loaded
    assert results["eval_mae"] == pytest.approx(trained_results["eval_mae"], rel=1e-6)
    saved = json.loads((out / "all_results.json").read_text())
    assert not [key for key in saved if key.startswith("train_") or key in ("teacher", "time_to_target", "epoch")]
    assert (saved["model_name_or_path"], saved["dataset_name"], saved["task"]) == (str(run), data, "graph_regression")
    assert not [name for name in MODEL_FILES if (out / name).exists()]
    assert (out / "eval_results.json").is_file() and not (out / "train_results.json").exists()
    assert f"Wrote eval_results.json, all_results.json to {out}" in caplog.text


def test_an_evaluation_or_prediction_names_its_predictions_in_its_closing_line(trained, tmp_path, caplog):
    data, run, _ = trained
    caplog.set_level("INFO")
    evaluated = ["--task", "graph_regression", "--model_name_or_path", str(run), "--no_do_train", "--do_predict"]
    _example().main([*evaluated, "--dataset", data, "--output_dir", str(tmp_path / "eval"), *EVAL_COMMON])
    assert f"Wrote eval_results.json, all_results.json, predict_results.csv to {tmp_path / 'eval'}" in caplog.text
    new_graphs = _saved_folder(tmp_path / "new", "graph_regression", num_graphs=4)
    _example().main([*evaluated, "--predict_file", new_graphs, "--output_dir", str(tmp_path / "predicted"),
                     *EVAL_COMMON])
    assert f"Wrote all_results.json, predict_results.csv to {tmp_path / 'predicted'}" in caplog.text


def test_a_prediction_into_an_earlier_evaluations_folder_leaves_no_eval_results_to_pass_for_its_own(trained, tmp_path,
                                                                                                      caplog):
    # it replaced the evaluation's all_results.json and predict_results.csv, and kept its eval_results.json
    data, run, _ = trained
    out = tmp_path / "out"
    evaluated = ["--task", "graph_regression", "--model_name_or_path", str(run), "--no_do_train", "--do_predict",
                 "--output_dir", str(out), *EVAL_COMMON]
    _example().main([*evaluated, "--dataset", data])
    assert (out / "eval_results.json").is_file()
    caplog.set_level("INFO")
    _example().main([*evaluated, "--predict_file", _saved_folder(tmp_path / "new", "graph_regression", num_graphs=4)])
    assert not (out / "eval_results.json").exists()
    assert f"removed {out / 'eval_results.json'}: an earlier run's results, not this run's" in caplog.text
    assert not [key for key in json.loads((out / "all_results.json").read_text()) if key.startswith("eval_")]


def test_the_training_run_records_its_split_and_an_evaluation_on_another_is_warned_of(trained, tmp_path, caplog):
    data, run, trained_results = trained
    split = {"dataset_name": data, "seed": 42, "validation_fraction": 0.1, "test_fraction": 0.1, "max_graphs": None}
    assert trained_results["data_split"] == split
    assert json.loads((run / "all_results.json").read_text())["data_split"] == split
    assert json.loads((run / "config.json").read_text())["data_split"] == split
    _example().main(["--dataset", data, "--task", "graph_regression", "--model_name_or_path", str(run), "--do_train",
                     "False", "--output_dir", str(tmp_path / "eval"), *EVAL_COMMON, "--seed", "1", "--max_graphs", "30"])
    assert (f"--max_graphs 30 (the model's: None), --seed 1 (the model's: 42) differ from the training run of "
            f"--model_name_or_path {run}: its validation or test graphs may include the model's training graphs") in caplog.text


def test_a_pushed_models_split_is_matched_to_local_data_by_its_last_part(trained, tmp_path, caplog):
    data, run, _ = trained
    pushed = tmp_path / "pushed"
    shutil.copytree(run, pushed)
    config = json.loads((pushed / "config.json").read_text())
    config["data_split"]["dataset_name"] = Path(data).name  # as a push uploads it (hf_eff.hub.push.upload_folder)
    (pushed / "config.json").write_text(json.dumps(config))
    _example().main(["--dataset", data, "--task", "graph_regression", "--model_name_or_path", str(pushed),
                     "--do_train", "False", "--output_dir", str(tmp_path / "eval"), *EVAL_COMMON, "--seed", "1"])
    assert "--seed 1 (the model's: 42) differ from the training run" in caplog.text


def test_generated_data_records_the_flags_that_make_its_graphs(tmp_path):
    results = _example().main(["--task", "gen-cls", "--num_generated_graphs", "30", "--min_nodes", "4", "--max_nodes",
                               "6", "--output_dir", str(tmp_path / "run"), *COMMON])
    assert results["data_split"] == {"dataset_name": "gen-cls", "seed": 42, "validation_fraction": 0.1,
                                     "test_fraction": 0.1, "max_graphs": None, "num_generated_graphs": 30,
                                     "min_nodes": 4, "max_nodes": 6}


def test_fine_tuning_a_model_saved_without_its_task_saves_it(trained, tmp_path):
    data, run, _ = trained
    older = tmp_path / "older"
    shutil.copytree(run, older)
    config = json.loads((older / "config.json").read_text())
    del config["task"], config["data_split"]  # as GrantGCN saved it before it recorded them
    (older / "config.json").write_text(json.dumps(config))
    out = tmp_path / "tuned"
    _example().main(["--dataset", data, "--task", "graph_regression", "--model_name_or_path", str(older),
                     "--learning_rate", "0", "--output_dir", str(out), *EVAL_COMMON])
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"] == "graph_regression" and saved["data_split"]["dataset_name"] == data


def test_fine_tuning_starts_from_the_saved_weights(trained, tmp_path, caplog):
    from safetensors.torch import load_file

    data, run, trained_results = trained
    out = tmp_path / "tuned"
    # architecture flags are ignored (after EVAL_COMMON's --hidden_channels 8): the saved model's config.json sets them
    results = _example().main(["--dataset", data, "--task", "graph_regression", "--model_name_or_path", str(run),
                               "--learning_rate", "0", "--output_dir", str(out), *EVAL_COMMON, "--hidden_channels", "3"])
    assert results["test_mae"] == pytest.approx(trained_results["test_mae"], rel=1e-6) and "train_runtime" in results
    assert results["base_model"] == str(run)
    assert f"--hidden_channels 3 (the model's: 8) ignored: --model_name_or_path {run} keeps the architecture" in caplog.text
    assert "--batch_norm" not in caplog.text  # given, but as the model has it
    assert f"It is a fine-tuned version of a local model (`{run.name}`)" in (out / "README.md").read_text()
    saved, tuned = load_file(run / "model.safetensors"), load_file(out / "model.safetensors")
    assert saved.keys() == tuned.keys() and all(torch.equal(saved[k], tuned[k]) for k in saved)


def test_evaluate_only_of_a_hub_model_at_a_revision(trained, tmp_path, local_hub):  # noqa: F811 (the fixture)
    import subprocess

    from hf_eff.grant import GrantGCN

    data, run, trained_results = trained
    api, repo_id = local_hub.api(), local_hub.repo_id("gcn")
    api.create_repo(repo_id)
    trained_commit = api.upload_folder(folder_path=str(run), repo_id=repo_id, allow_patterns=["*.json", "*.safetensors"]).oid
    GrantGCN(6, 1, hidden_channels=8, batch_norm=False, task="graph_regression").save_pretrained(tmp_path / "other")
    api.upload_folder(folder_path=str(tmp_path / "other"), repo_id=repo_id)  # main now holds another model
    out = tmp_path / "eval"
    # huggingface_hub reads the endpoint when imported: a fresh process pointed at the local Hub
    subprocess.run([sys.executable, str(ROOT / "examples" / "grant_train.py"), "--dataset", data, "--task",
                    "graph_regression", "--model_name_or_path", repo_id, "--model_revision", trained_commit,
                    "--do_train", "False", "--output_dir", str(out), *EVAL_COMMON],
                   env={**local_hub.env(), "HF_EFF_CACHE": str(tmp_path / "cache")}, cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    results = json.loads((out / "all_results.json").read_text())
    assert results["test_mae"] == pytest.approx(trained_results["test_mae"], rel=1e-6)
    assert (results["model_name_or_path"], results["model_revision"]) == (repo_id, trained_commit)
    assert not [name for name in MODEL_FILES if (out / name).exists()]
    # a revision the repo lacks names the flag (huggingface_hub's RevisionNotFoundError did not)
    run_absent = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "grant_train.py"), "--dataset", data, "--task", "graph_regression",
         "--model_name_or_path", repo_id, "--model_revision", "v9", "--do_train", "False", "--output_dir",
         str(tmp_path / "absent"), *EVAL_COMMON],
        env={**local_hub.env(), "HF_EFF_CACHE": str(tmp_path / "cache")}, cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert run_absent.returncode != 0
    assert f"FileNotFoundError: --model_revision v9: the Hub repo {repo_id} has no such branch, tag or commit" in run_absent.stderr


@pytest.mark.parametrize(("model", "task", "data", "message"), [
    (dict(in_channels=5), "graph_regression", {}, "the model takes 5 node features, the data has 6"),
    (dict(out_channels=2), "graph_regression", {}, "the model has 2 outputs, the data has 1 targets per graph"),
    ({}, "node_regression", {}, "the model predicts per graph, node_regression per node; the model was trained for "
                                "graph_regression, the data is node_regression"),
    ({}, "graph_classification", {}, "the model was trained for graph_regression, the data is graph_classification"),
    (dict(task=None, out_channels=2, class_names=["a", "b"]), "graph_regression", {},
     r"the model is a classifier \(classes \['a', 'b'\]\), the data is graph_regression"),
    (dict(task="graph_classification", out_channels=1), "graph_classification", {},
     "the model has 1 classes, the data has class ids up to 1"),
    (dict(task="graph_classification", out_channels=2, class_names=["a", "c"]), "graph_classification",
     dict(names=["a", "b"]), r"the data has classes the model lacks, \['b'\] \(the model's: \['a', 'c'\]\)"),
])
def test_a_model_that_does_not_fit_the_data_is_refused_naming_both_sides(tmp_path, model, task, data, message):
    from hf_eff.grant import GrantGCN

    GrantGCN(**{"in_channels": 6, "out_channels": 1, "hidden_channels": 4, "task": "graph_regression", **model}
             ).save_pretrained(tmp_path / "model")
    graphs = random_graphs(20, task)
    if "names" in data:  # class names in y, as a saved folder of labelled graphs holds them
        graphs = graphs.map(lambda row: {"y": data["names"][row["y"]]})
    graphs.save_to_disk(str(tmp_path / "graphs"))
    with pytest.raises(ValueError, match=rf"--model_name_or_path {tmp_path / 'model'} does not fit --dataset "
                                         rf"{tmp_path / 'graphs'} \({task}\): {message}"):
        _example().main(["--dataset", str(tmp_path / "graphs"), "--task", task, "--model_name_or_path",
                         str(tmp_path / "model"), "--do_train", "False", "--output_dir", str(tmp_path / "out"),
                         "--validation_fraction", "0.2", "--test_fraction", "0.2", *EVAL_COMMON])


def test_a_classifier_is_evaluated_on_data_holding_some_of_its_classes(tmp_path):
    from hf_eff.grant import GrantGCN, class_names, encode_class_labels

    GrantGCN(6, 3, hidden_channels=4, class_names=["a", "b", "c"], task="graph_classification",
             batch_norm=False).save_pretrained(tmp_path / "model")
    graphs = random_graphs(20, "graph_classification").map(lambda row: {"y": ["a", "c"][row["y"]]})  # no "b"
    encoded = encode_class_labels(graphs)  # as the example reads them: "c" is class id 1 of this data
    aligned = _example().as_model_classes(encoded, ["a", "b", "c"])
    assert class_names(aligned) == ["a", "b", "c"] and aligned["y"] == [2 * encoded_id for encoded_id in encoded["y"]]
    graphs.save_to_disk(str(tmp_path / "graphs"))
    results = _example().main(["--dataset", str(tmp_path / "graphs"), "--task", "graph_classification",
                               "--model_name_or_path", str(tmp_path / "model"), "--do_train", "False", "--output_dir",
                               str(tmp_path / "out"), "--validation_fraction", "0.2", "--test_fraction", "0.2", *EVAL_COMMON])
    assert results["class_names"] == ["a", "b", "c"] and "test_accuracy" in results


def test_evaluate_only_needs_a_model_and_pushes_nothing(tmp_path):
    example = _example()
    missing = ["--dataset", str(tmp_path / "absent"), "--task", "graph_regression", "--output_dir", str(tmp_path / "out"),
               *EVAL_COMMON]  # refused before the data is read
    with pytest.raises(ValueError, match="--do_train False evaluates a trained model: name it with --model_name_or_path"):
        example.main([*missing, "--do_train", "False"])
    with pytest.raises(ValueError, match="--push_to_hub with --do_train False: an evaluation writes no model to push"):
        example.main([*missing, "--do_train", "False", "--model_name_or_path", "me/gcn", "--push_to_hub", "True",
                      "--hub_model_id", "me/gcn-eval"])
    with pytest.raises(ValueError, match="--resume_from_checkpoint resumes training, and --do_train False trains nothing"):
        example.main([*missing, "--do_train", "False", "--model_name_or_path", "me/gcn", "--resume_from_checkpoint", "x"])
    with pytest.raises(ValueError, match=f"--model_revision v1 is a Hub revision, and --model_name_or_path "
                                         f"{tmp_path} is a local folder"):
        example.main([*missing, "--model_name_or_path", str(tmp_path), "--model_revision", "v1"])
    with pytest.raises(ValueError, match="--model_revision v1 is a Hub revision of --model_name_or_path, which is not given"):
        example.main([*missing, "--model_revision", "v1"])
    assert not (tmp_path / "out").exists()


def test_a_folder_without_a_grantgcn_is_refused_naming_the_flag_before_the_data_is_read(tmp_path):
    from huggingface_hub import PyTorchModelHubMixin
    from torch import nn

    class UsersGNN(nn.Module, PyTorchModelHubMixin):  # config.json has what a GrantGCN needs, the weights do not
        def __init__(self, in_channels: int, out_channels: int):
            super().__init__()
            self.lin = nn.Linear(in_channels, out_channels)

    UsersGNN(6, 1).save_pretrained(tmp_path / "users")
    (tmp_path / "empty").mkdir()
    absent_data = ["--dataset", str(tmp_path / "absent"), "--task", "graph_regression", "--output_dir",
                   str(tmp_path / "out"), "--do_train", "False", *EVAL_COMMON]
    for folder, message in (("users", "holds no GrantGCN weights"), ("empty", "holds no GrantGCN: it has no config.json")):
        with pytest.raises(ValueError, match=rf"^--model_name_or_path {tmp_path / folder}: .*{message}"):
            _example().main([*absent_data, "--model_name_or_path", str(tmp_path / folder)])
    assert not (tmp_path / "out").exists()


def _rare_class_graphs(task):
    """100 graphs with y for `task`: classes 0 (40 graphs), 1 (50) and 2 (10), or those numbers as regression targets
    or one-hot multilabel rows."""
    classes = [2 if i % 10 == 0 else i % 2 for i in range(100)]
    labels = {"graph_classification": classes, "graph_regression": [[float(c)] for c in classes],
              "graph_multilabel": [[float(c == k) for k in range(3)] for c in classes]}[task]
    return datasets.Dataset.from_dict({"graph": list(range(100)), "y": labels})


@pytest.mark.parametrize(("task", "flags", "stratified"), [
    ("graph_classification", [], True), ("graph_classification", ["--stratify", "False"], False),
    ("graph_regression", [], False), ("graph_multilabel", [], False),
])
def test_graph_classes_are_split_by_class_unless_told_otherwise(tmp_path, task, flags, stratified):
    from hf_eff.grant import split_dataset

    example = _example()
    _, data_args, _ = example.parse_args(["--dataset", "graphs", "--task", task, "--output_dir", str(tmp_path), *flags])
    graphs = _rare_class_graphs(task)
    splits = example.split_graphs(graphs, data_args, task, seed=1)
    assert splits["test"]["graph"] == split_dataset(graphs, 0.1, 0.1, seed=1, stratify_by_class=stratified)["test"]["graph"]
    # seed 1 at random leaves class 2 out of validation (tests/grant/test_data.py), which a split by class cannot
    rare = [graph for graph in splits["validation"]["graph"] if graph % 10 == 0]
    assert bool(rare) == stratified


def test_a_saved_dataset_dict_is_not_split_again(tmp_path):
    example = _example()
    _, data_args, _ = example.parse_args(["--dataset", "graphs", "--task", "graph_classification", "--output_dir",
                                          str(tmp_path)])
    saved = datasets.DatasetDict(train=_rare_class_graphs("graph_classification"),
                                 validation=_rare_class_graphs("graph_classification").select([1]),
                                 test=_rare_class_graphs("graph_classification").select([3]))
    assert example.split_graphs(saved, data_args, "graph_classification", seed=1) is saved


def test_a_training_run_into_a_finished_run_is_refused_before_loading_data(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"an earlier run's model")
    (out / "checkpoint-10").mkdir()
    # the --dataset does not exist: the refusal comes before any data is read
    flags = ["--dataset", str(tmp_path / "absent.csv"), "--target_column", "logp", "--task", "graph_regression",
             "--output_dir", str(out), *COMMON]
    with pytest.raises(FileExistsError, match=re.escape(
            f"--output_dir {out} already holds a run (model.safetensors, 1 checkpoint(s) (checkpoint-10))")):
        _example().main(flags)
    with pytest.raises(FileNotFoundError):  # past the refusal
        _example().main([*flags, "--overwrite_output_dir"])


def test_a_diverged_run_stops_by_name_and_saves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"training diverged at step \d+: the training loss is (nan|inf).*"
                                                 r"--learning_rate, now 1e\+30.*no checkpoint had been written"):
        _example().main(["--task", "gen-reg", "--num_generated_graphs", "30", "--min_nodes", "4", "--max_nodes", "6",
                         "--output_dir", str(out), *COMMON, "--learning_rate", "1e30", "--max_grad_norm", "0"])
    assert not (out / "model.safetensors").exists() and not (out / "all_results.json").exists()


def test_a_resume_with_another_hidden_channels_names_the_mismatch_not_a_damaged_file(tmp_path):
    out = tmp_path / "run"
    flags = ["--task", "gen-reg", "--num_generated_graphs", "30", "--min_nodes", "4", "--max_nodes", "6",
             "--output_dir", str(out), *COMMON, "--num_train_epochs", "1", "--save_strategy", "epoch"]
    _example().main(flags)
    checkpoint = next(out.glob("checkpoint-*"))
    with pytest.raises(ValueError) as error:
        # one more epoch to train: a finished run's resume is refused before its weights are read
        _example().main([*flags, "--hidden_channels", "16", "--num_train_epochs", "2", "--resume_from_checkpoint", "True"])
    message = str(error.value)
    assert message.startswith(f"--resume_from_checkpoint: the weights of {checkpoint} do not match this run's model "
                              "(size mismatch for ")
    assert "torch.Size([8" in message and "does not load" not in message
