#!/usr/bin/env python
"""Train a graph property predictor with GraNT (graph neural teaching) or on the full data.

Built-in offline data (--task) or your own (--dataset: a CSV of SMILES, a folder written by
`datasets.Dataset.save_to_disk` with columns x, edge_index, y, num_nodes, or a Hub dataset id). Examples:

    python examples/grant_train.py trainers/grant/gen_reg.yaml
    accelerate launch examples/grant_train.py --task qm9 --teacher grant --output_dir out/qm9 --num_train_epochs 100
    python examples/grant_train.py --dataset mols.csv --smiles_column smiles --target_column logp,tpsa \\
        --output_dir out/mols --num_train_epochs 50
    python examples/grant_train.py trainers/grant/smiles_csv.yaml --dataset mols.csv --target_column logp
    python examples/grant_train.py --dataset me/graphs --dataset_revision v1 --task graph_classification \\
        --output_dir out/graphs

Data named on the command line replaces a recipe's: --dataset its builtin (and the options of that data, such as
num_generated_graphs), a built-in --task its dataset or built-in set; its other settings stay (--task names another
task kind).
A CSV's unparsable SMILES refuse it, naming the row; --skip_invalid_smiles leaves them out with one warning (a
--predict_file's too, its predictions' index keeping the file's rows).
--dataset is read as a CSV when its name ends in .csv, .csv.gz, .csv.bz2, .csv.xz or .csv.zip
(any case). A saved folder's class names in y are mapped to ids in sorted order, as a CSV's are.
A --dataset that is neither an existing path nor a CSV's name is a Hub dataset id, read with
`datasets.load_dataset(id, --dataset_config_name, revision=--dataset_revision)` (both recorded in all_results.json,
the data split and the card's model-index, with dataset_commit, the commit the revision was at when read; refused for
local data and built-in tasks). Its rows are graphs (columns
x, edge_index, num_nodes and y, as `Dataset.push_to_hub` uploads a saved graph dataset: used as a saved folder is) or
molecules (the --smiles_column and the --target_column(s), no graph columns: read as a CSV is; a ClassLabel label
column keeps its class names and ids); its one split is split here, several are used as saved: train, test and
validation (named validation, valid or dev; without one, --validation_fraction of train is held out for validation with
--seed and --stratify, which data_split then records). Given no --dataset_revision, the Hub data of the run that
trained --model_name_or_path is read at the commit that run records (a run recorded before commits were: at its
revision), the data that run saw however its branch has moved since; a model evaluated or trained further on another
commit of it is warned of, as for other split settings (a revision given by another name at the same commit is not).
Offline (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE), datasets reads the latest cached copy whatever the revision: a
--dataset_revision is then only read as a full commit hash whose cached copy is the one read, and a branch or tag is
refused. A --dataset path may start with ~.
Options that the chosen data would ignore (e.g. --qm9_target without --task qm9) are refused; a --test_fraction (and
--validation_fraction) given for data that comes with its own test (and validation) split is warned of. Graph
classification sets are split by class (--stratify False: at random, as the other tasks): each class in proportion
as far as rounding allows (a class of fewer than about 1/fraction graphs can still miss a split); a saved
DatasetDict is used as saved.

--model_name_or_path (a folder written by a GraNT run or a checkpoint-N in it, or a Hub repo id) starts from that
trained GrantGCN instead of a fresh one: it is fine-tuned on the data, or with --do_train False only evaluated
(all_results.json then holds the validation and test metrics and what was evaluated; no model or card is written).
The test split is the one its training held out only with that run's --seed, fractions, --stratify and data flags
(a training run records them as data_split in all_results.json and config.json; other values on the same data are
warned of, naming the flags):

    python examples/grant_train.py --task solubility-cls --model_name_or_path out/sol --do_train False --output_dir out/eval

--do_predict writes the model's predictions on the test split, or on --predict_file (local: a CSV of SMILES in
--predict_smiles_column, default --smiles_column, or a save_to_disk folder of graphs; targets in it are ignored),
to predict_results.csv: one row per graph (index, its row in the test split or --predict_file; smiles where the
graphs came from SMILES: a CSV's, --predict_file or the test split of --dataset, the test split of --task qm9,
freesolv, solubility or solubility-cls, or a saved folder's smiles column; then one column per target named as the
model's target_names, else prediction or prediction_<i>; a classifier's predicted class, by name where it has class_names,
and probability_<class> per class; graph_multilabel probability_<label> per label), or per node for a node-level
task (graph_index, its graph's smiles where the graphs have any, node_index, then the same columns); a target
named as one of these own columns is written as prediction_<name>.
all_results.json records predict_file (null: the test split) and predict_graphs. A predict_results.csv that an
earlier run left in --output_dir is removed once a run that trains or evaluates there succeeds (with --do_predict,
replaced by its own), so that it never passes for the new model's. With --do_train False and
--model_name_or_path, a --predict_file needs no --dataset or built-in data: the model predicts and nothing is
evaluated (--task names its task kind, which it is checked against; an earlier evaluation's eval_results.json in
--output_dir is removed):

    python examples/grant_train.py --task graph_regression --model_name_or_path out/mols --do_train False \
        --do_predict --predict_file new_mols.csv --output_dir out/predictions

Writes the model (config.json + model.safetensors, `GrantGCN.from_pretrained` loads it; a
classifier's config.json has its class_names, a regression or multilabel model's its target_names) and `all_results.json` (train_runtime, teacher and start_ratio, the
teacher's totals grant_selection_seconds and grant_reselections, time_to_target, eval_* and test_* metrics,
target_columns where the data names its targets, class_names for classification, data_split, dataset_from_hub for a --dataset
(true for a Hub id, false for local data: the card names it as one or the other); model_name_or_path,
model_revision and, as the card's base_model, base_model for a fine-tuned model), train_results.json and
eval_results.json (its train_* and eval_* results, as transformers' examples write them) and trainer_state.json (the Trainer's
log_history, the final validation and test entries included) into --output_dir.
With several regression targets, mae (the best value and time-to-target use it) is the mean over all
targets, whatever their units; mae_<target> is each target's own. The MSE loss and the GraNT teacher's score
(||f - f*||_2 / T per graph) also add the targets up in their own units, so that one of a much larger scale decides
both alone (a warning says so when the standard deviations differ 10-fold or more): --standardize_targets has the
model predict each target standardised by its training mean and standard deviation (saved in config.json;
predictions and metrics stay in the targets' units) and divides each target's errors by its standard deviation in
the loss and the score. With --task graph_multilabel the CSV's
target columns hold 0/1 labels, an empty cell meaning "not labelled"; ap is then the primary
metric (best value and time-to-target), roc_auc reported beside it.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import transformers
from datasets.fingerprint import get_temporary_cache_files_directory
from huggingface_hub.utils import validate_repo_id
from transformers import HfArgumentParser, IntervalStrategy, set_seed

from hf_eff.grant import (
    GrantGCN,
    GraNTTrainer,
    GraNTTrainingArguments,
    GraphTask,
    ValidationCurveCallback,
    check_graph_dataset,
    class_names,
    encode_class_labels,
    generate_graphon_dataset,
    load_freesolv,
    load_qm9,
    load_smiles_csv,
    load_solubility,
    molecules_from_csv,
    split_dataset,
    target_statistics,
    time_to_target,
)
from hf_eff.grant.collator import GRAPH_COLUMNS
from hf_eff.grant.data import (
    REQUIRED_COLUMNS,
    MissingColumnError,
    check_graph_columns,
    feature_widths,
    largest_class_id,
    load_smiles_table,
    renumber_classes,
    split_off_validation,
    targets_per_unit,
)
from hf_eff.grant.metrics import best_value, metrics_for, primary_metric
from hf_eff.grant.predictions import check_prediction_names, predictions_table
from hf_eff.grant.schedules import check_selection_can_drop_graphs
from hf_eff.grant.selection import class_strata
from hf_eff.hub.cards import shown_name
from hf_eff.hub.dataset_commits import (
    check_commit_read,
    check_offline_revision,
    read_commit,
    recorded_revision,
    same_revision,
    shown_revision,
)
from hf_eff.hub.sources import (
    check_model_source,
    is_local_data,
    naming_missing_folder,
    naming_missing_revision,
    naming_model_flags,
    refuse_hub_options_without_hub_data,
)
from hf_eff.utils.distributed import check_world_size, finish_distributed, prepare_cpu_distributed
from hf_eff.utils.evaluation_only import check_evaluation_only
from hf_eff.utils.output_dir import OverwriteOutputDirArguments, check_output_dir
from hf_eff.utils.recipes import (
    describe_recipe_usage,
    is_recipe,
    parse_recipe_and_flags,
    refuse_misplaced_recipe,
)
from hf_eff.utils.results import log_written, save_all_results, save_local_model_card
from hf_eff.utils.saved_data import load_saved_dataset

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
BUILTIN_TASKS = {
    "qm9": "graph_regression",
    "freesolv": "graph_regression",
    "solubility": "graph_regression",
    "solubility-cls": "graph_classification",
    "gen-reg": "node_regression",
    "gen-cls": "node_classification",
}


FROM_SAVED = " Ignored with --model_name_or_path (its config.json sets the architecture; another value is warned of)."
ARCHITECTURE_FLAGS = ("hidden_channels", "num_layers", "kappa", "dropout", "batch_norm")


@dataclass
class ModelArguments(OverwriteOutputDirArguments):
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Start from this trained GrantGCN instead of a fresh one: a folder written by a GraNT run "
                  "(its --output_dir or a checkpoint-N in it; GrantGCN.save_pretrained) or a Hub repo id. It is "
                  "fine-tuned on the data, or only evaluated with --do_train False (on the test graphs its training "
                  "held out only with that run's --seed, fractions, --stratify and data flags); its architecture comes from its "
                  "config.json, and the architecture flags (--hidden_channels, --num_layers, --kappa, --dropout, "
                  "--batch_norm) are then ignored, with a warning where they differ."},
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "The branch, tag or commit of a Hub --model_name_or_path (default: main)."}
    )
    hidden_channels: int = field(default=64, metadata={"help": "Width of every GCN layer." + FROM_SAVED})
    num_layers: int = field(default=3, metadata={"help": "Number of kappa-hop GCN layers." + FROM_SAVED})
    kappa: int = field(default=3, metadata={"help": "Hops per layer: [X, AX, ..., A^(kappa-1) X]." + FROM_SAVED})
    dropout: float = field(default=0.0, metadata={"help": "Dropout after every layer." + FROM_SAVED})
    batch_norm: bool = field(default=True, metadata={"help": "BatchNorm after every layer." + FROM_SAVED})
    standardize_targets: bool = field(
        default=False,
        metadata={"help": "Regression: the model predicts each target standardised by its mean and standard deviation "
                  "over the training graphs (config.json saves them as target_mean and target_std; predictions and "
                  "metrics stay in the targets' units), and the loss and the GraNT teacher's scores divide each "
                  "target's errors by its standard deviation. For targets of very different scales, of which the "
                  "largest would otherwise decide the loss and the teacher's selection alone. A --model_name_or_path "
                  "keeps the standardisation it was trained with."},
    )


@dataclass
class DataArguments:
    builtin: str | None = field(
        default=None, metadata={"help": f"Built-in data set, one of {tuple(BUILTIN_TASKS)} (sets --task)."}
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "Your data: a CSV of SMILES (.csv, or compressed .csv.gz, .csv.bz2, .csv.xz, .csv.zip; any "
                  "case), a folder written by save_to_disk (a Dataset, split here, or "
                  "a DatasetDict with train, validation and test splits, used as saved), or a Hub dataset id (neither "
                  "an existing path nor a CSV's name; read by datasets.load_dataset) whose rows are graphs (x, "
                  "edge_index, num_nodes, y: as a saved folder) or molecules (--smiles_column and --target_column: "
                  "as a CSV); one split is split here, several used as saved (train, test, and validation, valid or "
                  "dev, else --validation_fraction of train held out)."},
    )
    dataset_config_name: str | None = field(
        default=None,
        metadata={"help": "The configuration of a Hub --dataset (load_dataset's name); recorded in all_results.json, "
                  "the data split and the card's model-index."},
    )
    dataset_revision: str | None = field(
        default=None,
        metadata={"help": "Branch, tag or commit of a Hub --dataset; recorded in all_results.json, the data split and "
                  "the card's model-index, with the commit it was at (dataset_commit). Offline, only a commit hash "
                  "whose cached copy is read. With --model_name_or_path, defaults to the commit its training on that "
                  "dataset recorded."},
    )
    # found when a Hub --dataset is read, not a flag (HfArgumentParser leaves init=False fields out)
    dataset_commit: str | None = field(default=None, init=False)
    smiles_column: str = field(default="smiles", metadata={"help": "CSV (--dataset or --predict_file): the SMILES column."})
    predict_smiles_column: str | None = field(
        default=None, metadata={"help": "A CSV --predict_file's SMILES column, where it is named otherwise than the "
                                "training CSV's (default: --smiles_column)."},
    )
    target_column: str = field(default="", metadata={"help": "CSV: target column(s), comma-separated (graph_multilabel: "
                                                               "0/1 label columns, empty cells unlabelled)."})
    skip_invalid_smiles: bool = field(
        default=False,
        metadata={"help": "A CSV --dataset or --predict_file: leave out the molecules whose SMILES cell is empty or "
                  "cannot be parsed by RDKit, with one warning naming how many and the first few data rows (by default "
                  "the CSV is refused, naming the first such row). A CSV of which no SMILES parses is still refused. "
                  "A --predict_file's skipped rows get no prediction; the index of the others stays their row in the "
                  "file."},
    )
    max_graphs: int | None = field(default=None, metadata={"help": "Use the first N graphs only (QM9: rows read)."})
    predict_file: str | None = field(
        default=None,
        metadata={"help": "--do_predict: the graphs to predict instead of the test split, a CSV of SMILES (read from "
                  "--predict_smiles_column, default --smiles_column; other columns ignored) or a folder written by save_to_disk (y ignored). With "
                  "--do_train False and --model_name_or_path it needs no --dataset or built-in data: the model only "
                  "predicts (--task names its task kind)."},
    )
    qm9_target: str = field(default="Dipole_debye", metadata={"help": "QM9 column to predict (PyG's target 0)."})
    num_generated_graphs: int = field(default=2000, metadata={"help": "gen-reg / gen-cls: number of graphs."})
    min_nodes: int = field(default=50, metadata={"help": "gen-reg / gen-cls: smallest graph."})
    max_nodes: int = field(default=150, metadata={"help": "gen-reg / gen-cls: largest graph."})
    validation_fraction: float = field(default=0.1, metadata={"help": "Held out for validation."})
    test_fraction: float = field(default=0.1, metadata={"help": "Held out for the final test."})
    stratify: bool = field(
        default=True,
        metadata={"help": "graph_classification: split by class, each class in proportion as far as rounding allows (a class of "
                  "fewer than about 1/fraction graphs can still miss a split; datasets' stratified train_test_split); False splits at random, as for the other tasks. A saved "
                  "DatasetDict is used as saved."},
    )


def parse_args(argv: list[str] | None = None, return_command_line: bool = False):
    """The flags (after a recipe); with ``return_command_line``, followed by the ``CommandLine`` (the recipe's
    settings, the flags given)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, GraNTTrainingArguments))
    describe_recipe_usage(parser)  # before parser.error below, which prints the usage
    flags = builtin_task_flags(sys.argv[1:] if argv is None else argv)
    if "--task" not in flags and not (flags and is_recipe(flags[0])) and not {"-h", "--help"} & set(flags):
        # else GraNTTrainingArguments would refuse task=None, saying nothing of the data; a recipe after the
        # flags is named first, as the other examples name it
        refuse_misplaced_recipe(parser, flags)
        parser.error(f"no data: give --task with a built-in data set, one of {tuple(BUILTIN_TASKS)}; or --dataset "
                     "(a CSV of SMILES, a saved graph dataset or a Hub dataset id) with --task and the task kind; or a recipe from "
                     "trainers/grant/ first; or, to predict --predict_file with --model_name_or_path, --task and the "
                     "model's task kind")
    model_args, data_args, training_args, command_line = parse_recipe_and_flags(parser, flags, return_command_line=True)
    if command_line.recipe:
        use_command_line_data(data_args, flags[0], command_line.recipe, command_line.given)
    if return_command_line:
        return model_args, data_args, training_args, command_line
    return model_args, data_args, training_args


