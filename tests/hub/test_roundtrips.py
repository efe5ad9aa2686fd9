"""Every artifact through a Hub repo with the ecosystem's own calls, against the local Hub.

Each test runs one scenario of roundtrips.py in a fresh process pointed at the server (see
conftest.py), then asserts on what the scenario observed and on the server's state.
"""

from pathlib import Path

import pytest
from huggingface_hub.errors import RepositoryNotFoundError

pytestmark = pytest.mark.slow

# What may be read from a repo: safetensors (read in Rust, invisible to the audit hook), JSON,
# the card, parquet tables, and the Trainers' optimizer / scheduler / RNG / densification states,
# read with torch.load(weights_only=True) (the scenarios check every call).
SAFE_SUFFIXES = (".json", ".md", ".parquet", ".safetensors")
TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "densification_state.pt")


def _assert_safe_reads(result: dict, opened: list[str]):
    assert all(result["torch_loads_weights_only"]), "torch.load without weights_only=True"
    unsafe = [p for p in opened if not p.endswith(SAFE_SUFFIXES) and Path(p).name not in TRAINER_STATE_FILES]
    assert unsafe == []


@pytest.fixture
def artifact_runs(local_hub, run_once):
    """One process runs the model, adapter and scene round trips (imports dominate the cost)."""
    repo_ids = {
        "mixin_repo_ids": {"grant": local_hub.repo_id("grant"), "splat": local_hub.repo_id("splat")},
        "adapter_repo_id": local_hub.repo_id("adapter"),
        "scene_repo_id": local_hub.repo_id("scene"),
    }
    return run_once("artifacts", "artifacts", **repo_ids)


@pytest.mark.parametrize("kind", ["grant", "splat"])
def test_mixin_model_push_pull_repush_and_pin(artifact_runs, kind):
    observed = artifact_runs["mixin"]["kinds"][kind]
    assert observed["class"] == {"grant": "GrantGCN", "splat": "GaussianModel"}[kind]
    assert {"config.json", "model.safetensors", "README.md"} <= set(observed["first"]["files"])
    assert observed["first"]["sha"] != observed["second"]["sha"]
    assert observed["v1_roundtrip"] and observed["latest_is_v2"] and observed["pinned_is_v1"]
    # The weights deleted from main: a clear 404 that names the repo; older commits still load.
    assert observed["missing_weights_error"].startswith("RemoteEntryNotFoundError")
    assert f"/{observed['first']['repo_id']}/resolve/main/" in observed["missing_weights_error"]
    assert observed["pinned_after_delete_is_v2"]
    _assert_safe_reads(artifact_runs, observed["opened"])


def test_halora_adapter_push_pull_repush_and_pin(artifact_runs):
    observed = artifact_runs["adapter"]
    assert observed["peft_type"].endswith("HALORA")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(observed["first"]["files"])
    assert observed["adapters_differ"] and observed["latest_is_v2"] and observed["pinned_is_v1"]
    _assert_safe_reads(artifact_runs, observed["opened"])


def test_scene_dataset_push_load_repush_and_pin(artifact_runs):
    observed = artifact_runs["scene"]
    assert observed["configs"] == ["points", "views"]
    assert {"scene.json", "views/train-00000-of-00001.parquet", "points/train-00000-of-00001.parquet"} <= set(
        observed["first"]["files"])
    assert observed["v1"] != observed["v2"]
    assert observed["loaded_v1"] == observed["v1"] and observed["latest"] == observed["v2"]
    assert observed["pinned"] == observed["v1"]


TRAINERS = {"halora": "HaLoRATrainer", "grant": "GraNTTrainer", "splat": "SplatTrainer"}


@pytest.fixture
def trainer_runs(local_hub, run_once, tmp_path_factory):
    """One process runs every trainer's scenario (imports dominate the cost)."""
    repo_ids = {kind: local_hub.repo_id(f"checkpoints-{kind}") for kind in TRAINERS}
    return run_once("trainers", "trainer_checkpoints", repo_ids=repo_ids,
                    output_dir=str(tmp_path_factory.mktemp("trainer_runs")))


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_trainer_pushes_its_checkpoints_to_the_hub(trainer_runs, kind):
    observed = trainer_runs["kinds"][kind]
    assert observed["trainer"] == TRAINERS[kind]
    assert observed["checkpoint_step"] == 2 and observed["interrupted_steps"] == [1, 2]
    assert "last-checkpoint/trainer_state.json" in observed["pushed"]["files"]
    assert any(f.startswith("last-checkpoint/") and f.endswith(".safetensors") for f in observed["pushed"]["files"])
    _assert_safe_reads(trainer_runs, observed["opened"])


