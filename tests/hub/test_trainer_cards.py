"""`HubCardTrainerMixin.create_model_card`: the card of a user's own run, before or after `save_model`,
whose loading lines load what the trainer trained."""

import huggingface_hub
import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard
from torch import nn

import hf_eff  # noqa: F401  (registers the HALORA peft_type)


def _loading_code(readme) -> str:
    return ModelCard.load(readme).text.split("```python\n")[1].split("```")[0]


@pytest.fixture
def seq_cls_run(tmp_path):
    """A SEQ_CLS HaLoRA adapter on a tiny local RoBERTa, trained two steps by HaLoRATrainer."""
    from peft import get_peft_model
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from hf_eff.halora import HaLoRAConfig, HaLoRATrainer, HaLoRATrainingArguments

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, num_labels=3, max_position_embeddings=32)
    base_dir = tmp_path / "tiny-roberta"
    RobertaForSequenceClassification(config).save_pretrained(base_dir)
    model = get_peft_model(RobertaForSequenceClassification.from_pretrained(base_dir),
                           HaLoRAConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"]))
    data = Dataset.from_dict({"input_ids": [[0, 5 + i % 7, 9, 2] for i in range(8)], "labels": [i % 3 for i in range(8)]})
    args = HaLoRATrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2,
                                   report_to=[], eval_sigmas=[0, 0.02], eval_noise_seeds=1, use_cpu=True,
                                   save_strategy="no")
    trainer = HaLoRATrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                            compute_metrics=lambda p: {"f1": 0.5})
    trainer.train()
    trainer.evaluate()
    return trainer, base_dir, tmp_path / "out"


def test_adapter_card_before_save_model_then_its_lines_load_the_classifier(seq_cls_run):
    from peft import PeftModelForSequenceClassification
    from transformers import RobertaForSequenceClassification

    trainer, base_dir, out = seq_cls_run
    assert not (out / "adapter_config.json").exists()
    trainer.create_model_card(dataset="user/sentiment")  # as TRL's trainers do at each checkpoint, before saving
    data = ModelCard.load(out / "README.md").data
    assert data.pipeline_tag == "text-classification" and data.datasets == ["user/sentiment"]
    assert {(r.task_type, r.dataset_name) for r in data.eval_results} == {("text-classification", "user/sentiment")}
    assert {r.metric_type for r in data.eval_results} == {"f1", "loss"}
    # transformers' own arguments: Hub ids, their shown names and configs
    trainer.create_model_card(dataset_tags="user/sentiment", dataset="Sentiment", dataset_args="v2")
    data = ModelCard.load(out / "README.md").data
    assert data.datasets == ["user/sentiment"]
    assert {(r.dataset_name, r.dataset_type, r.dataset_config) for r in data.eval_results} == {
        ("Sentiment", "user/sentiment", "v2")}
    trainer.create_model_card(dataset="user/sentiment", dataset_args="v3")  # dataset alone: the Hub ids
    assert {r.dataset_config for r in ModelCard.load(out / "README.md").data.eval_results} == {"v3"}
    with pytest.raises(ValueError, match="dataset_args has 2 entries for 1 dataset:"):
        trainer.create_model_card(dataset="user/sentiment", dataset_args=["v2", "v3"])

    trainer.save_model()
    trainer.args.hub_revision = "v1"  # a push to a branch: the lines load from it
    trainer.create_model_card()
    assert f'"{out.name}", revision="v1")' in _loading_code(out / "README.md")
    trainer.args.hub_revision = None
    trainer.create_model_card(dataset="user/sentiment")
    code = _loading_code(out / "README.md")
    assert "AutoModelForSequenceClassification" in code and "load_base_model" not in code
    # The lines as a user runs them, with this machine's copies of the base and the adapter repo.
    namespace: dict = {}
    exec(code.replace('"/path/to/tiny-roberta"', f'"{base_dir}"').replace('"out"', f'"{out}"'), namespace)
    loaded = namespace["model"].eval()
    assert isinstance(loaded, PeftModelForSequenceClassification)
    assert isinstance(loaded.get_base_model(), RobertaForSequenceClassification)
    trained = trainer.model.eval()
    inputs = torch.tensor([[0, 7, 9, 2]])
    torch.testing.assert_close(loaded(input_ids=inputs).logits, trained(input_ids=inputs).logits)


