"""SplatTrainer's training step does not read the device from the host (on CUDA each read waits
for the GPU), and still stops a diverged run with an error naming the first non-finite step."""

import statistics
import sys
import warnings
from pathlib import Path

import pytest
import torch
from gsplat.strategy import DefaultStrategy
from torch.overrides import TorchFunctionMode
from transformers import TrainerCallback

from hf_eff.splat.losses import photometric_loss
from hf_eff.splat.model import GaussianModel
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.rendering import rasterize
from hf_eff.splat.strategy import FixedDefaultStrategy
from hf_eff.splat.trainer import NonFiniteWatch
from tests.splat.test_trainer import make_trainer

# Tensor methods that copy a value to the host: on CUDA, each waits for the GPU's queued work.
HOST_READS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy")
# Operations whose output size depends on the values (the host reads it), counted at every call...
SIZED_BY_VALUES = ("nonzero", "masked_select")
# ... or with one argument (torch.where(mask) is nonzero), or a boolean mask as the index.
SPLAT = Path(__import__("hf_eff.splat", fromlist=["_"]).__file__).parent
# The PyTorch rasterizer runs on CPU tensors only (CUDA goes to gsplat), so its reads never wait on a GPU.
CPU_BACKEND = (SPLAT / "rendering" / "cpu.py", SPLAT / "rendering" / "projection.py")


@pytest.fixture(scope="module")
def scene():
    return make_procedural_scene(seed=1, num_train=6, num_test=2, width=32, height=32, num_points=300)


class NonFiniteAt(TrainerCallback):
    """Writes ``value`` into one entry of the Gaussians' ``key`` at the end of ``step`` (while ``armed``)."""

    def __init__(self, step: int, key: str, value: float):
        self.step, self.key, self.value, self.armed = step, key, value, True

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.armed and state.global_step == self.step:
            with torch.no_grad():
                model.splats[self.key].view(-1)[-1] = self.value


# Where a read is counted: the splat code, gsplat and Trainer's training loop.
COUNTED_CALLERS = (str(SPLAT), "gsplat", str(Path("transformers") / "trainer.py"))


def record_host_reads(monkeypatch, trainer) -> list[tuple[int, str, str]]:
    """(global step, caller file, method) of each host read made by the splat code (outside the CPU
    backend), gsplat or Trainer's training loop. Adam's step counters and the like live on the CPU
    on any device and are not counted."""
    reads = []

    def wrap(name, method, reads_host=lambda *args: True):
        def read(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if (reads_host(*args) and any(part in caller for part in COUNTED_CALLERS)
                    and Path(caller) not in CPU_BACKEND):
                reads.append((trainer.state.global_step, caller, name))
            return method(*args, **kwargs)
        return read

    for name in HOST_READS + SIZED_BY_VALUES:
        monkeypatch.setattr(torch.Tensor, name, wrap(name, getattr(torch.Tensor, name)))
    for name in SIZED_BY_VALUES:
        monkeypatch.setattr(torch, name, wrap(name, getattr(torch, name)))
    monkeypatch.setattr(torch, "where", wrap("where", torch.where, lambda *args: len(args) == 1))
    return reads


class MaskIndexReads(TorchFunctionMode):
    """Counts boolean-mask indexing (its result's size is read from the device) as `record_host_reads` counts its
    methods. A mode, not a patched Tensor.__getitem__: setting that on the class gives it a sequence slot that its
    removal leaves behind, and torch.tensor([[*t]]) then calls len() on 0-d tensors in every later test."""

    def __init__(self, reads: list, trainer):
        super().__init__()
        self.reads, self.trainer = reads, trainer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) == "__getitem__" and is_mask(args[1]):
            caller = sys._getframe(1).f_code.co_filename  # the indexing line: torch adds no Python frame
            if any(part in caller for part in COUNTED_CALLERS) and Path(caller) not in CPU_BACKEND:
                self.reads.append((self.trainer.state.global_step, caller, "mask index"))
        return func(*args, **(kwargs or {}))


def is_mask(index) -> bool:
    indices = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