def use_command_line_data(data_args: DataArguments, recipe_path: str, recipe: dict, given: set[str]) -> None:
    """The data named on the command line replaces a recipe's, as flags override a recipe: --dataset its built-in
    data set (builtin), a built-in --task its dataset or another built-in set, with the recipe's options for its data
    (e.g. gen-reg's num_generated_graphs) that the new data would not read; other recipe settings stay. A recipe that
    names both a builtin and a dataset is refused, naming both, unless the command line names the data."""
    from_recipe = {name: recipe[name] for name in ("builtin", "dataset") if recipe.get(name)}
    named = {"builtin", "dataset"} & given
    if not named:
        if len(from_recipe) == 2:
            raise ValueError(f"recipe {recipe_path} names two data sources, builtin: {recipe['builtin']} and dataset: "
                             f"{recipe['dataset']}: remove one, or name the data on the command line (--task <built-in "
                             "name> or --dataset <csv, folder or Hub id>), which replaces the recipe's")
        return
    for name in from_recipe.keys() - named:  # the recipe's other data source
        setattr(data_args, name, None)
    replaced = [f"{name}: {value}" for name, value in from_recipe.items() if getattr(data_args, name) != value]
    if not replaced:
        return
    defaults = DataArguments()
    # a Hub configuration or revision is of the recipe's dataset, whatever data replaces it
    dropped = [name for name in ONLY_FOR if name in recipe and name not in given
               and (name in HUB_DATASET_FLAGS or not applies(data_args, name))]
    for name in dropped:
        setattr(data_args, name, getattr(defaults, name))
    logger.info("%s replaces recipe %s's %s%s", data_name(data_args), recipe_path, " and ".join(replaced),
                f" and its {', '.join(dropped)}" if dropped else "")


