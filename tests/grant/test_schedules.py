import logging
import math
import re

import pytest
import torch

from hf_eff.grant.schedules import (
    num_selected,
    plan_epochs,
    ratio_at,
    reselection_epochs,
    selected_num_batches,
)
from hf_eff.grant.selection import class_strata, partition_batches, select, select_stratified


def test_step_ratio_follows_the_public_code():
    # T = 100, 50 stages of 2 epochs, each adding (1 - 0.05) / 50
    assert ratio_at(0, 100, 0.05) == pytest.approx(0.05)
    assert ratio_at(1, 100, 0.05) == pytest.approx(0.05)
    assert ratio_at(2, 100, 0.05) == pytest.approx(0.05 + 0.95 / 50)
    assert ratio_at(51, 100, 0.05) == pytest.approx(0.05 + 25 * 0.95 / 50)
    assert ratio_at(99, 100, 0.05) == pytest.approx(0.05 + 49 * 0.95 / 50)
    assert ratio_at(100, 100, 0.05) == 1.0


@pytest.mark.parametrize("schedule", ["step", "linear", "cosine"])
def test_ratio_rises_monotonically_from_r0_to_one(schedule):
    ratios = [ratio_at(t, 40, 0.1, schedule) for t in range(41)]
    assert ratios[0] == pytest.approx(0.1)
    assert ratios[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(ratios, ratios[1:]))


def test_linear_and_cosine_midpoints():
    assert ratio_at(50, 100, 0.2, "linear") == pytest.approx(0.6)
    assert ratio_at(50, 100, 0.2, "cosine") == pytest.approx(0.6)
    assert ratio_at(25, 100, 0.2, "cosine") < ratio_at(25, 100, 0.2, "linear")


def test_paper_reselection_interval_grows_from_5_to_50():
    epochs = reselection_epochs(1000, 0.05, "paper")
    assert epochs[:51] == list(range(51))  # every epoch for int(1000 * 0.05) = 50 epochs
    assert epochs[51] == 50 + 5 + int(45 * 50 / 1000)
    gaps = [b - a for a, b in zip(epochs[50:], epochs[51:])]
    assert gaps == sorted(gaps) and gaps[0] == 7 and gaps[-1] <= 50


def test_constant_reselection():
    assert reselection_epochs(10, 0.5, "constant", interval_start=3) == [0, 3, 6, 9]


def test_num_selected_rounds_before_ceil():
    assert num_selected(0.3, 10) == 3
    assert num_selected(0.31, 10) == 4
    assert num_selected(0.001, 10) == 1
    assert num_selected(1.0, 7) == 7


@pytest.mark.parametrize("variant", ["batch", "single"])
@pytest.mark.parametrize("ratio", [0.05, 0.37, 1.0])
def test_planned_batches_match_the_selection(variant, ratio):
    num_graphs, batch_size = 103, 10
    batches = partition_batches(num_graphs, batch_size, seed=1)
    selection = select(torch.rand(num_graphs), batches, ratio, variant, batch_size)
    assert len(selection) == selected_num_batches(num_graphs, batch_size, ratio, variant)


@pytest.mark.parametrize("ratio", [0.05, 0.37])
def test_planned_batches_match_the_stratified_selection(ratio):
    labels = [i % 3 for i in range(103)]
    strata = class_strata(labels)
    selection = select_stratified(torch.rand(103), strata, ratio, 10, seed=0)
    sizes = [len(c) for c in strata]
    assert len(selection) == selected_num_batches(103, 10, ratio, "single", sizes)
    with pytest.raises(ValueError, match="GraNT\\(S\\)"):
        selected_num_batches(103, 10, ratio, "batch", sizes)


def test_plan_keeps_the_subset_between_reselections_and_shards_batches():
    plan = plan_epochs(100, 10, 20, "batch", 0.1, reselect_schedule="constant", interval_start=5, num_processes=2)
    assert [p.epoch for p in plan if p.reselect] == [0, 5, 10, 15]
    assert plan[6].ratio == plan[5].ratio
    assert plan[0].num_batches == math.ceil(num_selected(plan[0].ratio, 10) / 2)


def test_bad_schedule_names_raise():
    with pytest.raises(ValueError, match="ratio_schedule"):
        ratio_at(0, 10, 0.1, "exp")
    with pytest.raises(ValueError, match="reselect_schedule"):
        reselection_epochs(10, 0.1, "sometimes")
    with pytest.raises(ValueError, match="start_ratio"):
        ratio_at(0, 10, 0.0)


def test_batch_variant_on_a_single_batch_is_refused():
    # GraNT(B) keeps ceil(ratio * 1) = 1 of one batch: the full-batch regime would keep every graph
    with pytest.raises(ValueError, match=r"variant='batch'.*1 batch\(es\) of 40.*variant='single'"):
        plan_epochs(40, 40, 20, "batch", 0.05)
    assert plan_epochs(40, 40, 20, "single", 0.05)[0].ratio == 0.05
    assert [p.num_batches for p in plan_epochs(40, 40, 2, "batch", 1.0)] == [1, 1]  # no selection asked for
    assert plan_epochs(41, 40, 2, "batch", 0.05)[0].num_batches == 1  # two batches: one kept


@pytest.mark.parametrize("variant", ["batch", "single"])
def test_a_single_training_graph_is_refused(variant):
    # a Planetoid-style graph: GraNT selects whole graphs, so it would train on the one graph at every ratio
    with pytest.raises(ValueError, match=r"single graph.*RandomNodeLoader.*teacher='none'"):
        plan_epochs(1, 8, 4, variant, 0.25)


def test_single_variant_on_batches_of_one_graph_is_refused():
    # GraNT(S) keeps at least one graph of every batch: batches of one keep them all, at any ratio
    with pytest.raises(ValueError, match=r"variant='single'.*with 1 graph\(s\) per batch.*keeps all 40"):
        plan_epochs(40, 1, 4, "single", 0.05)
    with pytest.raises(ValueError, match=r"2 graph\(s\) per batch.*start_ratio=0.6 keeps all 40"):
        plan_epochs(40, 2, 4, "single", 0.6)
    with pytest.raises(ValueError, match=r"stratify_selection.*\[1, 1\]"):
        plan_epochs(2, 2, 4, "single", 0.5, strata_sizes=[1, 1])
    assert plan_epochs(40, 1, 4, "batch", 0.05)[0].num_batches == 2  # GraNT(B) keeps 2 of 40 batches of one


def test_a_first_selection_of_at_least_twice_start_ratio_is_warned_of(caplog):
    with caplog.at_level(logging.WARNING, logger="hf_eff.grant.schedules"):
        plan_epochs(40, 8, 4, "single", 0.05)  # one graph of each batch of 8: 5 of 40, 12.5%
    assert re.search(r"keeps 5 of the 40 graphs \(12%\), not start_ratio=0.05.*one graph of every batch", caplog.text)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_eff.grant.schedules"):
        plan_epochs(400, 8, 4, "single", 0.25)  # 2 of 8: the share asked for
        plan_epochs(400, 400, 4, "single", 0.05)
    assert not caplog.text
