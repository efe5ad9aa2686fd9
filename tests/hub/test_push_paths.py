"""Pushes upload the JSON records of paths (hf-eff's all_results.json, training_data_splits.json, config.json; PEFT's
adapter_config.json; transformers' trainer_state.json) with each local path reduced to its last part, as the card names
it, and leave the local files as they are."""

import json
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from hf_eff.hub import push
from hf_eff.hub.push import upload_folder, without_local_paths

PRIVATE = "/home/alice/private"


def _pushed_bytes(local_hub, repo_id: str, name: str) -> bytes:
    repo = local_hub.server.repos[("model", repo_id)]
    entry = repo.commits[repo.branches["main"]].tree[name]
    return local_hub.server.blobs[entry.sha256]


def _pushed_json(local_hub, repo_id: str, name: str):
    return json.loads(_pushed_bytes(local_hub, repo_id, name))


def test_local_paths_become_their_last_part_and_hub_ids_stay():
    recorded = {"dataset_name": f"{PRIVATE}/mols.csv", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "data_split": {"dataset": "data/train/questions.jsonl", "data_seed": 0},
                "scene": "~/captures/garden/", "task_name": "mixed", "method": "halora", "eval_accuracy": 0.5,
                "runs": [{"dataset": "./mine.parquet"}, None, True],
                "model_name_or_path": f"{PRIVATE}/run", "adapter_name_or_path": "out/adapter/checkpoint-4",
                "predict_file": f"{PRIVATE}/new_mols.csv",
                "note": "a draw every 4 steps / layer", "url": "https://example.org/a/b.csv"}
    assert without_local_paths(recorded) == {
        "dataset_name": "mols.csv", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "data_split": {"dataset": "questions.jsonl", "data_seed": 0}, "scene": "garden", "task_name": "mixed",
        "method": "halora", "eval_accuracy": 0.5, "runs": [{"dataset": "mine.parquet"}, None, True],
        "model_name_or_path": "run", "adapter_name_or_path": "checkpoint-4", "predict_file": "new_mols.csv",
        "note": "a draw every 4 steps / layer", "url": "https://example.org/a/b.csv"}


def test_a_relative_best_checkpoint_stays_whole_and_an_absolute_one_is_reduced(tmp_path, monkeypatch):
    # transformers records the output_dir as given; resuming from a downloaded checkpoint, it resolves a relative one
    # against the working directory, where this one exists
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "checkpoint-2").mkdir(parents=True)
    relative = {"best_model_checkpoint": "out/checkpoint-2", "model_name_or_path": "out/checkpoint-2"}
    assert without_local_paths(relative) == {"best_model_checkpoint": "out/checkpoint-2",
                                             "model_name_or_path": "checkpoint-2"}  # the other keys' rule
    absolute = {"best_model_checkpoint": str(tmp_path / "out" / "checkpoint-2")}
    assert without_local_paths(absolute) == {"best_model_checkpoint": "checkpoint-2"}


def test_paths_recorded_on_windows_become_their_last_part_on_every_os():
    recorded = {"dataset_name": r"C:\Users\alice\data\mols.csv", "scene": r"\\fileserver\alice\garden\\",
                "data_split": {"dataset": r"data\alice\questions.jsonl"}, "base_model_name_or_path": "org/base",
                "best_model_checkpoint": r"C:\Users\alice\out\checkpoint-2"}
    assert without_local_paths(recorded) == {"dataset_name": "mols.csv", "scene": "garden",
                                             "data_split": {"dataset": "questions.jsonl"},
                                             "base_model_name_or_path": "org/base",
                                             "best_model_checkpoint": "checkpoint-2"}


def test_a_bare_windows_network_share_recorded_becomes_its_share_name():
    recorded = {"scene": r"\\fileserver\garden", "dataset_name": "\\\\fileserver\\mols\\",
                "best_model_checkpoint": r"\\fileserver\checkpoint-2"}
    assert without_local_paths(recorded) == {"scene": "garden", "dataset_name": "mols",
                                             "best_model_checkpoint": "checkpoint-2"}


# Units in target and class names are not paths: cut to "L)" and "K", two of them would end alike
NAMES_WITH_SLASHES = ["logS(mol/L)", "Cv(cal/mol/K)", "S(kcal/mol/K)"]


