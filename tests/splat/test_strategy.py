import math

import pytest
import torch
from gsplat.strategy import DefaultStrategy

from hf_eff.splat.strategy import (
    FixedDefaultStrategy,
    GlobalToLocalStrategy,
    adaptive_opacity_threshold,
)


def make_gaussians(scales: torch.Tensor, opacities: torch.Tensor):
    n = len(scales)
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.randn(n, 3)),
        "scales": torch.nn.Parameter(scales.log()),
        "quats": torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)),
        "opacities": torch.nn.Parameter(torch.logit(opacities)),
        "sh0": torch.nn.Parameter(torch.rand(n, 1, 3)),
    })
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    # One Adam step so every optimizer has per-Gaussian state that the ops must keep in sync.
    sum(p.sum() for p in params.values()).backward()
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad()
    return params, optimizers


def fake_info(grad_norms: torch.Tensor, width=100, height=100):
    """What rasterize returns for one camera, with a screen-space gradient of chosen size."""
    n = len(grad_norms)
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    # grads are scaled by width/2 in _update_state; undo that so the norm is grad_norms.
    means2d.grad = torch.stack([grad_norms / (width / 2), torch.zeros(n)], dim=-1)[None]
    return {"means2d": means2d, "radii": torch.ones(1, n, 2, dtype=torch.int32), "width": width,
            "height": height, "n_cameras": 1, "gaussian_ids": None}


def test_fixed_default_resets_opacity_where_gsplat_does_not():
    opacities = torch.full((6,), 0.9)
    for strategy_cls, expect_reset in ((DefaultStrategy, False), (FixedDefaultStrategy, True)):
        params, optimizers = make_gaussians(torch.full((6, 3), 0.5), opacities)
        strategy = strategy_cls(refine_start_iter=1000, reset_every=10, refine_stop_iter=100)
        state = strategy.initialize_state(scene_scale=1.0)
        strategy.step_post_backward(params, optimizers, state, step=10, info=fake_info(torch.zeros(6)))
        after = torch.sigmoid(params["opacities"])
        if expect_reset:
            assert torch.allclose(after, torch.full((6,), 2 * strategy.prune_opa))
            assert optimizers["opacities"].state[params["opacities"]]["exp_avg"].abs().sum() == 0
        else:
            assert torch.allclose(after, opacities, atol=1e-3)


def test_fixed_default_does_not_reset_after_refinement_stops():
    params, optimizers = make_gaussians(torch.full((4, 3), 0.5), torch.full((4,), 0.9))
    strategy = FixedDefaultStrategy(reset_every=10, refine_stop_iter=20)
    state = strategy.initialize_state()
    strategy.step_post_backward(params, optimizers, state, step=30, info=fake_info(torch.zeros(4)))
    assert torch.allclose(torch.sigmoid(params["opacities"]), torch.full((4,), 0.9), atol=1e-3)


def grow_once(strategy, step):
    # Gaussians 0-1 small (clone candidates), 2-3 large (split candidates), 4-5 low gradient.
    scales = torch.tensor([0.001, 0.001, 0.5, 0.5, 0.001, 0.5])[:, None].repeat(1, 3)
    params, optimizers = make_gaussians(scales, torch.full((6,), 0.5))
    state = strategy.initialize_state(scene_scale=1.0)
    info = fake_info(torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0]))
    strategy.step_post_backward(params, optimizers, state, step=step, info=info)
    return params, optimizers, state


@pytest.mark.parametrize("step, expected", [(200, 6 + 2), (600, 6 + 2 + 2)])
def test_global_phase_splits_only_then_clones(step, expected):
    torch.manual_seed(0)
    strategy = GlobalToLocalStrategy(global_stop_iter=500, refine_start_iter=0, refine_every=100,
                                     reset_every=10_000, adaptive_pruning=False)
    params, optimizers, state = grow_once(strategy, step)
    # split replaces each of the 2 large Gaussians by 2 children (+2); clone adds a copy (+2).
    assert len(params["means"]) == expected
    for key, param in params.items():
        assert optimizers[key].state[param]["exp_avg"].shape == param.shape
    assert len(state["grad2d"]) == expected
    small = torch.exp(params["scales"]).max(dim=-1).values < 0.01
    assert int(small.sum()) == (2 if step < 500 else 4) + 1


def test_densification_is_counted_per_phase():
    torch.manual_seed(0)
    strategy = GlobalToLocalStrategy(global_stop_iter=500, refine_start_iter=0, refine_every=100,
                                     reset_every=10_000, adaptive_pruning=False)
    _, _, state = grow_once(strategy, 200)
    assert state["densification_counts"] == {"global": {"cloned": 0, "split": 2, "pruned": 0}}
    _, _, state = grow_once(strategy, 600)
    assert state["densification_counts"] == {"local": {"cloned": 2, "split": 2, "pruned": 0}}
    _, _, state = grow_once(FixedDefaultStrategy(refine_start_iter=0, reset_every=10_000), 100)
    assert state["densification_counts"] == {"densify": {"cloned": 2, "split": 2, "pruned": 0}}


