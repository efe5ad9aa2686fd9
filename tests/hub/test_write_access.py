"""`hf_eff.hub.push.refuse_unwritable_repo`, the hf-eff trainers built with push_to_hub=True and `hf-eff push`
(`push_output_dir`): a push that whoami says the token cannot make is refused before training, or before the repo is
created and the run's README.md replaced; when whoami cannot tell, nothing is said."""

import json

import pytest
import torch
from datasets import Dataset
from huggingface_hub import HfApi, constants
from huggingface_hub.utils import _auth

from hf_eff.hub.push import push_output_dir, refuse_unwritable_repo
from tests.hub.conftest import ORG, OTHER_USER, OWNER


def _other_users_repo(local_hub) -> str:
    """A public repo of another user: the tester's tokens read it but cannot write to it."""
    repo_id = f"{OTHER_USER}/{local_hub.repo_id('foreign').split('/')[1]}"
    local_hub.api(token=local_hub.other_token).create_repo(repo_id)
    return repo_id


def _own_repo(local_hub, namespace: str = OWNER) -> str:
    repo_id = f"{namespace}/{local_hub.repo_id('own').split('/')[1]}"
    local_hub.api().create_repo(repo_id)
    return repo_id


def test_a_read_token_is_refused_naming_the_repo_and_its_role(local_hub):
    repo_id = _own_repo(local_hub)
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: .* read token \(role 'read'\)"):
        refuse_unwritable_repo(local_hub.api(token=local_hub.read_token), repo_id)


def test_another_users_repo_is_refused_naming_its_namespace_and_the_tokens(local_hub):
    repo_id = _other_users_repo(local_hub)
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: it belongs to {OTHER_USER}, and the token "
                                              rf"of {OWNER} writes only to {OWNER}, {ORG}"):
        refuse_unwritable_repo(local_hub.api(), repo_id)


def test_an_identity_given_is_read_instead_of_asking_whoami(local_hub):
    """A push asks whoami once (namespaced_repo_id) and hands the answer on: the Hub rate-limits whoami."""
    repo_id = _own_repo(local_hub)
    read_identity = local_hub.api(token=local_hub.read_token).whoami()
    asked = len(local_hub.server.request_log)
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: .* read token \(role 'read'\)"):
        refuse_unwritable_repo(local_hub.api(), repo_id, identity=read_identity)  # the api's own token writes
    assert "/api/whoami-v2" not in [path for _, path, _ in local_hub.server.request_log[asked:]]


UNKNOWN_TOKEN = "hf_" + "0" * 32  # a token the Hub does not know


