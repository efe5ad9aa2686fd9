"""Launch checks shared by the examples.

accelerate 1.15 has two CPU pitfalls: `accelerate launch --cpu --num_processes 2` starts ONE
process, and its multi-GPU launcher on a machine without CUDA starts N processes that each
train alone (world_size 1, exit 0), because it does not forward `use_cpu`. The examples call
`prepare_cpu_distributed()` before building TrainingArguments and `check_world_size()` after.
"""

from __future__ import annotations

import os

import torch


def launched_world_size() -> int:
    """The number of processes the launcher started (torchrun / accelerate set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def prepare_cpu_distributed() -> None:
    """Routes a multi-process launch without CUDA to gloo DDP instead of N lone runs."""
    if launched_world_size() > 1 and not torch.cuda.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "1"


def check_world_size(num_processes: int) -> None:
    """Raises if the processes that accelerate sees differ from those the launcher started."""
    launched = launched_world_size()
    if num_processes != launched:
        raise RuntimeError(
            f"the launcher started {launched} processes but this one trains with world_size "
            f"{num_processes}: each process would train alone. On CPU use "
            "`accelerate launch --config_file trainers/accelerate/cpu_2proc.yaml` or set "
            "ACCELERATE_USE_CPU=1 (torchrun works too)."
        )


def finish_distributed() -> None:
    """Ends the process group once every rank is done. A rank that exits with gloo's threads still
    running is aborted ("terminate called without an active exception") and fails the launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