def builtin_task_flags(argv: list[str]) -> list[str]:
    """`--task qm9` (or `--builtin qm9`) names a built-in data set, while GraNTTrainingArguments.task is
    the task kind: rewrite to `--builtin qm9 --task graph_regression`, unless a task kind is given."""
    flags = [part for arg in argv for part in (arg.split("=", 1) if arg.startswith(("--task=", "--builtin=")) else [arg])]
    name = None
    for flag in ("--task", "--builtin"):
        if flag in flags[:-1] and flags[flags.index(flag) + 1] in BUILTIN_TASKS:
            position = flags.index(flag)
            name = flags[position + 1]
            del flags[position: position + 2]
    if name is None:
        return flags
    return flags + ["--builtin", name] + ([] if "--task" in flags else ["--task", BUILTIN_TASKS[name]])


VALIDATION_SPLITS = ("validation", "valid", "dev")  # what Hub datasets call their validation split


def split_roles(graphs: datasets.DatasetDict, path: Path | str, hub: bool = False) -> dict[str, str]:
    """Which split of a saved DatasetDict (`hub`: a Hub dataset's splits) is train, validation and test ({role: its
    name}): train and test by name, validation as VALIDATION_SPLITS names it. A Hub dataset may lack a validation split
    (`split_graphs` holds one out of train then); a saved folder needs all three."""
    roles = {role: role for role in ("train", "test") if role in graphs}
    validation = next((name for name in VALIDATION_SPLITS if name in graphs), None)
    if validation is not None:
        roles["validation"] = validation
    missing = [role for role in ("train", "test") if role not in roles]
    if missing and hub:
        raise ValueError(f"--dataset {path} has splits {sorted(graphs)}, missing {missing}: a Hub dataset of several "
                         "splits needs train and test (and validation, valid or dev, else --validation_fraction of "
                         "train is held out for validation); one of a single split is divided by --validation_fraction "
                         "and --test_fraction")
    if validation is None and not hub:
        missing.insert(1 if "train" in missing else 0, "validation")
    if missing:
        raise ValueError(
            f"--dataset {path} holds a DatasetDict with splits {sorted(graphs)}, missing {missing}: save one with "
            f"{list(SPLITS)} (validation may be named {' or '.join(VALIDATION_SPLITS[1:])}), or a single Dataset (split "
            "by --validation_fraction and --test_fraction)"
        )
    return roles


def saved_splits(graphs: datasets.DatasetDict, path: Path | str, max_graphs: int | None,
                 hub: bool = False) -> datasets.DatasetDict:
    """A saved DatasetDict (`hub`: a Hub dataset's splits) is used as split, each split cut to max_graphs and named
    by its role (`split_roles`): train, validation (a Hub dataset's may be missing) and test."""
    roles = split_roles(graphs, path, hub)
    return datasets.DatasetDict({role: first_graphs(graphs[roles[role]], max_graphs) for role in SPLITS if role in roles})


def first_graphs(graphs: datasets.Dataset, max_graphs: int | None) -> datasets.Dataset:
    """The first max_graphs rows (all of them for None, or fewer rows)."""
    return graphs if max_graphs is None else graphs.select(range(min(len(graphs), max_graphs)))


CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")  # pandas infers the compression
# the DataArguments that only some data read, and which data that is
ONLY_FOR = {
    "smiles_column": "a CSV --dataset or --predict_file", "predict_smiles_column": "a CSV --predict_file",
    "target_column": "a CSV --dataset", "skip_invalid_smiles": "a CSV --dataset or --predict_file",
    "dataset_config_name": "a Hub --dataset", "dataset_revision": "a Hub --dataset",
    "qm9_target": "--task qm9",
    "num_generated_graphs": "--task gen-reg or gen-cls", "min_nodes": "--task gen-reg or gen-cls",
    "max_nodes": "--task gen-reg or gen-cls",
    # a --predict_file alone is predicted whole, unsplit
    **dict.fromkeys(("max_graphs", "validation_fraction", "test_fraction", "stratify"), "--task or --dataset"),
}
BUILTIN_TARGETS = {"freesolv": ["expt"], "solubility": ["SOL"], "solubility-cls": ["SOL_classification"]}


def is_csv(path: Path) -> bool:
    return not path.is_dir() and path.name.lower().endswith(CSV_SUFFIXES)


def dataset_path(data_args: DataArguments) -> Path:
    """--dataset as a local path, ~ expanded (as HaLoRA's example reads it)."""
    return Path(data_args.dataset).expanduser()


def is_hub_dataset(data_args: DataArguments) -> bool:
    """Whether --dataset names a Hub dataset: neither an existing path nor a CSV's name (a missing CSV is named as a
    missing file, not looked for on the Hub)."""
    return data_args.dataset is not None and not is_local_data(data_args.dataset, CSV_SUFFIXES)


def applies(data_args: DataArguments, name: str, hub_smiles: bool = True) -> bool:
    """Whether the chosen data reads the DataArguments field `name`. A Hub --dataset is read as a CSV is where its rows
    are SMILES (`hub_smiles`: until loading shows them, they may be)."""
    csv_dataset = data_args.dataset is not None and (is_csv(dataset_path(data_args))
                                                     or (hub_smiles and is_hub_dataset(data_args)))
    csv_predict_file = data_args.predict_file is not None and is_csv(Path(data_args.predict_file))
    if name == "smiles_column" and data_args.predict_smiles_column is not None:
        return csv_dataset  # --predict_smiles_column names the --predict_file's column instead
    uses = {"a CSV --dataset": csv_dataset, "a CSV --predict_file": csv_predict_file,
            "a CSV --dataset or --predict_file": csv_dataset or csv_predict_file,
            "--task qm9": data_args.builtin == "qm9",
            "--task gen-reg or gen-cls": data_args.builtin in ("gen-reg", "gen-cls"),
            "--task or --dataset": data_args.builtin is not None or data_args.dataset is not None,
            "a Hub --dataset": is_hub_dataset(data_args)}
    return name not in ONLY_FOR or uses[ONLY_FOR[name]]


