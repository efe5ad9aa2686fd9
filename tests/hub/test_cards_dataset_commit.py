"""The GraNT and HaLoRA cards name the commit a run read its Hub dataset at, beside the revision it was given."""

from hf_eff.hub.cards import grant_card, halora_card

COMMIT = "1" * 40
GRANT = {"dataset_name": "me/graphs", "dataset_revision": "main", "dataset_commit": COMMIT, "dataset_from_hub": True,
         "eval_mae": 0.3, "task": "graph_regression"}
HALORA = {"dataset_name": "me/questions", "dataset_config_name": "easy", "dataset_revision": "v1",
          "dataset_commit": COMMIT, "eval_accuracy_sigma_0_mean": 0.5, "eval_questions": 3,
          "data_split": {"dataset": "me/questions"}}


def test_a_grant_card_names_the_commit_and_how_to_read_it():
    card = str(grant_card(GRANT, "me/model"))
    assert (f"Data: the Hub dataset `me/graphs` at revision `main`, commit `{COMMIT}`; "
            f'`load_dataset("me/graphs", revision="{COMMIT}")` reads the same rows.\n') in card
    assert "revision: main\n" in card  # the model-index keeps the revision given
    given_by_hash = str(grant_card({**GRANT, "dataset_revision": COMMIT}, "me/model"))
    assert f"Data: the Hub dataset `me/graphs` at commit `{COMMIT}`;" in given_by_hash


def test_a_halora_card_names_the_commit_and_configuration():
    card = str(halora_card(HALORA, "me/adapter", base_model="me/base"))
    assert (f"Data: the Hub dataset `me/questions` (configuration `easy`) at revision `v1`, commit `{COMMIT}`; "
            f'`load_dataset("me/questions", "easy", revision="{COMMIT}")` reads the same rows.\n') in card


def test_results_without_a_commit_have_no_such_sentence():
    without = {key: value for key, value in GRANT.items() if key != "dataset_commit"}
    assert "Data: the Hub dataset" not in str(grant_card(without, "me/model"))
    without = {key: value for key, value in HALORA.items() if key != "dataset_commit"}
    assert "Data: the Hub dataset" not in str(halora_card(without, "me/adapter", base_model="me/base"))
