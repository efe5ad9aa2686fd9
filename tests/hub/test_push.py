"""`hf_eff.hub.push`: which artifact a run folder holds, and the errors before any upload.
The uploads themselves run against the local Hub in test_roundtrips.py (through the CLI)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import DatasetCard

from hf_eff.hub import push


def _touch(folder, *names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    return folder


@pytest.mark.parametrize(
    ("files", "kind"),
    [
        (["adapter_config.json", "adapter_model.safetensors"], "halora_adapter"),
        (["config.json", "model.safetensors"], "grant_model"),
        (["config.json", "model.safetensors", "splats.ply", "preview.png"], "splat_model"),
        (["config.json", "model.safetensors"], "splat_model"),
        (["views/dataset_dict.json", "scene.json"], "scene_dataset"),
    ],
)
def test_detects_the_artifact_of_a_run_folder(tmp_path, files, kind):
    folder = _touch(tmp_path, *files)
    if kind == "splat_model":  # GaussianModel's config; GrantGCN's has no SH degree
        (folder / "config.json").write_text(json.dumps({"sh_degree": 3, "num_gaussians": 10}))
    assert push.detect_artifact(folder) == kind


def test_folder_without_an_artifact_is_refused(tmp_path):
    with pytest.raises(ValueError, match="holds no hf-eff artifact"):
        push.detect_artifact(_touch(tmp_path, "all_results.json"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        push.detect_artifact(tmp_path / "absent")


@pytest.mark.parametrize("files", [["transforms.json"], ["transforms_train.json"], ["sparse/0/cameras.bin"]])
def test_colmap_or_nerf_folder_is_refused_with_how_to_push_it(tmp_path, files):
    # load_scene reads these folders; push takes a stored scene, and says how to make one
    with pytest.raises(ValueError, match=r"is a COLMAP or NeRF folder, not a stored scene: convert it first"):
        push.detect_artifact(_touch(tmp_path, *files))


def test_results_that_are_no_json_object_are_refused(tmp_path):
    folder = _touch(tmp_path, "config.json", "model.safetensors")
    (folder / "all_results.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="all_results.json must hold a JSON object"):
        push.build_card("grant_model", folder, "me/gcn")


def _saved_folders(root):
    """What each model's save_pretrained writes (its configs; the weights' content is not read), no all_results.json."""
    folders = {"halora_adapter": _touch(root / "adapter", "adapter_model.safetensors"),
               "grant_model": _touch(root / "gcn", "model.safetensors"),
               "splat_model": _touch(root / "splats", "model.safetensors")}
    (folders["halora_adapter"] / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "HALORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M",
         "noise_sigma": 0.02, "reg_weight": 0.1, "reg_norm": "spectral"}))
    (folders["grant_model"] / "config.json").write_text(json.dumps(
        {"in_channels": 4, "out_channels": 1, "task": "graph_regression", "target_names": ["logS"],
         "class_names": None, "data_split": None}))
    (folders["splat_model"] / "config.json").write_text(json.dumps(
        {"sh_degree": 1, "num_gaussians": 10, "rasterize_mode": "antialiased"}))
    return folders


# What each card says that only its configuration tells.
SAVED_FOLDER_CARD_TEXT = {
    "halora_adapter": ["A **HaLoRA** adapter for [`HuggingFaceTB/SmolLM2-135M`]", "(tile_additive, sigma = 0.02)",
                       "Importing `hf_eff` registers the `HALORA` adapter type with PEFT"],
    "grant_model": ["Targets: `logS`.", 'GraphCollator("graph_regression")'],
    "splat_model": ["Trained antialiased"],
}


@pytest.mark.parametrize("kind", list(SAVED_FOLDER_CARD_TEXT))
def test_a_saved_model_folder_without_results_gets_a_card_from_its_configuration(tmp_path, kind):
    folder = _saved_folders(tmp_path)[kind]
    assert push.detect_artifact(folder) == kind
    card = push.build_card(kind, folder, "me/model")
    text = " ".join(card.text.split())
    for expected in SAVED_FOLDER_CARD_TEXT[kind]:
        assert expected in text
    # it says that nothing was measured, before its loading lines, and reports nothing
    assert push.NO_RESULTS_NOTE in card.text and text.index(push.NO_RESULTS_NOTE) < text.index("## How to load")
    assert card.data.eval_results is None and "model-index" not in str(card)
    assert "|---" not in card.text  # no results table
    assert '"me/model"' in card.text


def test_a_folder_with_results_gets_no_note_of_missing_results(tmp_path):
    for kind, folder in _saved_folders(tmp_path).items():
        (folder / "all_results.json").write_text(json.dumps({"eval_mae": 0.5, "eval_psnr": 20.0}))
        assert push.NO_RESULTS_NOTE not in push.build_card(kind, folder, "me/model").text, kind


def test_a_config_json_that_is_no_json_object_is_refused_naming_it(tmp_path):
    folder = _touch(tmp_path, "model.safetensors", "all_results.json")
    (folder / "config.json").write_text("{not JSON")
    with pytest.raises(ValueError, match=r"config.json is not JSON \(Expecting"):
        push.push_output_dir(folder, "me/gcn", token="hf_unused")
    with pytest.raises(ValueError, match=r"config.json is not JSON"):
        push.build_card("splat_model", folder, "me/splats")
    (folder / "config.json").write_text("[3]")
    with pytest.raises(ValueError, match=r"config.json must hold a JSON object of model settings, got list"):
        push.detect_artifact(folder)


def test_an_adapter_config_that_is_no_json_object_is_refused_naming_it(tmp_path, capsys):
    from hf_eff.cli import main

    folder = _touch(tmp_path, "adapter_model.safetensors", "all_results.json")
    config = folder / "adapter_config.json"
    config.write_text("{not JSON")  # a bare JSONDecodeError, naming no file, before
    with pytest.raises(ValueError, match=rf"^{config} is not JSON \(Expecting .*save the adapter again"):
        push.build_card("halora_adapter", folder, "me/adapter")
    with pytest.raises(SystemExit) as exit_:
        main(["push", str(folder), "me/adapter", "--token", "hf_unused"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"hf-eff push: error: {config} is not JSON")
    config.write_text("[3]")
    with pytest.raises(ValueError, match=rf"^{config} must hold a JSON object of adapter settings, got list"):
        push.build_card("halora_adapter", folder, "me/adapter")
    assert not (folder / "README.md").exists()


def test_push_reads_the_models_config_once(local_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    folder = _touch(tmp_path, "model.safetensors", "all_results.json", "splats.ply")
    (folder / "config.json").write_text(json.dumps({"sh_degree": 3, "world_to_normalized": np.eye(4).tolist()}))
    reads = []
    read_config = push.read_config
    monkeypatch.setattr(push, "read_config", lambda output_dir: reads.append(output_dir) or read_config(output_dir))
    repo_id = local_hub.repo_id("splats")
    push.push_output_dir(folder, repo_id, token=local_hub.token)
    assert reads == [folder]
    repo = local_hub.server.repos[("model", repo_id)]
    readme = repo.commits[repo.branches["main"]].tree["README.md"]
    assert "world_to_normalized" in local_hub.server.blobs[readme.sha256].decode()  # the card read it


def test_splat_card_without_a_preview_shows_the_last_render_written(tmp_path):
    # a run folder under a folder named "runs..." is still searched: only its own runs/ logs are skipped
    folder = _touch(tmp_path / "runs_2026" / "splat", "config.json", "model.safetensors", "all_results.json",
                    "checkpoint-10/splats.ply", "runs/x/splats.ply")
    # written in this order: the name order (eval_ before test_, step 10 before 100) is not the time order
    for index, name in enumerate(["test_renders/step-000010.png", "eval_renders/step-000010.png",
                                  "eval_renders/step-000100.png"]):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"png")
        os.utime(folder / name, ns=(index * 10**9, index * 10**9))
    card = push.build_card("splat_model", folder, "me/splats")
    assert "![preview](eval_renders/step-000100.png)" in card.text
    assert "splats.ply" not in card.text  # the checkpoint's and the logs' files are not the run's
    os.utime(folder / "test_renders/step-000010.png", ns=(9 * 10**9, 9 * 10**9))  # the final test evaluation
    assert "![preview](test_renders/step-000010.png)" in push.build_card("splat_model", folder, "me/splats").text
    (folder / "preview.png").write_bytes(b"png")
    assert "![preview](preview.png)" in push.build_card("splat_model", folder, "me/splats").text


def test_push_without_any_token_says_how_to_give_one(tmp_path, monkeypatch):
    folder = _touch(tmp_path, "config.json", "model.safetensors")
    monkeypatch.setattr(push, "get_token", lambda: None)
    with pytest.raises(PermissionError, match="set HF_TOKEN"):
        push.push_output_dir(folder, "me/gcn")


def test_cli_push_refused_by_the_hub_is_one_line_with_exit_1(local_hub, tmp_path, monkeypatch, capsys, inject_fault):
    from huggingface_hub import constants

    from hf_eff.cli import main

    folder = _touch(tmp_path, "config.json", "model.safetensors")
    (folder / "all_results.json").write_text(json.dumps({"eval_mae": 0.5}))
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    inject_fault("whoami", 404)  # whoami cannot tell that the token is invalid: the Hub refuses the repo's creation
    assert main(["push", str(folder), local_hub.repo_id("gcn"), "--token", "hf_not_a_valid_token"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("hf-eff push: error: ") and "401" in err


def _files(folder) -> dict:
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_cli_push_to_an_unreachable_hub_is_one_line_naming_it_and_nothing_local_changes(tmp_path, monkeypatch,
                                                                                           capsys):
    import socket

    from huggingface_hub import constants

    from hf_eff.cli import main

    folder = _touch(tmp_path, "config.json", "model.safetensors")
    (folder / "all_results.json").write_text(json.dumps({"eval_mae": 0.5}))
    (folder / "README.md").write_text("the card save_pretrained wrote")
    before = _files(folder)
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{unused.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    # a 73-line traceback of httpx's ConnectError before
    assert main(["push", str(folder), "me/gcn", "--token", "hf_unused"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"hf-eff push: error: the Hub at {endpoint} (HF_ENDPOINT) could not be reached (")
    assert err.rstrip().endswith("nothing local changed: push again once it answers")
    assert _files(folder) == before


def test_cli_push_whose_connection_drops_at_the_commit_puts_the_readme_back(local_hub, tmp_path, monkeypatch, capsys,
                                                                               inject_fault):
    """The Hub answers until the commit, after the card replaced the folder's README.md for the upload."""
    from huggingface_hub import constants

    from hf_eff.cli import main

    folder = _touch(tmp_path, "config.json", "model.safetensors")
    (folder / "all_results.json").write_text(json.dumps({"eval_mae": 0.5}))
    (folder / "README.md").write_text("the card save_pretrained wrote")
    before = _files(folder)
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    inject_fault("commit", None)
    assert main(["push", str(folder), local_hub.repo_id("dropped"), "--token", local_hub.token]) == 1
    assert not local_hub.server.take_fault("commit")[0]  # the commit was sent
    error = capsys.readouterr().err.splitlines()[-1]  # after the upload's progress bars
    assert error.startswith(f"hf-eff push: error: the Hub at {local_hub.url} (HF_ENDPOINT) could not be reached (")
    assert _files(folder) == before