def test_global_stop_at_zero_grows_like_the_default():
    torch.manual_seed(0)
    g2l = GlobalToLocalStrategy(global_stop_iter=0, refine_start_iter=0, reset_every=10_000,
                                adaptive_pruning=False)
    params_g2l, _, _ = grow_once(g2l, 100)
    torch.manual_seed(0)
    params_default, _, _ = grow_once(FixedDefaultStrategy(refine_start_iter=0, reset_every=10_000), 100)
    for key in params_default:
        assert torch.equal(params_g2l[key], params_default[key])


def test_local_clone_threshold_holds_back_cloning_only():
    # grow_once gives the 4 candidates a gradient of 1.0: above grow_grad2d, and here below clone_grad2d.
    strategy = GlobalToLocalStrategy(global_stop_iter=500, refine_start_iter=0, refine_every=100,
                                     reset_every=10_000, adaptive_pruning=False, clone_grad2d=2.0)
    params, optimizers, state = grow_once(strategy, 600)
    assert state["densification_counts"] == {"local": {"cloned": 0, "split": 2, "pruned": 0}}
    assert len(params["means"]) == 6 + 2
    for key, param in params.items():
        assert optimizers[key].state[param]["exp_avg"].shape == param.shape
    strategy.clone_grad2d = 0.5
    _, _, state = grow_once(strategy, 600)
    assert state["densification_counts"] == {"local": {"cloned": 2, "split": 2, "pruned": 0}}
    # At grow_grad2d itself it is the 3DGS rule, Gaussian for Gaussian.
    results = []
    for clone_grad2d in (None, 0.0002):
        torch.manual_seed(0)
        results.append(grow_once(GlobalToLocalStrategy(global_stop_iter=0, refine_start_iter=0, reset_every=10_000,
                                                       adaptive_pruning=False, clone_grad2d=clone_grad2d), 100)[0])
    for key in results[0]:
        assert torch.equal(results[0][key], results[1][key])
    with pytest.raises(ValueError, match="clone_grad2d"):
        GlobalToLocalStrategy(clone_grad2d=0.0)


@pytest.mark.parametrize("prune_ratio", [1.0, -0.1, math.nan])
def test_a_prune_ratio_outside_0_1_is_refused_naming_the_strategy(prune_ratio):
    # the check SplatTrainingArguments shares (check_prune_ratio), naming where the value was given
    with pytest.raises(ValueError, match=rf"GlobalToLocalStrategy\.prune_ratio must be in \[0, 1\) \(the fraction "
                                         rf"of opacities under the adaptive threshold\), got {prune_ratio}"):
        GlobalToLocalStrategy(prune_ratio=prune_ratio)


def test_a_nan_clone_grad2d_is_refused():
    with pytest.raises(ValueError, match="clone_grad2d must be > 0 or None, got nan"):
        GlobalToLocalStrategy(clone_grad2d=math.nan)


def test_unset_global_stop_iter_is_an_error():
    with pytest.raises(ValueError, match="global_stop_iter"):
        grow_once(GlobalToLocalStrategy(refine_start_iter=0), 100)


def test_adaptive_threshold_follows_the_distribution_and_is_capped():
    opacities = torch.linspace(0.001, 0.01, 100)[torch.randperm(100)]
    assert adaptive_opacity_threshold(opacities, 0.03, 0.05) == pytest.approx(0.001 + 3 * 0.009 / 99)
    assert adaptive_opacity_threshold(torch.linspace(0.5, 1.0, 100), 0.03, 0.05) == 0.05
    with pytest.raises(ValueError, match="NaN"):
        adaptive_opacity_threshold(torch.tensor([0.1, math.nan]), 0.03, 0.05)


def test_adaptive_pruning_removes_the_lowest_fraction():
    n = 200
    opacities = torch.linspace(0.001, 0.02, n)
    params, optimizers = make_gaussians(torch.full((n, 3), 0.001), opacities)
    strategy = GlobalToLocalStrategy(global_stop_iter=0, refine_start_iter=0, reset_every=10_000)
    state = strategy.initialize_state()
    strategy.step_post_backward(params, optimizers, state, step=100, info=fake_info(torch.zeros(n)))
    # floor(200 * 0.03) = 6: the 6 lowest fall strictly below alpha_sorted[6].
    assert len(params["means"]) == n - 6
    assert len(state["grad2d"]) == n - 6
    assert optimizers["means"].state[params["means"]]["exp_avg"].shape == (n - 6, 3)
    # The fixed rule would prune everything under 0.005 instead.
    params, optimizers = make_gaussians(torch.full((n, 3), 0.001), opacities)
    fixed = GlobalToLocalStrategy(global_stop_iter=0, refine_start_iter=0, reset_every=10_000,
                                  adaptive_pruning=False)
    fixed.step_post_backward(params, optimizers, fixed.initialize_state(), step=100,
                             info=fake_info(torch.zeros(n)))
    assert len(params["means"]) == int((opacities >= 0.005).sum())