def test_training_steps_read_the_device_only_at_check_and_refine_steps(scene, tmp_path, monkeypatch):
    trainer = make_trainer(scene, tmp_path, max_steps=24, refine_every=8, finite_check_steps=5, logging_steps=1000,
                           eval_strategy="no", reset_every=1000)
    reads = record_host_reads(monkeypatch, trainer)
    with MaskIndexReads(reads, trainer):
        trainer.train()
    monkeypatch.undo()
    assert any(step % 8 == 0 for step, _, _ in reads)  # the counter works: densification reads counts
    allowed = {step for step in range(25) if step % 5 == 0 or step % 8 == 0}
    stray = sorted({(step, Path(caller).name, name) for step, caller, name in reads if step not in allowed})
    assert stray == []


def test_the_mask_index_counter_sees_a_boolean_index_made_in_the_splat_code():
    from types import SimpleNamespace

    reads, trainer = [], SimpleNamespace(state=SimpleNamespace(global_step=3))
    where = str(SPLAT / "strategy" / "a_strategy.py")  # a line of the splat package, as its frames name it
    with MaskIndexReads(reads, trainer):
        exec(compile("x[x > 1]\nx[1]\nx[torch.tensor([0, 2])]", where, "exec"), {"x": torch.arange(3.0), "torch": torch})
    assert reads == [(3, where, "mask index")]  # the boolean index only


def test_a_nan_mid_training_names_the_step_and_keeps_the_earlier_checkpoints(scene, tmp_path):
    # the Gaussians rendered from step 7 on
    trainer = make_trainer(scene, tmp_path, max_steps=20, refine_every=1000, finite_check_steps=100,
                           logging_steps=1000, save_strategy="steps", save_steps=3,
                           callbacks=[NonFiniteAt(7, "means", float("nan"))])
    with pytest.raises(RuntimeError, match=r"step 7: the Gaussians diverged: means\b.* went NaN or inf"):
        trainer.train()
    # Read late (at the checkpoint of step 9), before anything of it was written.
    assert trainer.state.global_step == 9
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    saved = GaussianModel.from_pretrained(tmp_path / "checkpoint-6")
    assert all(torch.isfinite(value).all() for value in saved.splats.values())


def test_a_run_resumed_before_the_divergence_starts_clean(scene, tmp_path):
    inject = NonFiniteAt(7, "means", float("nan"))
    trainer = make_trainer(scene, tmp_path, max_steps=12, refine_every=1000, finite_check_steps=100,
                           logging_steps=1000, save_strategy="steps", save_steps=3, callbacks=[inject])
    with pytest.raises(RuntimeError, match="step 7: the Gaussians diverged"):
        trainer.train()
    inject.armed = False
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))  # the same trainer, finite again
    assert trainer.state.global_step == 12
    assert all(torch.isfinite(value).all() for value in trainer.splats.values())


def test_a_nan_is_read_every_finite_check_steps(scene, tmp_path):
    trainer = make_trainer(scene, tmp_path, max_steps=20, refine_every=1000, finite_check_steps=4,
                           logging_steps=1000, callbacks=[NonFiniteAt(6, "opacities", float("inf"))])
    with pytest.raises(RuntimeError, match=r"step 6: .*opacities.* went NaN or inf"):
        trainer.train()
    assert trainer.state.global_step == 8


def test_finite_check_steps_must_be_positive(tmp_path):
    from hf_eff.splat.config import SplatTrainingArguments

    with pytest.raises(ValueError, match="finite_check_steps must be >= 1"):
        SplatTrainingArguments(output_dir=str(tmp_path), max_steps=10, finite_check_steps=0)


def test_the_watch_keeps_the_first_non_finite_step_and_what_went_non_finite():
    watch = NonFiniteWatch(["means", "render"])
    finite, nan = torch.zeros(3), torch.tensor([0.0, float("nan")])
    watch.update(1, {"means": finite, "render": finite})
    assert watch.first(watch.record()[None]) is None
    watch.update(2, {"means": finite, "render": nan})
    watch.update(3, {"means": nan, "render": nan})
    assert watch.first(watch.record()[None]) == (2, ["render"])
    # Several ranks: the earliest is reported.
    other = NonFiniteWatch(["means", "render"])
    other.update(1, {"means": nan})
    assert watch.first(torch.stack([watch.record(), other.record()])) == (1, ["means"])
    # ranks that went bad at the same step: every name any of them flagged
    same_step = NonFiniteWatch(["means", "render"])
    same_step.update(2, {"means": nan})
    assert watch.first(torch.stack([watch.record(), same_step.record()])) == (2, ["means", "render"])
    watch.reset()
    assert watch.record() is None
    with pytest.raises(ValueError, match="not watched"):
        watch.update(4, {"scales": finite})


