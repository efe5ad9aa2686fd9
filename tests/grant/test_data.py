import math
import os
import re
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch

from hf_eff.grant import data
from hf_eff.grant.data import (
    atom_features,
    cache_dir,
    check_graph_dataset,
    class_names,
    encode_class_labels,
    generate_graphon_dataset,
    graphs_from_pyg,
    graphs_from_smiles,
    load_freesolv,
    load_qm9,
    load_smiles_csv,
    load_smiles_table,
    load_solubility,
    molecules_from_csv,
    renumber_classes,
    split_dataset,
    split_off_validation,
)


def test_smiles_become_one_hot_atom_graphs():
    dataset = graphs_from_smiles(["CCO", "C"], [[1.0], [2.0]])
    first = dataset[0]
    assert first["num_nodes"] == 3 and np.asarray(first["x"]).shape == (3, 71)
    assert np.asarray(first["x"]).sum(axis=1).tolist() == [9.0] * 3  # one hot per categorical column
    assert np.asarray(first["edge_index"]).shape == (2, 4)
    assert dataset[1]["edge_index"] == [[], []]


def test_smiles_graphs_keep_their_smiles_through_a_split(tmp_path):
    # chains of k carbons: a graph of k nodes, so that every row's smiles can be checked against its graph
    chains = ["C" * k for k in range(1, 21)]
    path = tmp_path / "chains.csv"
    path.write_text("smi,label\n" + "\n".join(f"{chain},{'ab'[k % 2]}" for k, chain in enumerate(chains)))
    graphs = load_smiles_csv(path, "smi", ["label"], classification=True)
    assert graphs["smiles"] == chains
    for stratify in (False, True):
        parts = split_dataset(graphs, 0.2, 0.2, seed=0, stratify_by_class=stratify)
        assert sorted(sum((list(part["smiles"]) for part in parts.values()), []), key=len) == chains
        for part in parts.values():
            assert [len(smiles) for smiles in part["smiles"]] == list(part["num_nodes"])