def test_reset_stops_at_reset_stop_iter():
    params, optimizers = make_gaussians(torch.full((4, 3), 0.5), torch.full((4,), 0.9))
    strategy = FixedDefaultStrategy(reset_every=10, refine_stop_iter=100, reset_stop_iter=50, refine_start_iter=1000)
    state = strategy.initialize_state()
    strategy.step_post_backward(params, optimizers, state, step=60, info=fake_info(torch.zeros(4)))
    assert torch.allclose(torch.sigmoid(params["opacities"]), torch.full((4,), 0.9), atol=1e-3)
    strategy.step_post_backward(params, optimizers, state, step=40, info=fake_info(torch.zeros(4)))
    assert torch.allclose(torch.sigmoid(params["opacities"]), torch.full((4,), 0.01))


def low_opacity_gaussians(n=200):
    params, optimizers = make_gaussians(torch.full((n, 3), 0.001), torch.linspace(0.001, 0.02, n))
    return params, optimizers, fake_info(torch.zeros(n))


def test_pruning_continues_after_densification_until_prune_stop_iter():
    for prune_stop_iter, step, expect_pruned in ((None, 100, False), (200, 100, True), (200, 105, False),
                                                 (200, 200, False)):
        params, optimizers, info = low_opacity_gaussians()
        strategy = GlobalToLocalStrategy(global_stop_iter=0, refine_start_iter=0, refine_every=10,
                                         refine_stop_iter=50, reset_every=10_000, prune_stop_iter=prune_stop_iter)
        state = strategy.initialize_state()
        strategy.step_post_backward(params, optimizers, state, step=step, info=info)
        assert (len(params["means"]) < 200) == expect_pruned, (prune_stop_iter, step)
        if expect_pruned:
            assert state["densification_counts"] == {"post": {"cloned": 0, "split": 0, "pruned": 6}}
            assert optimizers["opacities"].state[params["opacities"]]["exp_avg"].shape == (194,)
    # The fixed rule stops with densification whatever prune_stop_iter says.
    params, optimizers, info = low_opacity_gaussians()
    fixed = GlobalToLocalStrategy(global_stop_iter=0, refine_stop_iter=50, reset_every=10_000, prune_stop_iter=200,
                                  adaptive_pruning=False)
    fixed.step_post_backward(params, optimizers, fixed.initialize_state(), step=100, info=info)
    assert len(params["means"]) == 200


@pytest.mark.parametrize("step, expect_pruned", [(50, True), (100, True), (110, False), (120, False), (130, True)])
def test_adaptive_pruning_pauses_after_a_reset(step, expect_pruned):
    params, optimizers, info = low_opacity_gaussians()
    strategy = GlobalToLocalStrategy(global_stop_iter=0, refine_start_iter=0, refine_every=10, refine_stop_iter=1000,
                                     reset_every=100, prune_pause_after_reset=30)
    state = strategy.initialize_state()
    # Step 100 prunes before its own reset; 110 and 120 fall within the 30-step pause.
    strategy.step_post_backward(params, optimizers, state, step=step, info=info)
    assert (len(params["means"]) < 200) == expect_pruned
    assert strategy.steps_since_reset(step) == (None if step <= 100 else step - 100)


@pytest.mark.parametrize("step, expect_pruned", [(30, False), (40, True)])
def test_pause_longer_than_the_reset_period_prunes_before_each_reset(step, expect_pruned):
    params, optimizers, info = low_opacity_gaussians()
    strategy = GlobalToLocalStrategy(global_stop_iter=0, refine_start_iter=0, refine_every=10, refine_stop_iter=1000,
                                     reset_every=20, prune_pause_after_reset=100)
    strategy.step_post_backward(params, optimizers, strategy.initialize_state(), step=step, info=info)
    assert (len(params["means"]) < 200) == expect_pruned


def test_pause_counts_only_resets_that_happened():
    strategy = GlobalToLocalStrategy(global_stop_iter=0, refine_stop_iter=1000, reset_every=100, reset_stop_iter=250)
    assert strategy.steps_since_reset(210) == 10
    assert strategy.steps_since_reset(310) is None  # no reset at 300: resets stopped at 250
    with pytest.raises(ValueError, match="prune_pause_after_reset"):
        GlobalToLocalStrategy(prune_pause_after_reset=-1)