def check_options_apply(data_args: DataArguments, hub_smiles: bool = True, data: str | None = None) -> None:
    """Refuses data options that the chosen data would silently ignore (e.g. --qm9_target with
    --task freesolv); `hub_smiles` as `applies` takes it, `data` names the data (default: `data_name`)."""
    refuse_hub_options_without_hub_dataset(data_args)
    defaults = DataArguments()
    ignored = [name for name in ONLY_FOR
               if not applies(data_args, name, hub_smiles) and getattr(data_args, name) != getattr(defaults, name)]
    if ignored:
        raise ValueError(
            f"{' and '.join('--' + n for n in ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to "
            f"{data or data_name(data_args)}: "
            + "; ".join(f"--{n} is for {ONLY_FOR[n]}" for n in ignored)
        )


HUB_DATASET_FLAGS = ("dataset_config_name", "dataset_revision")


def refuse_hub_options_without_hub_dataset(data_args: DataArguments) -> None:
    """--dataset_config_name and --dataset_revision choose among a Hub --dataset's configurations and revisions, which
    local data and built-in sets do not have (refused as HaLoRA's example refuses them)."""
    refuse_hub_options_without_hub_data({f"--{name}": getattr(data_args, name) for name in HUB_DATASET_FLAGS},
                                        data_args.dataset, "--dataset", CSV_SUFFIXES, data_name(data_args))


def data_name(data_args: DataArguments) -> str:
    """The data flag as given: the built-in --task, --dataset, or (prediction only) --predict_file."""
    if data_args.builtin:
        return f"--task {data_args.builtin}"
    if data_args.dataset is not None:
        return f"--dataset {data_args.dataset}"
    return f"--predict_file {data_args.predict_file}"


def target_columns(data_args: DataArguments) -> list[str] | None:
    """The names of the predicted targets, where the data names them (a saved folder's y does not, nor does a Hub
    dataset of graphs, which refuses --target_column)."""
    if data_args.dataset is not None:
        if not is_csv(dataset_path(data_args)) and not (is_hub_dataset(data_args) and data_args.target_column):
            return None
        columns = [c for c in data_args.target_column.split(",") if c]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"--target_column {data_args.target_column} names {', '.join(repeated)} more than once: "
                             "each target is one model output, named by its column")
        return columns
    if data_args.builtin == "qm9":
        return [data_args.qm9_target]
    return BUILTIN_TARGETS.get(data_args.builtin)


def smiles_targets(data_args: DataArguments, task: str, molecules: str, source: str) -> list[str]:
    """The --target_column(s) of a table of molecules, checked against the task kind (`molecules` says what the data
    is, `source` names it when the targets are missing)."""
    if not task.startswith("graph"):
        raise ValueError(f"{molecules}, one row of targets per molecule: give a graph task kind, --task graph_regression, "
                         f"graph_classification or graph_multilabel, not {task} (a recipe's task, too, is replaced by "
                         "--task)")
    targets = target_columns(data_args)
    if not targets:
        raise ValueError(f"{source} needs --target_column (one or more, comma-separated)")
    return targets


def download_hub_dataset(source: str, config_name: str | None, revision: str | None) -> tuple[datasets.DatasetDict,
                                                                                              str | None]:
    """`datasets.load_dataset(source, config_name, revision=revision)`, its every split, and the commit it was read at
    (`read_commit`); a source that is no Hub id, a repo that does not exist (or this token cannot read), a revision it
    lacks, a configuration it lacks or a Hub out of reach is named in one line. Offline, a revision is read only where
    the cached copy shows it is that one (`check_offline_revision`, `check_commit_read`)."""
    try:
        # the local path looked for is named as read, ~ expanded (a Hub id is the same string)
        with naming_missing_folder(f"--dataset {source}", str(Path(source).expanduser())), \
                naming_missing_revision("--dataset_revision", revision, source):
            validate_repo_id(source)  # before datasets, which would look for a path like /data/x on the Hub
            check_offline_revision(revision)
            splits = datasets.load_dataset(source, config_name, revision=revision)
    except ValueError as error:
        # datasets' own error for an unknown configuration names no flag and spans lines; others surface as they are
        if config_name is None or not re.match(r"BuilderConfig '.*' not found", str(error)):
            raise
        configs = datasets.get_dataset_config_names(source, revision=revision)
        raise ValueError(f"--dataset_config_name {config_name}: the Hub dataset {source} has no such configuration; "
                         f"its configurations are {configs}") from None
    # before the rows are converted, which may leave the cache folder that names the commit
    commit = read_commit(splits.values(), source, revision)
    check_commit_read(commit, revision, source)
    return splits, commit


def with_shared_class_names(graphs: datasets.DatasetDict, numeric_labels: bool) -> datasets.DatasetDict:
    """Splits of molecules whose class ids each follow its own labels (a CSV's sorted order), renumbered as the
    sorted names of all of them, as a saved DatasetDict's splits share one mapping (`encode_class_labels`). Names of
    `numeric_labels` are sorted by value, as a CSV's numbers are (2 before 10), others as text."""
    names = sorted({name for split in graphs.values() for name in class_names(split)},
                   key=float if numeric_labels else None)
    return renumber_classes(graphs, names)


def load_hub_dataset(data_args: DataArguments, task: str) -> datasets.Dataset | datasets.DatasetDict:
    """A Hub --dataset at --dataset_config_name and --dataset_revision: rows of graphs (REQUIRED_COLUMNS) as a saved
    folder's, rows of molecules (the --smiles_column, no graph columns) as a CSV's; one split as a saved Dataset (split
    here), several as a saved DatasetDict (train, validation and test); each split cut to --max_graphs, and rows of graphs
    checked as read (a bad row named by its Hub split and its index there)."""
    source = data_args.dataset
    splits, data_args.dataset_commit = download_hub_dataset(source, data_args.dataset_config_name,
                                                            data_args.dataset_revision)
    hub_names = {name: name for name in splits}  # a split's name on the Hub, for errors
    if len(splits) > 1:  # refuses other split names before any molecule is read
        hub_names = split_roles(splits, source, hub=True)
        splits = saved_splits(splits, source, None, hub=True)
    columns = next(iter(splits.values())).column_names
    rows_of_graphs = set(REQUIRED_COLUMNS) <= set(columns)
    if rows_of_graphs:
        check_options_apply(data_args, hub_smiles=False, data=f"--dataset {source} (rows of graphs, not SMILES)")
        for name, split in splits.items():  # before encode_class_labels reads y
            check_graph_columns(split, f"--dataset {source} ({hub_names[name]} split)")
        graphs = encode_class_labels(splits) if task.endswith("classification") else splits
    elif data_args.smiles_column in columns and not set(GRAPH_COLUMNS) & set(columns):
        targets = smiles_targets(data_args, task, f"--dataset {source} holds molecules",
                                 f"--dataset {source} (SMILES in column {data_args.smiles_column!r})")
        graphs = datasets.DatasetDict({
            name: load_smiles_table(split, data_args.smiles_column, targets, f"--dataset {source} ({hub_names[name]} split)",
                                    classification=task.endswith("classification"), multilabel=task == "graph_multilabel",
                                    skip_invalid_smiles=data_args.skip_invalid_smiles)
            for name, split in splits.items()})
        if task.endswith("classification") and len({tuple(class_names(split)) for split in graphs.values()}) > 1:
            label = next(iter(splits.values())).features[targets[0]]
            graphs = with_shared_class_names(graphs, not isinstance(label, datasets.ClassLabel)
                                             and getattr(label, "dtype", "").startswith(("int", "uint", "float")))
    else:
        raise MissingColumnError(
            f"--dataset {source} has columns {columns}: give graphs (columns {list(REQUIRED_COLUMNS)}) or molecules "
            f"(SMILES in the column --smiles_column names, {data_args.smiles_column!r}, and the --target_column(s))")
    graphs = datasets.DatasetDict({name: first_graphs(split, data_args.max_graphs) for name, split in graphs.items()})
    if rows_of_graphs:  # checked as read: a bad row is named by its Hub split and index there, not its place in a shuffle
        for name, split in graphs.items():
            check_graph_dataset(split, task, f"--dataset {source} ({hub_names[name]} split)")
    return next(iter(graphs.values())) if len(graphs) == 1 else graphs


