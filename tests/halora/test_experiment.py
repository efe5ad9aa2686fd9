import pytest
import torch

from hf_eff.halora.experiment import ResidentMemory

pytestmark = pytest.mark.skipif(not ResidentMemory.available(), reason="needs Linux /proc/self/clear_refs")
MIB = 2**20


def test_resident_memory_catches_a_peak_already_freed_and_forgets_earlier_ones():
    earlier = torch.ones(300 * MIB // 4)  # freed before the block: outside its peak
    del earlier
    with ResidentMemory() as quiet:
        pass
    # other threads of a test worker may allocate a little meanwhile; nothing near the earlier 300 MiB
    assert quiet.peak_mb - quiet.start_mb < 100
    with ResidentMemory() as resident:
        transient = torch.ones(200 * MIB // 4)  # freed inside the block
        del transient
    assert resident.peak_mb - resident.start_mb >= 190