def test_a_token_the_hub_does_not_know_is_refused_naming_where_it_came_from(local_hub, monkeypatch, tmp_path):
    repo_id = _own_repo(local_hub)
    api = HfApi(endpoint=local_hub.url)  # no token of its own: the one given, else HF_TOKEN, else the stored login
    invalid = r"cannot push to {}: the Hugging Face token from {} is not valid \(the Hub's whoami answered 401 " \
              r"Unauthorized\); {}"
    with pytest.raises(PermissionError, match=invalid.format(repo_id, "--token", "pass a valid one there")) as given:
        refuse_unwritable_repo(api, repo_id, token=UNKNOWN_TOKEN, given_as="--token")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setenv("HF_TOKEN", UNKNOWN_TOKEN)
    with pytest.raises(PermissionError, match=invalid.format(repo_id, "HF_TOKEN", "set HF_TOKEN to a valid one, or "
                                                             "unset it to use the stored login")) as from_environment:
        refuse_unwritable_repo(api, repo_id)
    monkeypatch.delenv("HF_TOKEN")
    (tmp_path / "token").write_text(UNKNOWN_TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    with pytest.raises(PermissionError, match=invalid.format(repo_id, "the stored login",
                                                             "log in again with `hf auth login`")) as stored:
        refuse_unwritable_repo(api, repo_id)
    # a source other than HF_TOKEN and the stored login (huggingface_hub's versions order them otherwise) is not
    # guessed to be one of those
    (tmp_path / "token").unlink()
    monkeypatch.setattr(_auth, "_get_token_from_google_colab", lambda: UNKNOWN_TOKEN)
    with pytest.raises(PermissionError, match=invalid.format(
            repo_id, "huggingface_hub's get_token", "replace the token that source gives, or pass one")) as elsewhere:
        refuse_unwritable_repo(api, repo_id)
    for refusal in (given, from_environment, stored, elsewhere):
        assert UNKNOWN_TOKEN not in str(refusal.value)


def test_repos_the_token_can_write_to_or_create_go_on(local_hub):
    api = local_hub.api()
    for repo_id in (_own_repo(local_hub), _own_repo(local_hub, ORG), "a-new-model", f"{OWNER}/a-new-model",
                    f"{OTHER_USER}/not-there"):  # the last one: create_repo refuses it itself
        refuse_unwritable_repo(api, repo_id)


def test_namespaces_are_compared_ignoring_case(local_hub, monkeypatch):
    api = local_hub.api()
    # the Hub finds a repo whatever the case of its id (the local server does not): each of these exists there
    monkeypatch.setattr(api, "repo_exists", lambda repo_id, repo_type=None, token=None: True)
    for repo_id in (f"{OWNER.upper()}/model", f"{ORG.title()}/model"):
        refuse_unwritable_repo(api, repo_id)
    with pytest.raises(PermissionError, match=rf"it belongs to {OTHER_USER.upper()}"):
        refuse_unwritable_repo(api, f"{OTHER_USER.upper()}/model")


@pytest.fixture
def org_roles(local_hub, monkeypatch):
    """``set(org, role)``: the tester (OWNER) joins ``org`` with ``role`` (None: whoami lists no role) for one test."""
    return lambda org, role: monkeypatch.setitem(local_hub.server.orgs, org, {OWNER: role})


def _org_repo(local_hub, org: str) -> str:
    """A repo in ``org``, made by a user who writes there: the tester's membership decides alone."""
    repo_id = f"{org}/{local_hub.repo_id('org').split('/')[1]}"
    local_hub.server.orgs[org][OTHER_USER] = "admin"
    local_hub.api(token=local_hub.other_token).create_repo(repo_id)
    return repo_id


def test_an_organisation_the_user_only_reads_is_refused_naming_it_and_the_role(local_hub, org_roles):
    org_roles("readers-org", "read")
    repo_id = _org_repo(local_hub, "readers-org")
    message = rf"cannot push to {repo_id}: {OWNER}'s role in the organisation readers-org is 'read'"
    for api in (local_hub.api(), local_hub.api(token=local_hub.fine_grained_token)):  # whatever the token's scopes
        with pytest.raises(PermissionError, match=message):
            refuse_unwritable_repo(api, repo_id)
    # a new repo there too (the Hub refuses to create it), whatever the case of the name
    with pytest.raises(PermissionError, match=r"cannot push to Readers-Org/a-new-model: .* Readers-Org is 'read'"):
        refuse_unwritable_repo(local_hub.api(), "Readers-Org/a-new-model")


def test_other_organisation_roles_and_a_missing_role_go_on(local_hub, org_roles):
    for role in ("admin", "write", "contributor", None):
        org_roles("members-org", role)
        refuse_unwritable_repo(local_hub.api(), _org_repo(local_hub, "members-org"))


def test_when_whoami_cannot_tell_nothing_is_said(local_hub, inject_fault):
    repo_id = _other_users_repo(local_hub)
    # a fine-grained token: whoami lists its scopes, which are not read here
    refuse_unwritable_repo(local_hub.api(token=local_hub.fine_grained_token), repo_id)
    reader = local_hub.api(token=local_hub.read_token)
    inject_fault("whoami", 404)  # a server without the route
    refuse_unwritable_repo(reader, repo_id)
    inject_fault("whoami")  # the connection drops
    refuse_unwritable_repo(reader, repo_id)
    inject_fault("whoami", 503)  # a server error
    refuse_unwritable_repo(reader, repo_id)
    # offline: nothing listens there
    refuse_unwritable_repo(type(reader)(endpoint="http://127.0.0.1:9", token=local_hub.read_token), repo_id)
    assert not local_hub.server.take_fault("whoami")[0]  # each fault was met


def _build_grant_trainer(tmp_path, repo_id: str, hub_token: str | None = None):
    from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments

    graphs = Dataset.from_list([{"x": torch.randn(3, 4).tolist(), "edge_index": [[0, 1], [1, 2]], "y": [1.0],
                                 "num_nodes": 3} for _ in range(4)])
    args = GraNTTrainingArguments(output_dir=str(tmp_path / "out"), task="graph_regression", report_to=[],
                                  use_cpu=True, save_strategy="no", push_to_hub=True, hub_model_id=repo_id,
                                  hub_token=hub_token)
    return GraNTTrainer(model=GrantGCN(4, 1, hidden_channels=4), args=args, train_dataset=graphs)


@pytest.fixture
def trainer_token(local_hub, monkeypatch):
    """``set(token)``: transformers' shared HfApi, which the trainers push with, on the local Hub with ``token``."""
    import transformers.utils.hub

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)  # the repo URLs create_repo builds are the local Hub's
    return lambda token: monkeypatch.setattr(transformers.utils.hub, "_hf_api", local_hub.api(token=token))


