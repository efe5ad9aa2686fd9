"""examples/grant_train.py --do_predict: predict_results.csv of a --predict_file or the test split."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from hf_eff.grant import GrantGCN, GraphCollator, atom_features, graphs_from_smiles
from tests.grant.conftest import random_graphs
from tests.grant.test_example import COMMON, EVAL_COMMON, _example

ATOM_FEATURES = atom_features(torch.zeros(1, 9, dtype=torch.long)).size(1)  # a SMILES graph's node features
TRAIN_SMILES = ["CCO", "CCC", "CCN", "c1ccccc1", "CC(=O)O", "CCCl", "CO", "CN", "CCCC", "OCCO"] * 2
NEW_SMILES = ["C", "CCOC", "c1ccncc1", "[Na+].[Cl-]"]


def _forward(model, graphs):
    """The model's own outputs on the graphs, one batch, in evaluation mode."""
    batch = GraphCollator("graph_regression")([{k: row[k] for k in ("x", "edge_index", "num_nodes")} for row in graphs])
    with torch.no_grad():
        return model.eval()(batch["x"], batch["edge_index"], batch["batch"]).numpy()


def _new_molecules_csv(path, **columns):
    """NEW_SMILES under the column `smiles`, with other columns (targets to ignore, say)."""
    pd.DataFrame({"smiles": NEW_SMILES, **columns}).to_csv(path, index=False)
    return str(path)


def _predict_only(model_dir, predict_file, task, out, *flags):
    return _example().main(["--task", task, "--model_name_or_path", str(model_dir), "--do_train", "False",
                            "--do_predict", "--predict_file", str(predict_file), "--output_dir", str(out),
                            *EVAL_COMMON, *flags])


def test_graph_regression_predictions_of_a_csv_are_named_by_the_targets_and_are_the_models_outputs(tmp_path):
    data = tmp_path / "mols.csv"
    data.write_text("smiles,logp,tpsa\n" + "\n".join(f"{s},{i * 0.1},{i % 3}" for i, s in enumerate(TRAIN_SMILES)))
    new = _new_molecules_csv(tmp_path / "new.csv", logp=[9.0] * 4, note=["x"] * 4)  # targets and other columns ignored
    out = tmp_path / "run"
    results = _example().main(["--dataset", str(data), "--target_column", "logp,tpsa", "--task", "graph_regression",
                               "--output_dir", str(out), "--validation_fraction", "0.2", "--test_fraction", "0.2",
                               "--do_predict", "--predict_file", new, *COMMON])
    assert (results["predict_file"], results["predict_graphs"]) == (new, len(NEW_SMILES))
    saved = json.loads((out / "all_results.json").read_text())
    assert (saved["predict_file"], saved["predict_graphs"]) == (new, len(NEW_SMILES))
    assert json.loads((out / "config.json").read_text())["target_names"] == ["logp", "tpsa"]
    table = pd.read_csv(out / "predict_results.csv")
    assert list(table.columns) == ["index", "smiles", "logp", "tpsa"]
    assert table["index"].tolist() == list(range(len(NEW_SMILES))) and table["smiles"].tolist() == NEW_SMILES
    expected = _forward(GrantGCN.from_pretrained(out), graphs_from_smiles(NEW_SMILES))
    np.testing.assert_allclose(table[["logp", "tpsa"]].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    card = (out / "README.md").read_text()
    assert "predict_graphs" not in card  # the card reports the training run
    # its loading lines predict molecules with the model, as the example does
    snippet = card.split("```python\n")[1].split("```")[0].replace(f'"{out.name}"', repr(str(out)))
    namespace = {}
    exec(snippet, namespace)
    expected = _forward(GrantGCN.from_pretrained(out), graphs_from_smiles(["CCO", "c1ccccc1"]))
    np.testing.assert_allclose(namespace["predictions"].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_without_predict_file_the_test_split_is_predicted_after_training_and_by_an_evaluation(tmp_path):
    generated = ["--task", "gen-reg", "--num_generated_graphs", "20", "--min_nodes", "4", "--max_nodes", "6"]
    trained = _example().main([*generated, "--output_dir", str(tmp_path / "run"), "--do_predict", *EVAL_COMMON])
    assert (trained["predict_file"], trained["predict_graphs"]) == (None, 2)
    table = pd.read_csv(tmp_path / "run" / "predict_results.csv")
    # one row per node of the two test graphs; generated graphs name no target
    assert list(table.columns) == ["graph_index", "node_index", "prediction"]
    assert table["graph_index"].nunique() == 2 and 8 <= len(table) <= 12
    assert "graphs_from_smiles" not in (tmp_path / "run" / "README.md").read_text()  # generated graphs: no atom features
    assert table.groupby("graph_index")["node_index"].apply(lambda nodes: nodes.tolist() == list(range(len(nodes)))).all()
    evaluated = _example().main([*generated, "--model_name_or_path", str(tmp_path / "run"), "--do_train", "False",
                                 "--do_predict", "--output_dir", str(tmp_path / "eval"), *EVAL_COMMON])
    assert "test_mae" in evaluated and evaluated["predict_graphs"] == 2
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "eval" / "predict_results.csv"), table)


