"""The teacher: per-graph scores from one deterministic no-grad pass, and exact top-k
selection by stable dataset index for GraNT(B) and GraNT(S), or GraNT(S)'s graphs drawn by
importance sampling with loss weights (`select_importance`).

Scores are computed for an explicit list of dataset indices in that order, so the pass can be
sharded across processes and gathered; selection is a pure function of (scores, batches,
ratio) and, for importance sampling, a seed, hence identical on every process.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset
from torch_geometric.utils import scatter

from hf_eff.grant.collator import arrow_batches, forward_inputs, model_inputs, model_prediction
from hf_eff.grant.schedules import num_selected
from hf_eff.grant.tasks import (
    GraphTask,
    check_class_count,
    output_error,
    per_target_std,
    unit_losses,
)

NODE_NORMALIZATIONS = ("nodes", "sqrt_nodes", "total")
SELECTIONS = ("top_k", "importance")


def graph_scores(
    task: str, outputs: torch.Tensor, labels: torch.Tensor, batch: torch.Tensor, num_graphs: int,
    node_normalization: str = "nodes",
) -> torch.Tensor:
    """|dL/df(G_i)| per graph (Alg. 1).

    graph regression: ||f - f*||_2 / number of targets (|f - f*| for one target);
    graph classification: ||softmax(f) - onehot(y)||_2;
    graph multilabel: ||sigmoid(f) - y||_2 over the labelled (non-NaN) targets / their number,
    METHODS.md's "multi-target: L2 norm over the labelled targets / number of labelled targets"
    (sigmoid(f) - y is dL/df of BCE-with-logits); a graph without any labelled target scores 0,
    since nothing it holds can be taught;
    node level: ||f - f*||_2 over all nodes (and outputs) of the graph / n_i (the paper), or
    / sqrt(n_i) with node_normalization="sqrt_nodes" (the root-mean-square node error), or undivided with
    "total" (the norm of the graph's share of dL/df when the loss averages over every node of a batch, as
    the trainer's does). With equal per-node errors the paper's score falls as 1/sqrt(n_i), so it favours
    small graphs; "total" grows as sqrt(n_i).
    """
    task = GraphTask(task)
    if node_normalization not in NODE_NORMALIZATIONS:
        raise ValueError(f"node_normalization must be one of {NODE_NORMALIZATIONS}, got {node_normalization!r}")
    error = output_error(task, outputs, labels)
    if task.is_multilabel:
        labelled = (~labels.reshape(error.shape).isnan()).sum(dim=-1)
        return error.norm(dim=-1) / labelled.clamp(min=1)
    if task.level == "graph":
        norm = error.norm(dim=-1)
        return norm if task.is_classification else norm / error.size(-1)
    squared = scatter(error.pow(2).sum(dim=-1), batch, dim=0, dim_size=num_graphs, reduce="sum")
    num_nodes = scatter(torch.ones_like(batch, dtype=error.dtype), batch, dim=0, dim_size=num_graphs, reduce="sum")
    num_nodes = num_nodes.clamp(min=1)
    return squared.sqrt() / {"nodes": num_nodes, "sqrt_nodes": num_nodes.sqrt(), "total": 1.0}[node_normalization]


def scoring_batches(dataset, collator, indices=None, batch_size: int = 256) -> list[tuple[dict, int]]:
    """dataset[indices] (all rows by default) collated in order, unshuffled: a list of
    (features, number of graphs). The trainer keeps it between reselections. GraphCollator
    reads a `datasets.Dataset`'s batches as Arrow columns (`arrow_batches`): same tensors."""
    indices = list(range(len(dataset))) if indices is None else list(indices)
    rows = Subset(arrow_batches(dataset, collator), indices)
    loader = DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=collator)
    sizes = [min(batch_size, len(indices) - start) for start in range(0, len(indices), batch_size)]
    return list(zip(loader, sizes))