@pytest.mark.parametrize("repo_id", ["me/gcn", "gcn"])  # a bare name's user is whoami's, which is not asked offline
def test_cli_push_offline_is_one_line_naming_hf_hub_offline_and_nothing_local_changes(tmp_path, monkeypatch, capsys,
                                                                                      repo_id):
    from huggingface_hub import constants

    from hf_eff.cli import main

    folder = _touch(tmp_path, "config.json", "model.safetensors")
    (folder / "all_results.json").write_text(json.dumps({"eval_mae": 0.5}))
    (folder / "README.md").write_text("the card save_pretrained wrote")
    before = _files(folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read from the environment at import
    assert main(["push", str(folder), repo_id, "--token", "hf_unused"]) == 1
    err = capsys.readouterr().err
    assert "usage:" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"hf-eff push: error: cannot push to {repo_id}: the Hub at {constants.ENDPOINT} (HF_ENDPOINT) "
                          "could not be reached: offline mode is on (HF_HUB_OFFLINE)")
    assert _files(folder) == before


def _model_run_folder(tmp_path, earlier_readme: bytes | None) -> Path:
    """A model run's folder with results and, unless None, the README.md a push would replace."""
    folder = _touch(tmp_path, "config.json", "model.safetensors")
    (folder / "all_results.json").write_text(json.dumps({"eval_mae": 0.5}))
    if earlier_readme is not None:
        (folder / "README.md").write_bytes(earlier_readme)
    return folder


