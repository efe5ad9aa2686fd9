"""A splat run's pose corrections go up with its model, and a later run's push without them removes them."""

import torch
import transformers

from hf_eff import GaussianModel
from hf_eff.splat.config import SplatTrainingArguments
from hf_eff.splat.procedural import make_procedural_scene
from hf_eff.splat.trainer import SplatTrainer

POSES = "pose_adjustment.safetensors"


def test_the_pose_corrections_follow_the_model_pushed(local_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", local_hub.api())  # transformers' shared HfApi
    scene = make_procedural_scene(seed=1, num_train=4, num_test=1, width=16, height=16, num_points=100)
    repo_id = local_hub.repo_id("splats")

    def pushed() -> set[str]:
        repo = local_hub.server.repos[("model", repo_id)]
        return set(repo.commits[repo.branches["main"]].tree)

    def train_and_push(name: str, **settings) -> tuple[set[str], set[str]]:
        """The repo's files after training (its checkpoint pushes) and after the closing push."""
        torch.manual_seed(0)
        args = SplatTrainingArguments(output_dir=str(tmp_path / name), max_steps=4, save_strategy="steps",
                                      save_steps=2, refine_start_steps=10**6, eval_render_images=0, report_to=[],
                                      disable_tqdm=True, push_to_hub=True, hub_model_id=repo_id,
                                      hub_strategy="checkpoint", **settings)
        trainer = SplatTrainer(model=GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args=args,
                               train_dataset=scene.views["train"])
        trainer.train()
        after_checkpoints = pushed()
        trainer.push_to_hub()
        return after_checkpoints, pushed()

    # the checkpoint pushes send the checkpoint's corrections with its model, at the top and in last-checkpoint
    for files in train_and_push("pose", pose_opt=True):
        assert {"model.safetensors", POSES, f"last-checkpoint/{POSES}"} <= files
    # a run without them pushed to the same repo: the corrections there were the other model's
    for files in train_and_push("plain"):
        assert "model.safetensors" in files and POSES not in files and f"last-checkpoint/{POSES}" not in files