def test_the_test_split_of_a_smiles_csv_is_predicted_with_each_molecules_smiles(tmp_path):
    data = tmp_path / "mols.csv"
    data.write_text("smiles,logp\n" + "\n".join(f"{s},{i * 0.1}" for i, s in enumerate(TRAIN_SMILES)))
    out = tmp_path / "run"
    results = _example().main(["--dataset", str(data), "--target_column", "logp", "--task", "graph_regression",
                               "--output_dir", str(out), "--validation_fraction", "0.2", "--test_fraction", "0.2",
                               "--do_predict", *COMMON])
    table = pd.read_csv(out / "predict_results.csv")
    assert list(table.columns) == ["index", "smiles", "logp"] and len(table) == results["predict_graphs"] == 4
    assert set(table["smiles"]) <= set(TRAIN_SMILES)
    # each row's prediction is the model's on the molecule its smiles names
    expected = _forward(GrantGCN.from_pretrained(out), graphs_from_smiles(table["smiles"].tolist()))
    np.testing.assert_allclose(table[["logp"]].to_numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("task", "outputs"), [("graph_classification", {"class_names": ["high", "low", "mid"]}),
                                                ("graph_classification", {}),
                                                ("graph_multilabel", {"target_names": ["a", "b", "c"]})])
def test_a_classifier_predicts_its_classes_with_probabilities(tmp_path, task, outputs):
    model = GrantGCN(ATOM_FEATURES, 3, hidden_channels=8, task=task, **outputs)
    model.save_pretrained(tmp_path / "model")
    results = _predict_only(tmp_path / "model", _new_molecules_csv(tmp_path / "new.csv"), task, tmp_path / "out")
    assert results["predict_graphs"] == len(NEW_SMILES) and "test_loss" not in results  # nothing to evaluate on
    table = pd.read_csv(tmp_path / "out" / "predict_results.csv")
    logits = torch.from_numpy(_forward(model, graphs_from_smiles(NEW_SMILES)))
    if task == "graph_multilabel":  # a sigmoid per label, no single class
        assert list(table.columns) == ["index", "smiles", "probability_a", "probability_b", "probability_c"]
        np.testing.assert_allclose(table.iloc[:, 2:].to_numpy(), logits.sigmoid().numpy(), rtol=1e-5)
        return
    classes = outputs.get("class_names", [0, 1, 2])
    probabilities = [f"probability_{name}" for name in classes]
    assert list(table.columns) == ["index", "smiles", "prediction", *probabilities]
    assert table["prediction"].tolist() == [classes[i] for i in logits.argmax(dim=1).tolist()]
    np.testing.assert_allclose(table[probabilities].to_numpy(), logits.softmax(dim=1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(table[probabilities].sum(axis=1), 1.0, rtol=1e-5)


def test_a_node_classifier_predicts_every_node_of_a_saved_folder(tmp_path):
    model = GrantGCN(6, 3, hidden_channels=8, level="node", task="node_classification")
    model.save_pretrained(tmp_path / "model")
    graphs = random_graphs(5, "node_classification")  # its y is ignored
    graphs.save_to_disk(str(tmp_path / "graphs"))
    results = _predict_only(tmp_path / "model", tmp_path / "graphs", "node_classification", tmp_path / "out")
    assert results["predict_graphs"] == 5
    table = pd.read_csv(tmp_path / "out" / "predict_results.csv")
    assert list(table.columns) == ["graph_index", "node_index", "prediction", "probability_0", "probability_1",
                                   "probability_2"]
    sizes = graphs["num_nodes"]
    assert table["graph_index"].tolist() == [g for g, n in enumerate(sizes) for _ in range(n)]
    assert table["node_index"].tolist() == [i for n in sizes for i in range(n)]
    logits = torch.from_numpy(_forward(model, graphs))
    assert table["prediction"].tolist() == logits.argmax(dim=1).tolist()
    np.testing.assert_allclose(table.iloc[:, 3:].to_numpy(), logits.softmax(dim=1).numpy(), rtol=1e-5)


def test_node_predictions_of_molecules_name_each_nodes_molecule(tmp_path):
    """A node-level model on SMILES (a CSV's, or a saved folder's smiles column): each node's row gives its graph's."""
    model = GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, level="node", task="node_regression", target_names=["charge"])
    model.save_pretrained(tmp_path / "model")
    graphs = graphs_from_smiles(NEW_SMILES)
    graphs.save_to_disk(str(tmp_path / "graphs"))
    sizes = graphs["num_nodes"]
    for name, predict_file in (("csv", _new_molecules_csv(tmp_path / "new.csv")), ("folder", tmp_path / "graphs")):
        _predict_only(tmp_path / "model", predict_file, "node_regression", tmp_path / name)
        table = pd.read_csv(tmp_path / name / "predict_results.csv")
        assert list(table.columns) == ["graph_index", "smiles", "node_index", "charge"], name
        assert table["graph_index"].tolist() == [g for g, n in enumerate(sizes) for _ in range(n)]
        assert table["smiles"].tolist() == [NEW_SMILES[g] for g in table["graph_index"]]
        np.testing.assert_allclose(table[["charge"]].to_numpy(), _forward(model, graphs), rtol=1e-5, atol=1e-6)


def test_pyg_molecules_saved_to_a_folder_are_predicted_with_their_smiles(tmp_path):
    from torch_geometric.utils import from_smiles

    from hf_eff.grant import graphs_from_pyg

    model = GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, task="graph_regression", target_names=["logp"])
    model.save_pretrained(tmp_path / "model")
    graphs = graphs_from_pyg([from_smiles(smiles) for smiles in NEW_SMILES], "graph_regression",
                             node_features=atom_features)
    graphs.save_to_disk(str(tmp_path / "graphs"))
    _predict_only(tmp_path / "model", tmp_path / "graphs", "graph_regression", tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "predict_results.csv")
    assert list(table.columns) == ["index", "smiles", "logp"] and table["smiles"].tolist() == NEW_SMILES


