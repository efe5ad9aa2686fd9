"""`datasets.load_from_disk` with a named error for a split it cannot read back."""

from __future__ import annotations

import json
from pathlib import Path

import datasets


def load_saved_dataset(path: str | Path, name: str) -> datasets.Dataset | datasets.DatasetDict:
    """``datasets.load_from_disk(path)``. A split saved with no rows is named with ``name``: ``save_to_disk`` writes no
    data file for it, and ``load_from_disk`` then fails with a bare IndexError."""
    path = Path(path)
    try:
        return datasets.load_from_disk(str(path))
    except IndexError:
        states = [path / "state.json"] if (path / "state.json").is_file() else sorted(path.glob("*/state.json"))
        empty = [state.parent for state in states if not json.loads(state.read_text()).get("_data_files")]
        if not empty:
            raise
        splits = "" if empty == [path] else f" ({', '.join(split.name for split in empty)} split)"
        raise ValueError(f"{name}{splits} holds no rows (saved with none, which datasets cannot read back); "
                         "save the data with at least one row per split") from None
