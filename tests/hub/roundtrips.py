"""Artifact round trips against the local Hub, run in a fresh process by ``LocalHub.run``.

``python tests/hub/roundtrips.py SCENARIO '{"repo_id": ...}'`` runs one scenario with the
ecosystem's own calls (push_to_hub, from_pretrained, PeftModel.from_pretrained, Trainer,
load_scene, the hf-eff CLI) and prints ``ROUNDTRIP-RESULT {json}``: what it observed. The tests
assert on that. The environment (HF_ENDPOINT, HF_TOKEN, HF_HOME) comes from the test.

An audit hook records every file opened under HF_HOME and every torch.load call, so that the
tests can check that only safetensors, JSON (and the card) are read from a repo, and torch.load
only with weights_only=True.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

HF_HOME = os.environ["HF_HOME"]
OPENED: set[str] = set()
TORCH_LOADS: list[bool] = []


def _audit(event, args):
    # Reads only: downloads write temporary and blob files. (safetensors opens files in Rust,
    # which the hook does not see; pickles would be opened from Python.)
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
        reading = not any(c in mode for c in "wax+") if isinstance(mode, str) else not flags & (os.O_WRONLY | os.O_RDWR)
        if reading and path.startswith(HF_HOME) and "/.locks/" not in path:
            OPENED.add(path)


def _recording_torch_load(original):
    def load(*args, **kwargs):
        TORCH_LOADS.append(kwargs.get("weights_only") is True)
        return original(*args, **kwargs)

    return load


sys.addaudithook(_audit)
torch.load = _recording_torch_load(torch.load)


def opened_repo_files(repo_id: str, repo_type: str = "model") -> list[str]:
    """Repo paths of the files this process read from the Hub cache. Loaders open either the
    snapshot link or the blob it points to; blobs are named by their oid (sha256 for LFS)."""
    from huggingface_hub import HfApi

    api, path_of_blob = HfApi(), {}
    for commit in api.list_repo_commits(repo_id, repo_type=repo_type):
        for entry in api.list_repo_tree(repo_id, repo_type=repo_type, revision=commit.commit_id, recursive=True):
            if hasattr(entry, "blob_id"):
                path_of_blob[entry.lfs.sha256 if entry.lfs else entry.blob_id] = entry.path
    names, folder = set(), f"s--{repo_id.replace('/', '--')}"
    for path in OPENED:
        parts = Path(path).parts
        if not any(part.endswith(folder) for part in parts):
            continue
        if "snapshots" in parts:
            names.add("/".join(parts[parts.index("snapshots") + 2 :]))
        elif "blobs" in parts:
            names.add(path_of_blob.get(parts[-1], f"<unknown blob {parts[-1]}>"))
    return sorted(names)


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _repo_state(repo_id: str, repo_type: str = "model") -> dict:
    from huggingface_hub import HfApi

    info = HfApi().repo_info(repo_id, repo_type=repo_type)
    return {"repo_id": repo_id, "sha": info.sha, "files": sorted(s.rfilename for s in info.siblings)}


# --- artifacts ---------------------------------------------------------------------------


def _tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(config).eval()


def _adapter_config():
    import hf_eff

    return hf_eff.HaLoRAConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)


def _mixin_model(kind: str, seed: int):
    import hf_eff

    torch.manual_seed(seed)
    if kind == "splat":
        return hf_eff.GaussianModel.random(center=(0.0, 0.0, 0.0), radius=1.0, num_gaussians=50 + seed, sh_degree=1)
    if kind == "grant":
        return hf_eff.GrantGCN(in_channels=5, hidden_channels=8, out_channels=1)
    raise ValueError(f"unknown mixin model kind {kind!r}")


def _perturbed(model: torch.nn.Module, amount: float):
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(amount)
    return model


# --- scenarios ---------------------------------------------------------------------------


def scenario_mixin_models(repo_ids: dict[str, str]) -> dict:
    """For each PyTorchModelHubMixin artifact: push_to_hub, from_pretrained, a re-push that
    updates files, and revision pinning."""
    from huggingface_hub import HfApi, constants

    results = {}
    for kind, repo_id in repo_ids.items():
        v1 = _mixin_model(kind, seed=1)
        cls = type(v1)
        v1.push_to_hub(repo_id)
        first = _repo_state(repo_id)
        loaded = cls.from_pretrained(repo_id)
        v2 = _perturbed(_mixin_model(kind, seed=2), 0.5)
        v2.push_to_hub(repo_id, commit_message="second version")
        second = _repo_state(repo_id)
        result = {
            "class": cls.__name__,
            "first": first,
            "second": second,
            "v1_roundtrip": _equal_state(v1, loaded),
            "latest_is_v2": _equal_state(v2, cls.from_pretrained(repo_id)),
            "pinned_is_v1": _equal_state(v1, cls.from_pretrained(repo_id, revision=first["sha"])),
        }
        HfApi().delete_file(constants.SAFETENSORS_SINGLE_FILE, repo_id)
        try:
            cls.from_pretrained(repo_id)
            result["missing_weights_error"] = None
        except Exception as error:  # the test checks which error, and its message
            result["missing_weights_error"] = f"{type(error).__name__}: {error}"
        result["pinned_after_delete_is_v2"] = _equal_state(v2, cls.from_pretrained(repo_id, revision=second["sha"]))
        result["opened"] = opened_repo_files(repo_id)
        results[kind] = result
    return {"kinds": results, "torch_loads_weights_only": TORCH_LOADS}


def scenario_peft_adapter(repo_id: str) -> dict:
    """PEFT's push_to_hub / PeftModel.from_pretrained(base, repo_id), re-push, revision pinning."""
    from peft import PeftModel, get_peft_model

    inputs = torch.arange(12).reshape(2, 6)
    peft_model = get_peft_model(_tiny_llama(), _adapter_config())
    peft_model.push_to_hub(repo_id)
    first = _repo_state(repo_id)
    logits_v1 = peft_model(inputs).logits
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.add_(0.25)
    logits_v2 = peft_model(inputs).logits
    peft_model.push_to_hub(repo_id, commit_message="second version")
    second = _repo_state(repo_id)

    def logits(revision=None):
        model = PeftModel.from_pretrained(_tiny_llama(), repo_id, revision=revision).eval()
        return model(inputs).logits

    return {
        "peft_type": str(peft_model.peft_config["default"].peft_type),
        "first": first,
        "second": second,
        "adapters_differ": not torch.allclose(logits_v1, logits_v2),
        "latest_is_v2": torch.allclose(logits(), logits_v2, atol=1e-6),
        "pinned_is_v1": torch.allclose(logits(first["sha"]), logits_v1, atol=1e-6),
        "opened": opened_repo_files(repo_id),
        "torch_loads_weights_only": TORCH_LOADS,
    }