def test_adapter_card_of_a_users_run_names_the_evaluation_noise_of_its_arguments(seq_cls_run):
    trainer, _, out = seq_cls_run
    trainer.args.eval_noise_tile_size = 16  # the table's noise is the evaluation's, not the adapter's (64)
    trainer.create_model_card()
    text = ModelCard.load(out / "README.md").text
    assert "of each 16x16 tile" in text and "One noise seed per sigma (no spread)" in text


def test_finetuned_from_and_license_reach_the_metadata_tags_and_text(seq_cls_run):
    trainer, _, out = seq_cls_run
    trainer.create_model_card(finetuned_from="FacebookAI/roberta-base", license="mit", tags="sentiment")
    card = ModelCard.load(out / "README.md")
    assert (card.data.base_model, card.data.license) == ("FacebookAI/roberta-base", "mit")
    assert {"base_model:adapter:FacebookAI/roberta-base", "sentiment", "halora"} <= set(card.data.tags)
    assert "for [`FacebookAI/roberta-base`]" in card.text and "tiny-roberta" not in card.text
    assert 'AutoModelForSequenceClassification.from_pretrained("FacebookAI/roberta-base")' in card.text
    trainer.create_model_card()
    assert ModelCard.load(out / "README.md").data.license is None  # a local base: no license known


class MyGIN(nn.Module):
    """A user's own graph model: a plain nn.Module, saved as model.safetensors only."""

    def __init__(self, channels: int):
        super().__init__()
        from torch_geometric.nn import GINConv

        self.conv = GINConv(nn.Linear(channels, 8))
        self.out = nn.Linear(8, 1)

    def forward(self, x, edge_index, batch):
        from torch_geometric.nn import global_add_pool

        return self.out(global_add_pool(self.conv(x, edge_index), batch))


def test_grant_card_of_a_users_model_loads_its_weights_into_their_class(tmp_path, monkeypatch):
    from hf_eff.grant import GraNTTrainer, GraNTTrainingArguments

    torch.manual_seed(0)
    channels = 5
    graphs = Dataset.from_list([{"x": torch.randn(4, channels).tolist(), "edge_index": [[0, 1, 2], [1, 2, 3]],
                                 "y": [float(i % 3)], "num_nodes": 4} for i in range(12)])
    out = tmp_path / "gin"
    args = GraNTTrainingArguments(output_dir=str(out), task="graph_regression", num_train_epochs=1, report_to=[],
                                  per_device_train_batch_size=4, use_cpu=True, save_strategy="no")
    trainer = GraNTTrainer(model=MyGIN(channels), args=args, train_dataset=graphs, eval_dataset=graphs)
    trainer.train()
    trainer.evaluate()
    trainer.create_model_card(dataset="me/my-graphs")  # before save_model: nothing read from the folder
    trainer.save_model()
    card = ModelCard.load(out / "README.md")
    assert {r.dataset_name for r in card.data.eval_results} == {"me/my-graphs"}
    assert "(teacher: `grant`)" in card.text  # from the arguments: no save_metrics named it
    code = _loading_code(out / "README.md")
    assert "GrantGCN" not in code
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo_id, filename: str(out / filename))
    namespace = {"MyGIN": MyGIN}
    exec(code.replace("MyGIN(...)", f"MyGIN({channels})"), namespace)
    for loaded, trained in zip(namespace["model"].state_dict().values(), trainer.model.state_dict().values()):
        torch.testing.assert_close(loaded, trained)


def test_card_of_a_compiled_model_names_its_class_and_takes_transformers_card_arguments(tmp_path):
    from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments

    graphs = Dataset.from_list([{"x": torch.randn(3, 4).tolist(), "edge_index": [[0, 1], [1, 2]], "y": [1.0],
                                 "num_nodes": 3} for _ in range(4)])
    out = tmp_path / "compiled"
    args = GraNTTrainingArguments(output_dir=str(out), task="graph_regression", teacher="none", num_train_epochs=1,
                                  report_to=[], use_cpu=True, save_strategy="no")
    trainer = GraNTTrainer(model=torch.compile(MyGIN(4), backend="eager"), args=args, train_dataset=graphs)
    trainer.train()
    # the keywords transformers' push_to_hub passes on
    trainer.create_model_card(dataset_tags="me/graphs", tasks="graph-ml", dataset_args="default")
    card = ModelCard.load(out / "README.md")
    assert "MyGIN" in _loading_code(out / "README.md") and "OptimizedModule" not in card.text
    assert card.data.datasets == ["me/graphs"]
    trainer.save_model()  # the user's module's keys, which the card's load_model(MyGIN(...), ...) reads
    from safetensors.torch import load_model

    load_model(MyGIN(4), out / "model.safetensors")
    compiled_gcn = GraNTTrainer(model=torch.compile(GrantGCN(4, 1, hidden_channels=8), backend="eager"), args=args,
                                train_dataset=graphs)
    compiled_gcn.save_model(str(tmp_path / "gcn"))
    assert GrantGCN.from_pretrained(tmp_path / "gcn").head.out_features == 1