@pytest.mark.parametrize("earlier_readme", [b"the card save_pretrained wrote", None])
def test_a_card_that_fails_to_be_written_leaves_the_folders_readme_as_it_was(local_hub, tmp_path, monkeypatch,
                                                                              earlier_readme):
    from huggingface_hub import ModelCard, constants

    def half_written(card, path):  # as a full disk leaves it
        Path(path).write_text(str(card)[:10])
        raise OSError(28, "No space left on device")

    folder = _model_run_folder(tmp_path, earlier_readme)
    before = _files(folder)
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    monkeypatch.setattr(ModelCard, "save", half_written)
    with pytest.raises(OSError, match="No space left on device"):
        push.push_output_dir(folder, local_hub.repo_id("readme-unwritten"), token=local_hub.token)
    assert _files(folder) == before


@pytest.mark.parametrize("earlier_readme", [b"the card save_pretrained wrote", None])
def test_a_failed_upload_leaves_the_folders_readme_as_it_was(local_hub, tmp_path, monkeypatch, inject_fault,
                                                             earlier_readme):
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    folder = _model_run_folder(tmp_path, earlier_readme)
    before = _files(folder)
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    inject_fault("commit", 403)  # the card was written into the folder for the upload, which then fails
    with pytest.raises(HfHubHTTPError):
        push.push_output_dir(folder, local_hub.repo_id("readme-kept"), token=local_hub.token)
    assert _files(folder) == before