def _random_graphs(num_graphs: int, feature_dim: int = 6, seed: int = 0):
    import numpy as np
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    rows = {"x": [], "edge_index": [], "y": [], "num_nodes": []}
    for _ in range(num_graphs):
        n = int(rng.integers(2, 8))
        rows["x"].append(rng.normal(size=(n, feature_dim)).astype("float32"))
        rows["edge_index"].append(rng.integers(0, n, size=(2, 2 * n)))
        rows["y"].append([float(rows["x"][-1][:, 0].mean())])
        rows["num_nodes"].append(n)
    return Dataset.from_dict(rows)


def _trainer_factory(kind: str, repo_id: str, hub_token: str):
    """make_trainer(output_dir, callbacks) for one of the hf-eff trainers, pushing checkpoints
    to repo_id with the token given as ``--hub_token`` would give it."""
    hub = {"push_to_hub": True, "hub_model_id": repo_id, "hub_strategy": "checkpoint", "save_steps": 2,
           "hub_token": hub_token, "report_to": [], "use_cpu": True, "disable_tqdm": True, "logging_steps": 1,
           "seed": 0}
    if kind == "halora":
        from datasets import Dataset
        from peft import get_peft_model

        from hf_eff.halora.trainer import HaLoRATrainer, HaLoRATrainingArguments

        rows = torch.randint(0, 64, (16, 8), generator=torch.Generator().manual_seed(0)).tolist()
        data = Dataset.from_dict({"input_ids": rows, "labels": rows})

        def make(out, callbacks):
            args = HaLoRATrainingArguments(output_dir=out, max_steps=6, per_device_train_batch_size=4,
                                           learning_rate=1e-2, eval_noise_seeds=1, **hub)
            model = get_peft_model(_tiny_llama(), _adapter_config())
            return HaLoRATrainer(model=model, args=args, train_dataset=data, callbacks=callbacks)

        return make
    if kind == "grant":
        from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments

        data = _random_graphs(32)

        def make(out, callbacks):
            args = GraNTTrainingArguments(output_dir=out, task="graph_regression", num_train_epochs=6,
                                          per_device_train_batch_size=8, learning_rate=1e-2, start_ratio=0.5,
                                          reselect_schedule="constant", reselect_interval_start=2, **hub)
            model = GrantGCN(6, 1, hidden_channels=8)
            return GraNTTrainer(model=model, args=args, train_dataset=data, callbacks=callbacks)

        return make
    if kind == "splat":
        from hf_eff import GaussianModel
        from hf_eff.splat.config import SplatTrainingArguments
        from hf_eff.splat.trainer import SplatTrainer

        scene = _tiny_scene(1)

        def make(out, callbacks):
            torch.manual_seed(0)
            xyz, rgb = scene.point_arrays()
            args = SplatTrainingArguments(output_dir=out, max_steps=6, refine_every=2, refine_start_steps=1,
                                          reset_every=100, sh_degree_interval=3, eval_render_images=0, **hub)
            return SplatTrainer(model=GaussianModel.from_points(xyz, rgb, sh_degree=1), args=args,
                                train_dataset=scene.views["train"], callbacks=callbacks)

        return make
    raise ValueError(f"unknown trainer kind {kind!r}")


