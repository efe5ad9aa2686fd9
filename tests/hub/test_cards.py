"""Cards filled from measured results: metadata, model-index, method tables, how to load."""

import importlib.util
import json
import shutil
import sys

import pytest
from huggingface_hub import DatasetCard, ModelCard, ModelCardData

from hf_eff.hub import cards, push

# HaLoRATrainer's keys: eval_<metric>_sigma_<s>_mean / _std; the data examples/halora_finetune.py names.
HALORA_RESULTS = {
    "eval_accuracy_sigma_0_mean": 0.62, "eval_accuracy_sigma_0.01_mean": 0.61, "eval_accuracy_sigma_0.01_std": 0.004,
    "eval_accuracy_sigma_0.02_mean": 0.57, "train_runtime": 31.5, "eval_loss": 1.1, "noise_mode": "tile_additive",
    "dataset_name": "arithmetic", "eval_questions": 64,
}


def _metrics(card):
    return {(r.metric_type, r.metric_config): r.metric_value for r in ModelCard(str(card)).data.eval_results}


def test_halora_card_has_metadata_noise_table_and_two_line_loading():
    card = cards.halora_card(HALORA_RESULTS, "me/adapter", base_model="HuggingFaceTB/SmolLM2-135M")
    data = ModelCard(str(card)).data
    assert data.library_name == "hf-eff" and data.license is None  # not the built-in base: no license known
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M" and data.pipeline_tag == "text-generation"
    assert {"halora", "compute-in-memory", "base_model:adapter:HuggingFaceTB/SmolLM2-135M"} <= set(data.tags)
    assert _metrics(card) == {("accuracy", "sigma=0"): 0.62, ("accuracy", "sigma=0.01"): 0.61,
                              ("accuracy", "sigma=0.02"): 0.57}
    assert "| 0.01 | 0.61 ± 0.004 |" in card.text and "| 0.02 | 0.57 |" in card.text
    assert "| train_runtime | 31.5 |" in card.text
    loading = card.text.split("```python\n")[1].split("```")[0].strip().splitlines()
    assert len(loading) == 2
    assert loading[1] == 'model = PeftModel.from_pretrained(load_base_model("HuggingFaceTB/SmolLM2-135M")[0], "me/adapter")'


def test_builtin_base_model_links_its_hub_origin_and_loads_through_hf_eff(tmp_path):
    results = {**HALORA_RESULTS, "base_model": "smollm2-135m-instruct"}
    card = cards.halora_card(results, "me/adapter", base_model=str(tmp_path))  # adapter config: a cache path
    data = ModelCard(str(card)).data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and data.license == "apache-2.0"  # SmolLM2's
    assert 'load_base_model("smollm2-135m-instruct")[0]' in card.text


def test_adapter_card_of_a_continued_training_names_the_adapter_it_started_from():
    """As a GraNT card names the model it was fine-tuned from: the train metrics cover only the continuation."""
    hub = cards.halora_card({**HALORA_RESULTS, "adapter_name_or_path": "me/lora-v1", "adapter_revision": "abc123"},
                            "me/lora-v2", base_model="me/llama", peft_type="LORA")
    assert ("It is a fine-tuned version of the adapter [`me/lora-v1`](https://huggingface.co/me/lora-v1) (revision "
            "`abc123`),\ntrained further: the training run's figures below are the continuation's.") in hub.text
    assert hub.data.base_model == "me/llama"  # the metadata's base model stays the adapter's base model
    local = cards.halora_card({**HALORA_RESULTS, "adapter_name_or_path": "/runs/halora/checkpoint-4"}, "me/h").text
    assert "fine-tuned version of a local adapter (`checkpoint-4`)" in local and "/runs" not in local
    assert "fine-tuned version" not in cards.halora_card(HALORA_RESULTS, "me/h").text


def test_lora_baseline_and_local_base_model_are_not_tagged_as_halora(tmp_path):
    card = cards.halora_card(HALORA_RESULTS, "me/lora", base_model=str(tmp_path), peft_type="LORA")
    data = ModelCard(str(card)).data
    assert "halora" not in data.tags and "lora" in data.tags
    assert data.base_model is None  # a local path is not a Hub id


def test_lora_baseline_card_says_plain_lora_without_halora_training_claims():
    card = cards.halora_card({"eval_accuracy_sigma_0_mean": 0.5}, "me/lora", peft_type="LORA")
    assert "plain **LoRA** adapter" in card.text and "baseline of HaLoRA" in card.text
    assert card.text.lstrip().startswith("# lora\n")  # the repo's name, as a trainer's push titles it
    assert "Training injects" not in card.text and "regulariser on the adapter" not in card.text
    assert "HALORA` adapter type" not in card.text  # PEFT loads plain LoRA without hf-eff
    lora_results = {"eval_accuracy_sigma_0_mean": 0.5, "noise_mode": "tile_additive", "noise_tile_size": 16}
    assert "of each 16x16 tile" in cards.halora_card(lora_results, "me/lora", peft_type="LORA").text
    # the table's noise is the evaluation's, whatever tile the adapter trained with
    assert "of each 16x16 tile" in cards.halora_card(lora_results, "me/h", tile_size=64).text
    halora = cards.halora_card({"eval_accuracy_sigma_0_mean": 0.5}, "me/h")
    assert "A **HaLoRA** adapter" in halora.text and "Training injects the RRAM noise" in halora.text


