"""The public API's conventions: what `hf_eff` exports, and what the three methods' trainers and models share with
transformers' Trainer and huggingface_hub's PyTorchModelHubMixin."""

from __future__ import annotations

import importlib
import importlib.util
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
# `from hf_eff[.sub] import a, b` (to the line's end or a closing backquote) or `import (a,\n b)`, in code or prose
DOCUMENTED_IMPORT = re.compile(r"\bfrom\s+(hf_eff(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n`#]*)")
DOCUMENTED_ATTRIBUTE = re.compile(r"\bhf_eff(?:\.\w+)+")


def subpackage_exports() -> dict[str, list[str]]:
    return {sub: list(importlib.import_module(f"hf_eff.{sub}").__all__) for sub in SUBPACKAGES}


def documented_names(text: str) -> list[tuple[int, str]]:
    """(line, dotted name) of each hf_eff name ``text`` shows: each name a `from hf_eff... import` imports (as
    ``hf_eff.name`` or ``hf_eff.sub.name``) and each ``hf_eff.<name>`` written out."""
    found = []
    for match in DOCUMENTED_IMPORT.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        imported = re.sub(r"#[^\n]*", "", match.group(2)).strip("() \n")
        found += [(line, f"{match.group(1)}.{item.split()[0]}") for item in imported.split(",") if item.strip()]
    for match in DOCUMENTED_ATTRIBUTE.finditer(text):
        found.append((text.count("\n", 0, match.start()) + 1, match.group()))
    return found


def resolve(dotted: str):
    """The object ``dotted`` (``hf_eff.grant.select``) names, as a user's code reaches it: attribute by attribute from
    ``hf_eff``, importing a submodule not yet loaded (``hf_eff.splat.rendering``)."""
    parts = dotted.split(".")
    found = importlib.import_module(parts[0])
    for depth, part in enumerate(parts[1:], start=2):
        try:
            found = getattr(found, part)
        except AttributeError:
            submodule = ".".join(parts[:depth])
            if not inspect.ismodule(found) or importlib.util.find_spec(submodule) is None:
                raise  # hf_eff's own error says where a subpackage's name is
            found = importlib.import_module(submodule)
    return found


def test_documented_names_are_collected_from_imports_and_attributes():
    text = ("from hf_eff import GrantGCN, load_qm9 as qm9  # a comment\n"
            "from hf_eff import (\n    GraNTTrainer,  # the trainer\n    split_dataset,\n)\n"
            "Call `hf_eff.grant.select(scores)`; (`from hf_eff.halora import rram_noise`).\n")
    assert documented_names(text) == [
        (1, "hf_eff.GrantGCN"), (1, "hf_eff.load_qm9"), (2, "hf_eff.GraNTTrainer"), (2, "hf_eff.split_dataset"),
        (6, "hf_eff.halora.rram_noise"), (6, "hf_eff.grant.select"), (6, "hf_eff.halora")]


def test_every_name_the_docs_show_resolves():
    documented = [(f"{path.relative_to(REPO_ROOT)}:{line}", name)
                  for path in DOCS for line, name in documented_names(path.read_text())]
    assert any(name.count(".") == 1 for _, name in documented), "README.md and docs/ name nothing from hf_eff"
    missing = []
    for where, name in documented:
        try:
            resolve(name)
        except AttributeError as error:
            missing.append(f"{where}: {name} ({error})")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("name", hf_eff.__all__)
def test_each_top_level_name_is_its_subpackages_object(name):
    owners = [sub for sub, names in subpackage_exports().items() if name in names]
    assert len(owners) == 1, f"hf_eff.{name} is exported by {owners or 'no subpackage'}"
    assert getattr(hf_eff, name) is getattr(importlib.import_module(f"hf_eff.{owners[0]}"), name)


def test_star_import_binds_exactly_the_top_level_names():
    namespace: dict = {}
    exec("from hf_eff import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(hf_eff.__all__)


SUBPACKAGE_ONLY = {"grant": ["select", "TASKS", "graph_scores", "feature_widths", "predictions_table"],
                   "splat": ["rasterize", "images_to_float", "camera_path", "EnergyCoarseToFine"],
                   "halora": ["tokenize_for_scoring", "MultipleChoiceScorer", "halora_regularizer", "save_embedding_layers"],
                   "hub": ["HubCardTrainerMixin", "grant_card"]}


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