@pytest.mark.parametrize(("outputs", "columns"), [(1, ["prediction"]), (2, ["prediction_0", "prediction_1"])])
def test_a_model_saved_without_target_names_predicts_unnamed_columns(tmp_path, outputs, columns):
    GrantGCN(ATOM_FEATURES, outputs, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("target_names")  # as saved before GrantGCN had them
    config_file.write_text(json.dumps(config))
    _predict_only(tmp_path / "model", _new_molecules_csv(tmp_path / "new.csv"), "graph_regression", tmp_path / "out")
    assert list(pd.read_csv(tmp_path / "out" / "predict_results.csv").columns) == ["index", "smiles", *columns]


def test_target_names_that_do_not_name_every_output_are_refused(tmp_path):
    GrantGCN(ATOM_FEATURES, 2, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "target_names": ["logp"]}))
    with pytest.raises(ValueError, match=rf"^--model_name_or_path {tmp_path / 'model'}: .*target_names has 1 names "
                                         "for out_channels=2 outputs"):
        _predict_only(tmp_path / "model", _new_molecules_csv(tmp_path / "new.csv"), "graph_regression", tmp_path / "out")


def test_graphs_of_another_feature_width_are_refused_naming_both_widths(tmp_path):
    GrantGCN(6, 1, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    new = _new_molecules_csv(tmp_path / "new.csv")
    with pytest.raises(ValueError, match=rf"--predict_file {new} does not fit --model_name_or_path {tmp_path / 'model'} "
                                         rf"\(graph_regression\): the model takes 6 node features, the data has "
                                         rf"{ATOM_FEATURES}"):
        _predict_only(tmp_path / "model", new, "graph_regression", tmp_path / "out")
    assert not (tmp_path / "out" / "predict_results.csv").exists()


def test_a_bad_predict_file_fails_before_training(tmp_path, monkeypatch):
    from hf_eff.grant import GraNTTrainer

    def train(*args, **kwargs):
        raise AssertionError("trained before --predict_file was read")

    monkeypatch.setattr(GraNTTrainer, "train", train)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"smiles": ["CCO", "C1CC("]}).to_csv(bad, index=False)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=rf"^--predict_file {bad}, column 'smiles', data row 2 \(1-based, header not "
                                         r"counted\): SMILES 'C1CC\(' could not be parsed"):
        _example().main(["--task", "gen-reg", "--num_generated_graphs", "20", "--min_nodes", "4", "--max_nodes", "6",
                         "--output_dir", str(out), "--do_predict", "--predict_file", str(bad), *EVAL_COMMON])


