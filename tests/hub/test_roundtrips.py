"""Every artifact through a Hub repo with the ecosystem's own calls, against the local Hub.

Each test runs one scenario of roundtrips.py in a fresh process pointed at the server (see
conftest.py), then asserts on what the scenario observed and on the server's state.
"""

from pathlib import Path

import pytest
from huggingface_hub.errors import RepositoryNotFoundError

pytestmark = pytest.mark.slow

# What may be read from a repo: safetensors (read in Rust, invisible to the audit hook), JSON,
# the card, parquet tables, and the Trainer's optimizer / scheduler / RNG states, which
# transformers reads with torch.load(weights_only=True) (the scenarios check every call).
SAFE_SUFFIXES = (".json", ".md", ".parquet", ".safetensors")
TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")


def _assert_safe_reads(result: dict, opened: list[str]):
    assert all(result["torch_loads_weights_only"]), "torch.load without weights_only=True"
    unsafe = [p for p in opened if not p.endswith(SAFE_SUFFIXES) and Path(p).name not in TRAINER_STATE_FILES]
    assert unsafe == []


def test_mixin_models_push_pull_repush_and_pin(local_hub):
    repo_ids = {"grant": local_hub.repo_id("grant"), "splat": local_hub.repo_id("splat")}
    result = local_hub.run("mixin_models", repo_ids=repo_ids)
    assert {k: v["class"] for k, v in result["kinds"].items()} == {"grant": "GrantGCN", "splat": "GaussianModel"}
    for kind, observed in result["kinds"].items():
        assert {"config.json", "model.safetensors", "README.md"} <= set(observed["first"]["files"]), kind
        assert observed["first"]["sha"] != observed["second"]["sha"]
        assert observed["v1_roundtrip"] and observed["latest_is_v2"] and observed["pinned_is_v1"], kind
        # The weights deleted from main: a clear 404 that names the repo; older commits still load.
        assert observed["missing_weights_error"].startswith("RemoteEntryNotFoundError")
        assert repo_ids[kind] in observed["missing_weights_error"]
        assert observed["pinned_after_delete_is_v2"]
        _assert_safe_reads(result, observed["opened"])


def test_halora_adapter_push_pull_repush_and_pin(local_hub):
    result = local_hub.run("peft_adapter", repo_id=local_hub.repo_id("adapter"))
    assert result["peft_type"].endswith("HALORA")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(result["first"]["files"])
    assert result["adapters_differ"] and result["latest_is_v2"] and result["pinned_is_v1"]
    _assert_safe_reads(result, result["opened"])


def test_scene_dataset_push_load_repush_and_pin(local_hub):
    result = local_hub.run("scene", repo_id=local_hub.repo_id("scene"))
    assert result["configs"] == ["points", "views"]
    assert {"scene.json", "views/train-00000-of-00001.parquet", "points/train-00000-of-00001.parquet"} <= set(
        result["first"]["files"])
    assert result["v1"] != result["v2"]
    assert result["loaded_v1"] == result["v1"] and result["latest"] == result["v2"] and result["pinned"] == result["v1"]


def test_trainer_pushes_checkpoints_and_resumes_from_the_hub(local_hub, tmp_path):
    result = local_hub.run("trainer_checkpoints", repo_id=local_hub.repo_id("checkpoints"), output_dir=str(tmp_path))
    assert "last-checkpoint/trainer_state.json" in result["pushed"]["files"]
    assert "last-checkpoint/adapter_model.safetensors" in result["pushed"]["files"]
    step = result["checkpoint_step"]
    assert step in (2, 4)  # the Trainer skips a checkpoint push while the previous one is running
    assert result["resumed_global_step"] == 6 and result["resumed_trained_steps"] == 6 - step
    assert result["resumed_steps"][:step] == result["first_run_steps"][:step]
    _assert_safe_reads(result, result["opened"])


def test_cli_push_of_every_run_kind_private_with_cards_and_no_token_leak(local_hub, tmp_path):
    repo_ids = {kind: local_hub.repo_id(f"push-{kind}") for kind in ("halora", "grant", "splat")}
    result = local_hub.run("push_cli", repo_ids=repo_ids, output_dir=str(tmp_path / "runs"), private=True)
    expected_files = {
        "halora": {"adapter_config.json", "adapter_model.safetensors"},
        "grant": {"config.json", "model.safetensors"},
        "splat": {"config.json", "model.safetensors", "splats.ply", "preview.png"},
    }
    expected_tags = {"halora": "halora", "grant": "graph-neural-teaching", "splat": "gaussian-splatting"}
    for kind, observed in result["kinds"].items():
        files = set(observed["state"]["files"])
        assert observed["exit_code"] == 0 and observed["roundtrip"], kind
        assert expected_files[kind] | {"README.md", "all_results.json"} <= files, kind
        assert not any(f.startswith("checkpoint-") or f.endswith(".bin") for f in files), kind
        assert observed["card_data"]["library_name"] == "hf-eff"
        assert expected_tags[kind] in observed["card_data"]["tags"]
        assert observed["card_data"]["model-index"], kind
        assert f'"{repo_ids[kind]}"' in observed["card_text"]  # the how-to-load lines
        _assert_safe_reads(result, observed["opened"])
        # --private: the repo refuses anonymous and foreign requests.
        for token in (False, local_hub.other_token):
            with pytest.raises(RepositoryNotFoundError):
                local_hub.api(token=token).model_info(repo_ids[kind])

    # The token never lands in logs, cards, saved files, the cache or the repos.
    token = local_hub.token
    assert token not in result["_logs"]
    assert all(token not in observed["card_text"] for observed in result["kinds"].values())
    for folder in (tmp_path / "runs", local_hub.home):
        for path in folder.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path
    assert all(token.encode() not in blob for blob in local_hub.server.blobs.values())