def test_atom_features_are_one_one_hot_block_per_column():
    from torch_geometric.utils.smiles import x_map

    sizes = [len(values) for values in x_map.values()]
    generator = torch.Generator().manual_seed(0)
    categorical = torch.stack([torch.randint(0, n, (500,), generator=generator) for n in sizes], dim=1)
    categorical[:12, 0] = torch.tensor([1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53])  # every listed element
    element = torch.full((500,), 12)  # other elements share the last slot
    for slot, atomic_num in enumerate((1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53)):
        element[categorical[:, 0] == atomic_num] = slot
    blocks = [torch.nn.functional.one_hot(element, 13)]
    blocks += [torch.nn.functional.one_hot(categorical[:, c], n) for c, n in enumerate(sizes) if c]
    features = atom_features(categorical)
    assert features.dtype == torch.float32 and torch.equal(features, torch.cat(blocks, dim=1).float())
    assert atom_features(categorical[:0]).shape == (0, 71)
    with pytest.raises(ValueError, match=r"atom 1: column 5 \(num_radical_electrons\) holds 99, outside 0..4"):
        atom_features(torch.tensor([[6, 0, 0, 0, 0, 0, 0, 0, 0], [6, 0, 0, 0, 0, 99, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"takes the 9 categorical columns .* got shape \(2, 10\)"):
        atom_features(torch.zeros(2, 10, dtype=torch.long))


def test_unparsable_smiles_names_the_row_and_how_rows_are_counted():
    with pytest.raises(ValueError) as error:
        graphs_from_smiles(["CCO", "not a molecule"], [[1.0], [2.0]])
    assert str(error.value) == ("smiles row 1 (0-based, as smiles[1]): SMILES 'not a molecule' could not be parsed "
                                "into a molecule")


def test_unparsable_smiles_can_be_skipped_with_one_warning(caplog):
    with caplog.at_level("WARNING", logger="hf_eff.grant.data"):
        graphs = graphs_from_smiles(["CCO", "not a molecule", "C", "C1CC"], [[1.0], [2.0], [3.0], [4.0]],
                                    skip_invalid_smiles=True)
    assert graphs["smiles"] == ["CCO", "C"] and graphs["y"] == [[1.0], [3.0]]  # each kept with its own target
    (warning,) = caplog.records
    assert warning.getMessage() == ("skipped 2 of 4 SMILES that could not be parsed into a molecule: "
                                    "smiles row 1 (0-based, as smiles[1]): 'not a molecule'; "
                                    "smiles row 3 (0-based, as smiles[3]): 'C1CC'")
    with pytest.raises(ValueError, match=r"none of the 2 SMILES could be parsed into a molecule \(smiles row 0 "
                                         r"\(0-based, as smiles\[0\]\): 'x'; smiles row 1 \(0-based, as smiles\[1\]\): ''\)"):
        graphs_from_smiles(["x", ""], skip_invalid_smiles=True)


def test_a_smiles_csv_skips_unparsable_or_empty_smiles_naming_the_first_rows(tmp_path, caplog, monkeypatch):
    path = tmp_path / "mols.csv"
    # the skipped rows' targets (an empty one too) are not read; the rows after them keep their numbers
    rows = ["CCO,a,0.1", "bad1,b,", ",b,0.2", "bad3,c,x", "bad4,a,0.3", "bad5,a,0.3", "bad6,a,0.3", "CCC,b,0.4"]
    path.write_text("smi,label,logp\n" + "\n".join(rows) + "\n")
    parses = []
    parse = data.parsable_smiles
    monkeypatch.setattr(data, "parsable_smiles", lambda smiles: parses.append(len(smiles)) or parse(smiles))
    for attempt in ("built", "read from the cache"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="hf_eff.grant.data"):
            graphs = load_smiles_csv(path, "smi", ["label"], classification=True, skip_invalid_smiles=True)
        assert graphs["smiles"] == ["CCO", "CCC"] and class_names(graphs) == ["a", "b"], attempt
        (warning,) = caplog.records
        assert warning.getMessage() == (
            f"{path}, column 'smi' (data rows 1-based, header not counted): skipped 6 of 8 SMILES that could not be "
            "parsed into a molecule: data row 2: 'bad1'; data row 3: ''; data row 4: 'bad3'; data row 5: 'bad4'; "
            "data row 6: 'bad5'; ..."), attempt
    assert parses == [8]  # RDKit parsed the column when the copy was built, not when it was read
    path.write_text("smi,logp\nCCO,0.1\nbad,0.2\nCCC,0.3\n")
    assert len(load_smiles_csv(path, "smi", ["logp"], skip_invalid_smiles=True)) == 2
    with pytest.raises(ValueError, match="could not be parsed"):  # the copy cached without it does not serve this run
        load_smiles_csv(path, "smi", ["logp"])
    path.write_text("smi,logp\nbad,0.1\nCCO,\n")  # a kept row's bad target is named by its row in the file
    with pytest.raises(ValueError, match="column 'logp', data row 2 .*: the target is empty"):
        load_smiles_csv(path, "smi", ["logp"], skip_invalid_smiles=True)
    path.write_text("smi,logp\nbad,0.1\n,0.2\n")
    with pytest.raises(ValueError, match=r"mols.csv, column 'smi' .*: none of the 2 SMILES could be parsed into a "
                                         r"molecule \(data row 1: 'bad'; data row 2: ''\)"):
        load_smiles_csv(path, "smi", ["logp"], skip_invalid_smiles=True)


def test_graphon_generator_is_cached_and_reproducible():
    first = generate_graphon_dataset("classification", 6, min_nodes=5, max_nodes=9, num_classes=4, seed=1)
    assert any(cache_dir().iterdir())
    again = generate_graphon_dataset("classification", 6, min_nodes=5, max_nodes=9, num_classes=4, seed=1)
    assert first["y"] == again["y"]
    for row in first:
        assert 5 <= row["num_nodes"] <= 9 and len(row["y"]) == row["num_nodes"]
        assert np.asarray(row["x"]).shape == (row["num_nodes"], 40)
        assert set(row["y"]) <= set(range(4))
    check_graph_dataset(first, "node_classification")
    regression = generate_graphon_dataset("regression", 3, min_nodes=4, max_nodes=4, seed=2)
    check_graph_dataset(regression, "node_regression")


def test_building_a_graphon_set_leaves_the_global_rng_alone():
    # a run seeds the global RNG before loading its data: the model's initialisation must not
    # depend on whether the set was built now or read from the cache
    torch.manual_seed(123)
    before = torch.get_rng_state()
    generate_graphon_dataset("regression", 3, min_nodes=4, max_nodes=6, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    # the teacher is still initialised from `seed` (same data as before the RNG was kept local)
    first = generate_graphon_dataset("regression", 2, min_nodes=4, max_nodes=5, seed=0)
    assert first["num_nodes"] == [4, 4]
    assert first["y"][1] == pytest.approx([0.4265, 0.2778, 0.1434, -0.3548], abs=1e-4)


def test_streamed_sets_keep_their_types_across_writer_batches(monkeypatch):
    # one row per Arrow batch: a batch of methane alone (no bonds) or of an integer target must
    # not decide the column's type; y is typed as the whole column infers it
    monkeypatch.setattr(data, "WRITER_BATCH_SIZE", 1)
    molecules = graphs_from_smiles(["C", "CCO"], [[1], [2.5]])
    assert molecules.features == datasets.Features(
        x=datasets.List(datasets.List(datasets.Value("float32"))),
        edge_index=datasets.List(datasets.List(datasets.Value("int64"))),
        edge_attr=datasets.List(datasets.List(datasets.Value("int64"))),
        y=datasets.List(datasets.Value("float64")),
        num_nodes=datasets.Value("int64"),
        smiles=datasets.Value("string"),
    )
    assert molecules["y"] == [[1.0], [2.5]] and molecules[0]["edge_attr"] == []
    assert np.asarray(molecules[1]["edge_attr"]).shape == (4, 3)
    for kind, label in (("regression", "float32"), ("classification", "int64")):
        fresh = generate_graphon_dataset(kind, 3, min_nodes=4, max_nodes=6, seed=4)
        assert fresh.features["y"] == datasets.List(datasets.Value(label))
        assert fresh.features["x"] == datasets.List(datasets.List(datasets.Value("float32")))
        cached = generate_graphon_dataset(kind, 3, min_nodes=4, max_nodes=6, seed=4)
        assert cached.features == fresh.features and cached.to_dict() == fresh.to_dict()


def test_bundled_molecule_sets_read_offline():
    freesolv = load_freesolv()
    assert len(freesolv) == 642
    check_graph_dataset(freesolv, "graph_regression")
    solubility = load_solubility("test", classification=True)
    assert len(solubility) == 257 and set(solubility["y"]) == {0, 1, 2}
    qm9 = load_qm9("HOMO_LUMO_gap_au", max_graphs=20)
    assert len(qm9) == 20 and qm9[0]["y"] == pytest.approx([0.5048])  # methane's gap
    with pytest.raises(ValueError, match="^QM9 has no target 'not_a_column'; choose one of"):
        load_qm9("not_a_column", max_graphs=5)


def test_smiles_csv_with_classes(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("smi,label,logp\nCCO,b,0.1\nCCC,a,0.2\nCCN,b,0.3\n")
    classes = load_smiles_csv(path, "smi", ["label"], classification=True)
    assert classes["y"] == [1, 0, 1]
    regression = load_smiles_csv(path, "smi", ["logp", "logp"])
    assert np.asarray(regression["y"]).shape == (3, 2)
    with pytest.raises(ValueError, match=f"^{path}: no SMILES column 'smiles'"):  # unquoted, unlike a KeyError's
        load_smiles_csv(path, "smiles", ["logp"])
    with pytest.raises(ValueError, match=rf"^{path}: no column \['pka'\]; columns are \['smi', 'label', 'logp'\]"):
        load_smiles_csv(path, "smi", ["logp", "pka"])


def test_a_smiles_csv_without_molecules_is_refused_naming_it(tmp_path):
    for content, problem in (("", "is empty: give a CSV with a header row"), ("smi,logp\n", "has a header but no molecules")):
        path = tmp_path / "mols.csv"
        path.write_text(content)
        with pytest.raises(ValueError, match=f"^{path} {problem}"):
            load_smiles_csv(path, "smi", ["logp"])
        with pytest.raises(ValueError, match=f"^new molecules {problem}"):
            molecules_from_csv(path, "smi", name="new molecules")


def test_molecules_from_csv_are_graphs_without_targets_in_the_files_order(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("id,smi,logp\n1,CCO,0.1\n2,c1ccccc1,\n")
    graphs, smiles = molecules_from_csv(path, "smi")
    assert smiles == ["CCO", "c1ccccc1"] and graphs["num_nodes"] == [3, 6] and "y" not in graphs.column_names


def test_molecules_from_csv_skips_unparsable_smiles_and_returns_the_kept_molecules_rows(tmp_path, caplog):
    path = tmp_path / "new.csv"
    path.write_text("smi\nCCO\nnot-a-smiles\n\"\"\nc1ccccc1\n")
    with pytest.raises(ValueError, match=r"new molecules, column 'smi', data row 3 .*: the SMILES cell is empty"):
        molecules_from_csv(path, "smi", name="new molecules")
    with caplog.at_level("WARNING", logger="hf_eff.grant.data"):
        graphs, smiles, rows = molecules_from_csv(path, "smi", name="new molecules", skip_invalid_smiles=True,
                                                  return_rows=True)
    assert smiles == graphs["smiles"] == ["CCO", "c1ccccc1"] and rows == [0, 3]
    (warning,) = caplog.records
    assert warning.getMessage() == ("new molecules, column 'smi' (data rows 1-based, header not counted): skipped 2 of "
                                    "4 SMILES that could not be parsed into a molecule: data row 2: 'not-a-smiles'; "
                                    "data row 3: ''")
    assert molecules_from_csv(path, "smi", skip_invalid_smiles=True)[1] == smiles  # without return_rows: two results


@pytest.mark.parametrize(
    ("cells", "classification", "message"),
    [
        ("CCO,a,0.1\nCCC,,0.2\n", True, r"column 'label', data row 2 .*: the class label is empty"),
        ("CCO,a,0.1\nCCC,b,n/a?\n", False, r"column 'logp', data row 2 .*: the target 'n/a\?' is not a finite number"),
        # a number as a number, not numpy's repr np.float64(inf)
        ("CCO,a,0.1\nCCC,b,-inf\n", False, r"column 'logp', data row 2 .*: the target -inf is not a finite number"),
        ("CCO,a,0.1\nCCC,b,0.2\nCCN,b,\n", False, r"column 'logp', data row 3 .*: the target is empty"),
        ("CCO,a,0.1\n,b,0.2\n", False, r"column 'smi', data row 2 .*: the SMILES cell is empty"),
        ("CCO,a,0.1\nCCC,b,0.2\nnot a molecule,b,0.3\n", False,
         r"column 'smi', data row 3 .*: SMILES 'not a molecule' could not be parsed"),
    ],
    ids=["empty class", "text target", "infinite target", "empty target", "empty smiles", "bad smiles"],
)
def test_bad_csv_cells_name_the_file_column_and_row(tmp_path, cells, classification, message):
    path = tmp_path / "mols.csv"
    path.write_text("smi,label,logp\n" + cells)
    target = ["label"] if classification else ["logp"]
    with pytest.raises(ValueError, match=f"mols.csv, {message}"):
        load_smiles_csv(path, "smi", target, classification=classification)


@pytest.mark.parametrize(
    ("columns", "classification", "message"),
    [
        ({"smi": ["CCO", "CCC"], "label": ["a", None]}, True, r"column 'label', row 1 \(0-based, as dataset\[1\]\): "
                                                              "the class label is empty"),
        ({"smi": ["CCO", "CCC", "CCN"], "logp": [0.1, 0.2, None]}, False,
         r"column 'logp', row 2 \(0-based, as dataset\[2\]\): the target is empty"),
        ({"smi": ["CCO", None], "logp": [0.1, 0.2]}, False, r"column 'smi', row 1 \(0-based, as dataset\[1\]\): the SMILES "
                                                            "cell is empty"),
        ({"smi": ["CCO", "CCC", "not a molecule"], "logp": [0.1, 0.2, 0.3]}, False,
         r"column 'smi', row 2 \(0-based, as dataset\[2\]\): SMILES 'not a molecule' could not be parsed"),
    ],
    ids=["empty class", "empty target", "empty smiles", "bad smiles"],
)
def test_bad_table_cells_name_the_row_as_dataset_indexes_it(columns, classification, message):
    table = datasets.Dataset.from_dict(columns)
    target = ["label"] if classification else ["logp"]
    with pytest.raises(ValueError, match=f"^hub mols, {message}"):
        load_smiles_table(table, "smi", target, "hub mols", classification=classification)


def test_a_table_skips_unparsable_smiles_naming_its_rows_from_0(caplog):
    table = datasets.Dataset.from_dict({"smi": ["CCO", "bad", None, "CCC"], "logp": [0.1, None, 0.3, 0.4]})
    with caplog.at_level("WARNING", logger="hf_eff.grant.data"):
        graphs = load_smiles_table(table, "smi", ["logp"], "hub mols", skip_invalid_smiles=True)
    assert graphs["smiles"] == ["CCO", "CCC"]
    (warning,) = caplog.records
    assert warning.getMessage() == ("hub mols, column 'smi' (rows 0-based, as dataset[i]): skipped 2 of 4 SMILES that "
                                    "could not be parsed into a molecule: row 1: 'bad'; row 2: ''")
    with pytest.raises(ValueError, match=r"^hub mols, column 'logp', row 3 \(0-based, as dataset\[3\]\): the target "
                                         "is empty"):  # a kept row's bad target is named by its row in the table
        load_smiles_table(table.select([1, 2, 0, 3]).map(lambda row, i: {"logp": None if i == 3 else 1.0},
                                                         with_indices=True), "smi", ["logp"], "hub mols",
                          skip_invalid_smiles=True)


def test_a_table_keeps_the_class_names_and_ids_of_a_class_label_column():
    labels = datasets.ClassLabel(names=["toxic", "inert"])  # not in sorted order: the ids stay as the column has them
    table = datasets.Dataset.from_dict({"smi": ["CCO", "CCC", "CCN"], "label": [1, 0, 1]},
                                       features=datasets.Features(smi=datasets.Value("string"), label=labels))
    graphs = load_smiles_table(table, "smi", ["label"], "hub mols", classification=True)
    assert (class_names(graphs), graphs["y"]) == (["toxic", "inert"], [1, 0, 1])
    skipping = load_smiles_table(table, "smi", ["label"], "hub mols", classification=True, skip_invalid_smiles=True)
    assert (class_names(skipping), skipping["y"]) == (["toxic", "inert"], [1, 0, 1])
    unlabelled = table.cast_column("label", datasets.Value("int64")).map(lambda row, i: {"label": -1 if i == 2 else 0},
                                                                         with_indices=True).cast_column("label", labels)
    with pytest.raises(ValueError, match=r"^hub mols, column 'label', row 2 \(0-based, as dataset\[2\]\): the class id "
                                         r"-1 names none of the column's 2 classes \['toxic', 'inert'\]"):
        load_smiles_table(unlabelled, "smi", ["label"], "hub mols", classification=True)


def test_a_table_refuses_a_target_column_of_lists_naming_it():
    table = datasets.Dataset.from_dict({"smi": ["CCO", "CCC"], "logp": [0.1, 0.2], "props": [[0.1, 1.0], [0.2, 2.0]]})
    with pytest.raises(ValueError, match=r"^hub mols: target column\(s\) \['props'\] hold a list per row; each "
                                         "target column holds one value per molecule"):
        load_smiles_table(table, "smi", ["logp", "props"], "hub mols")
    with pytest.raises(ValueError, match="exclude each other"):
        load_smiles_table(table, "smi", ["logp"], "hub mols", classification=True, multilabel=True)


@pytest.mark.parametrize("nested", [False, True])
def test_renumbered_classes_keep_names_that_differ_only_in_case_apart(nested):
    graphs = encode_class_labels(datasets.Dataset.from_dict({"y": [["a"], ["A"], ["b"]] if nested else ["a", "A", "b"]}))
    assert class_names(graphs) == ["A", "a", "b"]
    renumbered = renumber_classes(graphs, ["b", "a", "A", "c"])
    assert class_names(renumbered) == ["b", "a", "A", "c"]
    assert renumbered["y"] == ([[1], [2], [0]] if nested else [1, 2, 0])  # each graph keeps its class


def test_validation_is_split_off_training_graphs_as_split_dataset_holds_it_out():
    graphs = _rare_class_graphs()
    halves = split_off_validation(graphs, 0.1, seed=1)
    assert halves["validation"]["graph"] == graphs.train_test_split(test_size=10, seed=1)["test"]["graph"]
    by_class = split_off_validation(graphs, 0.1, seed=1, stratify_by_class=True)
    assert {name: np.bincount(part["y"]).tolist() for name, part in by_class.items()} == {
        "train": [36, 45, 9], "validation": [4, 5, 1]}
    with pytest.raises(ValueError, match=r"cannot split by class \(graphs per class id: \{0: 20, 1: 1\}\)"):
        split_off_validation(datasets.Dataset.from_dict({"y": [0] * 20 + [1]}), 0.1, seed=0, stratify_by_class=True)


def test_smiles_csv_with_binary_labels_and_empty_cells(tmp_path):
    path = tmp_path / "assays.csv"
    path.write_text("smi,a,b,c\nCCO,1,,0\nCCC,,,\nCCN,0,1,NA\n")
    labels = load_smiles_csv(path, "smi", ["a", "b", "c"], multilabel=True)
    nan = float("nan")
    np.testing.assert_array_equal(np.array(labels["y"], dtype=float), [[1, nan, 0], [nan, nan, nan], [0, 1, nan]])
    check_graph_dataset(labels, "graph_multilabel")
    with pytest.raises(ValueError, match=r"column 'b', data row 1 .*: the target is empty"):
        load_smiles_csv(path, "smi", ["b"])  # regression still refuses an empty cell
    path.write_text("smi,a,b\nCCO,1,\nCCC,0,0.5\n")
    with pytest.raises(ValueError, match=r"assays.csv, column 'b', data row 2 .*: the label 0.5 is not 0 or 1"):
        load_smiles_csv(path, "smi", ["a", "b"], multilabel=True)
    path.write_text("smi,a,b\nCCO,1,\nCCC,0,yes\n")  # text stays quoted
    with pytest.raises(ValueError, match=r"assays.csv, column 'b', data row 2 .*: the label 'yes' is not 0 or 1"):
        load_smiles_csv(path, "smi", ["a", "b"], multilabel=True)
    with pytest.raises(ValueError, match="exclude each other"):
        load_smiles_csv(path, "smi", ["a"], classification=True, multilabel=True)


def test_failed_build_leaves_no_staging_folder(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("smi,logp\nCCO,0.1\nnot a molecule,0.2\n")
    with pytest.raises(ValueError, match="could not be parsed"):
        load_smiles_csv(path, "smi", ["logp"])
    assert list(cache_dir().iterdir()) == []
    path.write_text("smi,logp\nCCO,0.1\nCCC,0.2\n")
    assert len(load_smiles_csv(path, "smi", ["logp"])) == 2
    assert [p.name.startswith("csv-") for p in cache_dir().iterdir()] == [True]  # the renamed copy only


def _graph(**overrides):
    row = {"x": [[0.0], [1.0]], "edge_index": [[0, 1], [1, 0]], "y": [1.0], "num_nodes": 2}
    row.update(overrides)
    return datasets.Dataset.from_list([row])


def test_missing_column_is_named():
    dataset = _graph().remove_columns("edge_index")
    with pytest.raises(ValueError, match="edge_index"):
        check_graph_dataset(dataset, "graph_regression")


def test_edge_index_outside_the_graph_is_reported():
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): edge_index refers to node 2"):
        check_graph_dataset(_graph(edge_index=[[0, 2], [1, 0]]), "graph_regression")
    # the node it refers to, not the largest valid one
    with pytest.raises(ValueError, match=r"^dataset row 0 \(0-based, as dataset\[0\]\): edge_index refers to node -1 \(edge 1's target\) but the graph "
                                         r"has num_nodes=2 \(nodes 0..1\)$"):
        check_graph_dataset(_graph(edge_index=[[0, 1], [1, -1]]), "graph_regression")
    with pytest.raises(ValueError, match=r"expected \[2, num_edges\]"):
        check_graph_dataset(_graph(edge_index=[[0, 1, 1]]), "graph_regression")


def test_edge_index_of_fractional_node_ids_is_refused():
    # the collator would cut 0.5 to node 0
    with pytest.raises(ValueError, match=r"^dataset row 0 \(0-based, as dataset\[0\]\): edge_index holds 0.5 \(edge 0's "
                                         r"source\), not a node id; node ids are whole numbers"):
        check_graph_dataset(_graph(edge_index=[[0.5, 1.0], [1.0, 0.0]]), "graph_regression")
    check_graph_dataset(_graph(edge_index=[[0.0, 1.0], [1.0, 0.0]]), "graph_regression")  # whole ids stored as floats


def test_nan_target_is_reported():
    with pytest.raises(ValueError, match="y contains NaN"):
        check_graph_dataset(_graph(y=[float("nan")]), "graph_regression", "train_dataset")


@pytest.mark.parametrize("task", ["graph_regression", "graph_classification", "node_regression"])
def test_an_infinite_target_is_reported_as_a_plain_number(make_graphs, monkeypatch, task):
    good = make_graphs(40, task)
    if task == "graph_classification":  # class ids stored as floats, which hold inf
        good = good.cast_column("y", datasets.Value("float64"))
    bad = dict(good[0], y=float("-inf") if task == "graph_classification" else [float("-inf")] * len(good[0]["y"]))
    dataset = datasets.concatenate_datasets([good, datasets.Dataset.from_list([bad], features=good.features)])
    monkeypatch.setattr(data, "CHECK_CHUNK_ROWS", 16)
    with pytest.raises(ValueError, match=r"^train row 40 \(0-based, as dataset\[40\]\): y contains -inf; drop that graph or fix its target$"):
        check_graph_dataset(dataset, task, "train")


def test_multilabel_takes_nan_as_unlabelled_and_refuses_other_labels(make_graphs, monkeypatch):
    nan = float("nan")
    dataset = make_graphs(40, "graph_multilabel")
    assert np.isnan(np.array(dataset["y"], dtype=float)).any()
    assert check_graph_dataset(dataset, "graph_multilabel") is None
    assert _row_loop_error(dataset, "graph_multilabel", "train", monkeypatch) is None  # the row loop accepts it too
    check_graph_dataset(_graph(y=[nan, nan]), "graph_multilabel")  # a graph without any label is allowed
    for kind in ("regression", "classification"):
        with pytest.raises(ValueError, match=r"y contains NaN.*task 'graph_multilabel' takes NaN as unlabelled"):
            check_graph_dataset(_graph(y=[nan] if kind == "regression" else nan), f"graph_{kind}")
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): graph_multilabel needs 0/1 labels \(NaN where unlabelled\) in y, got \[2.0\]"):
        check_graph_dataset(_graph(y=[1.0, nan, 2.0]), "graph_multilabel")
    with pytest.raises(ValueError, match="x contains NaN"):
        check_graph_dataset(_graph(x=[[nan], [0.0]], y=[1.0, nan]), "graph_multilabel")
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): y holds a missing \(null\) label; .* store float\('nan'\)"):
        check_graph_dataset(_graph(y=[1.0, None]), "graph_multilabel")  # the collator could not read it
    with pytest.raises(ValueError, match=r"graph_multilabel needs the same number of targets .* got 3 y values \(num_nodes=2\)$"):
        check_graph_dataset(datasets.Dataset.from_list([dict(_graph(y=[1.0, 0.0])[0]), dict(_graph(y=[1.0, 0.0, 1.0])[0])]),
                            "graph_multilabel")


def test_node_labels_must_cover_every_node():
    with pytest.raises(ValueError, match="one label per node"):
        check_graph_dataset(_graph(y=[1.0]), "node_regression")
    with pytest.raises(ValueError, match="x has shape"):
        check_graph_dataset(_graph(x=[[0.0]]), "graph_regression")
    check_graph_dataset(_graph(y=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), "node_regression")  # 3 targets per node
    with pytest.raises(ValueError, match="got 3 y values for num_nodes=2"):
        check_graph_dataset(_graph(y=[[1.0, 2.0]] * 3), "node_regression")


def test_node_labels_given_to_a_graph_task_are_named(make_graphs):
    node_data = make_graphs(12, "node_regression", min_nodes=2)
    for kind in ("regression", "classification"):
        with pytest.raises(ValueError, match=rf"row \d+ \(0-based, as dataset\[\d+\]\): graph_{kind} needs .* \(node labels\): use task 'node_{kind}'"):
            check_graph_dataset(node_data.shuffle(seed=0), f"graph_{kind}")


def test_graph_targets_must_have_one_size():
    rows = [{"x": [[0.0]] * 2, "edge_index": [[], []], "y": y, "num_nodes": 2} for y in ([1.0], [1.0], [1.0, 2.0])]
    with pytest.raises(ValueError, match=r"row 2 \(0-based, as dataset\[2\]\): graph_regression needs the same number of targets .* got 2"):
        check_graph_dataset(datasets.Dataset.from_list(rows), "graph_regression")
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): graph_classification needs one class id per graph, got 2"):
        check_graph_dataset(_graph(y=[0, 1]), "graph_classification")
    check_graph_dataset(_graph(y=[1.0, 2.0, 3.0]), "graph_regression")  # a fixed number of targets is fine
    check_graph_dataset(_graph(y=1), "graph_classification")
    with pytest.raises(ValueError, match="one label per node.*graph-level targets do: use task 'graph_regression'"):
        check_graph_dataset(datasets.Dataset.from_list(rows[:2]), "node_regression")


def test_split_sizes():
    parts = split_dataset(datasets.Dataset.from_dict({"a": list(range(100))}), 0.1, 0.2, seed=0)
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [70, 10, 20]


def test_too_few_graphs_to_split_are_refused_naming_the_fractions():
    parts = split_dataset(datasets.Dataset.from_dict({"a": list(range(3))}), 0.1, 0.1, seed=0)
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [1, 1, 1]
    with pytest.raises(ValueError, match=r"2 graphs are too few to split: validation_fraction=0.1 and test_fraction=0.1 "
                                         r"hold out 1 and 1 of them \(rounded up\), leaving none to train"):
        split_dataset(datasets.Dataset.from_dict({"a": [0, 1]}), 0.1, 0.1, seed=0)


def test_one_graph_too_few_to_split_is_named_in_the_singular():
    one = datasets.Dataset.from_dict({"a": [0]})
    with pytest.raises(ValueError, match=r"^1 graph is too few to split: validation_fraction=0.1 and test_fraction"):
        split_dataset(one, 0.1, 0.1, seed=0)
    with pytest.raises(ValueError, match=r"^1 graph is too few to split: validation_fraction=0.5 holds out 1 of them"):
        split_off_validation(one, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"^--dataset me/graphs \(train split\): 1 graph is too few to split: "
                                         r"--validation_fraction 0.5 holds out 1 of them .*\(the test split is the "
                                         r"data's own\)$"):
        split_off_validation(one, 0.5, seed=0, name="--dataset me/graphs")


def test_node_targets_must_have_one_count_per_node():
    rows = [{"x": [[0.0]] * 2, "edge_index": [[], []], "y": y, "num_nodes": 2}
            for y in ([[1.0, 2.0]] * 2, [[1.0, 2.0]] * 2, [[1.0, 2.0, 3.0]] * 2)]
    check_graph_dataset(datasets.Dataset.from_list(rows[:2]), "node_regression")
    with pytest.raises(ValueError, match=r"row 2 \(0-based, as dataset\[2\]\): node_regression needs the same number of targets per node .* got 3"):
        check_graph_dataset(datasets.Dataset.from_list(rows), "node_regression")
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): node_classification needs one class id per node"):
        check_graph_dataset(_graph(y=[[0, 1], [1, 0]]), "node_classification")


def test_negative_class_ids_are_refused():
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): graph_classification needs class ids 0, 1, ... in y, got \[-1\]"):
        check_graph_dataset(_graph(y=-1), "graph_classification")
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): node_classification needs class ids .* got \[-100\].*ignore_index"):
        check_graph_dataset(_graph(y=[0, -100]), "node_classification")


