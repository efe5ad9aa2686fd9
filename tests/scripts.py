"""Load a script of benchmarks/ or examples/ (not an importable package) as a module."""

import importlib.util
import sys
from pathlib import Path


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module