@pytest.mark.parametrize(("reg_weight", "reg_norm", "phrase"), [
    (0.1, "spectral", "adds a spectral-norm regulariser (mu = 0.1) on the adapter"),
    (0.5, "frobenius", "adds a frobenius-norm regulariser (mu = 0.5) on the adapter"),
    (0.0, "spectral", "adds no regulariser (mu = 0)"),
])
def test_halora_card_names_the_regulariser_the_adapter_was_trained_with(tmp_path, reg_weight, reg_norm, phrase):
    config = {"peft_type": "HALORA", "reg_weight": reg_weight, "reg_norm": reg_norm, "noise_tile_size": 64}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    card = push.build_card("halora_adapter", tmp_path, "me/h", HALORA_RESULTS)
    assert phrase in " ".join(card.text.split())


@pytest.mark.parametrize(("mode", "phrase"), [
    ("tile_additive", "std of sigma times the largest |weight| of each 32x32 tile"),
    ("absolute", "std of sigma, in the weights' own units"),
    ("multiplicative", "W * (1 + sigma * eps)"),
    ("stuck_at", "a fraction sigma of the frozen weights' cells is stuck"),
])
def test_noise_section_describes_the_mode_used(mode, phrase):
    results = {**HALORA_RESULTS, "noise_mode": mode, "num_noise_seeds": 5, "eval_accuracy_sigma_0_std": 0.0}
    card = cards.halora_card(results, "me/adapter", tile_size=32)
    assert phrase in card.text
    other_phrases = [cards.noise_description(other, 32) for other in cards.NOISE_MODE_TEXT if other != mode]
    assert not any(other in card.text for other in other_phrases)  # only the mode used is described
    assert "| 0 | 0.62 |" in card.text  # sigma 0: one noise-free run, no spread shown
    assert "Mean ± std over 5 noise seed(s); sigma 0 is a single noise-free run." in card.text


def test_one_noise_seed_shows_no_spread():
    # examples/halora_finetune.py writes a std of 0 at every sigma of a one-seed run: that is no measured spread
    results = {**HALORA_RESULTS, "num_noise_seeds": 1, "eval_accuracy_sigma_0.01_std": 0.0}
    card = cards.halora_card(results, "me/adapter")
    assert "| 0.01 | 0.61 |" in card.text and "±" not in card.text
    assert "One noise seed per sigma (no spread); sigma 0 is a noise-free run." in card.text


def test_local_base_model_is_named_by_its_folder_with_a_placeholder_path(tmp_path):
    base = tmp_path / "my-llama"
    base.mkdir()
    card = cards.halora_card(HALORA_RESULTS, "me/adapter", base_model=str(base))
    assert str(tmp_path) not in card.text and "<base_model>" not in card.text
    assert "for a local model (`my-llama`)" in card.text
    assert 'load_base_model("/path/to/my-llama")[0]' in card.text
    assert "replace `/path/to/my-llama` with the path of your copy" in card.text
    # Trained elsewhere: the path need not exist here to be recognised as one.
    elsewhere = cards.halora_card({**HALORA_RESULTS, "base_model": "/data/models/llama-3/"}, "me/adapter")
    assert "/data/models" not in elsewhere.text and 'load_base_model("/path/to/llama-3")' in elsewhere.text
    assert ModelCard(str(elsewhere)).data.base_model is None


def test_local_dataset_path_stays_out_of_the_card(tmp_path):
    csv = tmp_path / "mols.csv"
    csv.write_text("smiles,y\n")
    for dataset in (str(csv), "/data/elsewhere/mols.csv"):
        card = cards.grant_card({"eval_mae": 0.3, "dataset_name": dataset}, "me/gcn")
        data = ModelCard(str(card)).data
        assert dataset not in str(card) and data.datasets is None
        assert {(r.dataset_name, r.dataset_type) for r in data.eval_results} == {("local data (mols.csv)", "local")}
    splats = ModelCard(str(cards.splat_card({"eval_psnr": 25.0, "dataset": str(tmp_path)}, "me/splats")))
    assert str(tmp_path) not in str(splats) and splats.data.datasets is None
    assert splats.data.eval_results[0].dataset_type == "local"  # not the built-in procedural scene
    procedural = ModelCard(str(cards.splat_card({"eval_psnr": 25.0, "dataset": "procedural (seed 3)"}, "me/splats")))
    # examples/splat_train.py's scene, on no Hub: typed by its own name, as transformers types non-Hub data
    assert (procedural.data.datasets, procedural.data.eval_results[0].dataset_type) == (None, "procedural (seed 3)")
    lora = ModelCard(str(cards.halora_card({**HALORA_RESULTS, "dataset_name": str(csv)}, "me/lora", peft_type="LORA")))
    assert lora.data.eval_results[0].dataset_type == "local"
    builtin = ModelCard(str(cards.grant_card({"eval_mae": 0.3, "dataset_name": "qm9"}, "me/gcn"))).data.eval_results[0]
    assert (builtin.dataset_name, builtin.dataset_type) == ("qm9", "qm9")
    hub = ModelCard(str(cards.grant_card({"eval_mae": 0.3, "dataset_name": "me/mols"}, "me/gcn"))).data
    assert (hub.datasets, hub.eval_results[0].dataset_type) == (["me/mols"], "me/mols")