def load_saved_folder(path: Path, task: str, max_graphs: int | None) -> datasets.Dataset | datasets.DatasetDict:
    """A folder written by save_to_disk (a DatasetDict's splits named by role, `saved_splits`), cut to max_graphs and
    checked here, so that a bad row is named by its place in the folder, not in a shuffled split."""
    graphs = load_saved_dataset(path, f"--dataset {path}")
    saved = graphs if isinstance(graphs, datasets.DatasetDict) else {None: graphs}
    for split, rows in saved.items():  # before encode_class_labels reads y
        check_graph_columns(rows, f"--dataset {path}" + (f" ({split} split)" if split else ""))
    if task.endswith("classification"):  # class names to ids, as the CSV path maps them
        graphs = encode_class_labels(graphs)
    if isinstance(graphs, datasets.DatasetDict):
        graphs = saved_splits(graphs, path, max_graphs)
        for role, rows in graphs.items():
            check_graph_dataset(rows, task, f"--dataset {path} ({role} split)")
        return graphs
    graphs = first_graphs(graphs, max_graphs)
    check_graph_dataset(graphs, task, f"--dataset {path}")
    return graphs


def load_graphs(data_args: DataArguments, task: str, seed: int) -> datasets.Dataset | datasets.DatasetDict:
    if (data_args.builtin is None) == (data_args.dataset is None):
        raise ValueError("give exactly one of --task <built-in name> and --dataset <csv, folder or Hub id> (or, to predict "
                         "--predict_file only, neither, with --do_train False and --model_name_or_path)")
    check_options_apply(data_args)
    # checked here, with the flags' names: --max_graphs cuts every source (load_qm9 checks only QM9's), and
    # generate_graphon_dataset calls --num_generated_graphs num_graphs
    if data_args.max_graphs is not None and data_args.max_graphs < 1:  # else an empty training split fails later
        raise ValueError(f"--max_graphs must be >= 1, got {data_args.max_graphs}")
    if data_args.builtin in ("gen-reg", "gen-cls") and data_args.num_generated_graphs < 1:
        raise ValueError(f"--num_generated_graphs must be >= 1, got {data_args.num_generated_graphs}")
    if data_args.dataset is not None:
        path = dataset_path(data_args)
        if path.is_file() and not is_csv(path):
            raise ValueError(
                f"--dataset {path} is a file but not a CSV ({', '.join(CSV_SUFFIXES)}, any case): give a CSV of "
                "SMILES, or a folder written by datasets' save_to_disk"
            )
        if is_csv(path):
            targets = smiles_targets(data_args, task, f"--dataset {path} is a CSV of molecules", "--dataset <csv>")
            graphs = load_smiles_csv(path, data_args.smiles_column, targets, classification=task.endswith("classification"),
                                     multilabel=task == "graph_multilabel",
                                     skip_invalid_smiles=data_args.skip_invalid_smiles)
        elif is_hub_dataset(data_args):
            return load_hub_dataset(data_args, task)
        else:
            return load_saved_folder(path, task, data_args.max_graphs)
    elif data_args.builtin == "qm9":
        return load_qm9(data_args.qm9_target, max_graphs=data_args.max_graphs)
    elif data_args.builtin == "freesolv":
        graphs = load_freesolv()
    elif data_args.builtin in ("solubility", "solubility-cls"):
        graphs = load_solubility("train", classification=data_args.builtin == "solubility-cls")
    else:
        graphs = generate_graphon_dataset(
            "classification" if data_args.builtin == "gen-cls" else "regression", data_args.num_generated_graphs,
            data_args.min_nodes, data_args.max_nodes, seed=seed,
        )
    return first_graphs(graphs, data_args.max_graphs)


def output_channels(graphs: datasets.Dataset, task: str) -> int:
    """Classes (from the class names when y has them, else the largest id + 1), or targets per
    graph or node. y may be a scalar or a list per graph (e.g. [c] for a class id)."""
    if task.endswith("classification"):
        names = class_names(graphs)
        if names:
            return len(names)
        return max(largest_class_id(graphs), 0) + 1
    if task.startswith("graph"):
        return int(np.size(graphs[0]["y"]))
    first = next((g for g in graphs if g["num_nodes"]), graphs[0])
    return int(np.size(first["y"])) // max(int(first["num_nodes"]), 1)


def check_run_mode(model_args: ModelArguments, data_args: DataArguments, training_args: GraNTTrainingArguments) -> None:
    """Refuses, before any work, what an evaluation-only run (--do_train False) cannot do, what
    --model_name_or_path with --model_revision and --output_dir cannot, --predict_file without --do_predict, and
    --standardize_targets but for a fresh regression model."""
    if model_args.standardize_targets and not training_args.task.endswith("regression"):
        raise ValueError(f"--standardize_targets standardises regression targets; --task is {training_args.task}")
    if model_args.standardize_targets and model_args.model_name_or_path is not None:
        raise ValueError(f"--standardize_targets: --model_name_or_path {model_args.model_name_or_path} keeps the "
                         "standardisation it was trained with (target_mean and target_std in its config.json, if any); "
                         "leave the flag out")
    if data_args.predict_file is not None and not training_args.do_predict:
        raise ValueError(f"--predict_file {data_args.predict_file} is what --do_predict predicts: add --do_predict, or "
                         "leave --predict_file out")
    check_evaluation_only(training_args, "--model_name_or_path", model_args.model_name_or_path)
    check_model_source("--model_name_or_path", model_args.model_name_or_path, "--model_revision",
                       model_args.model_revision, training_args.output_dir)
    check_output_dir(training_args, model_args.overwrite_output_dir)


def model_misfits(model: GrantGCN, task: str, in_channels: int, out_channels: int, names: list[str] | None) -> list[str]:
    """How a trained GrantGCN does not fit the data: node-feature width, graph or node level, task kind,
    and its outputs against the data's targets or classes (a classifier may have classes that the data
    lacks)."""
    level, classification = task.split("_")[0], task.endswith("classification")
    misfits = []
    if model.in_channels != in_channels:
        misfits.append(f"the model takes {model.in_channels} node features, the data has {in_channels}")
    if model.level != level:
        misfits.append(f"the model predicts per {model.level}, {task} per {level}")
    if model.task is not None and model.task != task:
        misfits.append(f"the model was trained for {model.task}, the data is {task}")
    elif model.class_names is not None and not classification:
        misfits.append(f"the model is a classifier (classes {model.class_names}), the data is {task}")
    outputs = model.out_channels
    if classification and names is not None and model.class_names is not None:
        if not set(names) <= set(model.class_names):
            misfits.append(f"the data has classes the model lacks, {sorted(set(names) - set(model.class_names))} (the "
                           f"model's: {model.class_names})")
    elif classification and names is None:
        if outputs < out_channels:
            misfits.append(f"the model has {outputs} classes, the data has class ids up to {out_channels - 1}")
    elif outputs != out_channels:
        kind = "classes" if classification else f"targets per {level}"
        misfits.append(f"the model has {outputs} outputs, the data has {out_channels} {kind}")
    return misfits


def load_trained_model(model_args: ModelArguments) -> GrantGCN:
    """The GrantGCN of --model_name_or_path, loaded before the data is read, so that a wrong folder or repo fails at
    once."""
    source = model_args.model_name_or_path
    with naming_model_flags("--model_name_or_path", source, "--model_revision", model_args.model_revision):
        return GrantGCN.from_pretrained(source, revision=model_args.model_revision)


# targets whose standard deviations differ by this factor or more: the smaller one's squared errors weigh
# (1/factor)^2 or less against the larger's in the loss and the teacher's scores
TARGET_SCALE_WARNING = 10.0


def checked_target_statistics(train: datasets.Dataset, task: str, targets: list[str] | None) -> dict[str, list[float]]:
    """--standardize_targets: the targets' means and standard deviations (`target_statistics`); a target of one value
    throughout (standard deviation 0) cannot be standardised and is refused by name."""
    statistics = target_statistics(train, task)
    names = targets or [f"target {i}" for i in range(len(statistics["target_std"]))]
    constant = [name for name, spread in zip(names, statistics["target_std"]) if spread == 0]
    if constant:
        raise ValueError(f"--standardize_targets: {', '.join(constant)} has one value on every training graph "
                         "(standard deviation 0) and cannot be standardised: drop that target or leave the flag out")
    return statistics


