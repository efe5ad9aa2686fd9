"""hf-eff: HaLoRA, GraNT and fast Gaussian splatting for the Hugging Face stack.

The top level holds what a user calls (``from hf_eff import HaLoRAConfig``): each method's configs,
trainers, models and data loaders, and the Hub push. Everything else a subpackage exports stays
there (``hf_eff.grant.select``). Names load lazily from their subpackage, so ``import hf_eff`` stays
cheap. The HaLoRA subpackage is imported eagerly because importing it registers the ``HALORA``
type with PEFT, which ``PeftModel.from_pretrained`` needs.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("halora", "grant", "splat", "hub")

# Top-level name -> the subpackage that exports it (and imports it when first asked for).
_EXPORTS = {
    **dict.fromkeys(
        ("HaLoRAConfig", "HaLoRAModel", "HaLoRATrainer", "HaLoRATrainingArguments", "choice_rows_collator",
         "load_base_model", "builtin_task", "load_task", "rram_noise", "RRAMNoise"),
        "halora",
    ),
    **dict.fromkeys(
        ("GraNTTrainer", "GraNTTrainingArguments", "GrantGCN", "GraphCollator", "generate_graphon_dataset",
         "graphs_from_pyg", "graphs_from_smiles", "load_freesolv", "load_qm9", "load_smiles_csv", "load_smiles_table",
         "load_solubility", "split_dataset"),
        "grant",
    ),
    **dict.fromkeys(
        ("GaussianModel", "SplatTrainer", "SplatTrainingArguments", "FixedDefaultStrategy", "GlobalToLocalStrategy",
         "Scene", "load_scene", "views_dataset", "points_dataset", "make_procedural_scene", "world_normalization",
         "scene_from_colmap", "write_colmap", "scene_from_nerf_synthetic", "write_nerf_synthetic"),
        "splat",
    ),
    **dict.fromkeys(("push_output_dir", "build_card"), "hub"),
}

__all__ = list(_EXPORTS)


from hf_eff import halora  # noqa: E402,F401  (registers the HALORA type with PEFT)


def __getattr__(name):
    if name in _SUBPACKAGES:
        # Importing a subpackage binds it here, but only after this lookup has failed: without this, the first
        # `hf_eff.grant` would raise and the second succeed.
        return importlib.import_module(f"hf_eff.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hf_eff.{_EXPORTS[name]}"), name)
    message = f"module 'hf_eff' has no attribute {name!r}"
    # Private and dunder lookups (copy, pickle, pytest probing the module) never name an export: they need not
    # import every subpackage to fail.
    if not name.startswith("_"):
        for sub in _SUBPACKAGES:
            if name in importlib.import_module(f"hf_eff.{sub}").__all__:
                message += f"; it is hf_eff.{sub}.{name} (from hf_eff.{sub} import {name})"
                break
    raise AttributeError(message)


def __dir__():
    return sorted({*globals(), *_SUBPACKAGES, *__all__})
