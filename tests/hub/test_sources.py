"""A model source that is neither a local folder nor a loadable Hub repo gets one error naming both."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hf_eff.hub.sources import (
    is_local_data,
    last_checkpoint_hint,
    naming_missing_folder,
    refuse_hub_options_without_hub_data,
)

# What HfHubHTTPError reads of its response (its HTTP client differs across huggingface_hub versions).
NOT_FOUND_RESPONSE = SimpleNamespace(headers={}, request=None, status_code=404)


@pytest.mark.parametrize(
    "hub_error, says",
    [
        (HFValidationError("Repo id must be in the form 'repo_name'"), "it is not a Hub repo id either"),
        (RepositoryNotFoundError("404", response=NOT_FOUND_RESPONSE), "no Hub repo runs/out that this token can read"),
        (LocalEntryNotFoundError("no connection"), "the Hub could not be reached to look for a repo runs/out"),
        # datasets drops huggingface_hub's error where it re-raises its own after its cache missed; its words are kept
        (DatasetNotFoundError("Dataset 'runs/out' is a gated dataset on the Hub."),
         "no Hub dataset runs/out that this token can read (Dataset 'runs/out' is a gated dataset on the Hub.)"),
    ],
)
def test_a_missing_folder_read_as_a_repo_id_names_the_folder(tmp_path, monkeypatch, hub_error, says):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="--model_name_or_path: there is no such folder runs/out ") as caught:
        with naming_missing_folder("--model_name_or_path", "runs/out"):
            raise hub_error
    assert str(tmp_path / "runs" / "out") in str(caught.value) and says in str(caught.value)
    assert caught.value.__cause__ is hub_error


def test_a_missing_name_with_a_file_suffix_is_named_as_a_file_or_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^--dataset: there is no such file or folder data/mols\.cvs \("):
        with naming_missing_folder("--dataset", "data/mols.cvs"):
            raise RepositoryNotFoundError("404", response=NOT_FOUND_RESPONSE)
    # a repo id's version is no file suffix
    with pytest.raises(FileNotFoundError, match=r"^--model_name_or_path: there is no such folder Qwen/Qwen2\.5-0\.5B "):
        with naming_missing_folder("--model_name_or_path", "Qwen/Qwen2.5-0.5B"):
            raise RepositoryNotFoundError("404", response=NOT_FOUND_RESPONSE)


def test_a_library_that_rewraps_the_hub_error_is_named_too(tmp_path, monkeypatch):
    """PEFT raises ValueError("Can't find 'adapter_config.json' ...") from huggingface_hub's error."""
    from peft import PeftConfig

    import hf_eff  # noqa: F401  (registers HaLoRA with PEFT)

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"--adapter_name_or_path: there is no such folder \./runs/out .*not a Hub repo id"):
        with naming_missing_folder("--adapter_name_or_path", "./runs/out"):
            PeftConfig.from_pretrained("./runs/out")


def test_errors_of_an_existing_folder_and_other_errors_pass_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "out").mkdir(parents=True)
    with pytest.raises(HFValidationError):
        with naming_missing_folder("--model_name_or_path", "runs/out"):
            raise HFValidationError("a folder that exists but holds no model")
    with pytest.raises(KeyError):
        with naming_missing_folder("--model_name_or_path", "elsewhere/out"):
            raise KeyError("not a Hub error")


def test_a_dataset_revision_the_repo_lacks_is_not_named_as_a_missing_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing_revision = DatasetNotFoundError("Revision 'v9' doesn't exist for dataset 'me/data' on the Hub.")
    missing_revision.__cause__ = RevisionNotFoundError("404", response=NOT_FOUND_RESPONSE)
    with pytest.raises(DatasetNotFoundError):
        with naming_missing_folder("--dataset me/data", "me/data"):
            raise missing_revision