def test_predict_file_needs_do_predict(tmp_path):
    with pytest.raises(ValueError, match="--predict_file new.csv is what --do_predict predicts: add --do_predict"):
        _example().main(["--task", "gen-reg", "--output_dir", str(tmp_path), "--predict_file", "new.csv", *EVAL_COMMON])


@pytest.mark.parametrize(("data", "names"), [(["--task", "qm9", "--qm9_target", "HOMO_LUMO_gap_au"], ["HOMO_LUMO_gap_au"]),
                                             (["--task", "freesolv"], ["expt"]), (["--task", "gen-reg"], None)])
def test_a_fresh_model_is_named_by_the_datas_targets(data, names):
    example = _example()
    model_args, data_args, training_args = example.parse_args([*data, "--output_dir", "unused"])
    model = example.build_model(model_args, None, training_args.task, 4, 1, None, example.target_columns(data_args),
                                "data")
    assert model.target_names == names


def test_smiles_column_applies_to_a_csv_predict_file_and_training_flags_not_to_prediction_only(tmp_path):
    example = _example()
    flags = ["--task", "freesolv", "--smiles_column", "SMILES", "--output_dir", "unused"]
    example.check_options_apply(example.parse_args([*flags, "--do_predict", "--predict_file", "new.csv"])[1])
    with pytest.raises(ValueError, match="--smiles_column does not apply to --task freesolv"):
        example.check_options_apply(example.parse_args(flags)[1])
    GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    new = _new_molecules_csv(tmp_path / "new.csv")
    with pytest.raises(ValueError, match=f"--target_column does not apply to --predict_file {new}: --target_column is "
                                         "for a CSV --dataset"):
        _predict_only(tmp_path / "model", new, "graph_regression", tmp_path / "out", "--target_column", "logp")


def test_targets_named_as_the_tables_own_columns_are_written_as_prediction_columns(tmp_path, caplog):
    model = GrantGCN(ATOM_FEATURES, 3, hidden_channels=8, task="graph_regression", target_names=["index", "smiles", "logp"])
    model.save_pretrained(tmp_path / "model")
    with caplog.at_level("WARNING"):
        _predict_only(tmp_path / "model", _new_molecules_csv(tmp_path / "new.csv"), "graph_regression", tmp_path / "out")
    assert "the model's target(s) index, smiles are written as prediction_index, prediction_smiles" in caplog.text
    table = pd.read_csv(tmp_path / "out" / "predict_results.csv")
    assert list(table.columns) == ["index", "smiles", "prediction_index", "prediction_smiles", "logp"]
    assert table["index"].tolist() == list(range(len(NEW_SMILES))) and table["smiles"].tolist() == NEW_SMILES
    np.testing.assert_allclose(table.iloc[:, 2:].to_numpy(), _forward(model, graphs_from_smiles(NEW_SMILES)), rtol=1e-5)


def test_node_targets_named_node_index_or_smiles_are_written_as_prediction_columns(tmp_path):
    """smiles too: a node's row of molecules has its graph's smiles column."""
    GrantGCN(ATOM_FEATURES, 2, hidden_channels=8, level="node", task="node_regression",
             target_names=["node_index", "smiles"]).save_pretrained(tmp_path / "model")
    _predict_only(tmp_path / "model", _new_molecules_csv(tmp_path / "new.csv"), "node_regression", tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "predict_results.csv")
    assert list(table.columns) == ["graph_index", "smiles", "node_index", "prediction_node_index", "prediction_smiles"]
    assert set(table["smiles"]) == set(NEW_SMILES)


def test_target_names_that_would_write_a_column_twice_are_refused_before_training(tmp_path):
    data = tmp_path / "mols.csv"
    data.write_text("smiles,index,prediction_index\n" + "\n".join(f"{s},{i},{i % 3}" for i, s in enumerate(TRAIN_SMILES)))
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"target_names \['index', 'prediction_index'\] would write the prediction "
                                         r"columns \['prediction_index', 'prediction_index'\], some twice"):
        _example().main(["--dataset", str(data), "--target_column", "index,prediction_index", "--task",
                         "graph_regression", "--output_dir", str(out), "--do_predict", *COMMON])
    assert not out.exists()