def test_names_that_are_not_paths_stay_whole():
    recorded = {"target_names": NAMES_WITH_SLASHES, "class_names": ["a/b", "c/b"], "target_columns": ["x/y"],
                "data_split": {"dataset_name": f"{PRIVATE}/mols.csv", "target_names": ["u/v"]}}
    assert without_local_paths(recorded) == {**recorded, "data_split": {"dataset_name": "mols.csv",
                                                                        "target_names": ["u/v"]}}


def _pushed_model(local_hub, repo_id: str, folder):
    from hf_eff import GrantGCN

    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes(_pushed_bytes(local_hub, repo_id, name))
    return GrantGCN.from_pretrained(folder)


def test_cli_push_keeps_target_names_whole_and_the_model_loadable(local_hub, tmp_path, monkeypatch):
    from hf_eff import GrantGCN

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    run = tmp_path / "run"
    GrantGCN(in_channels=3, out_channels=3, hidden_channels=4, task="graph_regression",
             target_names=NAMES_WITH_SLASHES,
             data_split={"dataset_name": f"{PRIVATE}/mols.csv", "seed": 0}).save_pretrained(run)
    (run / "all_results.json").write_text(json.dumps({"eval_mae": 0.5, "dataset_name": f"{PRIVATE}/mols.csv",
                                                      "target_columns": NAMES_WITH_SLASHES}))
    repo_id = local_hub.repo_id("gcn")
    push.push_output_dir(run, repo_id, token=local_hub.token)

    assert _pushed_json(local_hub, repo_id, "all_results.json")["target_columns"] == NAMES_WITH_SLASHES
    loaded = _pushed_model(local_hub, repo_id, tmp_path / "pushed")
    assert loaded.target_names == NAMES_WITH_SLASHES
    assert loaded.data_split == {"dataset_name": "mols.csv", "seed": 0}


def _grant_run(folder):
    folder.mkdir()
    split = {"dataset_name": f"{PRIVATE}/mols.csv", "seed": 0}
    (folder / "config.json").write_text(json.dumps({"hidden_channels": 8, "data_split": split}))
    (folder / "model.safetensors").write_text("{}")
    results = {"eval_mae": 0.5, "dataset_name": f"{PRIVATE}/mols.csv", "data_split": split}
    (folder / "all_results.json").write_text(json.dumps(results))
    (folder / "notes.json").write_text(json.dumps({"dataset": f"{PRIVATE}/mols.csv"}))  # no file hf-eff writes
    return folder


def test_cli_push_uploads_results_and_config_without_local_paths(local_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    run = _grant_run(tmp_path / "run")
    local = {name: (run / name).read_text() for name in ("config.json", "all_results.json")}
    repo_id = local_hub.repo_id("gcn")
    push.push_output_dir(run, repo_id, token=local_hub.token)

    results = _pushed_json(local_hub, repo_id, "all_results.json")
    assert results["dataset_name"] == "mols.csv" and results["data_split"]["dataset_name"] == "mols.csv"
    assert results["eval_mae"] == 0.5
    assert _pushed_json(local_hub, repo_id, "config.json")["data_split"] == {"dataset_name": "mols.csv", "seed": 0}
    assert _pushed_json(local_hub, repo_id, "notes.json")["dataset"] == f"{PRIVATE}/mols.csv"  # only the named files
    assert {name: (run / name).read_text() for name in local} == local  # a local rerun still finds its data


def test_an_upload_in_the_background_stages_until_it_is_done(local_hub, tmp_path, monkeypatch):
    run = _grant_run(tmp_path / "run")
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "all_results.json").write_text(json.dumps({"dataset_name": f"{PRIVATE}/mols.csv"}))
    staged = []

    def recording_staging(*args):
        staged.append(stage(*args))
        return staged[-1]

    stage = push._staged_without_local_paths
    monkeypatch.setattr(push, "_staged_without_local_paths", recording_staging)
    api, repo_id = local_hub.api(), local_hub.repo_id("gcn")
    api.create_repo(repo_id)
    future = upload_folder(api, repo_id=repo_id, folder_path=run, ignore_patterns=["checkpoint-*"], run_as_future=True)
    assert staged[0].is_dir()  # still there for the upload's thread
    future.result()
    assert _pushed_json(local_hub, repo_id, "all_results.json")["dataset_name"] == "mols.csv"
    assert "checkpoint-2/all_results.json" not in api.list_repo_files(repo_id)  # the patterns still apply
    for _ in range(100):  # the clean-up is the future's callback, which may run just after result() returns
        if not staged[0].exists():
            break
        time.sleep(0.05)
    assert not staged[0].exists()


