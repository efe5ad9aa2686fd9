"""A model source that is neither a local folder nor a loadable Hub repo gets one error naming both."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from hf_eff.hub.sources import last_checkpoint_hint, naming_missing_folder

# What HfHubHTTPError reads of its response (its HTTP client differs across huggingface_hub versions).
NOT_FOUND_RESPONSE = SimpleNamespace(headers={}, request=None, status_code=404)


@pytest.mark.parametrize(
    "hub_error, says",
    [
        (HFValidationError("Repo id must be in the form 'repo_name'"), "it is not a Hub repo id either"),
        (RepositoryNotFoundError("404", response=NOT_FOUND_RESPONSE), "no Hub repo runs/out that this token can read"),
        (LocalEntryNotFoundError("no connection"), "the Hub could not be reached to look for a repo runs/out"),
    ],
)
def test_a_missing_folder_read_as_a_repo_id_names_the_folder(tmp_path, monkeypatch, hub_error, says):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="--model_name_or_path: there is no such folder runs/out ") as caught:
        with naming_missing_folder("--model_name_or_path", "runs/out"):
            raise hub_error
    assert str(tmp_path / "runs" / "out") in str(caught.value) and says in str(caught.value)
    assert caught.value.__cause__ is hub_error


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