def test_a_target_column_named_twice_is_refused(tmp_path):
    data = tmp_path / "mols.csv"
    data.write_text("smiles,logp\n" + "\n".join(f"{s},{i}" for i, s in enumerate(TRAIN_SMILES)))
    with pytest.raises(ValueError, match="--target_column logp,logp names logp more than once"):
        _example().main(["--dataset", str(data), "--target_column", "logp,logp", "--task", "graph_regression",
                         "--output_dir", str(tmp_path / "run"), *COMMON])


@pytest.mark.parametrize("names", ["class_names", "target_names"])
def test_a_model_refuses_a_name_for_two_outputs(names):
    task = "graph_classification" if names == "class_names" else "graph_regression"
    with pytest.raises(ValueError, match=rf"{names} name \['a'\] more than once"):
        GrantGCN(6, 3, task=task, **{names: ["a", "b", "a"]})


@pytest.mark.parametrize(("content", "problem"), [
    ("", "is empty: give a CSV with a header row, the SMILES column 'smiles'"),
    ("smiles\n", "has a header but no molecules"),
])
def test_a_csv_without_molecules_is_refused_naming_it(tmp_path, content, problem):
    GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    new = tmp_path / "new.csv"
    new.write_text(content)
    with pytest.raises(ValueError, match=f"^--predict_file {new} {problem}"):
        _predict_only(tmp_path / "model", new, "graph_regression", tmp_path / "out")


