"""GraNT's schedules: the selection ratio per epoch, the epochs at which the teacher
reselects, and the resulting per-epoch plan (known before training, so that `max_steps` and
the learning-rate schedule match the steps actually taken)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

logger = logging.getLogger(__name__)

RATIO_SCHEDULES = ("step", "linear", "cosine")
RESELECT_SCHEDULES = ("paper", "constant")


def ratio_at(epoch: int, num_epochs: int, start_ratio: float, schedule: str = "step", num_stages: int = 50) -> float:
    """Fraction of the training set taught at `epoch` (0-based), rising from start_ratio to 1.

    step (the public code): min(r0 + floor(t / (T / stages)) * (1 - r0) / stages, 1);
    linear: r0 + (1 - r0) t / T; cosine: r0 + (1 - r0) (1 - cos(pi t / T)) / 2.
    """
    if not 0 < start_ratio <= 1:
        raise ValueError(f"start_ratio must be in (0, 1], got {start_ratio}")
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1, got {num_epochs}")
    progress = epoch / num_epochs
    if schedule == "step":
        ratio = start_ratio + math.floor(epoch / (num_epochs / num_stages)) * (1 - start_ratio) / num_stages
    elif schedule == "linear":
        ratio = start_ratio + (1 - start_ratio) * progress
    elif schedule == "cosine":
        ratio = start_ratio + (1 - start_ratio) * (1 - math.cos(math.pi * progress)) / 2
    else:
        raise ValueError(f"ratio_schedule must be one of {RATIO_SCHEDULES}, got {schedule!r}")
    return min(ratio, 1.0)


def reselection_epochs(
    num_epochs: int,
    start_ratio: float,
    schedule: str = "paper",
    interval_start: int = 5,
    interval_end: int = 50,
) -> list[int]:
    """Epochs at which the teacher rescores the training set.

    paper (the public code): every epoch for the first int(T * r0) epochs, then every
    interval_start + int((interval_end - interval_start) t / T) epochs (5 -> 50 by default);
    constant: every interval_start epochs.
    """
    if schedule not in RESELECT_SCHEDULES:
        raise ValueError(f"reselect_schedule must be one of {RESELECT_SCHEDULES}, got {schedule!r}")
    if interval_start < 1 or interval_end < interval_start:
        raise ValueError(f"need 1 <= interval_start <= interval_end, got {interval_start}, {interval_end}")
    epochs, epoch = [], 0
    while epoch < num_epochs:
        epochs.append(epoch)
        if schedule == "constant":
            epoch += interval_start
        elif epoch < int(num_epochs * start_ratio):
            epoch += 1
        else:
            epoch += interval_start + int((interval_end - interval_start) * epoch / num_epochs)
    return epochs


def num_selected(ratio: float, count: int) -> int:
    """ceil(ratio * count), at least 1; rounded first so that 0.3 * 10 gives 3, not 4."""
    return min(count, max(1, math.ceil(round(ratio * count, 9))))


def kept_units(
    num_graphs: int, batch_size: int, ratio: float, variant: str, strata_sizes: list[int] | None = None
) -> tuple[int, int]:
    """(kept, of): the batches GraNT(B) keeps of the training set's batches, or the graphs GraNT(S)
    keeps of its graphs, ceil(ratio * |b|) of every batch b (of every class, given `strata_sizes`)."""
    if strata_sizes is not None:
        if variant != "single":
            raise ValueError(f"stratified selection is a GraNT(S) rule, got variant {variant!r}")
        return sum(num_selected(ratio, size) for size in strata_sizes), num_graphs
    full, last = divmod(num_graphs, batch_size)
    sizes = [batch_size] * full + ([last] if last else [])
    if variant == "batch":
        return num_selected(ratio, len(sizes)), len(sizes)
    if variant == "single":
        return sum(num_selected(ratio, size) for size in sizes), num_graphs
    raise ValueError(f"variant must be 'batch' or 'single', got {variant!r}")


def selected_num_batches(
    num_graphs: int, batch_size: int, ratio: float, variant: str, strata_sizes: list[int] | None = None
) -> int:
    """Batches per epoch after selection: GraNT(B) keeps whole batches; GraNT(S) keeps
    ceil(ratio * |b|) graphs of every batch b (of every class, given `strata_sizes`) and
    re-batches them."""
    kept, _ = kept_units(num_graphs, batch_size, ratio, variant, strata_sizes)
    return kept if variant == "batch" else math.ceil(kept / batch_size)


def batches_per_process(
    num_graphs: int, batch_size: int, ratio: float, variant: str, strata_sizes: list[int] | None = None,
    num_processes: int = 1,
) -> int:
    """Each process's batches per epoch at `ratio`: accelerate's BatchSamplerShard gives each process every n-th
    batch (even_batches)."""
    return math.ceil(selected_num_batches(num_graphs, batch_size, ratio, variant, strata_sizes) / num_processes)


def check_selection_can_drop_graphs(
    num_graphs: int, batch_size: int, start_ratio: float, variant: str, strata_sizes: list[int] | None = None
) -> tuple[int, int] | None:
    """Refuses a run whose first (hence smallest) selection keeps every graph: it would log GraNT's ratios
    while training on the full set. `plan_epochs` refuses it; a script can ask before it writes anything.
    Returns the units (graphs, or batches for GraNT(B)) the first selection keeps and of how many; None where
    start_ratio >= 1 (no selection)."""
    if start_ratio >= 1:
        return None
    kept, of = kept_units(num_graphs, batch_size, start_ratio, variant, strata_sizes)
    if kept < of:
        return kept, of
    if num_graphs == 1:
        raise ValueError(
            "the training set is a single graph, and GraNT selects whole graphs: it has none to leave out, so it "
            "would train on the whole graph at every ratio. A node split of one graph (Planetoid's train_mask) "
            "cannot be taught by graph selection: cut the graph into many subgraphs as the training set (e.g. "
            "list(torch_geometric.loader.RandomNodeLoader(graph, num_parts)), or ClusterData's parts where METIS is "
            "installed), or train on it with teacher='none'"
        )
    if variant == "batch":
        raise ValueError(
            f"variant='batch' (GraNT(B)) keeps whole batches, and the {num_graphs} training graphs are {of} batch(es) "
            f"of {batch_size} (per_device_train_batch_size): start_ratio={start_ratio} keeps {kept} of them, every "
            "graph at every ratio. For full-batch training use variant='single' (GraNT(S), which keeps the top "
            "graphs inside the batch), or make more batches"
        )
    if strata_sizes is not None:
        raise ValueError(
            f"stratify_selection keeps ceil(ratio * |c|) graphs of every class c, and with classes of {strata_sizes} "
            f"graphs start_ratio={start_ratio} keeps all {num_graphs}: raise the number of graphs per class or "
            "lower start_ratio"
        )
    raise ValueError(
        f"variant='single' (GraNT(S)) keeps ceil(ratio * |b|) graphs of every batch b, at least one, and with "
        f"{batch_size} graph(s) per batch (per_device_train_batch_size) start_ratio={start_ratio} keeps all {num_graphs}: every "
        "graph at every ratio. Use larger batches (the public code's regime is one batch of the whole training set), "
        "or variant='batch'"
    )


def _warn_of_a_first_selection_above_start_ratio(
    kept: int, of: int, start_ratio: float, variant: str, strata_sizes: list[int] | None
) -> None:
    """Warns where the first selection keeps at least twice start_ratio's share (it keeps at least one unit)."""
    if kept / of >= 2 * start_ratio:
        logger.warning(
            "GraNT's first selection keeps %d of the %d %s (%.0f%%), not start_ratio=%g of them: it keeps at least "
            "one %s. Use %s to teach start_ratio's share.",
            kept, of, "batches" if variant == "batch" else "graphs", 100 * kept / of, start_ratio,
            "batch" if variant == "batch" else ("graph of every class" if strata_sizes else "graph of every batch"),
            "smaller batches (more of them)" if variant == "batch" else "larger batches",
        )


