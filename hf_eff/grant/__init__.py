"""GraNT: graph neural teaching (Zhang et al., ICML 2025) as a `transformers.Trainer`."""

from hf_eff.grant.collator import GraphCollator
from hf_eff.grant.config import GraNTTrainingArguments
from hf_eff.grant.data import (
    atom_features,
    check_graph_dataset,
    class_names,
    encode_class_labels,
    feature_widths,
    generate_graphon_dataset,
    graphs_from_pyg,
    graphs_from_smiles,
    load_freesolv,
    load_qm9,
    load_smiles_csv,
    load_smiles_table,
    load_solubility,
    molecules_from_csv,
    split_dataset,
    target_statistics,
)
from hf_eff.grant.metrics import (
    ValidationCurveCallback,
    graph_task_metrics,
    metrics_for,
    time_to_target,
)
from hf_eff.grant.model import GrantGCN
from hf_eff.grant.predictions import predictions_table
from hf_eff.grant.schedules import plan_epochs, ratio_at, reselection_epochs
from hf_eff.grant.selection import (
    graph_scores,
    score_dataset,
    select,
    select_batches,
    select_within_batches,
)
from hf_eff.grant.tasks import TASKS, GraphTask
from hf_eff.grant.trainer import GraNTTrainer

__all__ = [
    "GraNTTrainer",
    "GraNTTrainingArguments",
    "GrantGCN",
    "GraphCollator",
    "GraphTask",
    "TASKS",
    "ValidationCurveCallback",
    "atom_features",
    "check_graph_dataset",
    "class_names",
    "encode_class_labels",
    "feature_widths",
    "generate_graphon_dataset",
    "graph_scores",
    "graph_task_metrics",
    "graphs_from_pyg",
    "graphs_from_smiles",
    "load_freesolv",
    "load_qm9",
    "load_smiles_csv",
    "load_smiles_table",
    "load_solubility",
    "molecules_from_csv",
    "metrics_for",
    "plan_epochs",
    "predictions_table",
    "ratio_at",
    "reselection_epochs",
    "score_dataset",
    "select",
    "select_batches",
    "select_within_batches",
    "split_dataset",
    "target_statistics",
    "time_to_target",
]