def test_a_folder_that_records_no_local_path_is_uploaded_as_it_is(local_hub, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "all_results.json").write_text('{"dataset_name": "user/data",   "eval_mae": 0.5}')  # its own spacing
    (run / "config.json").write_text("not JSON")  # not ours to rewrite
    api, repo_id = local_hub.api(), local_hub.repo_id("gcn")
    api.create_repo(repo_id)
    upload_folder(api, repo_id=repo_id, folder_path=run)
    repo = local_hub.server.repos[("model", repo_id)]
    tree = repo.commits[repo.branches["main"]].tree
    assert {name: local_hub.server.blobs[tree[name].sha256].decode() for name in ("all_results.json", "config.json")} \
        == {name: (run / name).read_text() for name in ("all_results.json", "config.json")}


def test_trainer_pushes_upload_the_adapter_its_state_and_data_record_without_local_paths(
        local_hub, tmp_path, monkeypatch):
    import transformers.utils.hub
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from hf_eff.halora import HaLoRAConfig, HaLoRATrainer, HaLoRATrainingArguments

    # transformers' shared HfApi, pointed at the local Hub
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", local_hub.api())
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, num_labels=3, max_position_embeddings=32)
    base_dir = tmp_path / "private" / "tiny-roberta"  # absolute: PEFT records it as base_model_name_or_path
    RobertaForSequenceClassification(config).save_pretrained(base_dir)
    model = get_peft_model(RobertaForSequenceClassification.from_pretrained(base_dir),
                           HaLoRAConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"]))
    data = Dataset.from_dict({"input_ids": [[0, 5 + i % 7, 9, 2] for i in range(8)], "labels": [i % 3 for i in range(8)]})
    repo_id = local_hub.repo_id("adapter")
    out = tmp_path / "out"
    # the checkpoint pushes send trainer_state.json, whose best_model_checkpoint is a folder of this machine
    args = HaLoRATrainingArguments(output_dir=str(out), per_device_train_batch_size=4, max_steps=2,
                                   report_to=[], eval_sigmas=[0.0], use_cpu=True, eval_strategy="steps", eval_steps=1,
                                   save_strategy="steps", save_steps=1, load_best_model_at_end=True,
                                   push_to_hub=True, hub_model_id=repo_id, hub_strategy="checkpoint")
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=data, eval_dataset=data)
    trainer.data_splits = [{"dataset": str(tmp_path / "private" / "questions.jsonl"), "data_seed": 0}]
    trainer.train()
    trainer.save_metrics("all", {"dataset_name": str(tmp_path / "private" / "questions.jsonl")}, combined=False)
    trainer.push_to_hub()

    pushed_state = _pushed_json(local_hub, repo_id, "last-checkpoint/trainer_state.json")
    # the checkpoint pushed last (a push still running skips the next), as transformers wrote it but for its best one
    state = json.loads((out / f"checkpoint-{pushed_state['global_step']}" / "trainer_state.json").read_text())
    best = state["best_model_checkpoint"]
    assert Path(best).parent == out  # what transformers records: the checkpoint's local folder
    assert pushed_state == {**state, "best_model_checkpoint": Path(best).name}
    for name in ("adapter_config.json", "last-checkpoint/adapter_config.json"):
        assert _pushed_json(local_hub, repo_id, name)["base_model_name_or_path"] == "tiny-roberta", name
    assert _pushed_json(local_hub, repo_id, "training_data_splits.json") == [
        {"dataset": "questions.jsonl", "data_seed": 0}]
    assert _pushed_json(local_hub, repo_id, "all_results.json") == {"dataset_name": "questions.jsonl"}
    # the local files keep the paths: a rerun finds its data, a resumed run its best checkpoint and base model
    assert json.loads((out / "training_data_splits.json").read_text()) == trainer.data_splits
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_dir)


@pytest.mark.parametrize("name", ["all_results.json", "train_results.json", "training_data_splits.json",
                                  "config.json"])