def test_hub_dataset_options_are_refused_for_local_and_built_in_data(tmp_path):
    (tmp_path / "folder").mkdir()
    suffixes = (".csv", ".csv.gz")
    options = {"--dataset_config_name": "small", "--dataset_revision": None}
    for local in (tmp_path / "folder", tmp_path / "missing.CSV.gz"):  # a missing data file is local data too
        assert is_local_data(str(local), suffixes)
        with pytest.raises(ValueError, match=f"^--dataset {local} is local data, which has no Hub configuration or "
                                             "revision: leave out --dataset_config_name$"):
            refuse_hub_options_without_hub_data(options, str(local), "--dataset", suffixes, "--task qm9")
    assert not is_local_data("me/data", suffixes)
    refuse_hub_options_without_hub_data(options, "me/data", "--dataset", suffixes, "--task qm9")
    refuse_hub_options_without_hub_data({"--dataset_revision": None}, str(tmp_path / "folder"), "--dataset", suffixes)
    with pytest.raises(ValueError, match=r"^--dataset_config_name and --dataset_revision are for a Hub --dataset: "
                                         r"--task qm9 has no configurations or revisions to choose; give --dataset <Hub "
                                         r"id>, or leave --dataset_config_name and --dataset_revision out$"):
        refuse_hub_options_without_hub_data({**options, "--dataset_revision": "v1"}, None, "--dataset", suffixes,
                                            "--task qm9")


def test_a_revision_needs_a_hub_source_and_a_folder_is_not_the_runs_output(tmp_path):
    from hf_eff.hub.sources import check_model_source

    folder, out = tmp_path / "run", str(tmp_path / "out")
    folder.mkdir()
    with pytest.raises(ValueError, match="--adapter_revision v1 is a Hub revision of --adapter, which is not given"):
        check_model_source("--adapter", None, "--adapter_revision", "v1", out)
    with pytest.raises(ValueError, match=f"--model_revision v1 is a Hub revision, and --model {folder} is a local folder"):
        check_model_source("--model", str(folder), "--model_revision", "v1", out)
    for output_dir in (str(folder), f"{folder}/", str(tmp_path / "x" / ".." / "run")):
        with pytest.raises(ValueError, match=f"--output_dir {output_dir} is or holds the folder of --model: the run"):
            check_model_source("--model", str(folder), "--model_revision", None, output_dir)
    (folder / "checkpoint-4").mkdir()  # starting from a run's checkpoint, into that run's folder
    with pytest.raises(ValueError, match=f"--output_dir {folder} is or holds the folder of --model"):
        check_model_source("--model", str(folder / "checkpoint-4"), "--model_revision", None, str(folder))
    check_model_source("--model", str(folder), "--model_revision", None, str(folder / "checkpoint-4"))  # a fresh one
    check_model_source("--model", str(folder), "--model_revision", None, out)
    check_model_source("--model", "me/model", "--model_revision", "v1", str(tmp_path / "me" / "model"))  # a repo id
    check_model_source("--model", None, "--model_revision", None, out)


def test_the_checkpoint_hint_skips_newer_checkpoints_without_weights(tmp_path):
    for step, files in ((5, ["model.safetensors"]), (10, ["model.safetensors", "trainer_state.json"]),
                        (20, ["trainer_state.json"]), (30, [])):
        (tmp_path / f"checkpoint-{step}").mkdir()
        for name in files:
            (tmp_path / f"checkpoint-{step}" / name).write_text("")
    (tmp_path / "checkpoint-99-old").mkdir()  # not a Trainer checkpoint name
    (tmp_path / "checkpoint-50").write_text("")  # a file, not a checkpoint folder
    assert last_checkpoint_hint(tmp_path) == f"; its last checkpoint that holds one: {tmp_path / 'checkpoint-10'}"
    assert last_checkpoint_hint(tmp_path, ("trainer_state.json",)).endswith("checkpoint-20")
    assert last_checkpoint_hint(tmp_path, ("adapter_model.safetensors",)) == ""
