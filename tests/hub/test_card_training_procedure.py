"""A trainer's card has a "Training procedure" section with the run's own settings, read from its arguments (and an
adapter's config), and the hf-eff version that trained it; `hf-eff push` of a folder, which knows no arguments, has
none."""

import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard

import hf_eff
from hf_eff.hub.push import build_card


def _procedure(readme) -> dict[str, str]:
    """{setting: value} of the card's Training procedure table; asserts the version line under it."""
    text = ModelCard.load(readme).text
    section = text.split("## Training procedure\n\n")[1].split("\n## ")[0]
    assert f"Trained with hf-eff {hf_eff.__version__}." in section and "pip install" not in section
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| `")]
    return {name.strip().strip("`"): value.strip() for name, value in rows}


def test_grant_trainer_card_lists_the_runs_arguments_and_teaching_schedule(tmp_path):
    from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments

    graphs = Dataset.from_list([{"x": [[float(i)], [1.0]], "edge_index": [[0], [1]], "y": [float(i)], "num_nodes": 2}
                                for i in range(8)])
    args = GraNTTrainingArguments(output_dir=str(tmp_path), task="graph_regression", num_train_epochs=2,
                                  learning_rate=0.004, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                                  seed=7, lr_scheduler_type="cosine", start_ratio=0.25, variant="single",
                                  ratio_schedule="linear", reselect_schedule="constant", reselect_interval_start=1,
                                  report_to=[], use_cpu=True, save_strategy="no")
    trainer = GraNTTrainer(model=GrantGCN(1, 1, hidden_channels=4), args=args, train_dataset=graphs)
    trainer.train()
    trainer.create_model_card()
    settings = _procedure(tmp_path / "README.md")
    assert {name: settings[name] for name in ("learning_rate", "lr_scheduler_type", "per_device_train_batch_size",
                                              "gradient_accumulation_steps", "total_train_batch_size", "seed",
                                              "num_train_epochs", "teacher", "variant", "start_ratio",
                                              "ratio_schedule", "reselect_schedule", "reselect_interval_start")} == {
        "learning_rate": "0.004", "lr_scheduler_type": "cosine", "per_device_train_batch_size": "2",
        "gradient_accumulation_steps": "2", "total_train_batch_size": "4", "seed": "7", "num_train_epochs": "2",
        "teacher": "grant", "variant": "single", "start_ratio": "0.25", "ratio_schedule": "linear",
        "reselect_schedule": "constant", "reselect_interval_start": "1"}
    assert settings["global_step"] == str(trainer.state.global_step) != "0"


def test_halora_trainer_card_lists_the_adapters_noise_and_regulariser(tmp_path):
    from peft import get_peft_model
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from hf_eff.halora import HaLoRAConfig, HaLoRATrainer, HaLoRATrainingArguments

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, num_labels=3, max_position_embeddings=32)
    model = get_peft_model(RobertaForSequenceClassification(config),
                           HaLoRAConfig(task_type="SEQ_CLS", r=2, target_modules=["query"], noise_sigma=0.03,
                                        noise_resample_steps=5, reg_weight=0.2, reg_norm="frobenius"))
    data = Dataset.from_dict({"input_ids": [[0, 5 + i % 7, 9, 2] for i in range(8)], "labels": [i % 3 for i in range(8)]})
    args = HaLoRATrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3,
                                   learning_rate=3e-4, seed=11, report_to=[], eval_sigmas=[0], eval_noise_seeds=1,
                                   use_cpu=True, save_strategy="no")
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    trainer.create_model_card()
    settings = _procedure(tmp_path / "README.md")
    assert {name: settings[name] for name in ("learning_rate", "lr_scheduler_type", "per_device_train_batch_size", "seed",
                                              "max_steps", "global_step", "r", "noise_sigma",
                                              "noise_resample_steps", "reg_weight", "reg_norm")} == {
        "learning_rate": "0.0003", "lr_scheduler_type": "linear", "per_device_train_batch_size": "4", "seed": "11",
        "max_steps": "3", "global_step": "3", "r": "2", "noise_sigma": "0.03", "noise_resample_steps": "5",
        "reg_weight": "0.2", "reg_norm": "frobenius"}
    assert "total_train_batch_size" not in settings  # one process, no accumulation: the batch size says it


@pytest.mark.parametrize(("settings", "strategy"), [({}, "g2l"), ({"c2f": False}, "g2l (no c2f)"),
                                                    ({"strategy": "default"}, "default")])
def test_splat_trainer_card_lists_its_learning_rates_and_strategy(tmp_path, settings, strategy):
    from hf_eff import GaussianModel, make_procedural_scene
    from hf_eff.splat import SplatTrainer, SplatTrainingArguments

    scene = make_procedural_scene(seed=1, num_train=2, num_test=1, width=16, height=16, num_objects=1,
                                  num_points=30, supersample=1)
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True, seed=3,
                                  means_lr=2e-4, **settings)
    trainer = SplatTrainer(model=GaussianModel.from_points(*scene.point_arrays(), sh_degree=1), args=args,
                           train_dataset=scene.views["train"])
    trainer.create_model_card()
    procedure = _procedure(tmp_path / "README.md")
    assert (procedure["strategy"], procedure["means_lr"], procedure["seed"], procedure["max_steps"]) == (
        strategy, "0.0002", "3", "2")
    assert "learning_rate" not in procedure  # the splats' rates are per parameter group


def test_hf_eff_push_of_a_folder_has_no_training_procedure(tmp_path):
    from hf_eff import GrantGCN

    GrantGCN(4, 1, hidden_channels=4).save_pretrained(tmp_path)
    assert "## Training procedure" not in build_card("grant_model", tmp_path, "me/g").text
