"""SplatTrainer's densification statistics on 2 CPU DDP processes (gloo).

Each rank accumulates gsplat's statistics from its own views, and the ranks combine them only at
the steps where the strategy reads them. Run by pytest, this file launches itself with
``accelerate launch``; each rank records the statistics the strategy read at each refine step,
the views it rendered and the `torch.distributed` collectives it called at each step. The test
replays the same views in one process (two views per step) and compares the statistics.

Run by hand, ``accelerate launch --config_file trainers/accelerate/cpu_2proc.yaml
tests/distributed/test_splat_ddp_statistics.py OUT 100`` counts the collectives of a 100-step run
(a third argument 1 renders packed).
"""

import dataclasses
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from hf_eff.utils.distributed import finish_distributed
from tests.distributed.launch import launch_two_ranks

NUM_TRAIN_VIEWS, MAX_STEPS, REFINE_EVERY = 8, 13, 4
STATISTICS = ("grad2d", "count", "radii")
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object", "broadcast",
               "broadcast_object_list", "reduce", "reduce_scatter_tensor", "gather", "scatter", "barrier")


def make_scene():
    from hf_eff.splat import make_procedural_scene

    return make_procedural_scene(seed=1, num_train=NUM_TRAIN_VIEWS, num_test=2, width=32, height=32, num_points=300)


def make_args(output_dir, max_steps: int, **overrides):
    from hf_eff.splat import SplatTrainingArguments

    return SplatTrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, refine_every=REFINE_EVERY, refine_start_steps=2,
        reset_every=1000, sh_degree_interval=10, seed=0, disable_tqdm=True, logging_steps=1000, report_to=[],
        **overrides,
    )


def recording_strategy(args):
    """The strategy `args` builds, recording the statistics each refine step reads, radii included
    (tracked, and splitting large screen-space footprints, through the whole run)."""
    built = args.build_strategy()

    class Recording(type(built)):
        def _grow_gs(self, params, optimizers, state, step):
            self.reads.append({"step": step, **{key: state[key].clone() for key in STATISTICS}})
            return super()._grow_gs(params, optimizers, state, step)

    fields = {field.name: getattr(built, field.name) for field in dataclasses.fields(built)}
    strategy = Recording(**{**fields, "refine_scale2d_stop_iter": MAX_STEPS})
    strategy.reads = []
    return strategy


def make_model():
    from transformers import set_seed

    from hf_eff.splat import GaussianModel

    # Rank 0's model, which the trainer hands to every rank.
    set_seed(0)
    xyz, rgb = make_scene().point_arrays()
    return GaussianModel.from_points(xyz, rgb, sh_degree=1)


def run_worker(out_dir: Path, max_steps: str = str(MAX_STEPS), packed: str = "0") -> None:
    import torch.distributed as dist

    from hf_eff.splat import SplatTrainer
    from hf_eff.utils.distributed import check_world_size, prepare_cpu_distributed

    prepare_cpu_distributed()
    scene = make_scene()
    args = make_args(out_dir / "run", int(max_steps), packed=packed == "1")
    check_world_size(args.world_size)
    rank = int(os.environ.get("RANK", "0"))
    calls: list[tuple[int, str]] = []  # (global step, collective); step -1 before training
    trainers = []

    def counted(name, collective):
        def call(*call_args, **kwargs):
            calls.append((trainers[0].state.global_step if trainers else -1, name))
            return collective(*call_args, **kwargs)
        return call

    for name in COLLECTIVES:
        if hasattr(dist, name):
            setattr(dist, name, counted(name, getattr(dist, name)))

    class RecordingTrainer(SplatTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.step_views = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            matches = (inputs["viewmat"][:, None] == self.train_dataset.viewmats[None]).flatten(2).all(dim=-1)
            self.step_views.append(matches.nonzero()[:, 1].tolist())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer = RecordingTrainer(model=make_model(), args=args, train_dataset=scene.views["train"],
                               strategy=recording_strategy(args))
    trainers.append(trainer)
    trainer.train()
    report = {"step_views": trainer.step_views, "collectives": calls,
              "parameters": len(trainer.splats), "read_steps": [read["step"] for read in trainer.strategy.reads]}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    torch.save(trainer.strategy.reads, out_dir / f"rank{rank}.pt")


@pytest.mark.slow
@pytest.mark.parametrize("packed", [False, True])
def test_ddp_statistics_are_combined_at_refine_steps_only_and_equal_one_process_over_the_same_views(tmp_path, packed):
    launch_two_ranks(__file__, str(tmp_path), str(MAX_STEPS), str(int(packed)))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    reads = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    read_steps = ranks[0]["read_steps"]
    assert read_steps == [4, 8]

    # Every rank read the same combined statistics, bit for bit.
    for read0, read1 in zip(*reads, strict=True):
        for key in STATISTICS:
            assert torch.equal(read0[key], read1[key]), (read0["step"], key)

    # Collectives: outside the refine steps only the gradient average (one all_reduce per parameter);
    # at each refine step (densification until 11, then adaptive pruning at 12) the statistics are
    # combined once (grad2d, count, radii) and the NaN record and the Gaussian counts are gathered.
    for rank in ranks:
        per_step: dict[int, Counter] = {}
        for step, name in rank["collectives"]:
            per_step.setdefault(step, Counter())[name] += 1
        for step in range(1, MAX_STEPS):
            expected = {"all_reduce": rank["parameters"]}
            if step % REFINE_EVERY == 0:
                expected = {"all_reduce": rank["parameters"] + len(STATISTICS), "all_gather": 2}
            assert dict(per_step[step]) == expected, step

    # One process rendering both ranks' views of each step reads the same statistics (up to float order).
    from torch.utils.data import DataLoader

    from hf_eff.splat import SplatTrainer

    order = [view for step in zip(ranks[0]["step_views"], ranks[1]["step_views"]) for views in step for view in views]

    class Replay(SplatTrainer):
        def get_train_dataloader(self):
            return DataLoader(self.train_dataset, batch_size=2, sampler=order, collate_fn=self.data_collator)

    scene = make_scene()
    # The same schedules (they scale with max_steps); only the first read is compared: the split it
    # triggers draws different random numbers in one process.
    args = make_args(tmp_path / "single", MAX_STEPS, per_device_train_batch_size=2, packed=packed)
    single = Replay(model=make_model(), args=args, train_dataset=scene.views["train"], strategy=recording_strategy(args))
    single.train()
    expected = single.strategy.reads[0]
    assert expected["step"] == read_steps[0]
    assert torch.equal(reads[0][0]["count"], expected["count"])
    assert torch.equal(reads[0][0]["radii"], expected["radii"])
    assert expected["count"].sum() > 0 and expected["radii"].max() > 0
    torch.testing.assert_close(reads[0][0]["grad2d"], expected["grad2d"], rtol=1e-4, atol=1e-9)


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]), *sys.argv[2:])
    finish_distributed()