def scenario_trainer_branch(repo_id: str, foreign_repo_id: str, output_dir: str) -> dict:
    """A trainer built with push_to_hub=True and hub_revision="dev" on a new repo: the branch exists before
    training, and the pushes go to it. The same on a repo of another user (readable, not writable): the trainer
    is refused when it is built."""
    from huggingface_hub import HfApi, ModelCard, hf_hub_download
    from transformers import TrainerCallback

    class BranchesAtTrainingStart(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.branches = sorted(b.name for b in HfApi().list_repo_refs(repo_id).branches)

    hub_token = os.environ.pop("HF_TOKEN")  # as --hub_token gives it
    hub = {"push_to_hub": True, "hub_revision": "dev", "hub_token": hub_token, "report_to": [], "use_cpu": True,
           "disable_tqdm": True, "save_strategy": "no", "seed": 0}
    make = _grant_trainer(hub)
    at_start = BranchesAtTrainingStart()
    trainer = make(f"{output_dir}/new", repo_id, [at_start])
    trainer.train()
    trainer.push_to_hub()
    api = HfApi(token=hub_token)
    result = {
        "branches_at_training_start": at_start.branches,
        "dev_files": sorted(api.list_repo_files(repo_id, revision="dev")),
        "main_files": sorted(api.list_repo_files(repo_id)),
        "dev_card_text": ModelCard.load(hf_hub_download(repo_id, "README.md", revision="dev", token=hub_token)).text,
    }
    try:
        make(f"{output_dir}/foreign", foreign_repo_id, [])
        result["foreign_error"] = None
    except Exception as error:  # reported to the test, which says what it expects
        result["foreign_error"] = f"{type(error).__name__}: {' '.join(str(error).split())}"
    result["foreign_branches"] = sorted(b.name for b in api.list_repo_refs(foreign_repo_id).branches)
    return result


def _grant_trainer(hub: dict):
    """make(output_dir, repo_id, callbacks): a small GraNTTrainer pushing to repo_id with the arguments ``hub``."""
    from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments

    data = _random_graphs(32)

    def make(out, repo_id, callbacks):
        args = GraNTTrainingArguments(output_dir=out, task="graph_regression", num_train_epochs=2,
                                      per_device_train_batch_size=8, learning_rate=1e-2, start_ratio=0.5,
                                      reselect_schedule="constant", reselect_interval_start=1, hub_model_id=repo_id,
                                      **hub)
        return GraNTTrainer(model=GrantGCN(6, 1, hidden_channels=8), args=args, train_dataset=data, callbacks=callbacks)

    return make


def _files_holding(folder: Path, token: str) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and token.encode() in p.read_bytes())