def test_grant_card_reports_time_to_target_and_eval_metrics():
    # The keys examples/grant_train.py writes.
    results = {"train_runtime": 20.0, "time_to_target": 8.25, "grant_selection_seconds": 0.5, "eval_mae": 0.3,
               "test_mae": 0.35, "eval_runtime": 0.5, "eval_samples_per_second": 100.0, "epoch": 3.0,
               "teacher": "grant", "task": "graph_regression", "dataset_name": "me/graphs"}
    card = cards.grant_card(results, "me/gcn")
    data = ModelCard(str(card)).data
    assert data.pipeline_tag == "graph-ml" and "graph-neural-teaching" in data.tags
    assert data.datasets == ["me/graphs"]
    splits = {(r.metric_type, r.dataset_split): r.metric_value for r in data.eval_results}
    assert splits == {("mae", "validation"): 0.3, ("mae", "test"): 0.35}  # bookkeeping stays out
    assert "| time_to_target | 8.25 |" in card.text and "| train_runtime | 20 |" in card.text
    assert "| grant_selection_seconds | 0.5 |" in card.text and "| mae | 0.3 | 0.35 |" in card.text
    assert 'GrantGCN.from_pretrained("me/gcn")' in card.text
    # each timing figure says what it measures: the two clocks differ, and a time to target names its target
    assert "| train_runtime | 20 | seconds of training, evaluations included (Trainer's clock) |" in card.text
    assert "| time_to_target | 8.25 | seconds of training (evaluations excluded) until the validation metric" in card.text
    best = cards.grant_card({**results, "best_eval_mae": 0.2875}, "me/gcn").text
    assert ("| time_to_target | 8.25 | seconds of training (evaluations excluded) until validation mae first "
            "reached the run's best, 0.2875 |") in best


def test_splat_card_table_and_preview():
    results = {"eval_psnr": 25.25, "eval_ssim": 0.83, "num_gaussians": 12345, "train_runtime": 61.0,
               "strategy": "g2l", "dataset": "procedural (seed 0)"}
    card = cards.splat_card(results, "me/splats", ply="splats.ply", preview="preview.png")
    assert _metrics(card) == {("psnr", None): 25.25, ("ssim", None): 0.83}
    assert "gaussian-splatting" in ModelCard(str(card)).data.tags
    assert "| strategy | PSNR (dB) | SSIM | Gaussians | training time, evaluations included (s) |" in card.text
    assert "| g2l | 25.25 | 0.83 | 12,345 | 61 |" in card.text
    assert "![preview](preview.png)" in card.text and "(`splats.ply`)" in card.text
    assert "antialiased" not in card.text and "antialiased" not in cards.splat_card(
        {**results, "rasterize_mode": "classic"}, "me/splats").text
    antialiased = cards.splat_card({**results, "rasterize_mode": "antialiased"}, "me/splats", ply="splats.ply")
    assert 'Trained antialiased (gsplat\'s `rasterize_mode="antialiased"`' in antialiased.text
    assert "pose_opt" not in card.text and "pose_opt" not in cards.splat_card({**results, "pose_opt": False}, "me/splats").text
    refined = cards.splat_card({**results, "pose_opt": True}, "me/splats")
    assert "The training cameras' poses were refined with the splats (gsplat's `pose_opt`)" in refined.text
    assert "corrected `world_to_camera` pose (in the splats' frame), which" in refined.text
    normalised = cards.splat_card({**results, "pose_opt": True}, "me/splats", normalized=True)
    assert "corrected `world_to_camera` pose (in the splats' frame, the\nnormalised one), which" in normalised.text
    measured = cards.splat_card({**results, "eval_ssim_padding": "same"}, "me/splats")
    assert "| strategy | PSNR (dB) | SSIM (3DGS's zero-padded) | Gaussians |" in measured.text
    assert "global-to-local phases" in card.text and "DefaultStrategy" not in card.text
    default = cards.splat_card({**results, "strategy": "default"}, "me/splats", ply="splats.ply")
    assert "DefaultStrategy with a working opacity reset).\nThe repo holds the splats" in default.text
    assert "global-to-local" not in default.text