def test_each_path_recording_file_is_uploaded_without_local_paths(local_hub, tmp_path, name):
    run = tmp_path / "run"
    (run / "last-checkpoint").mkdir(parents=True)
    (run / "last-checkpoint" / name).write_text(json.dumps({"dataset": f"{PRIVATE}/data.csv"}))
    api, repo_id = local_hub.api(), local_hub.repo_id("run")
    api.create_repo(repo_id)
    upload_folder(api, repo_id=repo_id, folder_path=run)
    assert _pushed_json(local_hub, repo_id, f"last-checkpoint/{name}") == {"dataset": "data.csv"}


@pytest.mark.parametrize("base", ["HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct"])
def test_a_hub_or_built_in_base_model_is_uploaded_as_peft_recorded_it(local_hub, tmp_path, base):
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "peft_type": "HALORA"}))
    api, repo_id = local_hub.api(), local_hub.repo_id("run")
    api.create_repo(repo_id)
    upload_folder(api, repo_id=repo_id, folder_path=run)
    assert _pushed_bytes(local_hub, repo_id, "adapter_config.json") == (run / "adapter_config.json").read_bytes()


def test_cli_push_uploads_the_adapters_base_and_best_checkpoint_without_local_paths(local_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    run = tmp_path / "run"
    run.mkdir()
    written = {"adapter_config.json": {"base_model_name_or_path": f"{PRIVATE}/SmolLM2-135M-Instruct.Q4_1.gguf",
                                       "peft_type": "HALORA", "r": 8},
               "trainer_state.json": {"best_model_checkpoint": f"{PRIVATE}/run/checkpoint-2", "global_step": 4},
               "all_results.json": {"eval_accuracy": 0.5}}
    for name, record in written.items():
        (run / name).write_text(json.dumps(record))
    (run / "adapter_model.safetensors").write_text("{}")
    repo_id = local_hub.repo_id("adapter")
    push.push_output_dir(run, repo_id, token=local_hub.token)

    assert _pushed_json(local_hub, repo_id, "adapter_config.json") == {
        "base_model_name_or_path": "SmolLM2-135M-Instruct.Q4_1.gguf", "peft_type": "HALORA", "r": 8}
    assert _pushed_json(local_hub, repo_id, "trainer_state.json") == {"best_model_checkpoint": "checkpoint-2",
                                                                      "global_step": 4}
    assert {name: json.loads((run / name).read_text()) for name in written} == written


def test_a_models_own_push_to_hub_uploads_its_config_without_local_paths(local_hub, monkeypatch):
    from hf_eff import GrantGCN

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    split = {"dataset_name": f"{PRIVATE}/mols.csv", "seed": 0}
    model = GrantGCN(in_channels=3, out_channels=1, hidden_channels=4, task="graph_regression", data_split=split)
    repo_id = local_hub.repo_id("own-push")
    model.push_to_hub(repo_id, token=local_hub.token)

    assert _pushed_json(local_hub, repo_id, "config.json")["data_split"] == {"dataset_name": "mols.csv", "seed": 0}
    assert model.data_split == split


def test_a_models_own_push_to_hub_keeps_its_target_names_whole(local_hub, tmp_path, monkeypatch):
    from hf_eff import GrantGCN

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    model = GrantGCN(in_channels=3, out_channels=3, hidden_channels=4, task="graph_regression",
                     target_names=NAMES_WITH_SLASHES)
    repo_id = local_hub.repo_id("own-push")
    model.push_to_hub(repo_id, token=local_hub.token)

    assert _pushed_model(local_hub, repo_id, tmp_path / "pushed").target_names == NAMES_WITH_SLASHES


def test_a_transformers_model_loaded_from_a_folder_saves_no_path_in_its_config(tmp_path):
    """A canary for an assumption of hf-eff's, not a test of its code: transformers keeps the folder a model was
    loaded from as ``config._name_or_path`` but leaves that key out of the config.json it saves, so ``PATH_KEYS`` need
    not reduce it. This fails if a transformers release starts writing it; ``PATH_KEYS`` then needs the key."""
    from transformers import AutoModel, BertConfig, BertModel

    config = BertConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1, num_attention_heads=1, intermediate_size=4)
    BertModel(config).save_pretrained(tmp_path / "base")
    model = AutoModel.from_pretrained(tmp_path / "base")
    assert model.config._name_or_path == str(tmp_path / "base")
    model.save_pretrained(tmp_path / "trained")
    assert str(tmp_path) not in (tmp_path / "trained" / "config.json").read_text()