def scenario_trainer_checkpoints(repo_ids: dict[str, str], output_dir: str) -> dict:
    """For each hf-eff Trainer: a run with push_to_hub=True, hub_strategy="checkpoint" stops
    after its first checkpoint; a new run resumed from the Hub's last-checkpoint continues and
    trains only the remaining steps."""
    from huggingface_hub import ModelCard, hf_hub_download, snapshot_download
    from transformers import TrainerCallback

    class StopAfterFirstCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= args.save_steps:
                control.should_save = control.should_training_stop = True

    class StepCounter(TrainerCallback):
        def __init__(self):
            self.steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    def loss_steps(history):
        return [e["step"] for e in history if "loss" in e]

    # The token as users pass it on the command line (--hub_token), not from the environment.
    hub_token = os.environ.pop("HF_TOKEN")
    results = {}
    for kind, repo_id in repo_ids.items():
        make = _trainer_factory(kind, repo_id, hub_token)
        reference = make(f"{output_dir}/{kind}/reference", [])
        reference.push_to_hub = lambda *args, **kwargs: None  # an uninterrupted run, for the step count only
        reference.args.push_to_hub = False
        reference.train()
        interrupted = make(f"{output_dir}/{kind}/interrupted", [StopAfterFirstCheckpoint()])
        interrupted.train()
        pushed = _repo_state(repo_id)
        checkpoint = Path(snapshot_download(repo_id, allow_patterns=["last-checkpoint/*"])) / "last-checkpoint"
        checkpoint_card = ModelCard.load(checkpoint / "README.md")
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        counter = StepCounter()
        resumed = make(f"{output_dir}/{kind}/resumed", [counter])
        try:
            resumed.train(resume_from_checkpoint=str(checkpoint))
            resume_error = None
        except Exception as error:  # reported to the test, which says what it expects
            resume_error = f"{type(error).__name__}: {error}"
        resumed.push_to_hub(tags=["user-tag"])
        card = ModelCard.load(hf_hub_download(repo_id, "README.md"))
        resumed.push_to_hub(revision="v1")  # a branch the repo lacks: the push creates it
        branch_card = ModelCard.load(hf_hub_download(repo_id, "README.md", revision="v1"))
        results[kind] = {
            "trainer": type(resumed).__name__,
            "pushed": pushed,
            "checkpoint_step": state["global_step"],
            "total_steps": reference.state.global_step,
            "interrupted_steps": loss_steps(interrupted.state.log_history),
            "resume_error": resume_error,
            "resumed_steps": loss_steps(resumed.state.log_history),
            "resumed_global_step": resumed.state.global_step,
            "resumed_trained_steps": counter.steps,
            "card_tags": card.data.tags, "card_library": card.data.library_name,
            "card_text": card.text, "branch_card_text": branch_card.text,
            "checkpoint_card_library": checkpoint_card.data.library_name,
            "checkpoint_card_text": checkpoint_card.text,
            "final_files": _repo_state(repo_id)["files"],
            "local_files": sorted(str(f.relative_to(output_dir)) for f in Path(output_dir, kind).rglob("*.bin")),
            "opened": opened_repo_files(repo_id),
            "repo_files_with_token": _files_holding(Path(snapshot_download(repo_id)), hub_token),
            "saved_files_with_token": _files_holding(Path(output_dir) / kind, hub_token),
        }
    return {"kinds": results, "torch_loads_weights_only": TORCH_LOADS}