# Every trainer's arguments inherit hf_eff.hub.TokenFreeArgumentsMixin: transformers pickles
# --hub_token into training_args.bin, which the Trainer pushes.
@pytest.mark.parametrize("kind", list(TRAINERS))
def test_token_given_to_a_trainer_stays_out_of_its_checkpoints(trainer_runs, kind):
    observed = trainer_runs["kinds"][kind]
    assert observed["saved_files_with_token"] == [] and observed["repo_files_with_token"] == []


# Like `hf-eff push`: no pickle reaches the Hub (training_args.bin stays local), and the pushed
# checkpoint carries the hf-eff card, not the model's own one with its "<repo_id>" placeholder.
@pytest.mark.parametrize("kind", list(TRAINERS))
def test_trainer_pushes_no_pickles_and_the_checkpoint_has_the_hf_eff_card(trainer_runs, kind):
    observed = trainer_runs["kinds"][kind]
    for files in (observed["pushed"]["files"], observed["final_files"]):
        assert not any(f.endswith(".bin") for f in files), files
    assert f"{kind}/interrupted/training_args.bin" in observed["local_files"]
    assert observed["checkpoint_card_library"] == "hf-eff"
    assert "<repo_id>" not in observed["checkpoint_card_text"]
    assert f'"{observed["pushed"]["repo_id"]}"' in observed["checkpoint_card_text"]
    assert {"last-checkpoint/README.md", "README.md"} <= set(observed["pushed"]["files"])


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_run_resumed_from_the_hubs_last_checkpoint_continues(trainer_runs, kind):
    observed = trainer_runs["kinds"][kind]
    assert observed["resume_error"] is None, observed["resume_error"]
    total, step = observed["total_steps"], observed["checkpoint_step"]
    assert observed["resumed_global_step"] == total
    assert observed["resumed_trained_steps"] == total - step  # continues; does not start over
    assert observed["resumed_steps"][:step] == observed["interrupted_steps"]


CARD_TAGS = {"halora": "halora", "grant": "grant", "splat": "gaussian-splatting"}
TRAINING_TIME_ROW = {"halora": "| train_runtime |", "grant": "| train_runtime |", "splat": "training time, evaluations included (s)"}


@pytest.mark.parametrize("kind", list(TRAINERS))
def test_trainer_push_to_hub_writes_the_hf_eff_card(trainer_runs, kind):
    observed = trainer_runs["kinds"][kind]
    assert observed["card_library"] == "hf-eff"
    assert {"hf-eff", CARD_TAGS[kind], "user-tag"} <= set(observed["card_tags"])
    assert TRAINING_TIME_ROW[kind] in observed["card_text"]  # measured results, not a bare template
    # push_to_hub(revision=) uploads to that branch: its card loads from it, main's from main
    assert ', revision="v1")' in observed["branch_card_text"] and "revision=" not in observed["card_text"]


def test_trainer_with_hub_revision_creates_the_branch_before_training_and_pushes_to_it(local_hub, tmp_path):
    other = local_hub.api(token=local_hub.other_token)
    repo_id, foreign_repo_id = local_hub.repo_id("branch"), f"{other.whoami()['name']}/foreign-{tmp_path.name}"
    other.create_repo(foreign_repo_id)  # public: readable by the trainer's token, not writable
    observed = local_hub.run("trainer_branch", repo_id=repo_id, foreign_repo_id=foreign_repo_id,
                             output_dir=str(tmp_path / "runs"))
    assert observed["branches_at_training_start"] == ["dev", "main"]
    assert {"README.md", "config.json", "model.safetensors"} <= set(observed["dev_files"])
    assert observed["main_files"] == [".gitattributes"]
    assert ', revision="dev")' in observed["dev_card_text"]
    # no write access: refused when the trainer is built, before any training, and no branch is made
    assert observed["foreign_error"].startswith(f"PermissionError: cannot push to {foreign_repo_id}: it belongs to "
                                                f"{foreign_repo_id.split('/')[0]}"), observed["foreign_error"]
    assert observed["foreign_branches"] == ["main"]