def test_class_names_are_refused_by_the_check_and_encoded_in_sorted_order():
    rows = [{"x": [[0.0]], "edge_index": [[], []], "y": y, "num_nodes": 1} for y in ("b", "a", "c", "a")]
    named = datasets.Dataset.from_list(rows)
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): column 'y' holds 'b', not numbers; .*encode_class_labels"):
        check_graph_dataset(named, "graph_classification")
    encoded = encode_class_labels(named)
    assert encoded["y"][:] == [1, 0, 2, 0] and class_names(encoded) == ["a", "b", "c"]
    check_graph_dataset(encoded, "graph_classification")
    splits = encode_class_labels(datasets.DatasetDict(train=named.select([0, 1]), test=named.select([2])))
    assert splits["test"]["y"][:] == [2] and class_names(splits["test"]) == ["a", "b", "c"]  # one mapping
    nodes = datasets.Dataset.from_list([dict(rows[0], y=["b"]), dict(rows[0], y=["a"])])
    assert encode_class_labels(nodes)["y"][:] == [[1], [0]]
    with pytest.raises(ValueError, match="graph_regression needs numeric targets"):
        check_graph_dataset(named, "graph_regression")


def _with_edge_attr(dataset):
    return dataset.add_column("edge_attr", [[[1.0] * 3] * len(e[0]) for e in dataset["edge_index"]])


