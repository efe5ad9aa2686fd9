"""The models' own pushes (`GrantGCN.push_to_hub`, `GaussianModel.push_to_hub`) upload the card `hf-eff push` writes for
the same saved folder, naming the repo (and branch) in its loading lines."""

import pytest
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