def test_direct_callers_keep_the_nan_errors_and_can_skip_them():
    means = torch.tensor([[0.0, 0.0, 2.0], [float("nan"), 0.0, 2.0]])
    quats, scales = torch.tensor([[1.0, 0, 0, 0]] * 2), torch.full((2, 3), 0.1)
    opacities, colors = torch.full((2,), 0.5), torch.rand(2, 3)
    viewmats, Ks = torch.eye(4)[None], torch.tensor([[[16.0, 0, 8], [0, 16, 8], [0, 0, 1]]])
    with pytest.raises(ValueError, match="means contains NaN"):
        rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 16, 16)
    rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 16, 16, check_finite=False)
    render = torch.full((1, 8, 8, 3), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        photometric_loss(render, torch.zeros(1, 8, 8, 3))
    assert photometric_loss(render, torch.zeros(1, 8, 8, 3), check_finite=False).isnan()


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("num_cameras", [1, 3])
def test_statistics_update_without_a_mask_is_gsplats(num_cameras, packed):
    torch.manual_seed(0)
    n = 50
    full_radii = radii = torch.randint(0, 4, (num_cameras, n, 2), dtype=torch.int32)
    visible = (radii > 0).all(dim=-1)
    grads = torch.randn(num_cameras, n, 2)  # hidden pairs too: gsplat skips them, ours must zero them
    if packed:
        gaussian_ids = visible.nonzero()[:, 1]
        radii, grads = radii[visible], grads[visible]
    else:
        gaussian_ids = None
    means2d = torch.zeros_like(grads, requires_grad=True)
    means2d.grad = grads
    info = {"width": 32, "height": 24, "n_cameras": num_cameras, "radii": radii, "gaussian_ids": gaussian_ids,
            "means2d": means2d}
    params = {"means": torch.zeros(n, 3)}
    ours, theirs = (cls(refine_scale2d_stop_iter=100) for cls in (FixedDefaultStrategy, DefaultStrategy))
    states = [strategy.initialize_state() for strategy in (ours, theirs)]
    for _ in range(2):
        ours._update_state(params, states[0], info, packed=packed)
        theirs._update_state(params, states[1], info, packed=packed)
    if num_cameras == 1 or packed:  # the same sums in the same order
        assert torch.equal(states[0]["grad2d"], states[1]["grad2d"])
    else:
        torch.testing.assert_close(states[0]["grad2d"], states[1]["grad2d"])
    assert torch.equal(states[0]["count"], states[1]["count"])
    # radii: the maximum over the cameras that see each Gaussian (gsplat keeps one camera's)
    expected = torch.where(visible, full_radii.max(dim=-1).values / 32.0, 0.0).amax(dim=0)
    assert torch.equal(states[0]["radii"], expected)
    if num_cameras == 1:
        assert torch.equal(states[1]["radii"], expected)


@pytest.mark.gpu
def test_cuda_training_steps_wait_for_the_gpu_no_more_than_gsplat_does(scene, tmp_path):
    """Every CUDA synchronisation counted (torch.cuda.set_sync_debug_mode): a typical training step
    waits no more often than one gsplat render and backward. The NaN checks this replaced added six
    per step, and the unpinned copies of a view's image, viewmat and K to the device three more."""
    trainer = make_trainer(scene, tmp_path, max_steps=24, refine_every=8, finite_check_steps=100,
                           logging_steps=1000, eval_strategy="no", reset_every=1000)
    assert trainer.args.device.type == "cuda"
    model = trainer.model
    viewmats = torch.eye(4, device="cuda")[None].clone()
    viewmats[:, 2, 3] = 3.0
    Ks = torch.tensor([[[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]]], device="cuda")
    caught: list = []
    ends: list[int] = []

    def syncs() -> int:
        return sum("synchroniz" in str(warning.message) for warning in caught)

    class MarkSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(syncs())

    trainer.add_callback(MarkSteps())
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            colors, _, _ = model.render(viewmats, Ks, 32, 24, check_finite=False)
            colors.sum().backward()
            per_render = syncs()
            caught.clear()
            model.zero_grad(set_to_none=True)
            trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    per_step = [b - a for a, b in zip([0, *ends], ends)]
    assert trainer.args.dataloader_pin_memory and trainer.args.accelerator_config.non_blocking
    assert statistics.median(per_step) <= per_render, (per_render, per_step)