def _corrupt(task, kind):
    """A change to one row dict that the check refuses, for `task`."""
    def change(row):
        n = row["num_nodes"]
        if kind == "edge":
            row["edge_index"] = [[0, n], [n, 0]]
        elif kind == "x rows":
            row["x"] = row["x"][:-1]
        elif kind == "x nan":
            row["x"][0][0] = float("nan")
        elif kind == "y nan":
            row["y"] = [float("nan")] * len(row["y"]) if task.startswith("node") or task == "graph_regression" else float("nan")
        elif kind == "y size":
            row["y"] = row["y"] + row["y"][:1] if isinstance(row["y"], list) else row["y"]
        elif kind == "class id":
            row["y"] = [v + 0.5 for v in row["y"]] if isinstance(row["y"], list) else row["y"] + 0.5
        elif kind == "negative class":  # -100: cross-entropy's ignore_index, which would skip it silently
            row["y"] = [-100] + row["y"][1:] if isinstance(row["y"], list) else -100
        return row
    return change


def _row_loop_error(dataset, task, name, monkeypatch):
    """The error the row-by-row check raises (the one every message was written for), or None."""
    with monkeypatch.context() as patch:
        patch.setattr(data, "_chunk_passes", lambda *args: (False, None))
        try:
            check_graph_dataset(dataset, task, name)
        except ValueError as error:
            return str(error)
    return None


