"""SplatTrainer on 2 CPU DDP processes (gloo): one set of Gaussians trained by two ranks.

Run by pytest, this file launches itself with ``accelerate launch`` (trainers/accelerate/cpu_2proc.yaml);
each rank writes what it saw (world size, the model type it trained, the train views it rendered
and its number of Gaussians at every step, its final Gaussians) and the test compares the ranks.
A second launch resumes from the mid-densification checkpoint and must end with the same Gaussians.
"""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from hf_eff.utils.distributed import finish_distributed
from tests.distributed.launch import launch_two_ranks

NUM_TRAIN_VIEWS, MAX_STEPS = 8, 32


def run_worker(out_dir: Path, resume_from_checkpoint: str | None = None) -> None:
    from transformers import TrainerCallback, set_seed

    from hf_eff.splat import (
        GaussianModel,
        SplatTrainer,
        SplatTrainingArguments,
        make_procedural_scene,
    )
    from hf_eff.utils.distributed import check_world_size, prepare_cpu_distributed

    prepare_cpu_distributed()
    scene = make_procedural_scene(seed=1, num_train=NUM_TRAIN_VIEWS, num_test=2, width=32, height=32, num_points=300)

    class RecordingTrainer(SplatTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.step_views, self.step_gaussians = [], []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            matches = (inputs["viewmat"][:, None] == self.train_dataset.viewmats[None]).flatten(2).all(dim=-1)
            self.step_views.append(matches.nonzero()[:, 1].tolist())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    class CountGaussians(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            # Draws that differ per rank (augmentation, ...) must not change densification's draws.
            torch.rand(rank + 1)

        def on_step_end(self, args, state, control, **kwargs):
            trainer.step_gaussians.append(len(trainer.splats["means"]))

    args = SplatTrainingArguments(
        output_dir=str(out_dir / "run"), max_steps=MAX_STEPS, refine_every=4, refine_start_steps=2,
        reset_every=1000, sh_degree_interval=10, seed=0, disable_tqdm=True, logging_steps=8,
        save_strategy="steps", save_steps=MAX_STEPS // 2, report_to=[],
    )
    check_world_size(args.world_size)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 1:
        # Each rank accumulates densification statistics from its own views (on CUDA index_add_ even
        # sums them in no fixed order); made far apart here, the ranks must still take the same
        # decisions, from statistics combined across ranks where the strategy reads them.
        from hf_eff.splat.strategy import GlobalToLocalStrategy

        update = GlobalToLocalStrategy._update_state

        def drifting_update(self, params, state, info, packed=False):
            update(self, params, state, info, packed=packed)
            state["grad2d"].mul_(1.5)

        GlobalToLocalStrategy._update_state = drifting_update
    # A different model on each rank: training must start from rank 0's Gaussians.
    set_seed(rank)
    xyz, rgb = scene.point_arrays()
    model = GaussianModel.from_points(xyz, rgb, sh_degree=1)
    trainer = RecordingTrainer(model=model, args=args, train_dataset=scene.views["train"],
                               eval_dataset=scene.views["test"], callbacks=[CountGaussians()])
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    report = {"world_size": args.world_size, "model_type": type(trainer.model_wrapped).__name__,
              "step_views": trainer.step_views, "step_gaussians": trainer.step_gaussians,
              "global_stop_iter": trainer.strategy.global_stop_iter}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    torch.save({key: value.detach().clone() for key, value in trainer.splats.items()}, out_dir / f"rank{rank}.pt")



@pytest.mark.slow
def test_splat_ddp_ranks_render_different_views_and_keep_identical_gaussians(tmp_path):
    launch_two_ranks(__file__, str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert [rank["model_type"] for rank in ranks] == ["GaussianModel"] * 2  # not wrapped in DDP

    # each step the ranks rendered different views; each epoch covers every train view once
    views = [rank["step_views"] for rank in ranks]
    assert len(views[0]) == len(views[1]) == MAX_STEPS
    epoch_steps = NUM_TRAIN_VIEWS // 2
    for start in range(0, MAX_STEPS, epoch_steps):
        seen = [v for step in range(start, start + epoch_steps) for rank in (0, 1) for v in views[rank][step]]
        assert sorted(seen) == list(range(NUM_TRAIN_VIEWS))

    # densification ran during training, with the same decisions on both ranks
    counts = [rank["step_gaussians"] for rank in ranks]
    assert counts[0] == counts[1]
    assert len(set(counts[0])) > 2
    assert ranks[0]["global_stop_iter"] < MAX_STEPS  # the local phase (clone and split) ran too

    # the same Gaussians on both ranks, bit for bit
    splats = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert splats[0].keys() == splats[1].keys()
    for key, value in splats[0].items():
        assert torch.equal(value, splats[1][key]), key
    assert len(splats[0]["means"]) == counts[0][-1]

    # the main process wrote the checkpoints; the last one holds those Gaussians
    from hf_eff.splat import GaussianModel

    checkpoint = tmp_path / "run" / f"checkpoint-{MAX_STEPS}"
    assert (checkpoint / "densification_state.pt").is_file()
    saved = GaussianModel.from_pretrained(checkpoint)
    assert torch.equal(saved.splats["means"], splats[0]["means"])

    # resumed in the middle of densification, two ranks end where the uninterrupted run ended
    middle = tmp_path / "run" / f"checkpoint-{MAX_STEPS // 2}"
    assert counts[0][MAX_STEPS // 2 - 1] == len(GaussianModel.from_pretrained(middle))
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    launch_two_ranks(__file__, str(resumed_dir), str(middle))
    resumed = [json.loads((resumed_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert resumed[0]["step_gaussians"] == resumed[1]["step_gaussians"] == counts[0][MAX_STEPS // 2:]
    for rank in (0, 1):
        resumed_splats = torch.load(resumed_dir / f"rank{rank}.pt")
        for key, value in splats[0].items():
            torch.testing.assert_close(resumed_splats[key], value, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]), *sys.argv[2:])
    finish_distributed()
