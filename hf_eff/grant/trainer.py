"""GraNTTrainer: a `Trainer` whose teacher picks, at each reselection, the training graphs on
which the learner is most wrong, and trains on them until the next reselection.

Works with `GrantGCN` and with any PyG model whose forward takes (x, edge_index, batch), and
edge_attr if it names it (training, evaluation and the teacher pass the same inputs), and returns
the prediction, a tuple whose first element it is, or a dict with it under "logits"; the loss
comes from `args.task`. A model narrower than the data's targets or class ids is refused at its
first forward, by name. With `teacher="none"` (or `start_ratio=1`, every graph at every
epoch) it is plain full-data training through the same code path (the baseline); with `teacher="random"`, GraNT's schedule on random subsets (the
ablation of the selection).

Node-level evaluation (`evaluate`, `predict`) pads per graph: predictions are [graphs, max nodes,
outputs] and `label_ids` is a pair (labels [graphs, max nodes(, targets)], node mask [graphs, max
nodes], 1 on real nodes), which a user's own `compute_metrics` must unpack as `metrics_for` does.
`eval_loss` is the mean over nodes for node tasks, over labelled entries for graph_multilabel,
over graphs otherwise. A model with `target_std` (GrantGCN's standardised regression targets) is
trained, scored by the teacher and given its losses on each target's errors divided by its
`target_std`; its predictions and metrics stay in the targets' units. `predict` also takes graphs without y (e.g.
`graphs_from_smiles(new_smiles)`): predictions only, `label_ids` None and no loss (node-level:
graph g's nodes are predictions[g, :num_nodes[g]], the rest padding); `evaluate` refuses them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import time

import datasets
import torch
from huggingface_hub import ModelHubMixin
from safetensors import SafetensorError, safe_open
from torch.utils.data import DataLoader, Sampler, SequentialSampler
from torch_geometric.data import Dataset as PygDataset
from torch_geometric.data.data import BaseData
from torch_geometric.utils import scatter, to_dense_batch
from transformers import Trainer
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import get_last_checkpoint, has_length
from transformers.utils import (
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
)

from hf_eff.grant.collator import (
    GraphCollator,
    arrow_batches,
    forward_inputs,
    model_inputs,
    model_prediction,
)
from hf_eff.grant.config import GraNTTrainingArguments
from hf_eff.grant.data import (
    check_graph_dataset,
    feature_widths,
    largest_class_id,
    targets_per_unit,
)
from hf_eff.grant.metrics import metrics_for
from hf_eff.grant.schedules import (
    EpochPlan,
    batches_per_process,
    kept_units,
    plan_epochs,
    ratio_at,
)
from hf_eff.grant.selection import (
    class_strata,
    partition_batches,
    score_batches,
    scoring_batches,
    select,
    select_importance,
    select_stratified,
    weighted_loss,
)
from hf_eff.grant.tasks import (
    TASKS,
    GraphTask,
    check_class_count,
    multilabel_losses,
    node_losses,
    per_target_std,
    task_loss,
)
from hf_eff.hub.trainer_cards import HubCardTrainerMixin
from hf_eff.utils.best_model import reported_metric_names
from hf_eff.utils.resume import check_resume
from hf_eff.utils.speed_metrics import SPEED_METRICS
from hf_eff.utils.training_failures import TrainingFailuresMixin

logger = logging.getLogger(__name__)

TEACHER_STATE_NAME = "grant_teacher.json"
# A full model's weights as Trainer resumes them, whole or sharded
MODEL_WEIGHTS_FILES = (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME)


class TeachingBatchSampler(Sampler[list[int]]):
    """Yields the teacher's current batches (dataset indices), in a seeded order per epoch."""

    def __init__(self, seed: int):
        self.seed = seed
        self.epoch = 0
        self.batches: list[list[int]] = []

    def set_batches(self, batches: list[torch.Tensor]) -> None:
        self.batches = [b.tolist() for b in batches]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        order = torch.randperm(len(self.batches), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        for position in order.tolist():
            yield self.batches[position]


class _IndexedGraphs(torch.utils.data.Dataset):
    """The training graphs for `selection="importance"`'s loader: a batch's rows come with their dataset indices,
    which `_IndexedCollator` puts in the collated batch, so that the loss finds each graph's weight whatever the
    loader prefetches."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]

    def __getitems__(self, indices: list[int]):
        rows = (self.dataset.__getitems__(indices) if hasattr(self.dataset, "__getitems__")
                else [self.dataset[i] for i in indices])
        return indices, rows


@dataclasses.dataclass
class _IndexedCollator:
    """Collates `_IndexedGraphs`' rows with `collate` and adds their dataset indices as "graph_index"."""

    collate: object

    def __call__(self, indexed) -> dict:
        indices, rows = indexed
        return {**self.collate(rows), "graph_index": torch.tensor(indices)}


def _refuse_pyg_graphs(dataset, name: str, task: str) -> None:
    """A PyG user's graphs (a Data list, a PyG dataset) have no columns to read; say how to convert them."""
    if isinstance(dataset, PygDataset) or (isinstance(dataset, (list, tuple)) and dataset and isinstance(dataset[0], BaseData)):
        raise TypeError(f"{name} holds torch_geometric graphs; GraNTTrainer takes a graph datasets.Dataset: convert them "
                        f"with hf_eff.grant.graphs_from_pyg({name}, {task!r})")


def _check_length_column(args, dataset) -> None:
    """The length-grouped training samplers read each row's length from `length_column_name`; without that
    column transformers looks for input_ids, which graph rows lack. (Evaluation is never grouped: `_get_eval_sampler`.)"""
    sampling, name = args.sampling_strategy, "train_dataset"
    if (sampling in ("group_by_length", "batch_rebalance") and isinstance(dataset, datasets.Dataset)
            and args.length_column_name not in dataset.column_names):
        raise ValueError(
            f"train_sampling_strategy={sampling!r} reads each graph's length from the column "
            f"length_column_name={args.length_column_name!r}, which {name} lacks; set length_column_name='num_nodes'"
        )


def _take_the_models_task(args: GraNTTrainingArguments, model) -> GraNTTrainingArguments:
    """The run's arguments: `args`, or where its task is None a copy given the task the model records (a GrantGCN's
    `task`, kept in its config.json), with the settings that depend on it checked; refuses a run where neither names
    a task, or where they name different ones."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    recorded = getattr(model, "task", None)
    recorded = recorded if isinstance(recorded, str) else None
    if args.task is None:
        if recorded is None:
            what = "no model is given (model_init's is built later)" if model is None else (
                f"the model ({type(model).__name__}) records none")
            raise ValueError(f"GraNTTrainingArguments(task=None) and {what}: pass task=, one of {TASKS}")
        args = copy.copy(args)  # the caller's arguments may serve models of other tasks
        args.task = recorded
        args.check_task_settings()
    elif recorded is not None and recorded != args.task:
        raise ValueError(
            f"task={args.task!r}, but the model records task={recorded!r} (it was built or trained for that task): "
            f"leave task=None to take the model's, or, to retrain it for {args.task!r}, give it that task "
            f"(GrantGCN.from_pretrained(path, task={args.task!r}))"
        )
    return args


def _own_target_std(model, task: GraphTask, device) -> torch.Tensor | None:
    """The `target_std` of a model that standardises its targets but holds no `_target_std` buffer of it (GrantGCN
    does), as a tensor made once on `device`; None for a GrantGCN or a model that does not standardise."""
    std = getattr(model, "target_std", None)
    if std is None:
        return None
    if not task.endswith("regression"):
        raise ValueError(f"the model standardises regression targets (target_std={std}); the task is {task}")
    return None if isinstance(getattr(model, "_target_std", None), torch.Tensor) else torch.as_tensor(std, device=device)


class GraNTTrainer(TrainingFailuresMixin, HubCardTrainerMixin, Trainer):
    """`Trainer` for a torch_geometric model on graph datasets (`graphs_from_pyg`, `graphs_from_smiles`: columns x,
    edge_index, num_nodes, y, optionally edge_attr), whose teacher picks the graphs it trains on
    (`GraNTTrainingArguments`: task, teacher, variant, ratio and reselection schedules).

    `model` is any `nn.Module` whose forward takes (x, edge_index, batch), and edge_attr if it names it, and returns
    the prediction, a tuple led by it or a dict with it under "logits"; the loss comes from `args.task` (None: the task
    the model records, e.g. a `GrantGCN.from_pretrained` model's; a model declaring `in_channels` is checked against
    the data's node features). A run resumed under other schedule settings is described at `_resumed_plan`; one under
another gradient_accumulation_steps than its checkpoint was saved with is refused. The default
    collator and metrics (`GraphCollator.for_dataset`, `metrics_for`) follow the task. Evaluation, prediction (graphs
    without y too) and the node-level output layout are described in this module's docstring; a model of another
    class than `GrantGCN` saves as model.safetensors (with config.json where it is a `PyTorchModelHubMixin`)."""

    args: GraNTTrainingArguments
    card_kind = "grant_model"

    # keyword-only from compute_metrics on: Trainer's sixth positional argument is processing_class
    def __init__(self, model=None, args: GraNTTrainingArguments | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, *, compute_metrics=None, **kwargs):
        if not isinstance(args, GraNTTrainingArguments):
            raise TypeError("GraNTTrainer needs GraNTTrainingArguments (they name the task and the teacher)")
        args = _take_the_models_task(args, model)
        self.task = GraphTask(args.task)
        # (name, targets per graph or node) of the first labelled dataset given, which the others must match
        self._targets = None
        if train_dataset is not None:
            _refuse_pyg_graphs(train_dataset, "train_dataset", self.task)
            check_graph_dataset(train_dataset, self.task, "train_dataset")
            self._check_targets(train_dataset, "train_dataset")
        evals = eval_dataset if isinstance(eval_dataset, dict) else {"eval_dataset": eval_dataset}
        for name, dataset in evals.items():
            if dataset is not None:
                _refuse_pyg_graphs(dataset, name, self.task)
                check_graph_dataset(dataset, self.task, name)
                self._check_targets(dataset, name)
        _check_length_column(args, train_dataset)
        if args.batch_eval_metrics and compute_metrics is None:  # transformers blamed "your compute_metrics"
            raise ValueError(
                "batch_eval_metrics=True: the default metrics (metrics_for: ROC-AUC, AP, MAE) rank or average the whole "
                "evaluation set, not batch by batch; leave it False, or pass a compute_metrics taking compute_result"
            )
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError("GraNTTrainer takes its loss from args.task (task_loss); compute_loss_func would not be used")
        reference = next((d for d in (train_dataset, *evals.values()) if d is not None), None)
        if data_collator is None:  # one that knows the data's edge_attr width, for batches without edges
            data_collator = GraphCollator(self.task) if reference is None else GraphCollator.for_dataset(self.task, reference)
        if args.remove_unused_columns and type(data_collator) is GraphCollator:
            raise ValueError(
                "remove_unused_columns=True would drop the columns GraphCollator batches that the model's forward does "
                "not name (num_nodes, y); leave it False, GraNTTrainingArguments' default"
            )
        compute_metrics = compute_metrics or metrics_for(self.task)
        self._check_metric_for_best_model(args, compute_metrics, eval_dataset)  # before Trainer makes output_dir
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            compute_metrics=compute_metrics,
            **kwargs,
        )
        # compute_loss returns the batch mean and ignores num_items_in_batch: the Trainer must divide it by the
        # accumulation steps, which it skips for a model taking loss kwargs (any forward with **kwargs)
        self.model_accepts_loss_kwargs = False
        self._forward_inputs = forward_inputs(self.model, self.task)
        self._own_target_std = _own_target_std(self.model, self.task, args.device)
        # the model is built for the node (and edge) feature widths of the first dataset given
        named = [(name, d) for name, d in (("train_dataset", train_dataset), *evals.items()) if d is not None]
        self._widths = (named[0][0], feature_widths(named[0][1])) if named else None
        if named:
            self._check_model_width(self._widths[1][0], named[0][0])
        for name, dataset in named[1:]:
            self._check_widths(dataset, name)
        # classes in the data, against which a classifier's width is checked (shapes only: no read from the device)
        self._num_classes = (max(largest_class_id(d) for d in (train_dataset, *evals.values()) if d is not None) + 1
                             if self.task.is_classification and reference is not None else 0)
        self._data_seed = args.seed if args.data_seed is None else args.data_seed  # as transformers' samplers
        self._sampler = TeachingBatchSampler(self._data_seed)
        self._plan = None
        self._settings_plan = None  # plan_epochs' plan for this run's settings; _plan is it but on a changed resume
        self._scoring_batches = None
        self._strata = None
        self._strata_sizes = None
        self._loss_units = None  # selection="importance": each training graph's loss units (nodes, or 1 per graph)
        self._batch_weights: list[list[float]] | None = None  # per batch of the sampler: its graphs' loss weights
        self._graph_weights: torch.Tensor | None = None  # the same by dataset index, on the device (0 elsewhere)
        self._loss_sums: list[torch.Tensor] | None = None  # during a node or multilabel task's evaluation_loop
        self.teaching_log: list[dict] = []

    # --- loss and evaluation -------------------------------------------------------------
    def _check_metric_for_best_model(self, args: GraNTTrainingArguments, compute_metrics, eval_dataset) -> None:
        """Refuses a `metric_for_best_model` that evaluate does not report, naming those it does: the Trainer would
        raise KeyError at the first evaluation, after the training steps before it. Checked where the names are
        known: this class's evaluate with `metrics_for`'s metrics (the default); a dict eval_dataset's are
        `<key>_<metric>`."""
        metric = args.metric_for_best_model
        names_of = getattr(compute_metrics, "metric_names", None)
        if metric is None or eval_dataset is None or names_of is None or type(self).evaluate is not GraNTTrainer.evaluate:
            return
        num_targets = self._targets[1] if self._targets is not None else 1
        names = reported_metric_names(
            ["loss", *([] if args.prediction_loss_only else names_of(num_targets)), *SPEED_METRICS], eval_dataset)
        if metric.removeprefix("eval_") not in names:
            raise ValueError(
                f"metric_for_best_model (--metric_for_best_model) is {metric!r}, which GraNTTrainer's evaluation does "
                f"not report for task={str(self.task)!r}; it reports {', '.join(names)} (each also with an eval_ prefix)"
            )

    @property
    def _target_std(self) -> torch.Tensor | None:
        """Each target's standard deviation, by which the loss and the teacher's scores divide its errors: a GrantGCN's
        buffer, read at each use (it follows the model's moves and casts, such as fp16_full_eval's), else the
        tensor made of a model's own `target_std`."""
        buffer = getattr(self.model, "_target_std", None)
        return buffer if isinstance(buffer, torch.Tensor) else self._own_target_std

    def _forward(self, model, inputs):
        outputs = model_prediction(model(**model_inputs(inputs, self._forward_inputs, model)), model)
        check_class_count(self.task, outputs.size(-1), self._num_classes)
        return outputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # graph_index: only in the batches of selection="importance"'s training loader
        graph_index = inputs.pop("graph_index", None)
        outputs = self._forward(model, inputs)
        scaled = per_target_std(outputs, inputs["labels"], self._target_std)
        if graph_index is None or self._graph_weights is None:  # unweighted: evaluation, top_k, epochs at ratio 1
            loss = task_loss(self.task, *scaled)
        else:
            loss = weighted_loss(self.task, *scaled, inputs["batch"], self._graph_weights[graph_index])
        return (loss, outputs) if return_outputs else loss

    def _set_batch_weights(self, batch_weights: list[list[float]] | None) -> None:
        """The loss weights of the sampler's batches (None: unweighted), also by dataset index for `compute_loss`."""
        self._batch_weights = batch_weights
        self._graph_weights = None
        if batch_weights is not None:
            weights = torch.zeros(len(self.train_dataset))
            for batch, batch_weight in zip(self._sampler.batches, batch_weights):
                weights[batch] = torch.tensor(batch_weight)
            self._graph_weights = weights.to(self.args.device)

    def card_run_settings(self) -> dict:
        return {"teacher": self.args.teacher, "start_ratio": self.args.start_ratio, "task": self.args.task}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        with self._given_dataset(eval_dataset, metric_key_prefix, needs_labels=True):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
        with self._given_dataset(test_dataset, metric_key_prefix, needs_labels=False):
            return super().predict(test_dataset, ignore_keys, metric_key_prefix)

    @contextlib.contextmanager
    def _given_dataset(self, dataset, prefix: str, needs_labels: bool):
        """A labelled dataset given to evaluate or predict is checked as the constructor checks its own: a NaN
        target would make every metric NaN, a node split mask be ignored. Its class ids join the count the
        model's width is checked against at each forward (`_forward`) while it is evaluated. Graphs without y
        are to predict on, checked but for y (NaN or inf in x or edge_attr would give NaN predictions); evaluate
        refuses them, which it would evaluate without a loss or a metric."""
        num_classes = self._num_classes
        _refuse_pyg_graphs(dataset, f"{prefix}_dataset", self.task)
        if isinstance(dataset, datasets.Dataset):
            self._check_widths(dataset, f"{prefix} dataset")
            if "y" in dataset.column_names:
                check_graph_dataset(dataset, self.task, f"{prefix} dataset")
                self._check_targets(dataset, f"{prefix} dataset", keep=False)
                if self.task.is_classification:
                    self._num_classes = max(num_classes, largest_class_id(dataset) + 1)
            elif needs_labels:
                raise ValueError(
                    f"{prefix} dataset has no column y (it has {dataset.column_names}): evaluate needs y; predict takes "
                    "graphs without y"
                )
            else:
                check_graph_dataset(dataset, self.task, f"{prefix} dataset", labelled=False)
        try:
            yield
        finally:
            self._num_classes = num_classes

    def _check_targets(self, dataset: datasets.Dataset, name: str, keep: bool = True) -> None:
        """Refuses a dataset (checked by `check_graph_dataset`: every graph has its first graph's count) whose targets
        per graph (a node task's: per node) differ from those of the trainer's first labelled dataset, before the model
        fails on them (or an evaluation after training does); with `keep`, the first such count becomes the
        reference."""
        targets = targets_per_unit(dataset, self.task.level)
        if targets is None:
            return
        if self._targets is None:
            if keep:
                self._targets = (name, targets)
            return
        reference, expected = self._targets
        if targets != expected:
            level = self.task.level
            raise ValueError(f"{name}: y holds {targets} target(s) per {level}, {reference}'s {expected}; "
                             f"give every dataset the same targets per {level}")

    def _check_widths(self, dataset: datasets.Dataset, name: str) -> None:
        """Refuses graphs whose node features, or edge_attr where the model takes it, differ in width from those of
        the trainer's first dataset (or lack its edge_attr): the model would fail on them with a shape error."""
        if self._widths is None:  # a trainer built without data: the model's own width is all there is to check
            self._check_model_width(feature_widths(dataset)[0], name)
            return
        reference, (x_width, edge_width) = self._widths
        x_other, edge_other = feature_widths(dataset)
        if None not in (x_width, x_other) and x_other != x_width:
            raise ValueError(f"{name}: node features x have {x_other} columns, {reference}'s {x_width}, which the "
                             "model takes; build its graphs' x as the training graphs' are")
        if edge_width is None or "edge_attr" not in self._forward_inputs:
            return
        if "edge_attr" not in dataset.column_names:
            raise ValueError(f"{name} has no edge_attr column, which {type(self.model).__name__}.forward takes "
                             f"({reference} has edge_attr of {edge_width} features per edge)")
        if edge_other is not None and edge_other != edge_width:
            raise ValueError(f"{name}: edge_attr has {edge_other} features per edge, {reference}'s {edge_width}, "
                             "which the model takes")

    def _check_model_width(self, x_width: int | None, name: str) -> None:
        """Refuses node features of another width than a model declares (GrantGCN's and PyG's BasicGNN models'
        `in_channels`; -1 is PyG's lazy width), on which it would fail inside torch with a shape error. Models
        that declare none are left alone."""
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        declared = getattr(model, "in_channels", None)
        if type(declared) is int and declared > 0 and x_width is not None and declared != x_width:
            raise ValueError(
                f"{type(model).__name__} was built with in_channels={declared}, but the node features x of {name} "
                f"have {x_width} columns (hf_eff.grant.feature_widths): build the model with in_channels={x_width}"
            )

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        # The Trainer weights each batch's loss by its number of graphs; a node task's loss is the mean over
        # nodes (the sum of every graph's node losses over the number of nodes), graph_multilabel's the mean
        # over the labelled entries, which batches hold in different numbers.
        self._loss_sums = [] if self.task.level == "node" or self.task.is_multilabel else None
        self._share_first_process_buffers()
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
            if self._loss_sums:
                # one copy to the CPU after the loop (not a sync per batch), summed there in float64: a set's
                # count passes float32's exact integers (2**24 labelled entries) on molpcba
                loss_sum, count = torch.cat(self._loss_sums).cpu().double().sum(dim=0)
                output.metrics[f"{metric_key_prefix}_loss"] = (loss_sum / count.clamp(min=1)).item()
        finally:
            self._loss_sums = None
        return output

    def _share_first_process_buffers(self) -> None:
        """DDP hands every process the first one's buffers before a training forward, which then updates its own
        copy: after training each holds its own BatchNorm statistics. Evaluation and the teacher's scoring use
        those of the first process, which saves the model."""
        if self.accelerator.num_processes > 1:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def _get_eval_sampler(self, eval_dataset):
        # transformers orders evaluation by length too under train_sampling_strategy="group_by_length", so predict's
        # rows would not follow the graphs; PyG batches pad nothing, so the grouping would save nothing here
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")  # None on graphs without y (new molecules): predictions only, as Trainer gives them
        with torch.no_grad():
            if labels is None:
                loss, outputs = None, self._forward(model, inputs)
            elif self._loss_sums is None:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
            else:
                # per graph (loss sum, node or labelled-entry count), gathered as the Trainer gathers graphs:
                # without the duplicates that even out the last batch across processes. In float32 whatever the
                # model's dtype (bf16_full_eval, fp16_full_eval): bf16 rounds a count past 256, fp16 overflows
                outputs = self._forward(model, inputs)
                if self.task.is_multilabel:
                    sums, counts = multilabel_losses(self.task, outputs, labels)
                    loss = sums.sum() / counts.sum().clamp(min=1)  # task_loss's, from the same sums
                else:
                    # the batch loss as compute_loss gives it, in the model's dtype (compute_metrics sees it with
                    # include_for_metrics=["loss"]); eval_loss is the sums' ratio (evaluation_loop)
                    scaled = per_target_std(outputs, labels, self._target_std)
                    loss = task_loss(self.task, *scaled)
                    sums = scatter(node_losses(self.task, scaled[0].float(), scaled[1]), inputs["batch"], dim=0,
                                   dim_size=inputs["num_nodes"].numel(), reduce="sum")
                    counts = inputs["num_nodes"]
                self._loss_sums.append(self.accelerator.gather_for_metrics(torch.stack([sums, counts.float()], dim=-1)))
        loss = None if loss is None else loss.detach()
        if prediction_loss_only:
            return loss, None, None
        if self.task.level == "node":
            # [graphs, max nodes, ...]: the Trainer pads (with -100) and gathers along the node axis
            # across batches and processes, and drops the duplicated graphs of uneven shards. The
            # labels travel with a node mask (1 on real nodes, 0 or -100 on padding), since -100 can
            # be a real regression target.
            num_graphs = inputs["num_nodes"].numel()
            outputs = to_dense_batch(outputs, inputs["batch"], fill_value=-100, batch_size=num_graphs)[0]
            if labels is not None:
                labels, mask = to_dense_batch(labels, inputs["batch"], fill_value=-100, batch_size=num_graphs)
                labels = (labels, mask.long())
        return loss, outputs.detach(), labels

    def _save(self, output_dir=None, state_dict=None):
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)  # the user's module and keys
        if isinstance(model, ModelHubMixin):  # config.json + safetensors, loadable by from_pretrained
            output_dir = output_dir or self.args.output_dir
            model.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
        else:
            super()._save(output_dir, model.state_dict() if state_dict is None else state_dict)

    # --- teaching ------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint found in output_dir {self.args.output_dir}")
        if resume_from_checkpoint:
            self._check_resumable(resume_from_checkpoint)
        if not self.args.selects:
            if resume_from_checkpoint:  # train(None) resumes nothing, whatever args.resume_from_checkpoint says
                check_resume(self.args, resume_from_checkpoint)
            return super().train(resume_from_checkpoint=resume_from_checkpoint or None, **kwargs)
        if self.train_dataset is None:
            raise ValueError("GraNTTrainer: training requires a train_dataset (the graphs the teacher selects from)")
        self._strata = class_strata(self.train_dataset["y"]) if self.args.stratify_selection else None
        self._strata_sizes = None if self._strata is None else [len(c) for c in self._strata]
        self._loss_units = None
        if self.args.selection == "importance":
            self._loss_units = (torch.as_tensor(self.train_dataset["num_nodes"]) if self.task.level == "node"
                                else torch.ones(len(self.train_dataset)))
        self._set_batch_weights(None)
        self._settings_plan = self._plan = plan_epochs(
            num_graphs=len(self.train_dataset),
            batch_size=self._train_batch_size,
            num_epochs=int(self.args.num_train_epochs),
            variant=self.args.variant,
            start_ratio=self.args.start_ratio,
            ratio_schedule=self.args.ratio_schedule,
            ratio_stages=self.args.ratio_stages,
            reselect_schedule=self.args.reselect_schedule,
            interval_start=self.args.reselect_interval_start,
            interval_end=self.args.reselect_interval_end,
            num_processes=self.args.world_size,
            strata_sizes=self._strata_sizes,
        )
        if not any(entry.reselect for entry in self._plan[1:]):
            # The share actually kept, not the ratio: GraNT(B) keeps at least one batch, GraNT(S) one graph per batch
            kept, of = kept_units(len(self.train_dataset), self._train_batch_size, self._plan[0].ratio,
                                  self.args.variant, self._strata_sizes)
            logger.warning(
                "GraNT selects once in this run: with num_train_epochs=%d the first reselection would come after it, so "
                "every epoch trains on the same %d of the %d training %s (%.0f%%), picked at epoch 0 (the paper's "
                "schedule spans hundreds of epochs). For a short run lower reselect_interval_start (e.g. 1), raise "
                "start_ratio, or use teacher='none'.",
                len(self._plan), kept, of, "batches" if self.args.variant == "batch" else "graphs", 100 * kept / of,
            )
        self.teaching_log = []
        self._scoring_batches = None
        if resume_from_checkpoint:  # the plan's check first: it counts the teacher's epochs, which vary in length
            self._plan = self._resumed_plan(resume_from_checkpoint, *self._load_teacher_state(resume_from_checkpoint))
            check_resume(self.args, resume_from_checkpoint)
        output = super().train(resume_from_checkpoint=resume_from_checkpoint or None, **kwargs)
        # The run's totals, logged as well so that every card (read from the log history) reports them
        totals = {"grant_selection_seconds": sum(entry["selection_seconds"] for entry in self.teaching_log),
                  "grant_reselections": len(self.teaching_log)}
        self.log(totals)
        output.metrics.update(totals)
        return output

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, is_training=False,
                        dataloader_key=None) -> DataLoader:
        # The Trainer's loaders (full-data training, evaluation, prediction) read a
        # `datasets.Dataset`'s batches as Arrow columns when the default GraphCollator collates
        # them (`arrow_batches`: same tensors, ~7x faster on QM9), except where the Trainer reads
        # the dataset itself: removing unused columns, length-grouped samplers.
        if not self.args.remove_unused_columns and self.args.sampling_strategy in ("random", "sequential"):
            dataset = arrow_batches(dataset, self.data_collator)
        return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, dataloader_key)

    def get_train_dataloader(self) -> DataLoader:
        if not self.args.selects:
            return super().get_train_dataloader()
        dataset, collate = arrow_batches(self.train_dataset, self.data_collator), self.data_collator
        if self.args.selection == "importance":  # each batch carries its graphs' indices, by which the loss weighs them
            dataset, collate = _IndexedGraphs(dataset), _IndexedCollator(collate)
        loader = DataLoader(
            dataset,
            batch_sampler=self._sampler,
            collate_fn=collate,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            # the sampler's batches are read in this process at each epoch: persistent workers see the new ones
            persistent_workers=self.args.dataloader_persistent_workers,
            prefetch_factor=self.args.dataloader_prefetch_factor,
            multiprocessing_context=getattr(self.args, "dataloader_multiprocessing_context", None),
            # as transformers passes it: only where the arguments have it (torch >= 2.6's DataLoader)
            **({"in_order": self.args.dataloader_in_order} if hasattr(self.args, "dataloader_in_order") else {}),
        )
        return self.accelerator.prepare(loader)

    def _steps(self, num_batches: int) -> int:
        return math.ceil(num_batches / self.args.gradient_accumulation_steps)

    def set_initial_training_values(self, args, dataloader):
        if not args.selects:
            return super().set_initial_training_values(args, dataloader)
        # The schedule's real totals (the sampler is still empty here), so that the
        # learning-rate scheduler spans exactly the steps taken.
        max_steps = sum(self._steps(entry.num_batches) for entry in self._plan)
        total_train_batch_size = self.get_total_train_batch_size(args)
        return (
            len(self._plan),  # num_train_epochs
            self._steps(self._plan[0].num_batches),  # num_update_steps_per_epoch (the first)
            len(self.train_dataset),  # num_examples
            0,  # num_train_samples: the graphs the teacher's subsets hold, counted at the end (_finalize_training)
            total_train_batch_size,
            self._plan[0].num_batches,  # steps_in_epoch (the first; _run_epoch sets each)
            max_steps,
        )

    def _finalize_training(self, trial, num_train_samples, start_time):
        if self.args.selects:
            # transformers reports num_train_samples x (steps of this call) / max_steps, a whole batch per step by
            # default, which a subset smaller than one batch (full-batch teaching) inflates many times over, and a
            # resumed run would report at the whole plan's mean: given the graphs of this call's steps, it reports them
            steps = self.state.global_step - self._initial_global_step
            taught = self._graphs_taught(self._initial_global_step, self.state.global_step)
            num_train_samples = taught * max(self.state.max_steps, 1) / max(steps, 1)
        return super()._finalize_training(trial, num_train_samples, start_time)

    def _graphs_taught(self, first_step: int, last_step: int) -> float:
        """The graphs the optimizer steps [first_step, last_step) trained on, over every process: each epoch's
        subset as the teacher logged it (in force until its next reselection), a partly run epoch's in proportion
        to the steps of it taken."""
        subset_sizes = {entry["epoch"]: entry["subset_size"] for entry in self.teaching_log}
        graphs, epoch_start, subset_size = 0.0, 0, 0
        for entry in self._plan:
            subset_size = subset_sizes.get(entry.epoch, subset_size)
            steps = self._steps(entry.num_batches)
            taken = min(last_step, epoch_start + steps) - max(first_step, epoch_start)
            if taken > 0:
                graphs += subset_size * taken / steps
            epoch_start += steps
        return graphs

    def _epoch_at_step(self, plan: list[EpochPlan], step: int) -> tuple[int, int]:
        """(epoch, steps of it before `step`) of the optimizer step `step` (0-based) under `plan`; (len(plan), 0)
        past its end."""
        epoch_start = 0
        for entry in plan:
            steps = self._steps(entry.num_batches)
            if step < epoch_start + steps:
                return entry.epoch, step - epoch_start
            epoch_start += steps
        return len(plan), 0

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial):
        epochs_trained, steps_trained_in_current_epoch = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        if not self.args.selects or resume_from_checkpoint is None:
            return epochs_trained, steps_trained_in_current_epoch
        # The Trainer divides global_step by the first epoch's length; GraNT's epochs vary, so
        # walk the plan to the epoch (and the batch inside it) of the next step.
        epoch, skipped = self._epoch_at_step(self._plan, self.state.global_step)
        return epoch, 0 if self.args.ignore_data_skip else skipped * self.args.gradient_accumulation_steps

    def _save_optimizer_and_scheduler(self, output_dir):
        # The teacher's subset belongs with the optimizer's state: resuming needs both, and it
        # cannot be recomputed later (it was scored by the model as it was at the reselection).
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.selects and self.args.should_save:
            # the plan the steps so far were taken under (a resume under other settings keeps its past epochs), and
            # the one this run's settings give (a resume under the same settings goes on with the first)
            state = {"batches": self._sampler.batches, "teaching_log": self.teaching_log,
                     "batch_weights": self._batch_weights,
                     "plan": [dataclasses.asdict(entry) for entry in self._plan],
                     "settings_plan": [dataclasses.asdict(entry) for entry in self._settings_plan],
                     # the plan's epochs are counted in optimizer steps of this many batches (_epoch_at_step)
                     "gradient_accumulation_steps": self.args.gradient_accumulation_steps}
            with open(os.path.join(output_dir, TEACHER_STATE_NAME), "w") as file:
                json.dump(state, file)

    def _check_resumable(self, checkpoint: str) -> None:
        """Refuses, before anything loads, a checkpoint this trainer cannot go on from: a missing folder, one of a run
        with a teacher resumed without one (teacher='none') or the other way round (its grant_teacher.json holds the
        subset being taught), and another trainer's (no weights of this model's names: a HaLoRA adapter, a splat
        model)."""
        if not os.path.isdir(checkpoint):
            raise FileNotFoundError(
                f"cannot resume GraNT from {checkpoint}: the folder does not exist; pass a checkpoint-<step> "
                "folder of output_dir, or resume_from_checkpoint=True for the last one"
            )
        taught = os.path.isfile(os.path.join(checkpoint, TEACHER_STATE_NAME))
        if self.args.selects and not taught:
            raise ValueError(
                f"cannot resume GraNT from {checkpoint}: it has no {TEACHER_STATE_NAME} (the subset being taught); "
                "it was saved by another trainer, by a run with teacher='none' (resume it with teacher='none') or "
                "with save_only_model=True"
            )
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model_class = type(model).__name__
        if not self.args.selects and taught:
            raise ValueError(
                f"cannot resume from {checkpoint} with teacher='none': it was saved by a GraNT run with a teacher "
                f"({TEACHER_STATE_NAME}: the subset being taught, which a run without one would drop, counting its "
                "epochs over every graph); resume with the teacher settings it was trained with (its "
                f"training_args.bin), or start a new run from its weights ({model_class}.from_pretrained"
                f"({checkpoint!r}); examples/grant_train.py: --model_name_or_path)"
            )
        weights = os.path.join(checkpoint, SAFE_WEIGHTS_NAME)
        sharded = self.is_deepspeed_enabled or self.is_fsdp_enabled  # ZeRO-3 and FSDP save the weights in shards
        if not sharded and not any(os.path.isfile(os.path.join(checkpoint, name)) for name in MODEL_WEIGHTS_FILES):
            raise ValueError(
                f"cannot resume from {checkpoint}: it holds no {SAFE_WEIGHTS_NAME} ({model_class}'s weights): it was "
                "saved by another trainer (a HaLoRA run's adapter?), or the file was lost; resume from a checkpoint-N "
                "of a GraNT run's output_dir"
            )
        if os.path.isfile(weights):
            try:
                with safe_open(weights, framework="pt") as saved:
                    names = set(saved.keys())
            except SafetensorError:  # a damaged file: the load names it (TrainingFailuresMixin)
                return
            if names.isdisjoint(model.state_dict()):
                raise ValueError(
                    f"cannot resume from {checkpoint}: its {SAFE_WEIGHTS_NAME} holds none of {model_class}'s weights "
                    f"(it holds {', '.join(sorted(names)[:3])}{', ...' if len(names) > 3 else ''}): it was saved by "
                    "another trainer (a splat run's?); resume from a checkpoint-N of a GraNT run's output_dir"
                )

    def _load_teacher_state(self, checkpoint: str) -> tuple[list[EpochPlan] | None, list[EpochPlan] | None]:
        """Restores the checkpoint's subset and teaching log (``_check_resumable`` found it); returns the plan it was
        trained under and the one its run's settings gave (each None when the checkpoint predates that record)."""
        path = os.path.join(checkpoint, TEACHER_STATE_NAME)
        with open(path) as file:
            state = json.load(file)
        saved_accumulation = state.get("gradient_accumulation_steps")  # None: saved before checkpoints recorded it
        if saved_accumulation not in (None, self.args.gradient_accumulation_steps):
            # global_step counts optimizer steps of the saved number of batches: under another, the epoch and batch
            # to resume from would be misplaced (transformers' Trainer has the same limit)
            raise ValueError(
                f"cannot resume GraNT from {checkpoint}: it was saved with gradient_accumulation_steps="
                f"{saved_accumulation}, this run has gradient_accumulation_steps={self.args.gradient_accumulation_steps}; "
                f"resume with gradient_accumulation_steps={saved_accumulation}, or start a new run from its weights "
                f"({type(self.model).__name__}.from_pretrained)"
            )
        self._sampler.batches = state["batches"]
        self._set_batch_weights(state.get("batch_weights"))  # None: top_k's subset, or saved before weights were
        self.teaching_log = state["teaching_log"]
        return tuple(None if key not in state else [EpochPlan(**entry) for entry in state[key]]
                     for key in ("plan", "settings_plan"))

    def _resumed_plan(self, checkpoint: str, trained: list[EpochPlan] | None,
                      trained_settings: list[EpochPlan] | None) -> list[EpochPlan]:
        """The plan a resumed run follows. Under the settings it was trained with, the checkpoint's (this run's plan,
        or the one it followed since an earlier resume under other settings). Under a plan that
        differs in the epochs already trained (num_train_epochs or a schedule setting changed: the plan of every
        epoch depends on them), the trained epochs stay as they were taken, the epoch the checkpoint stopped in
        ends on its subset, and the teacher reselects at the next epoch at this plan's ratio, which it follows
        from there. The learning-rate schedule spans the steps taken and planned, as transformers' does when a
        run is extended."""
        if trained is None:  # saved before checkpoints recorded their plan: taken to be this run's
            return self._plan
        if trained_settings == self._plan:
            return trained  # the same settings: the plan the checkpoint's run follows
        global_step = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME)).global_step
        # the first epoch after the one the checkpoint's last step was in
        resume_epoch = self._epoch_at_step(trained, global_step - 1)[0] + 1
        if trained[:resume_epoch] == self._plan[:resume_epoch]:
            return self._plan  # the same past: this run is the one the checkpoint began
        if resume_epoch >= len(self._plan):
            raise ValueError(
                f"resume_from_checkpoint {checkpoint!r}: it has trained {resume_epoch} epoch(s), and "
                f"num_train_epochs={len(self._plan)} leaves none to train; raise num_train_epochs above {resume_epoch}, "
                f"or start a new run from its weights ({type(self.model).__name__}.from_pretrained({checkpoint!r}); "
                "examples/grant_train.py: --model_name_or_path)"
            )
        ratio = ratio_at(resume_epoch, len(self._plan), self.args.start_ratio, self.args.ratio_schedule,
                         self.args.ratio_stages)
        num_batches = batches_per_process(len(self.train_dataset), self._train_batch_size, ratio, self.args.variant,
                                          self._strata_sizes, self.args.world_size)
        resumed = list(trained[:resume_epoch])
        for entry in self._plan[resume_epoch:]:
            if entry.reselect and entry.epoch > resume_epoch:  # from this plan's next reselection on, its own epochs
                resumed.extend(self._plan[entry.epoch:])
                break
            resumed.append(EpochPlan(entry.epoch, ratio, entry.epoch == resume_epoch, num_batches))
        logger.warning(
            "Resuming from %s, which was trained under another teaching plan (num_train_epochs or a schedule setting "
            "differs): epochs 0-%d stay as trained, the teacher reselects at epoch %d (ratio %g) and follows this "
            "run's plan from there; the learning-rate schedule spans the %d steps taken and planned.",
            checkpoint, resume_epoch - 1, resume_epoch, ratio, sum(self._steps(e.num_batches) for e in resumed),
        )
        return resumed

    def _run_epoch(self, model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, **kwargs):
        if self.args.selects:
            resumed_inside_epoch = (
                kwargs["resume_from_checkpoint"] is not None and epoch == kwargs["epochs_trained"]
                and kwargs["steps_trained_in_current_epoch"] > 0
            )
            if resumed_inside_epoch:  # keep the checkpoint's subset: its reselection already happened
                self._sampler.set_epoch(epoch)
            else:
                self._teach(epoch)
            steps_in_epoch = len(train_dataloader)
            if steps_in_epoch != self._plan[epoch].num_batches:
                raise RuntimeError(
                    f"epoch {epoch}: the dataloader has {steps_in_epoch} batches, the plan "
                    f"{self._plan[epoch].num_batches}; the selection and the schedule disagree"
                )
            num_update_steps_per_epoch = self._steps(steps_in_epoch)
        return super()._run_epoch(
            model=model, epoch=epoch, train_dataloader=train_dataloader, steps_in_epoch=steps_in_epoch,
            num_update_steps_per_epoch=num_update_steps_per_epoch, **kwargs,
        )

    def _score_training_set(self) -> torch.Tensor:
        """Scores of every training graph in dataset order. Each process scores one contiguous
        shard and all gather the same full vector, so every process selects the same graphs
        (no per-process floating-point drift can split the selection)."""
        num_graphs = len(self.train_dataset)
        shard_size = math.ceil(num_graphs / self.accelerator.num_processes)
        batches = self._scoring_batches
        if batches is None:
            start = self.accelerator.process_index * shard_size
            shard = range(start, min(num_graphs, start + shard_size))
            batches = scoring_batches(self.train_dataset, self.data_collator, shard, self.args.score_batch_size)
            if self.args.cache_scoring_batches:
                self._scoring_batches = batches
        self._share_first_process_buffers()
        local = score_batches(self.model, batches, self.task, self.args.device, self.args.node_score_normalization,
                              num_classes=self._num_classes, target_std=self._target_std)
        padded = torch.zeros(shard_size, device=self.args.device)
        padded[: len(local)] = local.to(self.args.device)
        return self.accelerator.gather(padded).cpu()[:num_graphs]

    def _teach(self, epoch: int) -> None:
        """At a reselection epoch: score every training graph, keep the top ones. The random teacher
        draws i.i.d. uniform scores instead (seeded, so every process draws the same), so its subsets
        have GraNT's sizes and structure (per batch, per class) with the graphs picked at random."""
        entry = self._plan[epoch]
        self._sampler.set_epoch(epoch)
        if not entry.reselect:
            return
        start = time.perf_counter()
        batch_size = self._train_batch_size
        seed = self._data_seed + epoch
        scores, batch_weights = None, None
        if entry.ratio < 1:
            scores = (self._score_training_set() if self.args.teacher == "grant"
                      else torch.rand(len(self.train_dataset), generator=torch.Generator().manual_seed(seed)))
        if scores is not None and self.args.selection == "importance":
            # as many graphs as GraNT(S) keeps (the plan's batches), drawn with data_seed (else seed) + epoch:
            # every process draws the same, and a resumed run redraws a reselection as it was drawn
            k = kept_units(len(self.train_dataset), batch_size, entry.ratio, "single")[0]
            batches, batch_weights = select_importance(scores, self._loss_units, k, batch_size, seed)
            batch_weights = [w.tolist() for w in batch_weights]
        elif scores is not None and self._strata is not None:
            batches = select_stratified(scores, self._strata, entry.ratio, batch_size, seed)
        else:
            batches = partition_batches(len(self.train_dataset), batch_size, seed)
            if scores is not None:
                batches = select(scores, batches, entry.ratio, self.args.variant, batch_size)
        self._sampler.set_batches(batches)
        self._set_batch_weights(batch_weights)
        seconds = time.perf_counter() - start
        subset_size = sum(len(b) for b in batches)
        # The subset's share of the summed scores (|dL/df| per graph): far above the ratio, the subset
        # carries most of the learning signal; near it, the errors are spread evenly and the subset's
        # step is worth little more than a random subset's.
        logged = {"ratio": entry.ratio, "subset_size": subset_size, "selection_seconds": seconds}
        if self.args.teacher == "grant":
            logged["selection"] = self.args.selection
            logged["score_share"] = 1.0 if scores is None else float(scores[torch.cat(batches)].sum() / scores.sum().clamp_min(1e-12))
        self.teaching_log.append({"epoch": epoch, **logged})
        # grant_reselection_seconds: this reselection's; grant_selection_seconds is the run's total (train's end)
        self.log({f"grant_{'reselection_seconds' if name == 'selection_seconds' else name}": value
                  for name, value in logged.items()})