def test_cli_push_of_every_run_kind_private_with_cards_and_no_token_leak(local_hub, tmp_path):
    kinds = ("halora", "grant", "splat", "scene")
    repo_ids = {kind: local_hub.repo_id(f"push-{kind}") for kind in kinds}
    home = tmp_path / "hf_home"  # its own cache, to search for the token below
    env = local_hub.env(HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"), HF_DATASETS_CACHE=str(home / "datasets"))
    result = local_hub.run("push_cli", env=env, repo_ids=repo_ids, output_dir=str(tmp_path / "runs"), private=True)
    expected_files = {
        "halora": {"adapter_config.json", "adapter_model.safetensors", "all_results.json"},
        "grant": {"config.json", "model.safetensors", "all_results.json"},
        "splat": {"config.json", "model.safetensors", "splats.ply", "preview.png", "all_results.json"},
        "scene": {"scene.json", "views/train-00000-of-00001.parquet", "points/train-00000-of-00001.parquet"},
    }
    expected_tags = {"halora": "halora", "grant": "graph-neural-teaching", "splat": "gaussian-splatting",
                     "scene": "gaussian-splatting"}
    for kind, observed in result["kinds"].items():
        files = set(observed["state"]["files"])
        assert observed["exit_code"] == 0 and observed["roundtrip"], kind
        assert expected_files[kind] | {"README.md"} <= files, kind
        assert not any(f.startswith("checkpoint-") or f.endswith(".bin") for f in files), kind
        assert expected_tags[kind] in observed["card_data"]["tags"]
        assert f'"{repo_ids[kind]}"' in observed["card_text"]  # the how-to-load lines
        if kind == "scene":
            assert {c["config_name"] for c in observed["card_data"]["configs"]} == {"views", "points"}
        else:
            assert observed["card_data"]["library_name"] == "hf-eff"
            assert observed["card_data"]["model-index"], kind
        # a license only when given (these bases are not the built-in SmolLM2)
        assert observed["card_data"].get("license") == ("mit" if kind == "grant" else None), kind
        _assert_safe_reads(result, observed["opened"])
        # --private: the repo refuses anonymous and foreign requests.
        repo_type = "dataset" if kind == "scene" else "model"
        for token in (False, local_hub.other_token):
            with pytest.raises(RepositoryNotFoundError):
                local_hub.api(token=token).repo_info(repo_ids[kind], repo_type=repo_type)

    # The token never lands in logs, cards, saved files, the cache or the repos.
    token = local_hub.token
    assert token not in result["_logs"]
    assert all(token not in observed["card_text"] for observed in result["kinds"].values())
    for folder in (tmp_path / "runs", home):
        for path in folder.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path
    for kind, repo_id in repo_ids.items():
        repo = local_hub.server.repos[("dataset" if kind == "scene" else "model", repo_id)]
        for commit in repo.commits.values():
            for path, entry in commit.tree.items():
                assert token.encode() not in local_hub.server.blobs[entry.sha256], (repo_id, path)


def test_saved_models_without_results_push_with_a_card_that_says_so_and_load_back(local_hub, tmp_path):
    from hf_eff.hub.push import NO_RESULTS_NOTE

    kinds = {"halora": "halora", "grant": "graph-neural-teaching", "splat": "gaussian-splatting"}  # and their tags
    repo_ids = {kind: local_hub.repo_id(f"saved-{kind}") for kind in kinds}
    result = local_hub.run("push_saved_models", repo_ids=repo_ids, output_dir=str(tmp_path / "saved"))
    for kind, observed in result["kinds"].items():
        assert observed["roundtrip"] and observed["url"].endswith(repo_ids[kind]), kind
        assert NO_RESULTS_NOTE in observed["card_text"], kind
        assert observed["card_data"]["library_name"] == "hf-eff" and kinds[kind] in observed["card_data"]["tags"]
        assert "model-index" not in observed["card_data"], kind
        assert f'"{repo_ids[kind]}"' in observed["card_text"], kind  # the how-to-load lines
        _assert_safe_reads(result, observed["opened"])
    halora, grant = result["kinds"]["halora"]["card_text"], result["kinds"]["grant"]["card_text"]
    assert "A **HaLoRA** adapter" in halora and "Importing `hf_eff` registers the `HALORA` adapter type" in halora
    assert "Targets: `logS`." in grant
