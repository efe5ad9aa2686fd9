"""The direct pushes, `GrantGCN.push_to_hub`, `GaussianModel.push_to_hub` and `Scene.push_to_hub`, check the repo with
one whoami as `hf-eff push` does (`hf_eff.hub.push.refuse_unwritable_repo`): a token the Hub does not know or a read token is
refused before any repo is created, and a bare name lands under the token's user; when whoami cannot answer, the push
goes on and the Hub names a bare name's user."""

import pytest
from huggingface_hub import constants

from hf_eff.hub.push import push_output_dir
from tests.hub.conftest import OTHER_USER, OWNER

UNKNOWN_TOKEN = "hf_" + "0" * 32  # a token the Hub does not know
WHOAMI = "/api/whoami-v2"


def _scene():
    from hf_eff.splat.procedural import make_procedural_scene

    return make_procedural_scene(seed=1, num_train=2, num_test=1, num_points=20, width=8, height=8, num_objects=1,
                                 supersample=1)


def _grant_model():
    from hf_eff.grant import GrantGCN

    return GrantGCN(4, 1, hidden_channels=4)


def _splat_model():
    from hf_eff.splat import GaussianModel

    return GaussianModel(sh_degree=0, num_gaussians=2)


# (what is pushed, its repo type, the name its refusals give a token passed to it)
PUSHES = {
    "GrantGCN": (_grant_model, "model", "GrantGCN.push_to_hub's token"),
    "GaussianModel": (_splat_model, "model", "GaussianModel.push_to_hub's token"),
    "Scene": (_scene, "dataset", "Scene.push_to_hub's token"),
}


@pytest.fixture(params=list(PUSHES))
def pushed(request, local_hub, monkeypatch):
    """(the artifact, its repo type, the name of its token): each push's HfApi talks to the local Hub."""
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    make, repo_type, given_as = PUSHES[request.param]
    return make(), repo_type, given_as


def _name(local_hub, stem: str) -> str:
    return local_hub.repo_id(stem).split("/")[1]


def _repos_named(local_hub, name: str) -> list:
    return [key for key in local_hub.server.repos if key[1].split("/")[-1] == name]


def _whoami_calls(local_hub, since: int) -> int:
    return sum(path == WHOAMI for _, path, _ in local_hub.server.request_log[since:])


def test_a_token_the_hub_does_not_know_is_refused_naming_it_before_any_repo_is_created(local_hub, pushed):
    artifact, _, given_as = pushed
    for name in (_name(local_hub, "unknown"), f"{OWNER}/{_name(local_hub, 'unknown')}"):
        with pytest.raises(PermissionError, match=rf"cannot push to {name}: the Hugging Face token from "
                                                  rf"{given_as} is not valid \(the Hub's whoami answered 401"):
            artifact.push_to_hub(name, token=UNKNOWN_TOKEN)
        assert not _repos_named(local_hub, name.split("/")[-1])


def test_a_read_token_is_refused_before_any_repo_is_created(local_hub, pushed):
    artifact, _, _ = pushed
    for name in (_name(local_hub, "read"), f"{OWNER}/{_name(local_hub, 'read')}"):
        owner_name = name if "/" in name else f"{OWNER}/{name}"  # the refusal names the repo it would push to
        with pytest.raises(PermissionError, match=rf"cannot push to {owner_name}: the Hugging Face token of {OWNER} "
                                                  r"is a read token \(role 'read'\)"):
            artifact.push_to_hub(name, token=local_hub.read_token)
        assert not _repos_named(local_hub, name.split("/")[-1])


def test_another_users_repo_is_refused(local_hub, pushed):
    artifact, repo_type, _ = pushed
    repo_id = f"{OTHER_USER}/{_name(local_hub, 'foreign')}"
    local_hub.api(token=local_hub.other_token).create_repo(repo_id, repo_type=repo_type)
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: it belongs to {OTHER_USER}"):
        artifact.push_to_hub(repo_id, token=local_hub.token)
    assert local_hub.api().list_repo_files(repo_id, repo_type=repo_type) == [".gitattributes"]