def _tiny_scene(seed: int):
    from hf_eff import make_procedural_scene

    return make_procedural_scene(seed=seed, num_train=3, num_test=1, width=16, height=16,
                                 num_objects=1, num_points=30, supersample=1)


def _scene_signature(scene) -> dict:
    train = scene.views["train"].with_format("numpy")
    return {"splits": {k: len(v) for k, v in scene.views.items()},
            "points": None if scene.points is None else len(scene.points),
            "center": list(scene.center), "radius": scene.radius,
            "pixel_sum": float(sum(float(img.sum()) for img in train["image"])),
            "K": train["K"][0].tolist()}


def scenario_scene(repo_id: str) -> dict:
    """Scene.push_to_hub / load_scene as a dataset repo with views and points configurations."""
    from datasets import get_dataset_config_names

    from hf_eff import load_scene

    scene_v1, scene_v2 = _tiny_scene(1), _tiny_scene(2)
    scene_v1.push_to_hub(repo_id)
    first = _repo_state(repo_id, "dataset")
    loaded_v1 = load_scene(repo_id)
    scene_v2.push_to_hub(repo_id)
    second = _repo_state(repo_id, "dataset")
    return {
        "first": first, "second": second,
        "configs": sorted(get_dataset_config_names(repo_id)),
        "v1": _scene_signature(scene_v1), "v2": _scene_signature(scene_v2),
        "loaded_v1": _scene_signature(loaded_v1),
        "latest": _scene_signature(load_scene(repo_id)),
        "pinned": _scene_signature(load_scene(repo_id, revision=first["sha"])),
    }


def scenario_artifacts(mixin_repo_ids: dict[str, str], adapter_repo_id: str, scene_repo_id: str) -> dict:
    """The three artifact round trips in one process (imports dominate the cost)."""
    return {"mixin": scenario_mixin_models(mixin_repo_ids), "adapter": scenario_peft_adapter(adapter_repo_id),
            "scene": scenario_scene(scene_repo_id), "torch_loads_weights_only": TORCH_LOADS}


def _write_run_folder(out: Path, kind: str):
    """A run folder like the examples leave: the saved artifact, all_results.json, and
    leftovers that must not be uploaded (a checkpoint, a pickled training_args.bin)."""
    out.mkdir(parents=True, exist_ok=True)
    if kind == "halora":
        from peft import get_peft_model

        model = get_peft_model(_tiny_llama(), _adapter_config())
        model.save_pretrained(out)
        results = {"eval_accuracy_sigma_0_mean": 0.62, "eval_accuracy_sigma_0.02_mean": 0.58,
                   "eval_accuracy_sigma_0.02_std": 0.01, "train_runtime": 3.5, "train_loss": 1.25,
                   "dataset_name": "arithmetic", "eval_questions": 8}
    elif kind == "splat":
        model = _mixin_model("splat", seed=3)
        model.save_pretrained(out)
        model.save_ply(out / "splats.ply")
        (out / "preview.png").write_bytes(_png_bytes())
        results = {"eval_psnr": 24.5, "eval_ssim": 0.81, "num_gaussians": model.num_gaussians,
                   "train_runtime": 42.0, "strategy": "g2l", "dataset": "procedural (seed 0)"}
    elif kind == "scene":
        scene = _tiny_scene(4)
        scene.save(out)
        return scene
    else:
        model = _mixin_model("grant", seed=3)
        model.save_pretrained(out)
        results = {"train_runtime": 12.0, "time_to_target": 7.5, "eval_mae": 0.31, "teacher": "grant",
                   "dataset_name": "gen-reg"}
    (out / "all_results.json").write_text(json.dumps(results))
    (out / "checkpoint-2").mkdir(exist_ok=True)
    (out / "checkpoint-2" / "optimizer.pt").write_bytes(b"not for the hub")
    (out / "training_args.bin").write_bytes(b"pickle, not for the hub")
    return model


