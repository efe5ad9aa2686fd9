"""hf-eff's own cache: what it builds once and reads again (GraNT's graph sets, HaLoRA's converted SmolLM2)."""

from __future__ import annotations

import os
from pathlib import Path


def hf_eff_cache() -> Path:
    """$HF_EFF_CACHE, else $HF_HOME/hf_eff, where HF_HOME defaults to $XDG_CACHE_HOME/huggingface, then
    ~/.cache/huggingface (read at call time, like the Hub cache)."""
    if os.environ.get("HF_EFF_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_EFF_CACHE"]))
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    hf_home = os.environ.get("HF_HOME") or os.path.join(xdg_cache, "huggingface")
    return Path(os.path.expanduser(hf_home)) / "hf_eff"