def test_a_folder_without_graphs_or_their_columns_is_refused_naming_it(tmp_path):
    GrantGCN(6, 1, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    graphs = random_graphs(3, "graph_regression")
    graphs.filter(lambda graph: False).save_to_disk(str(tmp_path / "filtered"))
    graphs.select([]).save_to_disk(str(tmp_path / "selected"))  # saved without a data file
    for empty in ("filtered", "selected"):
        with pytest.raises(ValueError, match=f"^--predict_file {tmp_path / empty} holds no graphs to predict"):
            _predict_only(tmp_path / "model", tmp_path / empty, "graph_regression", tmp_path / "out")
    graphs.remove_columns("num_nodes").save_to_disk(str(tmp_path / "no_sizes"))
    with pytest.raises(ValueError, match=rf"^--predict_file {tmp_path / 'no_sizes'} lacks column\(s\) \['num_nodes'\]: "
                                         r"graphs to predict need \['x', 'edge_index', 'num_nodes'\]"):
        _predict_only(tmp_path / "model", tmp_path / "no_sizes", "graph_regression", tmp_path / "out")


@pytest.mark.parametrize(("task", "targets", "labels"), [
    ("graph_classification", "soluble", lambda i: "yes" if i % 2 else "no"),
    ("graph_multilabel", "toxic,bitter", lambda i: f"{i % 2},{i // 2 % 2}"),
])
def test_a_classifiers_card_gives_the_probabilities_predict_results_has(tmp_path, task, targets, labels):
    data = tmp_path / "mols.csv"
    data.write_text(f"smiles,{targets}\n" + "\n".join(f"{s},{labels(i)}" for i, s in enumerate(TRAIN_SMILES)))
    new = tmp_path / "new.csv"
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1"]}).to_csv(new, index=False)  # the card's molecules
    out = tmp_path / "run"
    _example().main(["--dataset", str(data), "--target_column", targets, "--task", task, "--output_dir", str(out),
                     "--validation_fraction", "0.2", "--test_fraction", "0.2", "--do_predict", "--predict_file", str(new),
                     *COMMON])
    snippet = (out / "README.md").read_text().split("```python\n")[1].split("```")[0]
    namespace = {}
    exec(snippet.replace(f'"{out.name}"', repr(str(out))), namespace)
    table = pd.read_csv(out / "predict_results.csv")
    np.testing.assert_allclose(namespace["probabilities"].numpy(), table.filter(like="probability_"), rtol=1e-5)


@pytest.mark.parametrize("flag", [["--max_graphs", "2"], ["--test_fraction", "0.5"], ["--stratify", "False"]])
def test_flags_that_cut_or_split_data_are_refused_when_only_a_predict_file_is_read(tmp_path, flag):
    GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    new = _new_molecules_csv(tmp_path / "new.csv")
    with pytest.raises(ValueError, match=f"^{flag[0]} does not apply to --predict_file {new}: {flag[0]} is for --task "
                                         "or --dataset"):
        _predict_only(tmp_path / "model", new, "graph_regression", tmp_path / "out", *flag)


def test_a_predict_file_csv_reads_its_own_smiles_column(tmp_path):
    data = tmp_path / "mols.csv"
    data.write_text("smiles,logp\n" + "\n".join(f"{s},{i * 0.1}" for i, s in enumerate(TRAIN_SMILES)))
    new = tmp_path / "new.csv"
    pd.DataFrame({"SMILES": NEW_SMILES}).to_csv(new, index=False)
    training = ["--dataset", str(data), "--target_column", "logp", "--task", "graph_regression",
                "--validation_fraction", "0.2", "--test_fraction", "0.2", "--do_predict", "--predict_file", str(new), *COMMON]
    with pytest.raises(ValueError, match=rf"^--predict_file {new}: no SMILES column 'smiles'; columns are \['SMILES'\]; name "
                                         r"the SMILES column of --predict_file with --predict_smiles_column"):
        _example().main([*training, "--output_dir", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()  # refused before training
    results = _example().main([*training, "--predict_smiles_column", "SMILES", "--output_dir", str(tmp_path / "run")])
    assert results["predict_graphs"] == len(NEW_SMILES)
    assert pd.read_csv(tmp_path / "run" / "predict_results.csv")["smiles"].tolist() == NEW_SMILES
    with pytest.raises(ValueError, match=rf"^--predict_file {new}: no SMILES column 'Smiles'"):
        _predict_only(tmp_path / "run", new, "graph_regression", tmp_path / "out", "--predict_smiles_column", "Smiles")


def test_predict_smiles_column_applies_only_to_a_csv_predict_file(tmp_path):
    example = _example()
    flags = ["--task", "gen-reg", "--predict_smiles_column", "SMILES", "--output_dir", "unused"]
    with pytest.raises(ValueError, match="--predict_smiles_column does not apply to --task gen-reg: "
                                         "--predict_smiles_column is for a CSV --predict_file"):
        example.check_options_apply(example.parse_args(flags)[1])
    # given it, --smiles_column no longer names the --predict_file's column: for a built-in --task it is ignored
    predicting = ["--task", "freesolv", "--do_predict", "--predict_file", "new.csv", "--output_dir", "unused"]
    example.check_options_apply(example.parse_args([*predicting, "--predict_smiles_column", "SMILES"])[1])
    with pytest.raises(ValueError, match="--smiles_column does not apply to --task freesolv"):
        example.check_options_apply(example.parse_args([*predicting, "--predict_smiles_column", "SMILES",
                                                        "--smiles_column", "Smiles"])[1])


GENERATED = ["--task", "gen-reg", "--num_generated_graphs", "20", "--min_nodes", "4", "--max_nodes", "6", *EVAL_COMMON]


def test_an_earlier_runs_predictions_are_removed_once_a_run_into_the_folder_succeeds(tmp_path, monkeypatch, caplog):
    from hf_eff.grant import GraNTTrainer

    out = tmp_path / "run"
    stale = out / "predict_results.csv"
    _example().main([*GENERATED, "--output_dir", str(out), "--do_predict"])
    earlier = stale.read_text()

    def fail(*args, **kwargs):
        raise RuntimeError("training failed")

    with monkeypatch.context() as patched:  # a run that fails keeps the earlier run's files
        patched.setattr(GraNTTrainer, "train", fail)
        with pytest.raises(RuntimeError, match="training failed"):
            _example().main([*GENERATED, "--output_dir", str(out), "--overwrite_output_dir"])
    assert stale.read_text() == earlier
    saved = GraNTTrainer.save_model
    present_when_saved = []

    def save_model(trainer, *args, **kwargs):  # what --push_to_hub would upload
        present_when_saved.append(stale.exists())
        return saved(trainer, *args, **kwargs)

    monkeypatch.setattr(GraNTTrainer, "save_model", save_model)
    _example().main([*GENERATED, "--output_dir", str(out), "--overwrite_output_dir", "--do_predict", "--seed", "1"])  # replaced after the push
    assert present_when_saved == [False] and stale.read_text() != earlier
    with caplog.at_level("INFO"):
        _example().main([*GENERATED, "--output_dir", str(out), "--overwrite_output_dir"])
    assert present_when_saved == [False, False] and not stale.exists()
    assert f"removed {stale}: an earlier run's predictions, not this model's" in caplog.text


def test_an_evaluation_removes_the_predictions_of_an_earlier_run_in_its_folder(tmp_path):
    _example().main([*GENERATED, "--output_dir", str(tmp_path / "run")])
    out = tmp_path / "eval"
    out.mkdir()
    (out / "predict_results.csv").write_text("index,prediction\n0,1.5\n")
    results = _example().main([*GENERATED, "--model_name_or_path", str(tmp_path / "run"), "--do_train", "False",
                               "--output_dir", str(out)])
    assert "test_mae" in results and not (out / "predict_results.csv").exists()


def test_a_predict_folder_with_nan_or_inf_features_is_refused_by_name_before_training(tmp_path, monkeypatch):
    from hf_eff.grant import GraNTTrainer

    graphs = random_graphs(5, "node_regression", min_nodes=2)  # its y is ignored, NaN there too
    graphs = graphs.map(lambda row, i: {"x": [[float("nan")] + row["x"][0][1:], *row["x"][1:]] if i == 3 else row["x"],
                                        "y": [float("nan")] * len(row["y"])}, with_indices=True)
    graphs.save_to_disk(str(tmp_path / "graphs"))
    GrantGCN(6, 1, hidden_channels=8, level="node", task="node_regression").save_pretrained(tmp_path / "model")
    named = rf"^--predict_file {tmp_path / 'graphs'} row 3 \(0-based, as dataset\[3\]\): x contains NaN \(node 0, feature 0\)"
    with pytest.raises(ValueError, match=named):
        _predict_only(tmp_path / "model", tmp_path / "graphs", "node_regression", tmp_path / "out")
    assert not (tmp_path / "out" / "predict_results.csv").exists()

    def train(*args, **kwargs):
        raise AssertionError("trained before --predict_file was checked")

    monkeypatch.setattr(GraNTTrainer, "train", train)
    with pytest.raises(ValueError, match=named):
        _example().main([*GENERATED, "--output_dir", str(tmp_path / "run"), "--do_predict", "--predict_file",
                         str(tmp_path / "graphs")])


def _two_scale_csv(path, constant=False):
    """TRAIN_SMILES with a target in thousandths and one in thousands (or, with `constant`, one of a single value)."""
    large = [5.0] * len(TRAIN_SMILES) if constant else [(i % 7) * 1e3 for i in range(len(TRAIN_SMILES))]
    pd.DataFrame({"smiles": TRAIN_SMILES, "small": [(i % 5) * 1e-3 for i in range(len(TRAIN_SMILES))],
                  "large": large}).to_csv(path, index=False)
    return ["--dataset", str(path), "--target_column", "small,large", "--task", "graph_regression",
            "--validation_fraction", "0.2", "--test_fraction", "0.2"]


def test_standardize_targets_saves_the_training_statistics_and_predicts_in_the_targets_units(tmp_path, caplog):
    data = _two_scale_csv(tmp_path / "mols.csv")
    new = _new_molecules_csv(tmp_path / "new.csv")
    out = tmp_path / "run"
    with caplog.at_level("WARNING"):
        _example().main([*data, "--output_dir", str(out), "--standardize_targets", "--do_predict", "--predict_file", new,
                         *COMMON])
    assert "standard deviations differ" not in caplog.text
    config = json.loads((out / "config.json").read_text())
    example = _example()
    data_args = example.parse_args([*data, "--output_dir", "unused"])[1]
    seed = 42  # transformers' default, which the run used
    train = example.split_graphs(example.load_graphs(data_args, "graph_regression", seed), data_args, "graph_regression",
                                 seed)["train"]
    labels = np.asarray(train["y"])
    np.testing.assert_allclose(config["target_mean"], labels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(config["target_std"], labels.std(axis=0), rtol=1e-6)
    table = pd.read_csv(out / "predict_results.csv")
    expected = _forward(GrantGCN.from_pretrained(out), graphs_from_smiles(NEW_SMILES))  # output * std + mean
    np.testing.assert_allclose(table[["small", "large"]].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert table["large"].abs().mean() > 100  # in thousands, as the target


def test_targets_of_very_different_scales_are_warned_of_without_standardize_targets(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        _example().main([*_two_scale_csv(tmp_path / "mols.csv"), "--output_dir", str(tmp_path / "run"), *COMMON])
    assert re.search(r"the targets' standard deviations differ \S+-fold \(large: \S+, small: \S+\): the loss and the "
                     r"GraNT teacher's scores follow the larger targets almost alone; --standardize_targets", caplog.text)


def test_standardize_targets_is_refused_where_it_cannot_apply(tmp_path):
    with pytest.raises(ValueError, match="--standardize_targets: large has one value on every training graph"):
        _example().main([*_two_scale_csv(tmp_path / "mols.csv", constant=True), "--output_dir", str(tmp_path / "run"),
                         "--standardize_targets", *COMMON])
    with pytest.raises(ValueError, match="--standardize_targets standardises regression targets; --task is "
                                         "node_classification"):
        _example().main(["--task", "gen-cls", "--output_dir", str(tmp_path / "cls"), "--standardize_targets", *COMMON])
    GrantGCN(ATOM_FEATURES, 2, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match=rf"--standardize_targets: --model_name_or_path {tmp_path / 'model'} keeps the "
                                         "standardisation it was trained with"):
        _example().main([*_two_scale_csv(tmp_path / "mols.csv"), "--model_name_or_path", str(tmp_path / "model"),
                         "--output_dir", str(tmp_path / "tuned"), "--standardize_targets", *COMMON])


def test_skip_invalid_smiles_leaves_out_a_predict_files_unparsable_rows_and_indexes_the_others_by_their_row(
        tmp_path, caplog):
    model = GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, task="graph_regression", target_names=["logp"])
    model.save_pretrained(tmp_path / "model")
    new = tmp_path / "new.csv"
    pd.DataFrame({"smiles": ["CCO", "not-a-smiles", "c1ccccc1", "CN"]}).to_csv(new, index=False)
    with pytest.raises(ValueError, match=rf"^--predict_file {new}, column 'smiles', data row 2 \(1-based, header not "
                                         r"counted\): SMILES 'not-a-smiles' could not be parsed"):
        _predict_only(tmp_path / "model", new, "graph_regression", tmp_path / "refused")
    with caplog.at_level("WARNING"):
        results = _predict_only(tmp_path / "model", new, "graph_regression", tmp_path / "out", "--skip_invalid_smiles")
    assert (f"--predict_file {new}, column 'smiles' (data rows 1-based, header not counted): skipped 1 of 4 SMILES "
            "that could not be parsed into a molecule: data row 2: 'not-a-smiles'") in caplog.text
    assert results["predict_graphs"] == 3
    table = pd.read_csv(tmp_path / "out" / "predict_results.csv")
    assert table["index"].tolist() == [0, 2, 3] and table["smiles"].tolist() == ["CCO", "c1ccccc1", "CN"]
    expected = _forward(model, graphs_from_smiles(["CCO", "c1ccccc1", "CN"]))
    np.testing.assert_allclose(table[["logp"]].to_numpy(), expected, rtol=1e-5, atol=1e-6)


def test_skip_invalid_smiles_indexes_a_node_level_models_predictions_by_the_files_rows(tmp_path):
    model = GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, level="node", task="node_regression", target_names=["charge"])
    model.save_pretrained(tmp_path / "model")
    new = tmp_path / "new.csv"
    pd.DataFrame({"smiles": ["", "CCO", "C1CC(", "CN"]}).to_csv(new, index=False)  # an empty cell is skipped too
    _predict_only(tmp_path / "model", new, "node_regression", tmp_path / "out", "--skip_invalid_smiles")
    table = pd.read_csv(tmp_path / "out" / "predict_results.csv")
    assert table["graph_index"].tolist() == [1, 1, 1, 3, 3] and table["smiles"].tolist() == ["CCO"] * 3 + ["CN"] * 2


def test_skip_invalid_smiles_still_refuses_a_predict_file_of_which_no_smiles_parses(tmp_path):
    GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    new = tmp_path / "new.csv"
    pd.DataFrame({"smiles": ["not-a-smiles", "C1CC("]}).to_csv(new, index=False)
    with pytest.raises(ValueError, match=rf"^--predict_file {new}, column 'smiles' \(data rows 1-based, header not "
                                         r"counted\): none of the 2 SMILES could be parsed"):
        _predict_only(tmp_path / "model", new, "graph_regression", tmp_path / "out", "--skip_invalid_smiles")
    assert not (tmp_path / "out" / "predict_results.csv").exists()


def test_skip_invalid_smiles_is_refused_for_a_predict_file_folder_alone(tmp_path):
    GrantGCN(ATOM_FEATURES, 1, hidden_channels=8, task="graph_regression").save_pretrained(tmp_path / "model")
    graphs_from_smiles(NEW_SMILES).save_to_disk(str(tmp_path / "graphs"))
    with pytest.raises(ValueError, match=f"^--skip_invalid_smiles does not apply to --predict_file {tmp_path / 'graphs'}: "
                                         "--skip_invalid_smiles is for a CSV --dataset or --predict_file"):
        _predict_only(tmp_path / "model", tmp_path / "graphs", "graph_regression", tmp_path / "out",
                      "--skip_invalid_smiles")
