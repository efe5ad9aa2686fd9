"""One title rule for every card (the repo's name, as a trainer's push has it, unless a model_name is given), and no
runs of blank lines or lines that start with a space, whichever optional parts a card leaves out."""

import pytest
from huggingface_hub import ModelCard, ModelCardData

from hf_eff.hub import cards
from hf_eff.hub.push import build_card

SPLAT_VARIANTS = [
    dict(results={}),
    dict(results={"strategy": "g2l", "eval_psnr": 20.0}, ply="splats.ply", preview="preview.png",
         trajectory="trajectory.gif"),
    dict(results={"strategy": "default", "base_model": "me/base", "rasterize_mode": "antialiased", "pose_opt": True},
         normalized=True),
    dict(results={"strategy": "MyStrategy"}, no_results_note="No evaluation results were recorded."),
]


def _assert_tidy(text: str) -> None:
    assert "\n\n\n" not in text
    assert [line for line in text.splitlines() if line.startswith(" ")] == []


@pytest.mark.parametrize("variant", SPLAT_VARIANTS)
def test_splat_cards_have_no_blank_runs_nor_lines_starting_with_a_space(variant):
    variant = dict(variant)
    _assert_tidy(cards.splat_card(variant.pop("results"), "me/splats", **variant).text)


def test_grant_and_halora_cards_have_no_blank_runs():
    _assert_tidy(cards.grant_card({"teacher": "grant", "train_runtime": 1.0, "eval_mae": 0.2}, "me/g").text)
    _assert_tidy(cards.halora_card({"eval_accuracy_sigma_0_mean": 0.5, "base_model": "smollm2-135m-instruct"},
                                   "me/h").text)


def test_the_mixin_templates_local_save_card_has_no_blank_runs():
    for kind in ("grant_model", "splat_model"):
        _assert_tidy(ModelCard.from_template(ModelCardData(library_name="hf-eff"),
                                             template_str=cards.model_card_template(kind)).text)


def test_every_card_is_titled_by_the_repos_name_unless_a_model_name_is_given(tmp_path):
    from hf_eff import GaussianModel, GrantGCN

    GrantGCN(4, 1, hidden_channels=4).save_pretrained(tmp_path / "grant")
    GaussianModel(sh_degree=0, num_gaussians=2).save_pretrained(tmp_path / "splat")
    # hf-eff push's cards of saved folders: a trainer's push of the same run titles it by the repo too
    assert build_card("grant_model", tmp_path / "grant", "me/grant-genreg").text.lstrip().startswith("# grant-genreg\n")
    assert build_card("splat_model", tmp_path / "splat", "me/splat-g2l").text.lstrip().startswith("# splat-g2l\n")
    assert cards.halora_card({}, "me/halora-mixed").text.lstrip().startswith("# halora-mixed\n")
    titled = cards.grant_card({}, "me/grant-genreg", model_name="Solubility GCN")
    assert titled.text.lstrip().startswith("# Solubility GCN\n")