TASKS = ("graph_regression", "graph_classification", "graph_multilabel", "node_regression", "node_classification")


@pytest.mark.parametrize("edge_attr", [False, True], ids=["no edge_attr", "edge_attr"])
@pytest.mark.parametrize("task", TASKS)
def test_column_checks_pass_valid_sets_without_the_row_loop(make_graphs, monkeypatch, task, edge_attr):
    dataset = make_graphs(300, task)
    dataset = _with_edge_attr(dataset) if edge_attr else dataset
    monkeypatch.setattr(data, "CHECK_CHUNK_ROWS", 64)
    monkeypatch.setattr(data, "_check_rows", lambda *args: pytest.fail("a valid set fell back to the row loop"))
    assert check_graph_dataset(dataset, task) is None
    assert check_graph_dataset(dataset.shuffle(seed=1).select(range(100)), task) is None


@pytest.mark.parametrize(
    ("task", "kind"),
    [(task, kind) for task in TASKS for kind in ("edge", "x rows", "x nan", "y nan", "y size", "class id", "negative class")
     if not (kind in ("class id", "negative class") and not task.endswith("classification") or kind == "y size" and task == "graph_classification"
             or kind == "y nan" and task == "graph_multilabel")],  # NaN is graph_multilabel's "unlabelled"
)
def test_a_bad_last_row_of_a_large_set_is_named_as_by_the_row_loop(make_graphs, monkeypatch, task, kind):
    good = make_graphs(1999, task, min_nodes=2, max_nodes=5)
    if kind in ("y nan", "class id") and task.endswith("classification"):  # class ids stored as floats
        label = datasets.Value("float64")
        good = good.cast_column("y", datasets.List(label) if task.startswith("node") else label)
    row = _corrupt(task, kind)(good[-1])
    dataset = datasets.concatenate_datasets([good, datasets.Dataset.from_list([row], features=good.features)])
    if kind == "edge":  # also with an edge_attr column, which the check ignores
        dataset = _with_edge_attr(dataset)
    monkeypatch.setattr(data, "CHECK_CHUNK_ROWS", 384)  # 5 full chunks, the bad row in a 6th
    with pytest.raises(ValueError, match=r"^train row 1999 \(0-based, as dataset\[1999\]\): ") as error:
        check_graph_dataset(dataset, task, "train")
    assert str(error.value) == _row_loop_error(dataset, task, "train", monkeypatch)


def test_selected_rows_are_checked_by_their_position_in_the_subset(make_graphs, monkeypatch):
    good = make_graphs(1999, "graph_regression")
    bad = datasets.Dataset.from_list([dict(good[0], y=[float("nan")])], features=good.features)
    dataset = datasets.concatenate_datasets([good, bad])  # row 1999 is bad
    monkeypatch.setattr(data, "CHECK_CHUNK_ROWS", 300)
    order = np.random.default_rng(0).permutation(1999).tolist()  # the good rows, shuffled
    outside = dataset.select(order)
    assert check_graph_dataset(outside, "graph_regression") is None
    inside = dataset.select(order[:1000] + [1999] + order[1000:1500])
    with pytest.raises(ValueError, match=r"^dataset row 1000 \(0-based, as dataset\[1000\]\): y contains NaN"):
        check_graph_dataset(inside, "graph_regression")
    split = dataset.train_test_split(test_size=0.5, seed=0)
    position = [i for i, name in enumerate(("train", "test")) if 1999 in split[name]._indices.column(0).to_pylist()][0]
    part = split[("train", "test")[position]]
    row = part._indices.column(0).to_pylist().index(1999)
    with pytest.raises(ValueError, match=rf"^part row {row} \(0-based, as dataset\[{row}\]\): y contains NaN"):
        check_graph_dataset(part, "graph_regression", "part")
    assert check_graph_dataset(split[("train", "test")[1 - position]], "graph_regression", "part") is None


def test_layouts_the_column_checks_skip_go_through_the_row_loop(monkeypatch):
    monkeypatch.setattr(data, "CHECK_CHUNK_ROWS", 2)
    # x widths that differ between graphs, y stored as one float
    rows = [{"x": [[0.0, 1.0]] * 2, "edge_index": [[0], [1]], "y": 1.0, "num_nodes": 2},
            {"x": [[0.0]] * 3, "edge_index": [[], []], "y": 2.0, "num_nodes": 3},
            {"x": [[0.0, 1.0, 2.0]], "edge_index": [[], []], "y": 3.0, "num_nodes": 1}]
    with pytest.raises(ValueError, match=r"^dataset row 1 \(0-based, as dataset\[1\]\): x has 1 features per node, the "
                                         r"first graph's 2; give every graph the same node features$"):
        check_graph_dataset(datasets.Dataset.from_list(rows), "graph_regression")
    # a chunk of one width, another than the first chunk's
    wide = [rows[0], rows[0], rows[2], rows[2]]
    with pytest.raises(ValueError, match=r"^dataset row 2 \(0-based, as dataset\[2\]\): x has 3 features per node"):
        check_graph_dataset(datasets.Dataset.from_list(wide), "graph_regression")
    assert check_graph_dataset(datasets.Dataset.from_list(wide[:2]), "graph_regression") is None
    named = datasets.Dataset.from_list([dict(rows[0], y="a"), dict(rows[1], y="b"), dict(rows[2], y="c")])
    with pytest.raises(ValueError, match=r"^dataset row 0 \(0-based, as dataset\[0\]\): column 'y' holds 'c', not numbers"):
        check_graph_dataset(named.select([2, 0]), "graph_classification")