def test_a_bare_name_lands_under_the_user_with_one_whoami(local_hub, pushed):
    artifact, repo_type, _ = pushed
    name = _name(local_hub, "bare")
    asked = len(local_hub.server.request_log)
    artifact.push_to_hub(name, token=local_hub.token)
    assert _whoami_calls(local_hub, asked) == 1  # the Hub rate-limits whoami
    assert _repos_named(local_hub, name) == [(repo_type, f"{OWNER}/{name}")]
    assert "README.md" in local_hub.api().list_repo_files(f"{OWNER}/{name}", repo_type=repo_type)


def test_when_whoami_cannot_answer_the_push_goes_on_and_the_hub_names_a_bare_names_user(local_hub, pushed,
                                                                                         inject_fault):
    artifact, repo_type, _ = pushed
    name = _name(local_hub, "no-whoami")
    inject_fault("whoami", 404)  # a server without the route
    artifact.push_to_hub(name, token=local_hub.token)
    assert not local_hub.server.take_fault("whoami")[0]  # it asked
    assert "README.md" in local_hub.api().list_repo_files(f"{OWNER}/{name}", repo_type=repo_type)


def test_hf_eff_push_of_a_scene_asks_whoami_once(local_hub, tmp_path, monkeypatch):
    """push_output_dir hands the scene to Scene.push_to_hub, which checks the repo: not a second time."""
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    _scene().save(tmp_path / "scene")
    for repo_id in (local_hub.repo_id("scene"), _name(local_hub, "scene")):
        asked = len(local_hub.server.request_log)
        push_output_dir(tmp_path / "scene", repo_id, token=local_hub.token)
        assert _whoami_calls(local_hub, asked) == 1, repo_id
    with pytest.raises(PermissionError, match=r"the Hugging Face token from --token is not valid"):
        push_output_dir(tmp_path / "scene", local_hub.repo_id("scene"), token=UNKNOWN_TOKEN, given_as="--token")


def test_a_scenes_push_takes_no_whoami_answer_from_its_caller(local_hub, monkeypatch):
    """Only hf-eff push, which asked whoami itself, hands its answer on (Scene._push_to_hub): a hand-made one given to
    the public push would skip whoami's refusal of a read token."""
    import inspect

    from hf_eff.splat import Scene

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    assert list(inspect.signature(Scene.push_to_hub).parameters) == [
        "self", "repo_id", "private", "token", "commit_message", "revision", "license"]
    name = _name(local_hub, "hand-made-identity")
    hand_made = {"name": OWNER, "auth": {"accessToken": {"role": "write"}}}
    with pytest.raises(TypeError, match="identity"):
        _scene().push_to_hub(f"{OWNER}/{name}", token=local_hub.read_token, identity=hand_made)
    assert not _repos_named(local_hub, name)


def test_offline_each_push_is_refused_naming_hf_hub_offline_before_it_saves_or_creates_anything(local_hub, pushed,
                                                                                                 monkeypatch):
    """As `hf-eff push` (``refuse_offline``), not at the first Hub call with huggingface_hub's bare refusal."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    artifact, _, _ = pushed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read from the environment at import
    saves = []
    save_name = "save_pretrained" if hasattr(artifact, "save_pretrained") else "save"  # the models' or the scene's
    save = getattr(artifact, save_name)
    monkeypatch.setattr(artifact, save_name, lambda *args, **kwargs: saves.append(args) or save(*args, **kwargs))
    name = _name(local_hub, "offline")
    asked = len(local_hub.server.request_log)
    for repo_id in (name, f"{OWNER}/{name}"):
        with pytest.raises(OfflineModeIsEnabled, match=rf"^cannot push to {repo_id}: offline mode is on "
                                                       r"\(HF_HUB_OFFLINE\)$"):
            artifact.push_to_hub(repo_id, token=local_hub.token)
    assert saves == []
    assert not _repos_named(local_hub, name)
    assert len(local_hub.server.request_log) == asked