@pytest.mark.parametrize("revision", ["v1", "main", None])
def test_loading_lines_name_the_branch_pushed_to(revision):
    cards_of_each_kind = {
        'PeftModel.from_pretrained(load_base_model("base")[0], "me/x"': cards.halora_card(
            {"base_model": "base"}, "me/x", revision=revision),
        'GrantGCN.from_pretrained("me/x"': cards.grant_card({}, "me/x", revision=revision),
        'hf_hub_download("me/x", "model.safetensors"': cards.grant_card({}, "me/x", model_class="Net", hub_mixin=False,
                                                                         revision=revision),
        'GaussianModel.from_pretrained("me/x"': cards.splat_card({}, "me/x", revision=revision),
        'load_scene("me/x"': cards.scene_card("me/x", {}, revision=revision),
    }
    named = ', revision="v1")' if revision == "v1" else ")"  # main is what a plain load reads
    for call, card in cards_of_each_kind.items():
        assert call + named in card.text, call


def test_scene_card_keeps_the_dataset_configs():
    configs = [{"config_name": "views", "data_files": [{"split": "train", "path": "views/train-*"}]},
               {"config_name": "points", "data_files": [{"split": "train", "path": "points/train-*"}]}]
    card = cards.scene_card("me/scene", {"train views": 24, "points": 2000}, {"configs": configs, "tags": ["x"]})
    data = DatasetCard(str(card)).data
    assert data.configs == configs
    assert {"x", "gaussian-splatting", "hf-eff"} <= set(data.tags)
    assert "| train views | 24 |" in card.text and 'load_scene("me/scene")' in card.text


def test_non_finite_metric_is_refused_by_name():
    with pytest.raises(ValueError, match="eval_psnr is nan"):
        cards.splat_card({"eval_psnr": float("nan")}, "me/splats")


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown artifact kind 'adapter'"):
        cards.template_path("adapter")


def test_mixin_template_renders_without_results():
    """The same text serves as PyTorchModelHubMixin's model_card_template: no results there."""
    for kind in ("grant_model", "splat_model"):
        card = ModelCard.from_template(ModelCardData(library_name="hf-eff"),
                                       template_str=cards.model_card_template(kind))
        assert "## How to load" in card.text and "<repo_id>" in card.text
        assert "|---|" not in card.text and "## Time to target" not in card.text


def test_templates_are_found_in_a_wheel_layout(tmp_path, monkeypatch):
    """In a wheel, pyproject force-includes model_cards/ as hf_eff/_model_cards."""
    package = tmp_path / "site-packages" / "hf_eff"
    (package / "hub").mkdir(parents=True)
    shutil.copy(cards.__file__, package / "hub" / "cards.py")
    shutil.copytree(cards.templates_dir(), package / "_model_cards")
    spec = importlib.util.spec_from_file_location("wheel_cards", package / "hub" / "cards.py")
    wheel_cards = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "wheel_cards", wheel_cards)  # as an import registers it (dataclasses look it up)
    spec.loader.exec_module(wheel_cards)
    assert wheel_cards.templates_dir() == package / "_model_cards"
    assert cards.templates_dir().name == "model_cards"  # this checkout: the repository's folder
    assert sorted(p.stem for p in wheel_cards.templates_dir().glob("*.md")) == sorted(cards.KINDS)


@pytest.mark.parametrize(("kind", "load_line"), [
    ("grant_model", 'model = GrantGCN.from_pretrained("me/model")'),
    ("splat_model", 'splats = GaussianModel.from_pretrained("me/model")'),
])
def test_mixin_classes_write_the_hf_eff_card(kind, load_line):
    from hf_eff import GaussianModel, GrantGCN

    cls = {"grant_model": GrantGCN, "splat_model": GaussianModel}[kind]
    assert cls._hub_mixin_info.model_card_template == cards.model_card_template(kind)
    model = GrantGCN(4, 1) if cls is GrantGCN else GaussianModel(sh_degree=0, num_gaussians=2)
    card = model.generate_model_card(repo_id="me/model")
    assert card.data.library_name == "hf-eff" and load_line in card.text


def test_trainer_card_ignores_results_an_earlier_run_left_in_output_dir(tmp_path):
    from hf_eff.grant import (
        GrantGCN,
        GraNTTrainer,
        GraNTTrainingArguments,
        generate_graphon_dataset,
    )

    graphs = generate_graphon_dataset("regression", 12, 4, 6, seed=7)
    (tmp_path / "all_results.json").write_text(json.dumps({"eval_mae": 123.25, "teacher": "stale"}))
    args = GraNTTrainingArguments(output_dir=str(tmp_path), task="node_regression", num_train_epochs=1, report_to="none",
                                  per_device_train_batch_size=4, use_cpu=True, save_strategy="no")
    trainer = GraNTTrainer(model=GrantGCN(40, 1, hidden_channels=4, level="node"), args=args, train_dataset=graphs)
    trainer.train()
    fresh = trainer.evaluate(graphs)["eval_mae"]
    trainer.create_model_card()  # as push_to_hub from a user's own script: no save_metrics call
    card = (tmp_path / "README.md").read_text()
    assert "123.25" not in card and "stale" not in card and cards._fmt(fresh) in card
    trainer.save_metrics("train", {"teacher": "grant"})  # what this run saves does reach the card
    trainer.create_model_card()
    assert "`grant`" in (tmp_path / "README.md").read_text()


