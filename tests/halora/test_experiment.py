import pytest
import torch

from hf_eff.halora.experiment import ResidentMemory

pytestmark = pytest.mark.skipif(not ResidentMemory.available(), reason="needs Linux /proc/self/clear_refs")


def test_resident_memory_catches_a_peak_already_freed_and_forgets_earlier_ones():
    earlier = torch.ones(50 * 2**20 // 4)  # 50 MiB, freed before the block: outside its peak
    del earlier
    with ResidentMemory() as resident:
        transient = torch.ones(200 * 2**20 // 4)  # 200 MiB, freed inside the block
        del transient
    assert 190 <= resident.peak_mb - resident.start_mb <= 260
    with ResidentMemory() as quiet:
        pass
    assert quiet.peak_mb - quiet.start_mb < 20
