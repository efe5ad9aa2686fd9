import mmap

import pytest

from hf_eff.halora.experiment import ResidentMemory

pytestmark = pytest.mark.skipif(not ResidentMemory.available(), reason="needs Linux /proc/self/clear_refs")
MIB = 2**20


def _touch_fresh_pages(mebibytes: int) -> None:
    # Anonymous mmap: pages new to the process whatever malloc holds (a test worker's heap may serve
    # a large tensor from memory freed, yet still resident, by earlier tests).
    with mmap.mmap(-1, mebibytes * MIB) as block:
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1


def test_resident_memory_catches_a_peak_already_freed_and_forgets_earlier_ones():
    _touch_fresh_pages(300)  # unmapped before the block: outside its peak
    with ResidentMemory() as quiet:
        pass
    assert quiet.peak_mb - quiet.start_mb < 100  # other threads of a test worker may allocate a little
    with ResidentMemory() as resident:
        _touch_fresh_pages(200)  # unmapped inside the block
    assert resident.peak_mb - resident.start_mb >= 190