def test_grant_card_names_its_targets_and_classes():
    card = cards.grant_card({"eval_roc_auc": 0.9, "target_columns": ["solubility class"],
                             "class_names": ["high", "low", "medium"]}, "me/gcn").text
    assert "Targets: `solubility class`." in card and "Classes (output i is the i-th): `high`, `low`, `medium`" in card
    assert "Targets:" not in cards.grant_card({"eval_mae": 0.3}, "me/gcn").text


@pytest.mark.parametrize("name", ["./mols.csv", "data/mols.csv", "mols.csv", "~/data/mols", "../scenes/garden", "a/b/c"])
def test_relative_local_paths_are_not_published_as_hub_ids(name):
    card = ModelCard(str(cards.grant_card({"eval_mae": 0.3, "dataset_name": name}, "me/gcn")))
    adapter = ModelCard(str(cards.halora_card({**HALORA_RESULTS, "base_model": name}, "me/adapter")))
    assert card.data.datasets is None and card.data.eval_results[0].dataset_type == "local"
    assert adapter.data.base_model is None
    if "/" in name:  # a path never shows; a bare file name may
        assert name not in str(card) and name not in str(adapter)


@pytest.mark.parametrize("path", [r"C:\Users\alice\data\mols.csv", r"\\fileserver\alice\mols.csv",
                                  r"data\alice\mols.csv", "C:/Users/alice/mols.csv"])
def test_windows_paths_are_named_by_their_last_part_on_every_os(path):
    # a run recorded on Windows and pushed from Linux, where Path(path).name is the whole string
    assert cards.shown_name(path) == "mols.csv"
    card = ModelCard(str(cards.grant_card({"eval_mae": 0.3, "dataset_name": path}, "me/gcn")))
    assert "alice" not in str(card) and card.data.eval_results[0].dataset_name == "local data (mols.csv)"
    adapter = cards.halora_card({**HALORA_RESULTS, "base_model": path.replace("mols.csv", "llama-3\\")}, "me/adapter")
    assert "alice" not in adapter.text and 'load_base_model("/path/to/llama-3")' in adapter.text


@pytest.mark.parametrize("path", [r"\\fileserver\alice", "\\\\fileserver\\alice\\", r"\\?\UNC\fileserver\alice"])
def test_a_bare_windows_network_share_is_named_by_its_share_not_its_server(path):
    assert cards.shown_name(path) == "alice"  # as //fileserver/alice is
    card = ModelCard(str(cards.grant_card({"eval_mae": 0.3, "dataset_name": path}, "me/gcn")))
    assert "fileserver" not in str(card) and card.data.eval_results[0].dataset_name == "local data (alice)"


def _loading_lines(card) -> list[str]:
    return card.text.split("```python\n")[1].split("```")[0].strip().splitlines()


@pytest.mark.parametrize(("task_type", "pipeline_tag", "auto_class"), [
    ("SEQ_CLS", "text-classification", "AutoModelForSequenceClassification"),
    ("TOKEN_CLS", "token-classification", "AutoModelForTokenClassification"),
    ("SEQ_2_SEQ_LM", None, "AutoModelForSeq2SeqLM"),
    ("QUESTION_ANS", "question-answering", "AutoModelForQuestionAnswering"),
    ("FEATURE_EXTRACTION", "feature-extraction", "AutoModel"),
])
def test_adapter_card_follows_the_peft_task_type(task_type, pipeline_tag, auto_class):
    results = {"eval_f1_sigma_0_mean": 0.8, "eval_loss_sigma_0_mean": 0.4, "dataset_name": "user/sentiment"}
    card = cards.halora_card(results, "me/adapter", base_model="FacebookAI/roberta-base", task_type=task_type)
    data = ModelCard(str(card)).data
    assert data.pipeline_tag == pipeline_tag
    assert {r.task_type for r in data.eval_results} == {pipeline_tag or "other"}
    assert _loading_lines(card) == [
        f"import hf_eff; from peft import PeftModel; from transformers import {auto_class}",
        f'model = PeftModel.from_pretrained({auto_class}.from_pretrained("FacebookAI/roberta-base"), "me/adapter")',
    ]
    assert "load_base_model" not in card.text
    assert ("pass it `num_labels`" in card.text) == (task_type in ("SEQ_CLS", "TOKEN_CLS"))


def test_causal_adapter_is_scored_as_multiple_choice_only_for_the_examples_runs():
    example = ModelCard(str(cards.halora_card(HALORA_RESULTS, "me/a", task_type="CAUSAL_LM"))).data
    own = {k: v for k, v in HALORA_RESULTS.items() if k != "eval_questions"}
    own_run = ModelCard(str(cards.halora_card(own, "me/a", task_type="CAUSAL_LM"))).data
    assert example.pipeline_tag == own_run.pipeline_tag == "text-generation"
    assert {r.task_type for r in example.eval_results} == {"multiple-choice"}
    assert {r.task_type for r in own_run.eval_results} == {"text-generation"}