def warn_of_target_scales(train: datasets.Dataset, task: str, outputs: int, targets: list[str] | None) -> None:
    """Regression targets of very different scales, trained without --standardize_targets: the largest decides the
    loss and the GraNT teacher's scores (||f - f*||_2 / T) alone."""
    if outputs < 2:
        return
    std = np.array(target_statistics(train, task)["target_std"])
    names = targets or [f"target {i}" for i in range(outputs)]
    largest, smallest = int(np.argmax(std)), int(np.argmin(std))
    if std[smallest] > 0 and std[largest] >= TARGET_SCALE_WARNING * std[smallest]:
        logger.warning("the targets' standard deviations differ %.3g-fold (%s: %.3g, %s: %.3g): the loss and the GraNT "
                       "teacher's scores follow the larger targets almost alone; --standardize_targets weighs them alike",
                       std[largest] / std[smallest], names[largest], std[largest], names[smallest], std[smallest])


def build_model(model_args: ModelArguments, trained: GrantGCN | None, task: str, in_channels: int, out_channels: int,
                names: list[str] | None, targets: list[str] | None, data: str,
                train: datasets.Dataset | None = None) -> GrantGCN:
    """A fresh GrantGCN (its outputs named by the classes or, for regression and multilabel, the data's targets;
    standardised by the `train` graphs' targets with --standardize_targets), or the trained one of
    --model_name_or_path once it is checked against the data."""
    if trained is None:
        statistics = {}
        if model_args.standardize_targets:
            statistics = checked_target_statistics(train, task, targets)
        elif task.endswith("regression") and train is not None:
            warn_of_target_scales(train, task, out_channels, targets)
        return GrantGCN(
            in_channels=in_channels, out_channels=out_channels, hidden_channels=model_args.hidden_channels,
            num_layers=model_args.num_layers, kappa=model_args.kappa,
            dropout=model_args.dropout, batch_norm=model_args.batch_norm, class_names=names, task=task,
            target_names=None if task.endswith("classification") else targets, **statistics,
        )
    misfits = model_misfits(trained, task, in_channels, out_channels, names)
    if misfits:
        raise ValueError(f"--model_name_or_path {model_args.model_name_or_path} does not fit {data} ({task}): "
                         + "; ".join(misfits))
    defaults = ModelArguments()
    ignored = [f"--{name} {getattr(model_args, name)} (the model's: {getattr(trained, name)})"
               for name in ARCHITECTURE_FLAGS if getattr(model_args, name) not in (getattr(defaults, name),
                                                                                   getattr(trained, name))]
    if ignored:  # a recipe's own architecture, say
        logger.warning("%s ignored: --model_name_or_path %s keeps the architecture of its config.json",
                       ", ".join(ignored), model_args.model_name_or_path)
    return trained


def as_model_classes(graphs: datasets.Dataset | datasets.DatasetDict,
                     model_names: list[str]) -> datasets.Dataset | datasets.DatasetDict:
    """Data holding some of a trained classifier's classes (a test set without one, say) with class ids renumbered
    as the model's outputs; the data's own ids follow its own sorted names. Data with other names is left for
    model_misfits to refuse."""
    names = class_names(next(iter(graphs.values())) if isinstance(graphs, datasets.DatasetDict) else graphs)
    if names is None or names == model_names or not set(names) <= set(model_names):
        return graphs
    return renumber_classes(graphs, model_names)


def split_graphs(graphs: datasets.Dataset | datasets.DatasetDict, data_args: DataArguments, task: str,
                 seed: int) -> datasets.DatasetDict:
    """A saved DatasetDict as saved (a Hub dataset's train and test only: --validation_fraction of train held out for
    validation); else a split by --validation_fraction and --test_fraction; by class for graph classification unless
    --stratify False."""
    stratify = data_args.stratify and task == "graph_classification"
    if isinstance(graphs, datasets.DatasetDict):
        if "validation" in graphs:
            return graphs
        held_out = split_off_validation(graphs["train"], data_args.validation_fraction, seed, stratify_by_class=stratify,
                                        name=data_name(data_args))
        return datasets.DatasetDict({**held_out, "test": graphs["test"]})
    return split_dataset(graphs, data_args.validation_fraction, data_args.test_fraction, seed=seed,
                         stratify_by_class=stratify, name=data_name(data_args))


def check_splits_agree(splits: datasets.DatasetDict, task: str, data: str) -> None:
    """Refuses a validation or test split (of a saved DatasetDict or a Hub dataset's splits) whose node features or
    targets per graph (a node task's: per node) differ from the train split's, naming it: GraNTTrainer refuses the
    test split only when it evaluates it, after training, in a --output_dir the Trainer has created."""
    level = GraphTask(task).level
    x_width, targets = feature_widths(splits["train"])[0], targets_per_unit(splits["train"], level)
    for role in ("validation", "test"):
        x_other, targets_other = feature_widths(splits[role])[0], targets_per_unit(splits[role], level)
        if None not in (x_width, x_other) and x_other != x_width:
            raise ValueError(f"{data} ({role} split): node features x have {x_other} columns, the train split's "
                             f"{x_width}; build its graphs' x as the training graphs' are")
        if None not in (targets, targets_other) and targets_other != targets:
            raise ValueError(f"{data} ({role} split): y holds {targets_other} target(s) per {level}, the train split's "
                             f"{targets}; give every split the same targets per {level}")


def check_teaching_plan(training_args: GraNTTrainingArguments, train: datasets.Dataset) -> None:
    """Refuses training graphs of which GraNT's first selection would keep all (a single graph, GraNT(B) on one batch,
    GraNT(S) on batches of one graph, classes too small to thin out): `plan_epochs`' refusal, which
    GraNTTrainer.train gives only after the Trainer has created --output_dir. Its warnings are the trainer's to give."""
    if not (training_args.do_train and training_args.selects):
        return
    strata = class_strata(train["y"]) if training_args.stratify_selection else None
    check_selection_can_drop_graphs(len(train), training_args.train_batch_size, training_args.start_ratio,
                                    training_args.variant,
                                    strata_sizes=None if strata is None else [len(stratum) for stratum in strata])


def warn_of_unused_fractions(graphs: datasets.Dataset | datasets.DatasetDict, data_args: DataArguments,
                             given: set[str]) -> None:
    """Warns once of the --validation_fraction and --test_fraction ``given`` (on the command line or in a recipe) that
    data arriving split does not use (`split_graphs`): a saved DatasetDict's, or a Hub dataset's, splits are used as
    they are (a Hub dataset without a validation split has --validation_fraction of train held out)."""
    if not isinstance(graphs, datasets.DatasetDict):
        return
    arrived = ["validation", "test"] if "validation" in graphs else ["test"]
    unused = [role for role in arrived if f"{role}_fraction" in given]
    if unused:
        flags = " and ".join(f"--{role}_fraction {getattr(data_args, f'{role}_fraction')}" for role in unused)
        logger.warning("%s %s not used: %s comes with its own %s split%s, used as %s", flags,
                       "is" if len(unused) == 1 else "are", data_name(data_args), " and ".join(arrived),
                       "s" if len(arrived) > 1 else "", "they are" if len(arrived) > 1 else "it is")


# the data flags that change which graphs there are, and so which land in the test split
DATA_SET_FLAGS = ("max_graphs", "qm9_target", "num_generated_graphs", "min_nodes", "max_nodes")


def split_settings(graphs: datasets.Dataset | datasets.DatasetDict, data_args: DataArguments, task: str,
                   seed: int) -> dict:
    """What decides which graphs are held out for validation and test: the data, its flags and, unless the data is
    a saved DatasetDict (split as saved), the split's seed, fractions and --stratify (a Hub dataset's train and test
    only: those that hold validation out of train)."""
    settings = {"dataset_name": data_args.builtin or data_args.dataset, **hub_dataset_choice(data_args)}
    as_saved = isinstance(graphs, datasets.DatasetDict)
    if not as_saved or "validation" not in graphs:
        settings.update(seed=seed, validation_fraction=data_args.validation_fraction)
        if not as_saved:
            settings["test_fraction"] = data_args.test_fraction
        if task == "graph_classification":
            settings["stratify"] = data_args.stratify
    settings.update({name: getattr(data_args, name) for name in DATA_SET_FLAGS if applies(data_args, name)})
    return settings


