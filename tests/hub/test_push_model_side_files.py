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

    def train_and_push(name: str, **settings) -> set[str]:
        torch.manual_seed(0)
        args = SplatTrainingArguments(output_dir=str(tmp_path / name), max_steps=4, save_strategy="steps",
                                      save_steps=2, refine_start_steps=10**6, eval_render_images=0, report_to=[],
                                      disable_tqdm=True, push_to_hub=True, hub_model_id=repo_id,
                                      hub_strategy="checkpoint", **settings)
        trainer = SplatTrainer(model=GaussianModel.from_points(*scene.point_arrays(), sh_degree=0), args=args,
                               train_dataset=scene.views["train"])
        trainer.train()
        trainer.push_to_hub()
        repo = local_hub.server.repos[("model", repo_id)]
        return set(repo.commits[repo.branches["main"]].tree)

    pushed = train_and_push("pose", pose_opt=True)
    assert {POSES, f"last-checkpoint/{POSES}"} <= pushed
    pushed = train_and_push("plain")
    assert POSES not in pushed and f"last-checkpoint/{POSES}" not in pushed
    assert {"model.safetensors", "last-checkpoint/model.safetensors"} <= pushed
