"""The public API's conventions: what `hf_eff` exports, and what the three methods' trainers and models share with
transformers' Trainer and huggingface_hub's PyTorchModelHubMixin."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import PyTorchModelHubMixin
from transformers import Trainer, TrainingArguments

import hf_eff

REPO_ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("halora", "grant", "splat", "hub")
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PYTHON_FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def subpackage_exports() -> dict[str, list[str]]:
    return {sub: list(importlib.import_module(f"hf_eff.{sub}").__all__) for sub in SUBPACKAGES}


def documented_imports() -> list[tuple[str, str, str]]:
    """(where, module, name) of each `from hf_eff... import name` in the Python blocks of README.md and docs/."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for block in PYTHON_FENCE.finditer(text):
            line = text.count("\n", 0, block.start()) + 1
            for node in ast.walk(ast.parse(block.group(1))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hf_eff":
                    where = f"{path.relative_to(REPO_ROOT)}:{line + node.lineno}"
                    found += [(where, node.module, alias.name) for alias in node.names]
    return found


# What README.md and docs/ teach a user to call; the rest of each subpackage's exports stay in it.
TOP_LEVEL = {
    "halora": ["HaLoRAConfig", "HaLoRAModel", "HaLoRATrainer", "HaLoRATrainingArguments", "choice_rows_collator",
               "load_base_model", "builtin_task", "load_task", "rram_noise", "RRAMNoise"],
    "grant": ["GraNTTrainer", "GraNTTrainingArguments", "GrantGCN", "GraphCollator", "generate_graphon_dataset",
              "graphs_from_pyg", "graphs_from_smiles", "load_freesolv", "load_qm9", "load_smiles_csv", "load_solubility",
              "split_dataset"],
    "splat": ["GaussianModel", "SplatTrainer", "SplatTrainingArguments", "FixedDefaultStrategy", "GlobalToLocalStrategy",
              "Scene", "load_scene", "views_dataset", "points_dataset", "make_procedural_scene", "world_normalization",
              "scene_from_colmap", "write_colmap", "scene_from_nerf_synthetic", "write_nerf_synthetic"],
    "hub": ["push_output_dir", "build_card"],
}
SUBPACKAGE_ONLY = {"grant": ["select", "TASKS", "graph_scores", "feature_widths", "predictions_table"],
                   "splat": ["rasterize", "images_to_float", "camera_path", "EnergyCoarseToFine"],
                   "halora": ["tokenize_for_scoring", "MultipleChoiceScorer", "halora_regularizer"],
                   "hub": ["HubCardTrainerMixin", "grant_card"]}


def test_top_level_is_the_curated_list():
    assert hf_eff.__all__ == [name for names in TOP_LEVEL.values() for name in names]


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_each_top_level_name_is_its_subpackages_object(sub):
    module = importlib.import_module(f"hf_eff.{sub}")
    for name in TOP_LEVEL[sub]:
        assert name in module.__all__, f"hf_eff.{name} is not exported by hf_eff.{sub}"
        assert getattr(hf_eff, name) is getattr(module, name), f"hf_eff.{name} is not hf_eff.{sub}.{name}"


def test_star_import_binds_exactly_the_top_level_names():
    namespace: dict = {}
    exec("from hf_eff import *", namespace)
    assert set(namespace) - {"__builtins__"} == {name for names in TOP_LEVEL.values() for name in names}


@pytest.mark.parametrize(("sub", "name"), [(sub, name) for sub, names in SUBPACKAGE_ONLY.items() for name in names])
def test_subpackage_only_names_are_not_top_level_and_the_error_says_where_they_are(sub, name):
    assert name in importlib.import_module(f"hf_eff.{sub}").__all__
    assert name not in hf_eff.__all__ and name not in dir(hf_eff)
    with pytest.raises(AttributeError, match=rf"no attribute '{name}'; it is hf_eff\.{sub}\.{name} "):
        getattr(hf_eff, name)


def test_every_subpackage_export_is_top_level_or_pointed_to():
    for sub, names in subpackage_exports().items():
        for name in set(names) - set(hf_eff.__all__):
            with pytest.raises(AttributeError, match=rf"hf_eff\.{sub}\.{name} "):
                getattr(hf_eff, name)


def test_no_name_is_exported_by_two_subpackages():
    owners: dict[str, list[str]] = {}
    for sub, names in subpackage_exports().items():
        for name in names:
            owners.setdefault(name, []).append(sub)
    assert {name: subs for name, subs in owners.items() if len(subs) > 1} == {}


def test_exports_are_public_names():
    for sub, names in subpackage_exports().items():
        assert [name for name in names if name.startswith("_")] == [], sub


def test_subpackage_is_an_attribute_on_first_access(monkeypatch):
    # as after a bare `import hf_eff`: the subpackage is imported but not yet bound on hf_eff
    monkeypatch.delattr(hf_eff, "grant")
    assert hf_eff.grant is sys.modules["hf_eff.grant"]


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchTrainer'$"):
        hf_eff.NoSuchTrainer  # noqa: B018


def loaded_after(code: str, modules: list[str]) -> str:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``, as the list it prints."""
    code += f"; import sys; print([m for m in {modules!r} if m in sys.modules])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_hf_eff_and_a_missing_private_name_do_not_load_the_trainers_or_graph_and_splat_stacks():
    heavy = ["hf_eff.grant", "hf_eff.splat", "hf_eff.hub", "hf_eff.halora.trainer", "transformers.trainer",
             "torch_geometric", "gsplat"]
    # a private name (pytest, copy and pickle probe modules for some) names no export: no subpackage is searched
    assert loaded_after("import hf_eff; assert not hasattr(hf_eff, '_pytestfixturefunction')", heavy) == "[]"


def test_a_top_level_name_loads_its_own_subpackage_only():
    assert loaded_after("import hf_eff; hf_eff.GaussianModel", ["hf_eff.grant", "torch_geometric"]) == "[]"
    assert loaded_after("import hf_eff; hf_eff.GrantGCN", ["hf_eff.splat", "gsplat"]) == "[]"


def test_documented_imports_name_exported_objects():
    imports = documented_imports()
    assert any(module == "hf_eff" for _, module, _ in imports), "README.md and docs/ show no `from hf_eff import`"
    for where, module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{where}: `from {module} import {name}` fails"
        if module == "hf_eff":
            assert name in hf_eff.__all__, f"{where}: {name} is not in hf_eff.__all__"


TRAINERS = [("HaLoRATrainer", "HaLoRATrainingArguments"), ("GraNTTrainer", "GraNTTrainingArguments"),
            ("SplatTrainer", "SplatTrainingArguments")]


@pytest.mark.parametrize(("trainer_name", "arguments_name"), TRAINERS)
def test_trainer_extends_transformers(trainer_name, arguments_name):
    trainer, arguments = getattr(hf_eff, trainer_name), getattr(hf_eff, arguments_name)
    assert issubclass(trainer, Trainer)
    assert issubclass(arguments, TrainingArguments)
    assert inspect.signature(trainer.evaluate).parameters["metric_key_prefix"].default == "eval"
    assert inspect.signature(trainer.predict).parameters["metric_key_prefix"].default == "test"


@pytest.mark.parametrize(("trainer_name", "arguments_name"), TRAINERS)
def test_trainer_refuses_plain_training_arguments_with_type_error(trainer_name, arguments_name, tmp_path):
    model = hf_eff.GaussianModel() if trainer_name == "SplatTrainer" else torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match=arguments_name):
        getattr(hf_eff, trainer_name)(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))


@pytest.mark.parametrize("model_name", ["GrantGCN", "GaussianModel"])
def test_hub_model_push_to_hub_takes_the_mixins_arguments(model_name):
    model_class = getattr(hf_eff, model_name)
    assert issubclass(model_class, PyTorchModelHubMixin)
    # hf_eff.hub.push.PushesWithoutLocalPaths writes push_to_hub out again: it must not drift from the mixin's
    ours = inspect.signature(model_class.push_to_hub).parameters
    theirs = inspect.signature(PyTorchModelHubMixin.push_to_hub).parameters
    assert list(ours) == list(theirs)
    assert [p.kind for p in ours.values()] == [p.kind for p in theirs.values()]


def test_hub_models_from_pretrained_take_the_mixins_keywords(tmp_path):
    hub_keywords = {"revision": None, "token": None, "cache_dir": str(tmp_path / "cache"), "local_files_only": True,
                    "force_download": False}
    grant = hf_eff.GrantGCN(in_channels=3, out_channels=2, task="graph_classification")
    grant.save_pretrained(tmp_path / "grant")
    loaded = hf_eff.GrantGCN.from_pretrained(tmp_path / "grant", **hub_keywords)
    assert all(torch.equal(a, b) for a, b in zip(grant.state_dict().values(), loaded.state_dict().values()))
    splats = hf_eff.GaussianModel(sh_degree=1, num_gaussians=4)
    splats.save_pretrained(tmp_path / "splat")
    assert hf_eff.GaussianModel.from_pretrained(tmp_path / "splat", **hub_keywords).num_gaussians == 4


@pytest.mark.parametrize("model_name", ["GrantGCN", "GaussianModel"])
def test_hub_models_from_pretrained_show_the_mixins_keywords(model_name):
    ours = dict(inspect.signature(getattr(hf_eff, model_name).from_pretrained).parameters)
    theirs = inspect.signature(PyTorchModelHubMixin.from_pretrained).parameters
    # help() and IDEs list each of the mixin's keywords with its default, not a bare **kwargs
    for name, parameter in theirs.items():
        assert (ours[name].kind, ours[name].default) == (parameter.kind, parameter.default), name
    if model_name == "GrantGCN":
        strict = ours.pop("strict")
        assert (strict.kind, strict.default) == (inspect.Parameter.KEYWORD_ONLY, True)
    assert list(ours) == list(theirs)


@pytest.mark.parametrize("model_name", ["GrantGCN", "GaussianModel"])
def test_hub_models_from_pretrained_pass_the_keywords_to_every_download(model_name, tmp_path, monkeypatch):
    import huggingface_hub.hub_mixin

    model = (hf_eff.GrantGCN(in_channels=3, out_channels=2, task="graph_classification") if model_name == "GrantGCN"
             else hf_eff.GaussianModel(sh_degree=1, num_gaussians=4))
    model.save_pretrained(tmp_path / "saved")
    downloads = []

    def download(repo_id, filename, **kwargs):
        downloads.append((repo_id, filename, kwargs))
        return str(tmp_path / "saved" / filename)

    monkeypatch.setattr(huggingface_hub.hub_mixin, "hf_hub_download", download)
    keywords = {"revision": "v1", "cache_dir": str(tmp_path / "cache"), "token": "hf_unused", "force_download": True,
                "local_files_only": False}
    loaded = getattr(hf_eff, model_name).from_pretrained("me/model", **keywords)
    assert [filename for _, filename, _ in downloads] == ["config.json", "model.safetensors"]
    assert all(repo_id == "me/model" and kwargs == keywords for repo_id, _, kwargs in downloads)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
