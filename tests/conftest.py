"""Shared test set-up: few torch threads (2 cores, tests run in 2 xdist workers) and the
`gpu` marker's skip."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (gsplat kernels); none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def checkpoint_loads(monkeypatch):
    """``record(trainer_class)`` returns the list of checkpoint folders that class then resumes from."""

    def record(trainer_class) -> list[str]:
        loaded = []
        load = trainer_class._load_from_checkpoint

        def recording_load(self, resume_from_checkpoint, model=None):
            loaded.append(resume_from_checkpoint)
            return load(self, resume_from_checkpoint, model)

        monkeypatch.setattr(trainer_class, "_load_from_checkpoint", recording_load)
        return loaded

    return record