def test_adapter_without_a_task_type_loads_its_base_with_the_class_peft_recorded():
    mapping = {"base_model_class": "LlamaForCausalLM", "parent_library": "transformers.models.llama.modeling_llama"}
    card = cards.halora_card(HALORA_RESULTS, "me/a", base_model="me/llama", task_type=None, auto_mapping=mapping)
    assert ModelCard(str(card)).data.pipeline_tag is None
    assert 'LlamaForCausalLM.from_pretrained("me/llama")' in card.text
    assert "AutoModel.from_pretrained" in cards.halora_card(HALORA_RESULTS, "me/a", task_type=None).text
    with pytest.raises(ValueError, match="task_type 'SEQ_CLASSIFICATION' is not a PEFT task type"):
        cards.halora_card(HALORA_RESULTS, "me/a", task_type="SEQ_CLASSIFICATION")


def test_builtin_base_of_a_classifier_loads_from_hf_eff_converted_copy():
    results = {**HALORA_RESULTS, "base_model": "smollm2-135m-instruct"}
    lines = _loading_lines(cards.halora_card(results, "me/a", task_type="SEQ_CLS"))
    assert lines[0].startswith("from hf_eff.halora.base_model import ensure_converted_smollm2;")
    assert "AutoModelForSequenceClassification.from_pretrained(ensure_converted_smollm2())" in lines[1]


def test_noise_table_heading_names_the_metrics_it_shows():
    card = cards.halora_card({"eval_f1_sigma_0_mean": 0.8, "eval_loss_sigma_0_mean": 0.4}, "me/a")
    assert "## f1 and loss under RRAM weight noise" in card.text and "Accuracy" not in card.text
    assert "## accuracy under RRAM weight noise" in cards.halora_card(HALORA_RESULTS, "me/a").text


def test_dataset_given_to_the_card_names_the_eval_results_and_the_metadata():
    given = ModelCard(str(cards.halora_card(HALORA_RESULTS, "me/a", dataset="user/sentiment"))).data
    assert given.datasets == ["user/sentiment"]
    assert {(r.dataset_name, r.dataset_type) for r in given.eval_results} == {("user/sentiment", "user/sentiment")}
    bare = ModelCard(str(cards.grant_card({"eval_mae": 0.3, "dataset_name": "qm9"}, "me/gcn", dataset="imdb"))).data
    assert bare.datasets == ["imdb"]  # a bare name a caller gives is a (canonical) Hub id
    several = ModelCard(str(cards.splat_card({"eval_psnr": 25.0}, "me/s", dataset=["me/a", "me/b"]))).data
    assert several.datasets == ["me/a", "me/b"] and [r.dataset_name for r in several.eval_results] == ["me/a", "me/b"]


def test_no_dataset_means_no_model_index_rather_than_a_guessed_one():
    plain = {k: v for k, v in HALORA_RESULTS.items() if k != "dataset_name"}
    for card in (cards.halora_card(plain, "me/a"), cards.grant_card({"eval_mae": 0.3}, "me/g"),
                 cards.splat_card({"eval_psnr": 25.0}, "me/s")):
        data = ModelCard(str(card)).data
        assert data.eval_results is None and data.datasets is None
        assert not any(guess in str(card) for guess in ("hf-eff/builtin", "hf-eff/procedural", "built-in graphs"))
        assert "|---|" in card.text  # the measured tables stay
    # the same heading with or without model-index
    assert cards.halora_card(plain, "me/a").text.lstrip().startswith("# a\n")
    assert cards.halora_card(HALORA_RESULTS, "me/a").text.lstrip().startswith("# a\n")


def test_license_is_stated_only_when_given_or_known_for_the_builtin_base():
    hub_base = cards.halora_card(HALORA_RESULTS, "me/a", base_model="me/llama")
    builtin = cards.halora_card({**HALORA_RESULTS, "base_model": "smollm2-135m-instruct"}, "me/a")
    given = cards.halora_card(HALORA_RESULTS, "me/a", base_model="me/llama", license="mit")
    assert [ModelCard(str(c)).data.license for c in (hub_base, builtin, given)] == [None, "apache-2.0", "mit"]
    assert ModelCard(str(cards.grant_card({"eval_mae": 0.3}, "me/g"))).data.license is None
    assert ModelCard(str(cards.splat_card({"eval_psnr": 25.0}, "me/s", license="cc-by-4.0"))).data.license == "cc-by-4.0"
    assert DatasetCard(str(cards.scene_card("me/scene", {}))).data.license is None
    assert DatasetCard(str(cards.scene_card("me/scene", {}, license="cc0-1.0"))).data.license == "cc0-1.0"


