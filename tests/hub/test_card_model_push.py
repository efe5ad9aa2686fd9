"""The models' own pushes (`GrantGCN.push_to_hub`, `GaussianModel.push_to_hub`) upload the card `hf-eff push` writes for
the same saved folder, naming the repo (and branch) in its loading lines; they create a missing branch, and a failed
first push leaves no empty repo."""

import pytest
import torch
from huggingface_hub import ModelCard, constants

from hf_eff.hub.push import NO_RESULTS_NOTE, build_card


def _grant_model():
    from hf_eff import GrantGCN

    return GrantGCN(in_channels=4, out_channels=1, hidden_channels=4, task="graph_regression", target_names=["expt"])


def _splat_model():
    from hf_eff.splat import GaussianModel

    return GaussianModel(sh_degree=0, num_gaussians=2)


MODELS = {"GrantGCN": (_grant_model, "grant_model", "graph-ml"), "GaussianModel": (_splat_model, "splat_model", "image-to-3d")}


def _pushed_text(local_hub, repo_id: str, name: str, branch: str = "main") -> str:
    repo = local_hub.server.repos[("model", repo_id)]
    return local_hub.server.blobs[repo.commits[repo.branches[branch]].tree[name].sha256].decode()


@pytest.fixture
def hub_endpoint(local_hub, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    return local_hub


@pytest.mark.parametrize("name", MODELS)
def test_a_models_push_uploads_the_card_hf_eff_push_writes_naming_the_repo(hub_endpoint, tmp_path, name):
    make, kind, pipeline_tag = MODELS[name]
    model = make()
    repo_id = hub_endpoint.repo_id("own-card")
    model.push_to_hub(repo_id, token=hub_endpoint.token)

    pushed = _pushed_text(hub_endpoint, repo_id, "README.md")
    card = ModelCard(pushed)
    assert f'.from_pretrained("{repo_id}")' in pushed and "<repo_id>" not in pushed
    assert "hf-eff" in card.data.tags and card.data.pipeline_tag == pipeline_tag
    assert NO_RESULTS_NOTE in pushed
    model.save_pretrained(tmp_path / "saved")
    assert pushed == str(build_card(kind, tmp_path / "saved", repo_id))  # hf-eff push's card of the same folder
    if kind == "grant_model":
        assert "Targets: `expt`." in pushed


@pytest.mark.parametrize("name", MODELS)
def test_a_models_push_to_a_missing_branch_creates_it_and_its_card_names_it(hub_endpoint, name):
    model = MODELS[name][0]()
    repo_id = hub_endpoint.repo_id("own-branch")
    model.push_to_hub(repo_id, token=hub_endpoint.token, branch="dev")

    repo = hub_endpoint.server.repos[("model", repo_id)]
    assert set(repo.commits[repo.branches["main"]].tree) == {".gitattributes"}  # the model went to dev only
    pushed = _pushed_text(hub_endpoint, repo_id, "README.md", branch="dev")
    assert f'.from_pretrained("{repo_id}", revision="dev")' in pushed
    assert "model.safetensors" in repo.commits[repo.branches["dev"]].tree


@pytest.mark.parametrize("name", MODELS)
def test_a_failed_first_push_leaves_no_empty_repo_and_a_failed_later_one_keeps_the_repo(hub_endpoint, inject_fault,
                                                                                         name):
    model = MODELS[name][0]()
    repo_id = hub_endpoint.repo_id("own-failed")
    inject_fault("commit", status=400)
    with pytest.raises(Exception, match="injected commit fault"):
        model.push_to_hub(repo_id, token=hub_endpoint.token)
    assert ("model", repo_id) not in hub_endpoint.server.repos

    model.push_to_hub(repo_id, token=hub_endpoint.token)
    inject_fault("commit", status=400)
    with pytest.raises(Exception, match="injected commit fault"):
        model.push_to_hub(repo_id, token=hub_endpoint.token, branch="dev")
    assert "README.md" in hub_endpoint.server.repos[("model", repo_id)].commits[
        hub_endpoint.server.repos[("model", repo_id)].branches["main"]].tree  # an existing repo is never deleted


@pytest.mark.parametrize("name", MODELS)
def test_a_failed_push_to_a_repo_whose_existence_could_not_be_read_keeps_the_repo(hub_endpoint, inject_fault, name):
    model = MODELS[name][0]()
    repo_id = hub_endpoint.repo_id("own-unknown")
    model.push_to_hub(repo_id, token=hub_endpoint.token)
    with torch.no_grad():  # changed weights: a push of unchanged files makes no commit
        next(model.parameters()).add_(1.0)
    inject_fault("repo-info", status=500)
    inject_fault("commit", status=400)
    with pytest.raises(Exception, match="injected commit fault"):
        model.push_to_hub(repo_id, token=hub_endpoint.token)
    assert "README.md" in hub_endpoint.server.repos[("model", repo_id)].commits[
        hub_endpoint.server.repos[("model", repo_id)].branches["main"]].tree


def test_a_failed_first_hf_eff_push_leaves_no_empty_repo(hub_endpoint, inject_fault, tmp_path):
    from hf_eff.hub.push import push_output_dir

    _grant_model().save_pretrained(tmp_path / "saved")
    repo_id = hub_endpoint.repo_id("cli-failed")
    inject_fault("commit", status=400)
    with pytest.raises(Exception, match="injected commit fault"):
        push_output_dir(tmp_path / "saved", repo_id, token=hub_endpoint.token)
    assert ("model", repo_id) not in hub_endpoint.server.repos


@pytest.mark.parametrize("name", MODELS)
def test_a_models_push_refuses_model_card_kwargs_its_card_would_drop_before_creating_the_repo(hub_endpoint, name):
    model = MODELS[name][0]()
    repo_id = hub_endpoint.repo_id("own-card-kwargs")
    with pytest.raises(ValueError, match=r"model_card_kwargs \['license'\] would be dropped: .*config\.json"):
        model.push_to_hub(repo_id, token=hub_endpoint.token, model_card_kwargs={"license": "mit"})
    assert ("model", repo_id) not in hub_endpoint.server.repos
    model.push_to_hub(repo_id, token=hub_endpoint.token, model_card_kwargs={})  # none given: pushed as before
    assert "README.md" in hub_endpoint.server.repos[("model", repo_id)].commits[
        hub_endpoint.server.repos[("model", repo_id)].branches["main"]].tree