def scenario_push_cli(repo_ids: dict[str, str], output_dir: str, private: bool = False) -> dict:
    """`hf-eff push OUTPUT_DIR REPO_ID` of each kind of run folder, then loading it back with
    the ecosystem's call for that artifact."""
    from huggingface_hub import DatasetCard, ModelCard

    from hf_eff import load_scene
    from hf_eff.cli import main as cli_main

    results = {}
    for kind, repo_id in repo_ids.items():
        out = Path(output_dir) / kind
        model = _write_run_folder(out, kind)
        argv = ["push", str(out), repo_id] + (["--private"] if private else [])
        if kind == "grant":  # --token instead of HF_TOKEN, and a license
            token = os.environ.pop("HF_TOKEN")
            exit_code = cli_main(argv + ["--token", token, "--license", "mit"])
            os.environ["HF_TOKEN"] = token
        else:
            exit_code = cli_main(argv)
        if kind == "scene":
            card = DatasetCard.load(repo_id)
            equal = _scene_signature(load_scene(repo_id)) == _scene_signature(model)
            results[kind] = {
                "exit_code": exit_code, "state": _repo_state(repo_id, "dataset"), "roundtrip": equal,
                "card_text": str(card), "card_data": card.data.to_dict(),
                "opened": opened_repo_files(repo_id, "dataset"),
            }
            continue
        card = ModelCard.load(repo_id)
        equal = _loads_back_equal(kind, model, repo_id)
        results[kind] = {
            "exit_code": exit_code, "state": _repo_state(repo_id), "roundtrip": equal,
            "card_text": str(card), "card_data": card.data.to_dict(), "opened": opened_repo_files(repo_id),
        }
    return {"kinds": results, "torch_loads_weights_only": TORCH_LOADS}


def _loads_back_equal(kind: str, model, repo_id: str) -> bool:
    """Whether the pushed ``model`` loads back from ``repo_id`` with the ecosystem's call for it (PEFT's for an adapter,
    the class's from_pretrained otherwise) and computes the same."""
    from peft import PeftModel

    if kind == "halora":
        inputs = torch.arange(12).reshape(2, 6)
        loaded = PeftModel.from_pretrained(_tiny_llama(), repo_id).eval()
        return torch.allclose(loaded(inputs).logits, model.eval()(inputs).logits, atol=1e-6)
    return _equal_state(model, type(model).from_pretrained(repo_id))


def scenario_push_saved_models(repo_ids: dict[str, str], output_dir: str) -> dict:
    """``hf_eff.push_output_dir`` of the folder each model's own save_pretrained wrote (no all_results.json), then
    loading it back with the ecosystem's call for that artifact."""
    from huggingface_hub import ModelCard
    from peft import get_peft_model

    import hf_eff

    results = {}
    for kind, repo_id in repo_ids.items():
        out = Path(output_dir) / kind
        if kind == "halora":
            model = get_peft_model(_tiny_llama(), _adapter_config())
        elif kind == "grant":
            model = hf_eff.GrantGCN(in_channels=5, hidden_channels=8, out_channels=1, task="graph_regression",
                                    target_names=["logS"])
        else:
            model = _mixin_model(kind, seed=4)
        model.save_pretrained(out)
        url = hf_eff.push_output_dir(out, repo_id)
        equal = _loads_back_equal(kind, model, repo_id)
        card = ModelCard.load(repo_id)
        results[kind] = {"url": url, "roundtrip": equal, "card_text": card.text, "card_data": card.data.to_dict(),
                         "opened": opened_repo_files(repo_id)}
    return {"kinds": results, "torch_loads_weights_only": TORCH_LOADS}


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    scenario, kwargs = sys.argv[1], json.loads(sys.argv[2])
    result = globals()[f"scenario_{scenario}"](**kwargs)
    print("ROUNDTRIP-RESULT " + json.dumps(result), flush=True)