def test_adapter_card_from_a_given_config_when_none_is_saved(tmp_path):
    config = {"peft_type": "HALORA", "task_type": "SEQ_CLS", "base_model_name_or_path": "FacebookAI/roberta-base"}
    card = push.build_card("halora_adapter", tmp_path, "me/a", HALORA_RESULTS, adapter_config=config,
                           base_model="me/roberta-tuned", license="mit")
    data = ModelCard(str(card)).data
    assert (data.base_model, data.pipeline_tag, data.license) == ("me/roberta-tuned", "text-classification", "mit")
    assert "base_model:adapter:me/roberta-tuned" in data.tags and "roberta-base" not in str(card)
    with pytest.raises(FileNotFoundError, match="adapter_config.json is missing and no adapter config was given"):
        push.build_card("halora_adapter", tmp_path, "me/a", HALORA_RESULTS)


@pytest.mark.parametrize(("hub_mixin", "lines"), [
    (False, ["from huggingface_hub import hf_hub_download; from safetensors.torch import load_model",
             "model = MyGIN(...)  # built as for training",
             'load_model(model, hf_hub_download("me/gin", "model.safetensors"))']),
    (True, ['model = MyGIN.from_pretrained("me/gin")']),
])
def test_grant_card_of_a_users_own_model_loads_it_with_their_class(hub_mixin, lines):
    card = cards.grant_card({"eval_mae": 0.3}, "me/gin", model_class="MyGIN", hub_mixin=hub_mixin)
    assert _loading_lines(card) == lines
    assert "GrantGCN" not in card.text and "`MyGIN` is not part of hf-eff" in card.text


def test_paper_task_of_the_example_names_the_hub_dataset_it_is_read_from():
    card = cards.halora_card({**HALORA_RESULTS, "dataset_name": "arc_easy"}, "me/a")
    data = ModelCard(str(card)).data
    assert data.datasets == ["allenai/ai2_arc"]
    assert {(r.dataset_name, r.dataset_type, r.dataset_config) for r in data.eval_results} == {
        ("arc_easy", "allenai/ai2_arc", "ARC-Easy")}
    builtin = ModelCard(str(cards.halora_card(HALORA_RESULTS, "me/a"))).data  # "arithmetic": generated by hf-eff
    assert builtin.datasets is None and builtin.eval_results[0].dataset_type == "arithmetic"


def test_a_bare_hub_dataset_of_the_example_is_carded_as_a_hub_id_with_its_config_and_revision():
    results = {**HALORA_RESULTS, "dataset_name": "commonsense_qa", "dataset_config_name": "main",
               "dataset_revision": "v2", "data_split": {"dataset": "commonsense_qa", "data_seed": 0}}
    data = ModelCard(str(cards.halora_card(results, "me/a"))).data
    assert data.datasets == ["commonsense_qa"]
    assert [(r.dataset_name, r.dataset_type, r.dataset_config, r.dataset_revision) for r in data.eval_results][0] == (
        "commonsense_qa", "commonsense_qa", "main", "v2")
    local = {**results, "dataset_name": "/data/mine.jsonl", "data_split": {"dataset": "/data/mine.jsonl"}}
    assert ModelCard(str(cards.halora_card(local, "me/a"))).data.eval_results[0].dataset_type == "local"


def test_a_bare_hub_dataset_of_the_grant_example_is_carded_as_a_hub_id_with_its_revision():
    results = {"eval_mae": 0.3, "dataset_name": "mols", "dataset_revision": "v2", "dataset_from_hub": True}
    data = ModelCard(str(cards.grant_card(results, "me/gcn"))).data
    assert data.datasets == ["mols"]
    assert [(r.dataset_name, r.dataset_type, r.dataset_revision) for r in data.eval_results][0] == ("mols", "mols", "v2")
    builtin = ModelCard(str(cards.grant_card({"eval_mae": 0.3, "dataset_name": "mols"}, "me/gcn"))).data
    assert builtin.datasets is None and builtin.eval_results[0].dataset_type == "mols"


def test_a_relative_local_folder_of_the_grant_example_is_carded_as_local_data_not_a_hub_id():
    results = {"eval_mae": 0.3, "dataset_name": "data/graphs", "dataset_from_hub": False}
    card = cards.grant_card(results, "me/gcn")
    assert card.data.datasets is None and "data/graphs" not in card.text
    assert [(r.dataset_name, r.dataset_type) for r in card.data.eval_results] == [("local data (graphs)", "local")]
    named = ModelCard(str(cards.grant_card(results, "me/gcn", dataset="me/graphs"))).data  # a caller's name wins
    assert named.datasets == ["me/graphs"]


def test_a_note_of_no_results_stands_in_each_model_card_before_its_loading_lines():
    note = "No evaluation results were recorded."
    for card in (cards.halora_card({}, "me/a", no_results_note=note), cards.grant_card({}, "me/g", no_results_note=note),
                 cards.splat_card({}, "me/s", no_results_note=note)):
        assert f"\n\n{note}\n\n## How to load\n" in card.text
        assert note not in cards.grant_card({}, "me/g").text