@pytest.mark.parametrize("task", ["graph_regression", "node_regression"])
@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "to predict"])
def test_a_graph_of_no_nodes_is_refused_naming_its_row(make_graphs, monkeypatch, task, labelled):
    """The model returns no output for it, which training would only report as a batch's outputs not matching its
    graphs (the model's fault, seemingly)."""
    good = make_graphs(40, task)
    empty = {"x": [], "edge_index": [[], []], "y": [], "num_nodes": 0}
    dataset = datasets.concatenate_datasets([good, datasets.Dataset.from_list([empty], features=good.features)])
    if not labelled:
        dataset = dataset.remove_columns("y")
    message = r"^train row 40 \(0-based, as dataset\[40\]\): num_nodes=0; a graph needs at least one node, drop that graph$"
    monkeypatch.setattr(data, "CHECK_CHUNK_ROWS", 16)  # the empty graph in the last of 3 chunks
    with pytest.raises(ValueError, match=message):
        check_graph_dataset(dataset, task, "train", labelled=labelled)
    monkeypatch.setattr(data, "_chunk_passes", lambda *args: (False, None))  # the row loop alone
    with pytest.raises(ValueError, match=message):
        check_graph_dataset(dataset, task, "train", labelled=labelled)


def test_pyg_graphs_of_no_nodes_are_refused_naming_their_position():
    from torch_geometric.data import Data

    graphs = [Data(x=torch.rand(2, 3), edge_index=torch.tensor([[0], [1]]), y=torch.tensor([1.0])),
              Data(x=torch.zeros(0, 3), edge_index=torch.zeros(2, 0, dtype=torch.long), y=torch.tensor([2.0]))]
    with pytest.raises(ValueError, match=r"^data_list row 1 \(0-based, as data_list\[1\]\): num_nodes=0; a graph needs at least one node"):
        graphs_from_pyg(graphs, "graph_regression")


def test_sizes_below_one_are_refused_naming_the_argument():
    # the library's own parameters: examples/grant_train.py names its flags itself
    with pytest.raises(ValueError, match=r"^num_graphs must be >= 1 \(graphs generated\), got 0$"):
        generate_graphon_dataset("regression", 0, min_nodes=4, max_nodes=6)
    with pytest.raises(ValueError, match=r"^max_graphs must be >= 1 \(QM9 rows read\), got 0$"):
        load_qm9(max_graphs=0)


def _fake(task, edge_dim, num_graphs=12, seed=0):
    from torch_geometric.datasets import FakeDataset

    torch.manual_seed(seed)  # FakeDataset draws from the global RNG
    return FakeDataset(num_graphs=num_graphs, avg_num_nodes=6, num_channels=5, edge_dim=edge_dim, num_classes=3, task=task)


@pytest.mark.parametrize(("level", "edge_dim"), [("graph", 2), ("node", 0)])
def test_pyg_graphs_round_trip(level, edge_dim):
    fake = _fake(level, edge_dim)
    converted = graphs_from_pyg(fake, f"{level}_classification")
    assert len(converted) == len(fake) and ("edge_attr" in converted.column_names) == bool(edge_dim)
    label = datasets.Value("int64")
    assert converted.features["y"] == (label if level == "graph" else datasets.List(label))
    assert converted.features["x"] == datasets.List(datasets.List(datasets.Value("float32")))
    for row, graph in zip(converted.with_format("torch"), fake):
        assert torch.equal(row["x"], graph.x) and torch.equal(row["edge_index"], graph.edge_index)
        assert torch.equal(row["y"].reshape(-1), graph.y) and row["num_nodes"] == graph.num_nodes
        if edge_dim:
            assert torch.equal(row["edge_attr"], graph.edge_attr)


