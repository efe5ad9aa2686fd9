"""Pinned host memory only where it pays: for copies to CUDA."""

from __future__ import annotations


class CudaPinningArgumentsMixin:
    """Base for ``TrainingArguments`` subclasses: ``dataloader_pin_memory`` is turned off away from
    CUDA, where pinning buys nothing and torch warns of it on every loader ("'pin_memory' argument
    is set as true but no accelerator is found"); transformers turns it off only for ``use_cpu``.

    Use: ``class MyArguments(CudaPinningArgumentsMixin, TrainingArguments)``.
    """

    def __post_init__(self):
        super().__post_init__()
        if self.device.type != "cuda":
            self.dataloader_pin_memory = False