def hub_dataset_choice(data_args: DataArguments) -> dict:
    """The --dataset_config_name and --dataset_revision given (only a Hub --dataset takes them), and the commit the
    dataset was read at, once it is read."""
    chosen = {name: getattr(data_args, name) for name in HUB_DATASET_FLAGS if getattr(data_args, name) is not None}
    if data_args.dataset_commit is not None:
        chosen["dataset_commit"] = data_args.dataset_commit
    return chosen


def same_data(recorded: dict, settings: dict) -> bool:
    """Whether two data splits' settings name the same data, at any revision: another revision of a Hub dataset is
    the same data, edited; another configuration is other data."""
    def data(split: dict) -> tuple:
        # a pushed model records local data by its last part (hf_eff.hub.push), so data is matched by that
        return shown_name(split.get("dataset_name") or ""), split.get("dataset_config_name")

    return data(recorded) == data(settings)


def default_dataset_revision(data_args: DataArguments, model: GrantGCN, source: str) -> None:
    """A Hub --dataset given no --dataset_revision is read at the commit the model's training run on it records (as
    HaLoRA's example reads an adapter's; a record without one: at its revision): a split here divides the graphs that
    run saw as it did, also once the branch it read has moved, and offline from the cache."""
    if not is_hub_dataset(data_args) or data_args.dataset_revision is not None or model.data_split is None:
        return
    settings = {"dataset_name": data_args.dataset, **hub_dataset_choice(data_args)}
    if same_data(model.data_split, settings) and recorded_revision(model.data_split):
        data_args.dataset_revision = recorded_revision(model.data_split)
        logger.info("--dataset %s at revision %s, as --model_name_or_path %s records its training on it",
                    data_args.dataset, shown_revision(model.data_split), source)


def shown_setting(name: str, value) -> str:
    """A split setting as a warning shows it: a Hub --dataset's configuration or revision left out is the default."""
    return "the default" if value is None and name in HUB_DATASET_FLAGS else str(value)


def warn_unless_held_out(model: GrantGCN, settings: dict, source: str) -> None:
    """Warns when the split settings differ from those the trained model records for the same data (`same_data`; a
    model saved before they were recorded, or trained on other data, has nothing to compare): a split here may divide
    another revision of a Hub dataset otherwise."""
    if model.data_split is None or not same_data(model.data_split, settings):
        return
    recorded, settings = ({**split, "dataset_name": shown_name(split.get("dataset_name") or "")}
                          for split in (model.data_split, settings))
    differing = []
    # the revision is compared by commit where both record one (`same_revision`), and named with it
    for name in sorted((set(recorded) | set(settings) | {"dataset_revision"}) - {"dataset_commit"}):
        if name == "dataset_revision":
            if not same_revision(recorded, settings):
                differing.append(f"--dataset_revision {shown_revision(settings)} (the model's: "
                                 f"{shown_revision(recorded)})")
        elif recorded.get(name) != settings.get(name):
            differing.append(f"--{name} {shown_setting(name, settings.get(name))} (the model's: "
                             f"{shown_setting(name, recorded.get(name))})")
    if differing:
        logger.warning("%s differ from the training run of --model_name_or_path %s: its validation or test graphs may "
                       "include the model's training graphs; give that run's values to evaluate on the graphs it held out",
                       ", ".join(differing), source)


def described_run(model_args: ModelArguments, data_args: DataArguments, task: str, targets: list[str] | None,
                  names: list[str] | None, split: dict) -> dict:
    """What all_results.json says of the run besides its metrics: the task, the data and its split, and the trained
    model it started from or evaluated."""
    described = {"task": task, "dataset_name": data_args.builtin or data_args.dataset, **hub_dataset_choice(data_args),
                 "data_split": split}
    if data_args.dataset is not None:  # so that the card names a bare Hub id (no owner) as a Hub dataset, not built-in
        described["dataset_from_hub"] = is_hub_dataset(data_args)  # data, and a relative folder as local data
    if model_args.model_name_or_path is not None:
        described.update(model_name_or_path=model_args.model_name_or_path, model_revision=model_args.model_revision)
    if targets:
        described["target_columns"] = targets
    if names:
        described["class_names"] = names  # class id i (model output i) is class_names[i]
    return described


def validation_and_test(trainer: GraNTTrainer, test: datasets.Dataset) -> dict:
    return {**trainer.evaluate(), **trainer.evaluate(test, metric_key_prefix="test")}


def train_and_test(trainer: GraNTTrainer, curve: ValidationCurveCallback, test: datasets.Dataset) -> dict:
    """Trains, then evaluates on the validation and test graphs; the run's own best validation value and when it was
    first reached (training seconds), and the teacher's settings."""
    results = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint).metrics
    results.update(validation_and_test(trainer, test))
    metric, higher = primary_metric(trainer.args.task)
    if curve.curve:
        best = best_value(curve.curve, f"eval_{metric}", higher)
        results["best_eval_" + metric] = best
        results["time_to_target"] = time_to_target(curve.curve, f"eval_{metric}", best, higher)
    results.update(teacher=trainer.args.teacher, start_ratio=trainer.args.start_ratio)
    return results


# --- prediction (--do_predict) ------------------------------------------------------------------------------------

PREDICTIONS_FILE = "predict_results.csv"


def read_predict_file(path: str, smiles_column: str,
                      skip_invalid_smiles: bool) -> tuple[datasets.Dataset, list[str] | None, list[int] | None]:
    """The graphs of --predict_file and, for a CSV, its SMILES and each graph's data row in it: a CSV's
    `smiles_column` (other columns, targets included, are ignored; `skip_invalid_smiles` leaves out the unparsable
    ones) or a folder written by save_to_disk holding one Dataset (its y is ignored)."""
    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"--predict_file {path}: no such file or folder ({file.absolute()}); a --predict_file is "
                                "local, a CSV of SMILES or a folder written by save_to_disk, not a Hub dataset")
    if is_csv(file):
        try:
            # in the session's temporary folder: predicted once, the new molecules leave no copy in a cache
            return molecules_from_csv(file, smiles_column, name=f"--predict_file {path}",
                                      cache_dir=get_temporary_cache_files_directory(),
                                      skip_invalid_smiles=skip_invalid_smiles, return_rows=True)
        except MissingColumnError as error:  # the SMILES column is missing: say which flag names it
            raise MissingColumnError(f"{error}; name the SMILES column of --predict_file with "
                                     "--predict_smiles_column (default: --smiles_column)") from None
    if file.is_dir():
        try:
            graphs = datasets.load_from_disk(str(file))
        except IndexError:  # datasets saves no data file for an empty selection (select([])) and cannot load that
            raise ValueError(f"--predict_file {path} holds no graphs to predict") from None
        if isinstance(graphs, datasets.DatasetDict):
            raise ValueError(f"--predict_file {path} holds a DatasetDict with splits {sorted(graphs)}: save the graphs "
                             "to predict as one Dataset")
        missing = [column for column in GRAPH_COLUMNS if column not in graphs.column_names]
        if missing:
            raise MissingColumnError(f"--predict_file {path} lacks column(s) {missing}: graphs to predict need "
                                     f"{list(GRAPH_COLUMNS)} (it has {graphs.column_names})")
        if len(graphs) == 0:
            raise ValueError(f"--predict_file {path} holds no graphs to predict")
        return graphs, None, None
    raise ValueError(f"--predict_file {path} is neither a CSV ({', '.join(CSV_SUFFIXES)}, any case) nor a folder "
                     "written by datasets' save_to_disk")


