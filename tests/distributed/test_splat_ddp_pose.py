"""SplatTrainer's pose_opt on 2 CPU DDP processes (gloo): the ranks render different views, so each holds the
gradient of its own views' corrections only; averaged with the Gaussians', every rank applies the same update.

Run by pytest, this file launches itself with ``accelerate launch`` (trainers/accelerate/cpu_2proc.yaml); each
rank saves its corrections and Gaussians, and the test compares the ranks.
"""

import os
import sys
from pathlib import Path

import pytest
import torch

from hf_eff.utils.distributed import finish_distributed
from tests.distributed.launch import launch_two_ranks

NUM_TRAIN_VIEWS, MAX_STEPS = 6, 6


def run_worker(out_dir: Path) -> None:
    from hf_eff.splat import (
        GaussianModel,
        SplatTrainer,
        SplatTrainingArguments,
        make_procedural_scene,
    )
    from hf_eff.utils.distributed import check_world_size, prepare_cpu_distributed

    prepare_cpu_distributed()
    scene = make_procedural_scene(seed=1, num_train=NUM_TRAIN_VIEWS, num_test=2, width=32, height=32, num_points=300)
    args = SplatTrainingArguments(
        output_dir=str(out_dir / "run"), max_steps=MAX_STEPS, strategy="default", refine_start_steps=2,
        refine_every=4, reset_stop_fraction=0, seed=0, disable_tqdm=True, logging_steps=3, report_to=[],
        pose_opt=True, pose_noise=0.05, pose_opt_lr=4e-3,
    )
    check_world_size(args.world_size)
    rank = int(os.environ.get("RANK", "0"))
    model = GaussianModel.from_points(*scene.point_arrays(), sh_degree=0)
    trainer = SplatTrainer(model=model, args=args, train_dataset=scene.views["train"])
    trainer.train()
    trainer.save_model()
    torch.save({"corrections": trainer.pose_adjustment.embeds.weight.detach().clone(),
                "training_poses": trainer.training_poses(),
                "means": trainer.splats["means"].detach().clone()}, out_dir / f"rank{rank}.pt")


@pytest.mark.slow
def test_splat_ddp_ranks_keep_identical_pose_corrections(tmp_path):
    from safetensors.torch import load_file

    launch_two_ranks(__file__, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    # the same noise on both ranks, and the same corrections: every row moved, each rank's own views' and the other's
    for key in ("corrections", "training_poses", "means"):
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert (ranks[0]["corrections"].abs().sum(dim=1) > 0).all()
    saved = load_file(tmp_path / "run" / "pose_adjustment.safetensors")
    assert torch.equal(saved["pose_deltas"], ranks[0]["corrections"])


if __name__ == "__main__":
    run_worker(Path(sys.argv[1]))
    finish_distributed()