def test_splat_card_of_a_users_run_names_the_ssim_convention_and_strategy_of_its_arguments(tmp_path):
    from hf_eff import GaussianModel, make_procedural_scene
    from hf_eff.splat import SplatTrainer, SplatTrainingArguments

    scene = make_procedural_scene(seed=1, num_train=3, num_test=1, width=16, height=16, num_objects=1,
                                  num_points=30, supersample=1)
    out = tmp_path / "splats"
    args = SplatTrainingArguments(output_dir=str(out), max_steps=2, refine_every=2, refine_start_steps=1,
                                  reset_every=100, eval_render_images=0, report_to=[], use_cpu=True,
                                  save_strategy="no", eval_ssim_padding="valid", strategy="default")
    trainer = SplatTrainer(model=GaussianModel.from_points(*scene.point_arrays(), sh_degree=1), args=args,
                           train_dataset=scene.views["train"], eval_dataset=scene.views["test"])
    trainer.train()
    trainer.evaluate()
    trainer.create_model_card(dataset="me/scene")  # no save_metrics: the results are the log history's
    text = ModelCard.load(out / "README.md").text
    assert "| strategy | PSNR (dB) | SSIM (gsplat's interior) |" in text
    assert "(densification: `default`)" in text


@pytest.mark.parametrize(("settings", "custom", "name", "phrase"), [
    ({}, False, "g2l", "prunes by adaptive opacity (Huang, Liu, Wong, arXiv 2507.20239).\nThe repo"),
    (dict(c2f=False), False, "g2l (no c2f)", "this run switched parts off."),
    (dict(g2l=False, adaptive_pruning=False), False, "g2l (no g2l, no adaptive pruning)", "switched parts off."),
    (dict(strategy="default"), False, "default", "gsplat's DefaultStrategy with a working opacity reset"),
    (dict(strategy="default"), True, "DefaultStrategy", "Densified by the user's `DefaultStrategy` strategy."),
])
def test_splat_card_describes_the_strategy_the_run_used(tmp_path, settings, custom, name, phrase):
    from gsplat.strategy import DefaultStrategy

    from hf_eff import GaussianModel, make_procedural_scene
    from hf_eff.splat import SplatTrainer, SplatTrainingArguments

    scene = make_procedural_scene(seed=1, num_train=2, num_test=1, width=16, height=16, num_objects=1,
                                  num_points=30, supersample=1)
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True, **settings)
    trainer = SplatTrainer(model=GaussianModel.from_points(*scene.point_arrays(), sh_degree=1), args=args,
                           train_dataset=scene.views["train"], strategy=DefaultStrategy() if custom else None)
    assert trainer.card_run_settings()["strategy"] == name
    trainer.create_model_card()
    text = ModelCard.load(tmp_path / "README.md").text
    assert f"(densification: `{name}`)" in text and phrase in text
    assert ("global-to-local" in text) == name.startswith("g2l")


def test_card_after_the_best_checkpoint_was_reloaded_reports_its_evaluation(tmp_path):
    from hf_eff import GaussianModel, make_procedural_scene
    from hf_eff.splat import SplatTrainer, SplatTrainingArguments

    scene = make_procedural_scene(seed=1, num_train=2, num_test=1, width=16, height=16, num_objects=1,
                                  num_points=30, supersample=1)
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=8, report_to=[], use_cpu=True,
                                  load_best_model_at_end=True, eval_strategy="steps", save_strategy="steps",
                                  eval_steps=4, save_steps=4)
    trainer = SplatTrainer(model=GaussianModel.from_points(*scene.point_arrays(), sh_degree=1), args=args,
                           train_dataset=scene.views["train"], eval_dataset=scene.views["test"])
    trainer.state.log_history = [{"eval_psnr": 20.0, "step": 4}, {"eval_psnr": 18.0, "step": 8},
                                 {"train_runtime": 1.0, "step": 8}]
    trainer.state.best_global_step = 4

    def card_psnr() -> str:
        trainer.create_model_card()
        return ModelCard.load(tmp_path / "README.md").text.split("| g2l | ")[1].split(" |")[0]

    assert card_psnr() == "20"  # the reloaded best checkpoint's, not the last evaluation's
    trainer.state.log_history.append({"eval_psnr": 20.5, "step": 8})  # evaluate() after training: the model held
    assert card_psnr() == "20.5"