def test_a_trainer_pushing_with_a_read_token_is_refused_when_it_is_built(local_hub, tmp_path, trainer_token):
    repo_id = _own_repo(local_hub)  # create_repo(exist_ok=True) accepts it: the repo is there to read
    trainer_token(local_hub.read_token)
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: .*role 'read'"):
        _build_grant_trainer(tmp_path, repo_id)


def test_a_trainer_pushing_to_another_users_repo_is_refused_when_it_is_built(local_hub, tmp_path, trainer_token):
    repo_id = _other_users_repo(local_hub)
    trainer_token(local_hub.token)
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: it belongs to {OTHER_USER}"):
        _build_grant_trainer(tmp_path, repo_id)


def test_a_trainer_pushing_to_an_organisation_the_user_only_reads_is_refused_when_it_is_built(
        local_hub, tmp_path, trainer_token, org_roles):
    org_roles("readers-org", "read")
    repo_id = _org_repo(local_hub, "readers-org")
    trainer_token(local_hub.token)
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: .*readers-org is 'read'"):
        _build_grant_trainer(tmp_path, repo_id)


def test_a_trainer_with_a_hub_token_the_hub_does_not_know_is_refused_when_it_is_built(local_hub, tmp_path,
                                                                                       trainer_token):
    repo_id = local_hub.repo_id("gcn")
    trainer_token(local_hub.token)  # the trainer's hub_token wins
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: the Hugging Face token from hub_token is "
                                              r"not valid \(the Hub's whoami answered 401 Unauthorized\)"):
        _build_grant_trainer(tmp_path, repo_id, hub_token=UNKNOWN_TOKEN)
    assert ("model", repo_id) not in local_hub.server.repos


def test_a_trainer_is_built_when_whoami_cannot_tell(local_hub, tmp_path, trainer_token, inject_fault):
    repo_id = _own_repo(local_hub)
    trainer_token(local_hub.read_token)
    inject_fault("whoami", 404)
    assert _build_grant_trainer(tmp_path, repo_id).hub_model_id == repo_id


@pytest.fixture
def run_and_scene(local_hub, tmp_path, monkeypatch):
    """A finished GraNT run folder with the README.md its save wrote, and a saved scene folder, which
    ``push_output_dir`` pushes to the local Hub."""
    from hf_eff.splat.procedural import make_procedural_scene

    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)  # push_output_dir's HfApi talks to the local Hub
    run = tmp_path / "run"
    run.mkdir()
    for name, text in (("config.json", "{}"), ("model.safetensors", "{}"), ("README.md", "the run's own card\n"),
                       ("all_results.json", json.dumps({"eval_mae": 0.5}))):
        (run / name).write_text(text)
    make_procedural_scene(seed=1, num_train=2, num_test=1, num_points=20, width=8, height=8, num_objects=1,
                          supersample=1).save(tmp_path / "scene")
    return run, tmp_path / "scene"