def test_pyg_conversions_leave_no_copies_behind(tmp_path):
    """The default Arrow files live in the datasets library's session folder, not hf-eff's cache."""
    script = (
        "import torch; from torch_geometric.data import Data; from hf_eff.grant import graphs_from_pyg\n"
        "graphs = [Data(x=torch.rand(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), y=torch.tensor([1.0]))]\n"
        "files = [f['filename'] for _ in range(2) for f in graphs_from_pyg(graphs, 'graph_regression').cache_files]\n"
        "print(len(set(files)), all(__import__('os').path.exists(f) for f in files)); print(*files, sep='\\n')\n"
    )
    env = {**os.environ, "HF_EFF_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    summary, *files = result.stdout.split("\n")[:3]
    assert summary == "2 True"  # two conversions, two live copies while the session runs
    assert not any(os.path.exists(f) for f in files)  # both gone with the session
    assert not (tmp_path / "cache").exists()


def test_pyg_regression_lists_keep_their_targets():
    from torch_geometric.data import Data

    edges = torch.tensor([[0, 1], [1, 0]])
    graphs = [Data(x=torch.rand(2, 3), edge_index=edges, y=torch.tensor([[0.5, -1.0]])),
              Data(x=torch.rand(3, 3), edge_index=None, edge_attr=None, y=torch.tensor([2.0, 3.0]))]
    converted = graphs_from_pyg(graphs, "graph_regression")
    assert converted["y"] == [[0.5, -1.0], [2.0, 3.0]] and converted[1]["edge_index"] == [[], []]
    assert converted.features["y"] == datasets.List(datasets.Value("float32"))
    nodes = [Data(x=torch.rand(n, 3), edge_index=edges, y=torch.arange(2.0 * n).reshape(n, 2)) for n in (2, 4)]
    per_node = graphs_from_pyg(iter(nodes), "node_regression")  # a one-shot iterator is read once
    assert np.asarray(per_node[1]["y"]).tolist() == nodes[1].y.tolist()
    scalar = graphs_from_pyg([Data(x=torch.rand(2, 1), edge_index=edges, y=torch.tensor([1.0, 2.0]))], "node_regression")
    assert scalar.features["y"] == datasets.List(datasets.Value("float32")) and scalar["y"] == [[1.0, 2.0]]
    check_graph_dataset(per_node, "node_regression")


def test_pyg_molecules_with_missing_labels_convert_for_multilabel():
    from torch_geometric.utils import from_smiles

    nan = float("nan")
    labels = [[1.0, nan, 0.0], [nan, nan, nan], [0.0, 1.0, nan]]
    molecules = []
    for smiles, y in zip(["CCO", "C", "c1ccccc1"], labels):
        graph = from_smiles(smiles)
        graph.y = torch.tensor([y])  # MoleculeNet PCBA's layout: [1, T] float, NaN where not measured
        molecules.append(graph)
    converted = graphs_from_pyg(molecules, "graph_multilabel", node_features=atom_features)
    assert converted.features["y"] == datasets.List(datasets.Value("float32"))
    np.testing.assert_array_equal(np.array(converted["y"], dtype=float), np.array(labels))
    with pytest.raises(ValueError, match=r"data_list row 0 \(0-based, as data_list\[0\]\): y contains NaN"):
        graphs_from_pyg(molecules, "graph_regression", node_features=atom_features)
    molecules[2].y = torch.tensor([[0.0, 0.5, nan]])
    with pytest.raises(ValueError, match=r"data_list row 2 \(0-based, as data_list\[2\]\): graph_multilabel needs 0/1 labels"):
        graphs_from_pyg(molecules, "graph_multilabel", node_features=atom_features)


def test_pyg_molecules_get_the_smiles_builders_features():
    from torch_geometric.utils import from_smiles

    molecules = []
    for i, smiles in enumerate(["CCO", "C", "c1ccccc1"]):
        graph = from_smiles(smiles)  # what PyG's MoleculeNet stores: 9 categorical int64 columns
        graph.y = torch.tensor([[float(i)]])
        molecules.append(graph)
    converted = graphs_from_pyg(molecules, "graph_regression", node_features=atom_features)
    reference = graphs_from_smiles(["CCO", "C", "c1ccccc1"], [[0.0], [1.0], [2.0]])
    for column in ("x", "edge_index", "edge_attr", "num_nodes"):
        assert converted[column] == reference[column]
    assert converted.features["edge_attr"] == reference.features["edge_attr"]  # int64 bond categories
    raw = graphs_from_pyg(molecules, "graph_regression")  # without node_features: the ids as floats
    assert raw[0]["x"] == molecules[0].x.float().tolist()


def test_pyg_molecules_keep_their_smiles_as_the_smiles_builders_rows_do():
    from torch_geometric.utils import from_smiles

    molecules = [from_smiles(smiles) for smiles in ["CCO", "C", "c1ccccc1"]]  # from_smiles sets graph.smiles
    converted = graphs_from_pyg(molecules, "graph_regression", node_features=atom_features)
    reference = graphs_from_smiles(["CCO", "C", "c1ccccc1"])
    assert converted["smiles"] == reference["smiles"] == ["CCO", "C", "c1ccccc1"]
    assert converted.features["smiles"] == reference.features["smiles"]
    del molecules[1].smiles
    with pytest.raises(ValueError, match=r"data_list row 1 \(0-based, as data_list\[1\]\): the graph has no smiles but the first graph has"):
        graphs_from_pyg(molecules, "graph_regression", node_features=atom_features)
    molecules[1].smiles = ["C"]
    with pytest.raises(TypeError, match=r"data_list row 1 \(0-based, as data_list\[1\]\): smiles is a list, expected the molecule's SMILES string"):
        graphs_from_pyg(molecules, "graph_regression", node_features=atom_features)


def test_pyg_graphs_that_cannot_be_converted_are_named():
    from torch_geometric.data import Data
    from torch_geometric.datasets import FakeDataset

    edges = torch.tensor([[0, 1], [1, 0]])
    good = Data(x=torch.rand(2, 3), edge_index=edges, y=torch.tensor([1]))
    featureless = FakeDataset(num_graphs=2, avg_num_nodes=5, num_channels=0)
    with pytest.raises(ValueError, match=r"data_list row 0 \(0-based, as data_list\[0\]\): the graph has no node features .*transforms.Constant\(\)"):
        graphs_from_pyg(featureless, "graph_classification")
    with pytest.raises(ValueError, match=r"data_list row 1 \(0-based, as data_list\[1\]\): the graph has no labels"):
        graphs_from_pyg([good, Data(x=torch.rand(2, 3), edge_index=edges)], "graph_classification")
    with pytest.raises(ValueError, match=r"row 1 \(0-based, as data_list\[1\]\): graph_classification needs one class id per graph, got y of shape \(2,\)"):
        graphs_from_pyg([good, good.clone().update({"y": torch.tensor([0, 1])})], "graph_classification")
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as data_list\[0\]\): node_classification needs integer class ids in y, got \[0.5, 1.0\]"):
        graphs_from_pyg([good.clone().update({"y": torch.tensor([0.5, 1.0])})], "node_classification")
    with pytest.raises(ValueError, match=r"row 1 \(0-based, as data_list\[1\]\): the graph has edge_attr but the first graph has none"):
        graphs_from_pyg([good, good.clone().update({"edge_attr": torch.ones(2, 1)})], "graph_classification")
    with pytest.raises(ValueError, match=r"row 1 \(0-based, as data_list\[1\]\): edge_attr has 1 rows for 2 edges"):
        graphs_from_pyg([good.clone().update({"edge_attr": torch.ones(2, 1)}),
                         good.clone().update({"edge_attr": torch.ones(1, 1)})], "graph_classification")
    with pytest.raises(ValueError, match=r"row 1 \(0-based, as data_list\[1\]\): float edge_attr, but the first graph's is integer"):
        graphs_from_pyg([good.clone().update({"edge_attr": torch.tensor([[1], [2]])}),
                         good.clone().update({"edge_attr": torch.tensor([[0.5], [2.7]])})], "graph_classification")
    with pytest.raises(ValueError, match=r"row 1 \(0-based, as data_list\[1\]\): edge_attr has 3 features per edge, earlier graphs 1"):
        graphs_from_pyg([good.clone().update({"edge_attr": torch.ones(2, 1)}),
                         good.clone().update({"edge_attr": torch.ones(2, 3)})], "graph_classification")
    with pytest.raises(TypeError, match=r"row 0 \(0-based, as data_list\[0\]\): expected a torch_geometric.data.Data, got dict"):
        graphs_from_pyg([{"x": [[1.0]]}], "graph_regression")
    with pytest.raises(ValueError, match="no graphs"):
        graphs_from_pyg([], "graph_regression")
    # checked as a graph dataset once written: NaN targets and edges outside the graph name the graph
    nan = good.clone().update({"y": torch.tensor([float("nan")])})
    with pytest.raises(ValueError, match=r"^data_list row 2 \(0-based, as data_list\[2\]\): y contains NaN"):
        graphs_from_pyg([good, good, nan], "graph_regression")
    with pytest.raises(ValueError, match=r"^data_list row 1 \(0-based, as data_list\[1\]\): edge_index refers to node 2"):
        graphs_from_pyg([good, good.clone().update({"edge_index": torch.tensor([[0], [2]])})], "graph_classification")


def test_node_split_masks_are_refused_not_ignored(make_graphs):
    from torch_geometric.data import Data

    # Planetoid's layout: one graph whose nodes are split by masks, which training would ignore
    planetoid = Data(x=torch.rand(4, 3), edge_index=torch.tensor([[0, 1], [1, 0]]), y=torch.tensor([0, 1, 0, 1]),
                     train_mask=torch.tensor([True, True, False, False]), test_mask=torch.tensor([False, False, True, True]))
    with pytest.raises(ValueError, match=r"data_list row 0 \(0-based, as data_list\[0\]\): the graph has \['train_mask', 'test_mask'\]; .*split the graphs.*RandomNodeLoader"):
        graphs_from_pyg([planetoid], "node_classification")
    graphs = make_graphs(4, "node_classification")
    graphs = graphs.add_column("train_mask", [[True] * n for n in graphs["num_nodes"]])
    with pytest.raises(ValueError, match=r"^train: column\(s\) \['train_mask'\]; hf-eff trains and evaluates on every node"):
        check_graph_dataset(graphs, "node_classification", "train")


def test_converted_pyg_graphs_train(tmp_path):
    from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments

    train, validation = (graphs_from_pyg(_fake("graph", 2, 24, seed), "graph_classification") for seed in (1, 2))
    args = GraNTTrainingArguments(
        output_dir=str(tmp_path / "out"), task="graph_classification", num_train_epochs=2, per_device_train_batch_size=8,
        learning_rate=1e-2, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, start_ratio=0.5,
        seed=0,
    )
    model = GrantGCN(5, 3, hidden_channels=8, level="graph")
    trainer = GraNTTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation)
    output = trainer.train()
    assert output.global_step > 0 and math.isfinite(output.training_loss)
    assert math.isfinite(trainer.evaluate()["eval_loss"])


def test_smiles_without_targets_are_graphs_to_predict_on():
    molecules = graphs_from_smiles(["CCO", "C"])  # "C": one atom, no bond
    assert "y" not in molecules.column_names and molecules["num_nodes"] == [3, 1]
    assert molecules["x"] == graphs_from_smiles(["CCO", "C"], [[1.0], [2.0]])["x"]


def _rare_class_graphs():
    """100 graphs: class 0 has 40, class 1 50, class 2 (rare) 10; "graph" numbers them."""
    return datasets.Dataset.from_dict({"graph": list(range(100)), "y": [2 if i % 10 == 0 else i % 2 for i in range(100)]})


def test_default_split_is_the_random_split_the_benchmarks_use():
    graphs = _rare_class_graphs()
    parts = split_dataset(graphs, 0.1, 0.1, seed=1)
    first = graphs.train_test_split(test_size=0.1, seed=1)
    second = first["train"].train_test_split(test_size=10, seed=1)
    assert parts["test"]["graph"] == first["test"]["graph"] and parts["validation"]["graph"] == second["test"]["graph"]
    assert 2 not in parts["validation"]["y"]  # what stratifying is for: the rare class is left out


@pytest.mark.parametrize("nested", [False, True])
def test_stratified_split_keeps_every_class_in_each_split_in_proportion(nested):
    graphs = _rare_class_graphs()
    if nested:  # one class id in a one-element list per graph, as a saved folder may hold it
        graphs = graphs.map(lambda row: {"y": [row["y"]]})
    parts = split_dataset(graphs, 0.1, 0.1, seed=1, stratify_by_class=True)
    counts = {name: np.bincount(np.ravel(part["y"])).tolist() for name, part in parts.items()}
    assert counts == {"train": [32, 40, 8], "validation": [4, 5, 1], "test": [4, 5, 1]}
    assert sorted(g for part in parts.values() for g in part["graph"]) == list(range(100))  # every graph once
    assert parts["train"].column_names == ["graph", "y"]


