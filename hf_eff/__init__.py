"""hf-eff: HaLoRA, GraNT and fast Gaussian splatting for the Hugging Face stack.

Public names are exported lazily from the method subpackages (``from hf_eff import
HaLoRAConfig``), so ``import hf_eff`` stays cheap. The HaLoRA subpackage is imported eagerly
because importing it registers the ``HALORA`` type with PEFT, which
``PeftModel.from_pretrained`` needs.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("halora", "grant", "splat", "hub")


from hf_eff import halora  # noqa: E402,F401  (registers the HALORA type with PEFT)


def _exported_names() -> list[str]:
    return [name for sub in _SUBPACKAGES for name in importlib.import_module(f"hf_eff.{sub}").__all__]


def __getattr__(name):
    if name in _SUBPACKAGES:
        # Importing a subpackage binds it here, but only after this lookup has failed: without this, the first
        # `hf_eff.grant` would raise and the second succeed.
        return importlib.import_module(f"hf_eff.{name}")
    if name == "__all__":
        # Computed on first use (`from hf_eff import *`), not at `import hf_eff`, which stays cheap.
        globals()["__all__"] = _exported_names()
        return globals()["__all__"]
    for sub in _SUBPACKAGES:
        module = importlib.import_module(f"hf_eff.{sub}")
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module 'hf_eff' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_SUBPACKAGES, *_exported_names()})