def test_push_with_a_read_token_is_refused_before_the_runs_readme_is_replaced(local_hub, run_and_scene):
    run, scene = run_and_scene
    repo_id = _own_repo(local_hub)  # create_repo(exist_ok=True) accepts it: the repo is there to read
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: .* read token \(role 'read'\)"):
        push_output_dir(run, repo_id, token=local_hub.read_token)
    assert (run / "README.md").read_text() == "the run's own card\n"
    with pytest.raises(PermissionError, match=r"read token \(role 'read'\)"):
        push_output_dir(scene, local_hub.repo_id("scene"), token=local_hub.read_token)


def test_push_with_a_token_the_hub_does_not_know_is_refused_before_anything_is_written(local_hub, run_and_scene,
                                                                                         capsys):
    from hf_eff.cli import main

    for folder, repo_type in zip(run_and_scene, ("model", "dataset")):
        repo_id = local_hub.repo_id(folder.name)
        with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: the Hugging Face token from "
                                                  r"push_output_dir's token is not valid"):
            push_output_dir(folder, repo_id, token=UNKNOWN_TOKEN)
        # a bare name too: its user cannot be asked for
        with pytest.raises(PermissionError, match=r"cannot push to bare-name: the Hugging Face token from "):
            push_output_dir(folder, "bare-name", token=UNKNOWN_TOKEN)
        assert (repo_type, repo_id) not in local_hub.server.repos
    run, _ = run_and_scene
    assert (run / "README.md").read_text() == "the run's own card\n"
    with pytest.raises(SystemExit) as exit_:  # the user's to change, as a missing token: a usage error
        main(["push", str(run), local_hub.repo_id("cli"), "--token", UNKNOWN_TOKEN])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and UNKNOWN_TOKEN not in err
    assert "the Hugging Face token from --token is not valid" in err.strip().splitlines()[-1]


def test_push_of_a_scene_to_another_users_dataset_repo_is_refused(local_hub, run_and_scene):
    _, scene = run_and_scene
    # a dataset repo only: a model repo of that name would not be the scene's
    repo_id = f"{OTHER_USER}/{local_hub.repo_id('foreign-scene').split('/')[1]}"
    local_hub.api(token=local_hub.other_token).create_repo(repo_id, repo_type="dataset")
    with pytest.raises(PermissionError, match=rf"cannot push to {repo_id}: it belongs to {OTHER_USER}"):
        push_output_dir(scene, repo_id, token=local_hub.token)
    assert local_hub.api().list_repo_files(repo_id, repo_type="dataset") == [".gitattributes"]


def test_push_goes_on_when_whoami_cannot_answer(local_hub, run_and_scene, inject_fault):
    for folder, repo_type in zip(run_and_scene, ("model", "dataset")):
        repo_id = local_hub.repo_id(folder.name)
        inject_fault("whoami", 404)  # a server without the route
        push_output_dir(folder, repo_id, token=local_hub.token)
        assert not local_hub.server.take_fault("whoami")[0], folder.name  # the push asked whoami
        assert "README.md" in local_hub.api().list_repo_files(repo_id, repo_type=repo_type), folder.name


def test_cli_push_with_a_read_token_is_a_usage_error_naming_the_role(local_hub, run_and_scene, capsys):
    from hf_eff.cli import main

    run, _ = run_and_scene
    with pytest.raises(SystemExit) as exit_:  # a token that writes nothing is the user's to change, as a missing one
        main(["push", str(run), _own_repo(local_hub), "--token", local_hub.read_token])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is a read token (role 'read')" in err.strip().splitlines()[-1]