def test_stratified_split_refuses_what_it_cannot_split_by_class():
    with pytest.raises(ValueError, match=r"cannot split by class \(graphs per class id: \{0: 20, 1: 1\}\).*--stratify False"):
        split_dataset(datasets.Dataset.from_dict({"y": [0] * 20 + [1]}), 0.1, 0.1, seed=0, stratify_by_class=True)
    with pytest.raises(ValueError, match=r"\{0: 7, 1: 7, 2: 6\}\): The test_size = 2 should be greater or equal to the "
                                         r"number of classes = 3\. Each class needs a few graphs in every split: hold "
                                         r"out larger fractions, or split at random"):
        split_dataset(datasets.Dataset.from_dict({"y": [i % 3 for i in range(20)]}), 0.1, 0.1, seed=0, stratify_by_class=True)
    with pytest.raises(ValueError, match="needs one class id per graph"):
        split_dataset(datasets.Dataset.from_dict({"y": [[0, 1]] * 20}), 0.1, 0.1, seed=0, stratify_by_class=True)
    with pytest.raises(ValueError, match=r"needs class ids 0, 1, ... in y, got \[0.5\]"):
        split_dataset(datasets.Dataset.from_dict({"y": [0.0] * 19 + [0.5]}), 0.1, 0.1, seed=0, stratify_by_class=True)


@pytest.mark.parametrize("labelled", [True, False], ids=["training graphs", "graphs to predict"])
def test_nan_or_inf_node_or_edge_features_are_named_by_graph_node_or_edge_and_feature(make_graphs, monkeypatch, labelled):
    good = _with_edge_attr(make_graphs(1999, "graph_regression", min_nodes=2, max_nodes=5))
    good = good if labelled else good.remove_columns("y")
    monkeypatch.setattr(data, "CHECK_CHUNK_ROWS", 384)  # 5 full chunks, the bad row in a 6th
    assert check_graph_dataset(good, "graph_regression", "train", labelled=labelled) is None
    for column, value, named in [("x", float("nan"), "x contains NaN (node 1, feature 2)"),
                                 ("x", float("-inf"), "x contains -inf (node 1, feature 2)"),
                                 ("edge_attr", float("inf"), "edge_attr contains inf (edge 1, feature 2)"),
                                 ("edge_attr", float("nan"), "edge_attr contains NaN (edge 1, feature 2)")]:
        row = good[-1]
        row[column][1][2] = value
        dataset = datasets.concatenate_datasets([good, datasets.Dataset.from_list([row], features=good.features)])
        with pytest.raises(ValueError, match=rf"^train row 1999 \(0-based, as dataset\[1999\]\): {re.escape(named)}; drop that graph"):
            check_graph_dataset(dataset, "graph_regression", "train", labelled=labelled)
        with monkeypatch.context() as patch:  # the row loop names it alike
            patch.setattr(data, "_chunk_passes", lambda *args: (False, None))
            with pytest.raises(ValueError, match=rf"^train row 1999 \(0-based, as dataset\[1999\]\): {re.escape(named)}"):
                check_graph_dataset(dataset, "graph_regression", "train", labelled=labelled)


def test_graphs_to_predict_need_no_y_and_a_y_they_have_is_not_read():
    unlabelled = _graph().remove_columns("y")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['y'\]"):
        check_graph_dataset(unlabelled, "graph_regression")
    assert check_graph_dataset(unlabelled, "graph_regression", labelled=False) is None
    assert check_graph_dataset(_graph(y=[float("nan")]), "graph_regression", labelled=False) is None
    with pytest.raises(ValueError, match=r"^predict: missing column\(s\) \['num_nodes'\]; a graph dataset needs "
                                         r"\['x', 'edge_index', 'num_nodes'\]"):
        check_graph_dataset(unlabelled.remove_columns("num_nodes"), "graph_regression", "predict", labelled=False)
    with pytest.raises(ValueError, match=r"row 0 \(0-based, as dataset\[0\]\): edge_index refers to node 2"):
        check_graph_dataset(_graph(edge_index=[[0, 2], [1, 0]]).remove_columns("y"), "graph_regression", labelled=False)
    weights = _graph(edge_attr=[1.0, float("inf")]).remove_columns("y")  # one weight per edge
    with pytest.raises(ValueError, match=r"^dataset row 0 \(0-based, as dataset\[0\]\): edge_attr contains inf \(edge 1, feature 0\)"):
        check_graph_dataset(weights, "graph_regression", labelled=False)


def test_pyg_graphs_to_predict_with_nan_or_inf_features_are_named():
    from torch_geometric.data import Data

    edges = torch.tensor([[0, 1], [1, 0]])
    good = Data(x=torch.rand(2, 3), edge_index=edges, edge_attr=torch.ones(2, 2))
    bad_x = good.clone()
    bad_x.x[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^data_list row 1 \(0-based, as data_list\[1\]\): x contains NaN \(node 1, feature 2\)"):
        graphs_from_pyg([good, bad_x], "graph_regression")
    bad_edges = good.clone()
    bad_edges.edge_attr[0, 1] = float("inf")
    with pytest.raises(ValueError, match=r"^data_list row 2 \(0-based, as data_list\[2\]\): edge_attr contains inf \(edge 0, feature 1\)"):
        graphs_from_pyg([good, good, bad_edges], "node_classification")
    assert len(graphs_from_pyg([good, good], "graph_regression")) == 2


def test_target_statistics_are_each_targets_mean_and_std_over_the_graphs_or_nodes(make_graphs):
    from hf_eff.grant import GrantGCN, target_statistics

    graphs = make_graphs(12, "graph_regression").map(lambda row: {"y": [row["y"][0] * 1e-3, row["y"][0] * 1e3 + 5.0]})
    picked = graphs.select([1, 4, 5, 9])  # the selected rows only
    y = np.array(picked["y"], dtype=np.float64)
    statistics = target_statistics(picked, "graph_regression")
    np.testing.assert_allclose(statistics["target_mean"], y.mean(axis=0))
    np.testing.assert_allclose(statistics["target_std"], y.std(axis=0))
    model = GrantGCN(6, 2, task="graph_regression", **statistics)  # as GrantGCN takes them
    assert model.target_std == statistics["target_std"]

    nodes = make_graphs(6, "node_regression", min_nodes=2)
    per_node = np.concatenate([np.array(y, dtype=np.float64) for y in nodes["y"]])
    statistics = target_statistics(nodes, "node_regression")
    np.testing.assert_allclose([statistics["target_mean"], statistics["target_std"]], [[per_node.mean()],
                                                                                       [per_node.std()]])
    two = nodes.map(lambda row: {"y": [[value, 2 * value] for value in row["y"]]})
    np.testing.assert_allclose(target_statistics(two, "node_regression")["target_std"],
                               [per_node.std(), 2 * per_node.std()])


def test_target_statistics_refuses_a_classification_task_and_ragged_targets(make_graphs):
    from hf_eff.grant import target_statistics

    with pytest.raises(ValueError, match="standardises regression targets; the task is graph_classification"):
        target_statistics(make_graphs(4, "graph_classification"), "graph_classification")
    ragged = make_graphs(2, "graph_regression").map(lambda row, i: {"y": [1.0] * (i + 1)}, with_indices=True)
    with pytest.raises(ValueError, match="3 y values for 2 graphs, not a fixed number of targets per graph"):
        target_statistics(ragged, "graph_regression")


def test_qm9_names_how_many_molecules_it_converts_and_where_they_are_cached_once(caplog, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_EFF_CACHE", str(tmp_path / "qm9_cache"))
    for _ in range(2):  # the second call reads the cached copy
        with caplog.at_level("INFO", logger="hf_eff.grant.data"):
            load_qm9(max_graphs=1200)
    messages = [record.getMessage() for record in caplog.records if "QM9" in record.getMessage()]
    assert messages == [f"converting 1,200 QM9 molecules into graphs once; later runs read them from the cache in "
                        f"{tmp_path / 'qm9_cache' / 'grant'}"]