def test_splat_card_of_an_antialiased_run_says_how_to_render_it(tmp_path):
    from hf_eff import GaussianModel, make_procedural_scene
    from hf_eff.splat import SplatTrainer, SplatTrainingArguments

    scene = make_procedural_scene(seed=1, num_train=2, num_test=1, width=16, height=16, num_objects=1,
                                  num_points=30, supersample=1)
    args = SplatTrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True,
                                  rasterize_mode="antialiased")
    trainer = SplatTrainer(model=GaussianModel.from_points(*scene.point_arrays(), sh_degree=1), args=args,
                           train_dataset=scene.views["train"])
    trainer.create_model_card()
    assert "Trained antialiased" in ModelCard.load(tmp_path / "README.md").text


def test_grant_card_of_a_users_start_ratio_1_run_says_it_trained_on_every_graph(tmp_path):
    from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments

    graphs = Dataset.from_list([{"x": [[float(i)], [1.0]], "edge_index": [[0], [1]], "y": [float(i)], "num_nodes": 2}
                                for i in range(8)])
    args = GraNTTrainingArguments(output_dir=str(tmp_path), task="graph_regression", start_ratio=1.0, num_train_epochs=1,
                                  report_to=[], per_device_train_batch_size=4, use_cpu=True, save_strategy="no")
    trainer = GraNTTrainer(model=GrantGCN(1, 1, hidden_channels=4), args=args, train_dataset=graphs, eval_dataset=graphs)
    trainer.train()
    trainer.evaluate()
    trainer.create_model_card()  # no save_metrics: the start_ratio comes from the arguments
    text = ModelCard.load(tmp_path / "README.md").text
    assert "(teacher: `grant`)" in text and "leaves the teacher `grant` nothing to\nselect" in text


def test_model_name_titles_the_card_and_the_training_noise_is_stated(seq_cls_run):
    trainer, _, out = seq_cls_run
    trainer.create_model_card(model_name="Robust sentiment adapter", dataset="user/sentiment")
    card = ModelCard.load(out / "README.md")
    assert card.text.lstrip().startswith("# Robust sentiment adapter\n")
    assert card.data.model_name == "Robust sentiment adapter"  # the model-index name, as transformers gives it
    assert '"out"' in _loading_code(out / "README.md")  # the repo a push creates: output_dir's name, not model_name
    # the HaLoRAConfig defaults it trained under, its 2 steps under one draw
    assert ("Training injects the RRAM noise (tile_additive, sigma = 0.01; one draw for the whole run: its 2 optimizer "
            "steps are no more than noise_resample_steps = 400)") in card.text
    trainer.create_model_card()
    assert ModelCard.load(out / "README.md").text.lstrip().startswith("# out\n")  # the repo a push creates


def test_the_card_of_a_run_in_the_working_directory_names_the_repo_a_push_creates(tmp_path, monkeypatch):
    from hf_eff.grant import GrantGCN, GraNTTrainer, GraNTTrainingArguments

    run = tmp_path / "my-run"
    run.mkdir()
    monkeypatch.chdir(run)
    graphs = Dataset.from_list([{"x": [[1.0], [2.0]], "edge_index": [[0], [1]], "y": [1.0], "num_nodes": 2}] * 4)
    args = GraNTTrainingArguments(output_dir=".", task="graph_regression", report_to=[], use_cpu=True,
                                  save_strategy="no")
    GraNTTrainer(model=GrantGCN(1, 1, hidden_channels=4), args=args, train_dataset=graphs).create_model_card()
    # transformers names it after output_dir's folder, "." resolved
    assert 'GrantGCN.from_pretrained("my-run")' in _loading_code(run / "README.md")