def check_fits_model(model: GrantGCN, graphs: datasets.Dataset, task: str, path: str, source: str) -> None:
    """Refuses graphs to predict that the model cannot take: the checks of model_misfits against the model's own
    outputs, so that only the node features, the level and the task kind can differ."""
    misfits = model_misfits(model, task, feature_widths(graphs)[0] or 0, model.out_channels, model.class_names)
    if misfits:
        raise ValueError(f"--predict_file {path} does not fit {source} ({task}): " + "; ".join(misfits))


def model_source(model_args: ModelArguments) -> str:
    """The model as errors name it."""
    if model_args.model_name_or_path is None:
        return "the model trained here"
    return f"--model_name_or_path {model_args.model_name_or_path}"


def graphs_to_predict(data_args: DataArguments, model: GrantGCN, task: str, test: datasets.Dataset | None,
                      source: str) -> tuple[datasets.Dataset, list[str] | None, list[int] | None]:
    """The graphs of --predict_file (and a CSV's SMILES and rows), checked against the model (`source` names it), else
    the test split. Read, and the model's prediction columns named, before training: a bad file or target name fails
    before the run, not after it."""
    check_prediction_names(model, task, model.out_channels)
    if data_args.predict_file is None:
        return test, None, None
    graphs, smiles, rows = read_predict_file(data_args.predict_file,
                                             data_args.predict_smiles_column or data_args.smiles_column,
                                             data_args.skip_invalid_smiles)
    # its y is ignored. Checked here although trainer.predict checks again: this names the file, before training
    check_graph_dataset(graphs, task, f"--predict_file {data_args.predict_file}", labelled=False)
    check_fits_model(model, graphs, task, data_args.predict_file, source)
    return graphs, smiles, rows


def prediction_summary(data_args: DataArguments, graphs: datasets.Dataset) -> dict:
    """What all_results.json records of the predictions (predict_file None: the test split's)."""
    return {"predict_file": data_args.predict_file, "predict_graphs": len(graphs)}


def save_predictions(trainer: GraNTTrainer, table: pd.DataFrame) -> None:
    if trainer.is_world_process_zero():
        path = Path(trainer.args.output_dir) / PREDICTIONS_FILE
        table.to_csv(path, index=False)
        logger.info("predictions written to %s", path)


def remove_earlier_predictions(trainer: GraNTTrainer) -> None:
    """Removes an earlier run's predict_results.csv from --output_dir. Once this run has trained or evaluated, its
    model and all_results.json replace the earlier run's there, and predictions left beside them would pass for this
    model's (a push would upload them too); like run_glue, which overwrites the files it writes, a rerun into the same
    folder is allowed rather than refused. Called only after the run succeeded; --do_predict writes this run's own
    predictions after the model is saved (and pushed)."""
    path = Path(trainer.args.output_dir) / PREDICTIONS_FILE
    if trainer.is_world_process_zero() and path.exists():
        path.unlink()
        logger.info("removed %s: an earlier run's predictions, not this model's", path)


def is_prediction_only_run(data_args: DataArguments, training_args: GraNTTrainingArguments) -> bool:
    """--predict_file with --do_train False and no --dataset or built-in data (check_run_mode has made sure of
    --do_predict and --model_name_or_path)."""
    return (data_args.predict_file is not None and not training_args.do_train and data_args.builtin is None
            and data_args.dataset is None)


def predict_only(model: GrantGCN, model_args: ModelArguments, data_args: DataArguments,
                 training_args: GraNTTrainingArguments) -> dict:
    """--do_train False with --predict_file and no --dataset or built-in data: the model's predictions, no
    evaluation (there are no labelled graphs to evaluate on)."""
    check_options_apply(data_args)
    # nothing is evaluated: a recipe's eval_strategy would have the Trainer ask for an eval_dataset
    training_args.eval_strategy = IntervalStrategy.NO
    graphs, smiles, rows = graphs_to_predict(data_args, model, training_args.task, None, model_source(model_args))
    trainer = GraNTTrainer(model=model, args=training_args)
    table = predictions_table(trainer, graphs, smiles, rows)
    results = {"task": training_args.task, "model_name_or_path": model_args.model_name_or_path,
               "model_revision": model_args.model_revision, **prediction_summary(data_args, graphs)}
    written = save_all_results(trainer, results)
    save_predictions(trainer, table)
    log_written(logger, trainer, [*written, PREDICTIONS_FILE])
    return results


def main(argv: list[str] | None = None) -> dict:
    prepare_cpu_distributed()
    # before parsing, which logs the data that replaces a recipe's
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    model_args, data_args, training_args, command_line = parse_args(argv, return_command_line=True)
    check_world_size(training_args.world_size)
    check_run_mode(model_args, data_args, training_args)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    task = training_args.task
    trained = load_trained_model(model_args) if model_args.model_name_or_path is not None else None
    if is_prediction_only_run(data_args, training_args):
        return predict_only(trained, model_args, data_args, training_args)
    if trained is not None:
        default_dataset_revision(data_args, trained, model_args.model_name_or_path)
    # The first process builds (and caches) the data while the others wait, then they read the cache:
    # on an empty cache every process would build the whole set (QM9: 2 min and 3.7 GB each).
    with training_args.main_process_first(desc="building the graph dataset"):
        graphs = load_graphs(data_args, task, training_args.seed)
    warn_of_unused_fractions(graphs, data_args, command_line.given | command_line.recipe.keys())
    if trained is not None and trained.class_names is not None:
        graphs = as_model_classes(graphs, trained.class_names)
    splits = split_graphs(graphs, data_args, task, training_args.seed)
    check_splits_agree(splits, task, data_name(data_args))  # these two before the Trainer creates --output_dir
    check_teaching_plan(training_args, splits["train"])
    split = split_settings(graphs, data_args, task, training_args.seed)
    if trained is not None:
        warn_unless_held_out(trained, split, model_args.model_name_or_path)
    if isinstance(graphs, datasets.DatasetDict):  # the classes and targets are read from every split
        graphs = datasets.concatenate_datasets(list(graphs.values()))
    data = data_name(data_args)
    logger.info("%s (%s): %s", data, task, {k: len(v) for k, v in splits.items()})

    names = class_names(graphs) if task.endswith("classification") else None
    targets = target_columns(data_args)
    model = build_model(model_args, trained, task, len(splits["train"][0]["x"][0]), output_channels(graphs, task), names,
                        targets, data, splits["train"])
    to_predict = (graphs_to_predict(data_args, model, task, splits["test"], model_source(model_args))
                  if training_args.do_predict else None)
    curve = ValidationCurveCallback()
    trainer = GraNTTrainer(
        model=model, args=training_args, train_dataset=splits["train"] if training_args.do_train else None,
        eval_dataset=splits["validation"], callbacks=[curve], compute_metrics=metrics_for(task, None if names else targets),
    )
    if training_args.do_train:
        # config.json records them: a model saved before GrantGCN kept its task gets it, and the split is this run's
        model.task, model.data_split = task, split
        results = train_and_test(trainer, curve, splits["test"])
    else:  # evaluation only: the metrics and what was evaluated; no model is written
        results = validation_and_test(trainer, splits["test"])
        results.pop("epoch", None)  # the unused trainer's 0, not how long the evaluated model trained
    results.update(described_run(model_args, data_args, task, targets, names, split))
    if training_args.do_train and model_args.model_name_or_path is not None:  # the card's base model
        results["base_model"] = model_args.model_name_or_path
    predictions = None
    if to_predict is not None:
        predictions = predictions_table(trainer, *to_predict)
        results.update(prediction_summary(data_args, to_predict[0]))
    remove_earlier_predictions(trainer)
    written = save_all_results(trainer, results)
    if training_args.do_train:
        trainer.save_state()  # trainer_state.json: the run's log_history, its final evaluation's metrics included
        trainer.save_model()  # after the results: with --push_to_hub it pushes the card of the results above
        # the card a push writes, for a run kept local; a push wrote it itself (save_model above)
        card = ["README.md"] if save_local_model_card(trainer) else []
        written = ["the model", *written, "trainer_state.json", *card]
    if predictions is not None:
        save_predictions(trainer, predictions)  # after the push: the predicted graphs are not uploaded with the model
        written.append(PREDICTIONS_FILE)
    log_written(logger, trainer, written)
    return results


if __name__ == "__main__":
    main()
    finish_distributed()
