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


def __getattr__(name):
    for sub in _SUBPACKAGES:
        module = importlib.import_module(f"hf_eff.{sub}")
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"module 'hf_eff' has no attribute {name!r}")


def __dir__():
    names = set(globals())
    for sub in _SUBPACKAGES:
        names.update(getattr(importlib.import_module(f"hf_eff.{sub}"), "__all__", ()))
    return sorted(names)