def test_cli_push_to_a_revision_creates_the_branch_and_leaves_main_as_it_was(local_hub, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard, constants

    from hf_eff.cli import main
    from hf_eff.splat.procedural import make_procedural_scene

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    run = _touch(tmp_path / "run", "config.json", "model.safetensors")
    (run / "all_results.json").write_text(json.dumps({"eval_mae": 0.5}))
    make_procedural_scene(seed=1, num_train=2, num_test=1, num_points=20, width=8, height=8, num_objects=1,
                          supersample=1).save(tmp_path / "scene")
    for folder, repo_type in (("run", "model"), ("scene", "dataset")):
        repo_id = local_hub.repo_id(f"branch-{folder}")
        assert main(["push", str(tmp_path / folder), repo_id, "--revision", "dev", "--token", local_hub.token]) == 0
        repo = local_hub.server.repos[(repo_type, repo_id)]
        assert set(repo.branches) == {"main", "dev"}
        assert set(repo.commits[repo.branches["main"]].tree) == {".gitattributes"}
        readme = repo.commits[repo.branches["dev"]].tree["README.md"]
        assert 'revision="dev"' in ModelCard(local_hub.server.blobs[readme.sha256].decode()).text, folder


def test_scene_folder_that_does_not_load_is_refused_before_any_repo_is_created(local_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    import hf_eff.splat

    def unreadable(folder):
        raise ValueError(f"{folder}: views/ is unreadable")  # as an unfinished copy of a scene

    (tmp_path / "views").mkdir()
    monkeypatch.setattr(hf_eff.splat, "load_scene", unreadable)
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    repo_id = local_hub.repo_id("broken-scene")
    with pytest.raises(ValueError, match="views/ is unreadable"):
        push.push_output_dir(tmp_path, repo_id, token=local_hub.token)
    assert not local_hub.api().repo_exists(repo_id, repo_type="dataset")


def test_cli_push_of_a_scene_again_leaves_none_of_the_old_scene_in_the_repo(local_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hf_eff.splat.procedural import make_procedural_scene

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    repo_id = local_hub.repo_id("repushed-scene")
    tiny = dict(num_train=2, width=8, height=8, num_objects=1, supersample=1)
    make_procedural_scene(seed=1, num_test=1, num_points=20, **tiny).save(tmp_path / "first")
    # No points and no test views: their shards from the first push must go.
    make_procedural_scene(seed=2, num_test=0, num_points=0, **tiny).save(tmp_path / "second")
    for folder in ("first", "second"):
        push.push_output_dir(tmp_path / folder, repo_id, token=local_hub.token, license="cc-by-4.0")
    api = local_hub.api()
    files = set(api.list_repo_files(repo_id, repo_type="dataset"))
    assert {f for f in files if f.endswith(".parquet")} == {"views/train-00000-of-00001.parquet"}
    repo = local_hub.server.repos[("dataset", repo_id)]
    readme = repo.commits[repo.branches["main"]].tree["README.md"]
    card = DatasetCard(local_hub.server.blobs[readme.sha256].decode())
    assert card.data.license == "cc-by-4.0" and "gaussian-splatting" in card.data.tags
    assert [c["config_name"] for c in card.data.configs] == ["views"]


def test_splat_card_shows_the_novel_view_video_when_the_run_wrote_one(tmp_path):
    folder = _touch(tmp_path, "config.json", "model.safetensors", "all_results.json", "splats.ply", "preview.png")
    assert "trajectory" not in push.build_card("splat_model", folder, "me/splats").text
    (folder / "trajectory.gif").write_bytes(b"GIF89a")
    text = push.build_card("splat_model", folder, "me/splats").text
    assert "![novel views](trajectory.gif)" in text and "![preview](preview.png)" in text


def test_splat_card_says_when_the_splats_are_in_normalised_coordinates(tmp_path):
    folder = _touch(tmp_path, "config.json", "model.safetensors", "all_results.json", "splats.ply")
    assert "normalised" not in push.build_card("splat_model", folder, "me/splats").text
    (folder / "config.json").write_text(json.dumps({"world_to_normalized": np.eye(4).tolist()}))
    text = push.build_card("splat_model", folder, "me/splats").text
    assert "`config.json`'s `world_to_normalized` maps the capture's frame to the splats', and `splats.ply` is in " \
           "the normalised frame; `splats.save_ply(path, original_frame=True)`" in " ".join(text.split())


def test_a_bare_repo_name_goes_to_the_tokens_user_and_the_card_names_it_whole(local_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hf_eff.splat import load_scene
    from hf_eff.splat.procedural import make_procedural_scene
    from tests.hub.conftest import OWNER

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    run = _saved_folders(tmp_path)["grant_model"]
    make_procedural_scene(seed=1, num_train=2, num_test=1, num_points=20, width=8, height=8, num_objects=1,
                          supersample=1).save(tmp_path / "scene")
    for folder, repo_type in ((run, "model"), (tmp_path / "scene", "dataset")):
        name = local_hub.repo_id(folder.name).split("/")[1]
        asked = len(local_hub.server.request_log)
        url = push.push_output_dir(folder, name, token=local_hub.token)
        assert url.endswith(f"/{OWNER}/{name}"), url
        # one whoami names the user and checks the token's rights: the Hub rate-limits it
        whoami = [path for _, path, _ in local_hub.server.request_log[asked:] if path == "/api/whoami-v2"]
        assert len(whoami) == 1, folder.name
        repo = local_hub.server.repos[(repo_type, f"{OWNER}/{name}")]
        readme = local_hub.server.blobs[repo.commits[repo.branches["main"]].tree["README.md"].sha256].decode()
        assert f'"{OWNER}/{name}"' in readme and f'"{name}"' not in readme, folder.name  # the loading lines
    assert f'"{OWNER}/' in (run / "README.md").read_text()
    name = local_hub.repo_id("scene").split("/")[1]  # the scene's own push too
    commit = load_scene(tmp_path / "scene").push_to_hub(name, token=local_hub.token)
    assert commit.repo_url.repo_id == f"{OWNER}/{name}"
    assert "README.md" in local_hub.api().list_repo_files(f"{OWNER}/{name}", repo_type="dataset")


def test_a_bare_repo_name_is_refused_when_whoami_cannot_name_the_user(local_hub, tmp_path, monkeypatch, inject_fault):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    run = _saved_folders(tmp_path)["grant_model"]
    (run / "README.md").write_text("the run's own card\n")
    name = local_hub.repo_id("bare").split("/")[1]
    inject_fault("whoami", 404)  # a server without the route
    with pytest.raises(ValueError, match=rf"the repo id '{name}' names no user or organisation, and the Hub's "
                                         r"whoami, .* did not answer: give the repo as USER/NAME"):
        push.push_output_dir(run, name, token=local_hub.token)
    assert not local_hub.server.take_fault("whoami")[0]  # it asked
    assert not [repo_id for _, repo_id in local_hub.server.repos if repo_id.endswith(f"/{name}")]
    assert (run / "README.md").read_text() == "the run's own card\n"


def test_a_splat_push_removes_an_earlier_runs_pose_corrections_from_the_repo(local_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    repo_id = local_hub.repo_id("splats")

    def pushed_files(*names: str) -> set[str]:
        folder = _touch(tmp_path / "-".join(names), "model.safetensors", "all_results.json", *names)
        (folder / "config.json").write_text(json.dumps({"sh_degree": 1}))
        push.push_output_dir(folder, repo_id, token=local_hub.token)
        repo = local_hub.server.repos[("model", repo_id)]
        return set(repo.commits[repo.branches["main"]].tree)

    assert "pose_adjustment.safetensors" in pushed_files("pose_adjustment.safetensors")
    # a model trained without pose_opt, pushed to the same repo: the corrections there were the other model's
    assert "pose_adjustment.safetensors" not in pushed_files("splats.ply")