@torch.no_grad()
def score_batches(
    model: torch.nn.Module, batches: list[tuple[dict, int]], task: str, device=None, node_normalization: str = "nodes",
    num_classes: int | None = None, target_std: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-graph scores of `scoring_batches` output, with the model in eval mode (no dropout,
    BatchNorm running statistics), called with the inputs training gives it (`model_inputs`).
    `device`: where the batches go, by default the model's (its first parameter's).
    `num_classes`: the classes a classifier's width is checked against, the trainer's count for its
    data (as training's check, so both name the same width); by default each batch's largest id + 1.
    `target_std`: each regression target's standard deviation, by which its errors are divided (the trainer passes
    a GrantGCN's `target_std`): else the target of the largest scale decides the scores alone."""
    task = GraphTask(task)
    inputs = forward_inputs(model, task)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    scores = []
    try:
        for features, num_graphs in batches:
            labels = features["labels"]
            features = {k: v.to(device) for k, v in features.items()}
            outputs = model_prediction(model(**model_inputs(features, inputs, model)), model)
            if num_classes is not None:
                check_class_count(task, outputs.size(-1), num_classes)
            elif task.is_classification and labels.numel():  # the batch's labels, read before they left the CPU
                check_class_count(task, outputs.size(-1), int(labels.max()) + 1)
            outputs, labels = per_target_std(outputs.float(), features["labels"], target_std)
            scores.append(graph_scores(  # in float32: a half-precision model's node counts round past 256 (bf16)
                task, outputs, labels, features["batch"], num_graphs, node_normalization
            ).cpu())
    finally:
        model.train(was_training)
    return torch.cat(scores) if scores else torch.zeros(0)


def score_dataset(
    model, dataset, collator, task: str, indices=None, batch_size: int = 256, device=None,
    node_normalization: str = "nodes",
) -> torch.Tensor:
    """Scores of dataset[indices] (all rows by default), in that order."""
    batches = scoring_batches(dataset, collator, indices, batch_size)
    return score_batches(model, batches, task, device, node_normalization)


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k largest scores; ties go to the lower position (stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices[:k]


def partition_batches(num_graphs: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """Dataset indices, shuffled with `seed`, cut into batches (the last may be short)."""
    order = torch.randperm(num_graphs, generator=torch.Generator().manual_seed(seed))
    return list(order.split(batch_size))


def select_batches(scores: torch.Tensor, batches: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """GraNT(B): the ceil(ratio * #batches) batches with the largest mean score."""
    means = torch.stack([scores[b].mean() for b in batches])
    return [batches[i] for i in top_k(means, num_selected(ratio, len(batches))).tolist()]


def top_of_each(scores: torch.Tensor, groups: list[torch.Tensor], ratio: float) -> torch.Tensor:
    """The ceil(ratio * |g|) best-scored dataset indices of every group g, group after group."""
    return torch.cat([g[top_k(scores[g], num_selected(ratio, len(g)))] for g in groups])


def select_within_batches(
    scores: torch.Tensor, batches: list[torch.Tensor], ratio: float, batch_size: int
) -> list[torch.Tensor]:
    """GraNT(S): the ceil(ratio * |b|) best-scored graphs of every batch b, re-batched."""
    return list(top_of_each(scores, batches, ratio).split(batch_size))


def class_strata(labels) -> list[torch.Tensor]:
    """Dataset indices of every class (ascending class id), from one class id per graph."""
    labels = torch.as_tensor(labels)
    if labels.dim() > 1 and labels[0].numel() != 1:
        raise ValueError(f"stratified selection needs one class id per graph, got labels of shape {tuple(labels.shape)}")
    labels = labels.reshape(-1).long()
    return [torch.nonzero(labels == c).flatten() for c in labels.unique().tolist()]


def select_stratified(
    scores: torch.Tensor, strata: list[torch.Tensor], ratio: float, batch_size: int, seed: int
) -> list[torch.Tensor]:
    """GraNT(S) with classes in place of batches: the ceil(ratio * |c|) best-scored graphs of
    every class c, shuffled with `seed` (batches mix the classes) and re-batched. The subset
    keeps the class proportions; the global top-k need not (it can be a single class)."""
    kept = top_of_each(scores, strata, ratio)
    kept = kept[torch.randperm(len(kept), generator=torch.Generator().manual_seed(seed))]
    return list(kept.split(batch_size))


def select(scores: torch.Tensor, batches: list[torch.Tensor], ratio: float, variant: str, batch_size: int) -> list[torch.Tensor]:
    if variant == "batch":
        return select_batches(scores, batches, ratio)
    if variant == "single":
        return select_within_batches(scores, batches, ratio, batch_size)
    raise ValueError(f"variant must be 'batch' or 'single', got {variant!r}")


def importance_sample(
    scores: torch.Tensor, k: int, units: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """k positions drawn without replacement with p_i = s_i / sum(s) (torch.multinomial, on the CPU with
    `generator`), in random order, and each one's weight per loss unit, 1 / (k U p_i) with U = units.sum(), the
    pool's loss units (nodes of a node task, graphs of a graph task): sum_i weight_i * (graph i's summed unit
    losses) estimates the pool's mean unit loss (Katharopoulos & Fleuret 2018, in its with-replacement form).
    A graph scored 0 is never drawn while k scores are positive."""
    if not torch.isfinite(scores).all():
        graph = int(torch.nonzero(~torch.isfinite(scores))[0, 0])
        raise ValueError(f"importance sampling needs finite scores; graph {graph} scored {scores[graph].item()} "
                         "(the model's output for it is not finite)")
    scores, total_units = scores.double(), units.double().sum()
    positive = torch.nonzero(scores > 0).flatten()
    if len(positive) >= k:
        p = scores / scores.sum()
        drawn = torch.multinomial(p, k, replacement=False, generator=generator)
        weights = 1.0 / (k * total_units * p[drawn])
    else:
        # Fewer positive scores than k: every positive graph is taken, with certainty, so its units weigh 1 / U (the
        # exact mean over the pool), and the rest of the k are zero-score graphs drawn uniformly, weighted 0: a zero
        # score is a zero output error, with nothing to teach; they keep the subset at the size the plan counts on.
        zero = torch.nonzero(scores <= 0).flatten()
        filler = zero[torch.randperm(len(zero), generator=generator)[: k - len(positive)]]
        drawn = torch.cat([positive, filler])
        weights = torch.cat([torch.full((len(positive),), 1.0 / total_units, dtype=torch.float64),
                             torch.zeros(len(filler), dtype=torch.float64)])
    order = torch.randperm(k, generator=generator)  # multinomial draws large p_i first: batches must mix them
    return drawn[order], weights[order]


def select_importance(
    scores: torch.Tensor, units: torch.Tensor, k: int, batch_size: int, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """GraNT(S) by importance sampling: k graphs of the whole training set drawn by `importance_sample` (seeded
    with `seed`), cut into batches of `batch_size`, and each graph's weight per loss unit in its batch,
    1 / (k_b U p_i) for a batch of k_b graphs: k / k_b times its importance weight, so that every batch's weighted
    loss estimates the training set's mean whatever the batching (B / (k U p_i) over B equal batches; 1 / (k U p_i)
    in the full-batch regime). Returns (batches of dataset indices, their weights)."""
    drawn, weights = importance_sample(scores, k, units, torch.Generator().manual_seed(seed))
    batches = list(drawn.split(batch_size))
    return batches, [w * k / len(w) for w in weights.split(batch_size)]


def weighted_loss(
    task: str, outputs: torch.Tensor, labels: torch.Tensor, batch: torch.Tensor, graph_weights: torch.Tensor
) -> torch.Tensor:
    """sum over the batch's loss units of each unit's loss times its graph's weight (`graph_weights`, one per graph of
    the batch): every node's loss of a node task (read through `batch`, each node's graph), every graph's of a graph
    task (its squared error averaged over the targets, or its cross-entropy), as `task_loss` averages them. Not
    graph_multilabel's: `unit_losses` refuses it, and GraNTTrainingArguments refuses it with selection='importance'."""
    task = GraphTask(task)
    losses = unit_losses(task, outputs, labels)
    unit_weights = graph_weights[batch] if task.level == "node" else graph_weights
    # in the losses' dtype: under fp16 autocast they are float32 while the outputs are fp16, in which weights
    # 1 / (k_b U p_i) of a large pool would round or underflow to 0
    return (losses * unit_weights.to(losses.dtype)).sum()