@dataclass(frozen=True)
class EpochPlan:
    epoch: int
    ratio: float  # the ratio of the selection in use during this epoch
    reselect: bool
    num_batches: int  # per process


def plan_epochs(
    num_graphs: int,
    batch_size: int,
    num_epochs: int,
    variant: str,
    start_ratio: float,
    ratio_schedule: str = "step",
    ratio_stages: int = 50,
    reselect_schedule: str = "paper",
    interval_start: int = 5,
    interval_end: int = 50,
    num_processes: int = 1,
    strata_sizes: list[int] | None = None,
) -> list[EpochPlan]:
    """What every epoch trains on; the subset (and its size) changes only at reselections.
    `strata_sizes`: the class sizes of stratified selection. A run whose first selection would keep every
    graph is refused (one training graph, GraNT(B) on one batch, GraNT(S) on batches of one graph): it would
    teach every graph at every ratio; one keeping at least twice start_ratio's share is warned of."""
    first = check_selection_can_drop_graphs(num_graphs, batch_size, start_ratio, variant, strata_sizes)
    if first is not None:
        _warn_of_a_first_selection_above_start_ratio(*first, start_ratio, variant, strata_sizes)
    reselect = set(reselection_epochs(num_epochs, start_ratio, reselect_schedule, interval_start, interval_end))
    plan, ratio = [], 1.0
    for epoch in range(num_epochs):
        if epoch in reselect:
            ratio = ratio_at(epoch, num_epochs, start_ratio, ratio_schedule, ratio_stages)
        batches = batches_per_process(num_graphs, batch_size, ratio, variant, strata_sizes, num_processes)
        plan.append(EpochPlan(epoch, ratio, epoch in reselect, batches))
    return plan