def test_transformers_dataset_arguments_give_hub_ids_shown_names_and_configs(tmp_path):
    datasets = cards.card_datasets(["me/mols", "/data/extra"], dataset=["Molecules", "extra"],
                                   dataset_args=["v2", None])
    data = ModelCard(str(cards.grant_card({"eval_mae": 0.3}, "me/gcn", dataset=datasets))).data
    assert data.datasets == ["me/mols"]  # a local tag stays out of the metadata
    shown = {(r.dataset_name, r.dataset_type, r.dataset_config) for r in data.eval_results}
    assert shown == {("Molecules", "me/mols", "v2"), ("local data (extra)", "local", None)}
    # as transformers: a tag without a name or config has none; more entries than tags are refused
    assert cards.card_datasets(["me/a", "me/b"], dataset="A", dataset_args="x") == [
        cards.CardDataset("me/a", "A", "x"), cards.CardDataset("me/b")]
    with pytest.raises(ValueError, match="dataset_args has 2 entries for 1 dataset_tags"):
        cards.card_datasets("me/a", dataset_args=["x", "y"])
    # a shown name that is a local path (here or not) is named by its last part only; free text is kept
    long_text = "A long descriptive name " * 12
    shown = {str(tmp_path): tmp_path.name, "/home/alice/private/mols_v2": "mols_v2", "~/mols": "mols",
             long_text: long_text, "Molecules v2": "Molecules v2"}
    for name, expected in shown.items():
        data = ModelCard(str(cards.grant_card({"eval_mae": 0.3}, "me/gcn",
                                              dataset=cards.card_datasets("me/mols", dataset=name)))).data
        assert data.eval_results[0].dataset_name == expected


@pytest.mark.parametrize("teacher", ["grant", "random"])
def test_grant_card_of_a_start_ratio_1_run_says_it_trained_on_every_graph(teacher):
    # start_ratio 1 teaches every graph at every epoch: the run is full-data training, whatever the teacher
    card = cards.grant_card({"eval_mae": 0.3, "teacher": teacher, "start_ratio": 1.0}, "me/gcn").text
    assert f"(teacher: `{teacher}`)." in card
    assert (f"trained on every graph at every epoch: `start_ratio` 1 leaves the teacher `{teacher}` nothing to\n"
            "select, so this is full-data training, as with teacher `none`") in card
    for selecting in ({"teacher": teacher, "start_ratio": 0.05}, {"teacher": "none", "start_ratio": 1.0}, {"teacher": teacher}):
        assert "every graph at every epoch" not in cards.grant_card({"eval_mae": 0.3, **selecting}, "me/gcn").text


def test_grant_card_of_a_fine_tuned_model_names_the_model_it_started_from():
    hub = cards.grant_card({"eval_mae": 0.3, "base_model": "me/gcn-base"}, "me/gcn")
    assert hub.data.base_model == "me/gcn-base"
    assert ("It is a fine-tuned version of [`me/gcn-base`](https://huggingface.co/me/gcn-base):\n"
            "the times and metrics below are the fine-tuning's.") in hub.text
    pinned = cards.grant_card({"eval_mae": 0.3, "base_model": "me/gcn-base", "model_revision": "v2"}, "me/gcn")
    assert "fine-tuned version of [`me/gcn-base`](https://huggingface.co/me/gcn-base) (revision `v2`):" in pinned.text
    local = cards.grant_card({"eval_mae": 0.3, "base_model": "/runs/gcn-qm9"}, "me/gcn")
    assert local.data.base_model is None and "fine-tuned version of a local model (`gcn-qm9`)" in local.text
    assert "/runs" not in local.text and "fine-tuned" not in cards.grant_card({"eval_mae": 0.3}, "me/gcn").text


def test_training_noise_is_described_from_the_adapter_config():
    assert cards.training_noise_description({"noise_sigma": 0.02, "noise_mode": "multiplicative",
                                             "noise_sigma_sampling": "uniform", "noise_resample_steps": 4,
                                             "noise_warmup_steps": 50}) == (
        "multiplicative, a level drawn from U(0, 0.02) at each draw; a new draw every 4 optimizer steps, one in all for "
        "a run of at most 4 steps; ramped in over the first 50 steps")
    assert cards.training_noise_description({"r": 8}) is None  # a LoRA config
    assert "(multiplicative, sigma = 0.01" in cards.halora_card(HALORA_RESULTS, "me/h", training_noise=(
        cards.training_noise_description({"noise_sigma": 0.01, "noise_mode": "multiplicative"}))).text


def test_grant_card_of_a_run_without_test_metrics_has_no_empty_test_column():
    text = cards.grant_card({"eval_mae": 0.3, "eval_loss": 0.1, "task": "graph_regression"}, "me/gcn").text
    assert "| metric | validation |\n" in text and "| mae | 0.3 |" in text and "test" not in text.split("## How")[0]
