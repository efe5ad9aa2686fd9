import os

import pytest
import torch

from hf_eff.utils.distributed import check_world_size, prepare_cpu_distributed


def test_multi_process_launch_without_cuda_is_routed_to_gloo(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "False")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    prepare_cpu_distributed()
    assert os.environ["ACCELERATE_USE_CPU"] == "1"


def test_lone_process_in_a_multi_process_launch_is_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="started 2 processes but this one trains with world_size 1"):
        check_world_size(1)
    check_world_size(2)


def test_finish_distributed_ends_the_process_group(tmp_path):
    import torch.distributed as dist

    from hf_eff.utils.distributed import finish_distributed

    finish_distributed()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    finish_distributed()
    assert not dist.is_initialized()


@pytest.mark.parametrize("arguments", ["halora", "grant", "splat"])
def test_training_arguments_pin_memory_only_for_cuda(tmp_path, arguments):
    # torch warned "'pin_memory' argument is set as true but no accelerator is found" on every CPU loader
    if torch.cuda.is_available():
        pytest.skip("pinning pays on CUDA")
    from hf_eff.grant import GraNTTrainingArguments
    from hf_eff.halora import HaLoRATrainingArguments
    from hf_eff.splat import SplatTrainingArguments

    cls, extra = {"halora": (HaLoRATrainingArguments, {}), "grant": (GraNTTrainingArguments, {"task": "graph_regression"}),
                  "splat": (SplatTrainingArguments, {"max_steps": 1})}[arguments]
    assert cls(output_dir=str(tmp_path), report_to=[], **extra).dataloader_pin_memory is False
