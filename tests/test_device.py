"""engine.device's heap setting for a CPU forward: within ``freed_memory_kept`` a freed large block
serves the next one without the system mapping and zeroing it anew; after it, glibc's defaults."""
import os
import platform
import resource
from pathlib import Path

import pytest
import torch

from engine.device import freed_memory_kept

BLOCK = 16 * 2**20  # float32: 64 MiB, over glibc's largest mmap threshold (32 MiB)
PAGES = BLOCK * 4 // 4096

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="a glibc malloc setting")


def _faults_of_repeats(times: int = 3, first: int = 8) -> int:
    """Minor page faults of filling a new 64 MiB tensor ``times`` times, after ``first`` ones (freed): torch
    asks glibc for aligned blocks a little larger than the one freed, so the heap takes a few blocks to
    hold a free one large enough (as a forward's first batches)."""
    for _ in range(first):
        torch.ones(BLOCK)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        torch.ones(BLOCK)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _huge_pages_in_play() -> bool:
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return "THP_MEM_ALLOC_ENABLE" in os.environ or (thp.exists() and "[always]" in thp.read_text())


@glibc
def test_freed_memory_kept_reuses_a_freed_block_then_puts_the_defaults_back():
    with freed_memory_kept() as applied:
        assert applied
        kept = _faults_of_repeats()
    assert kept < PAGES // 10  # the heap's memory, faulted in before the repeats
    after = _faults_of_repeats()
    if not _huge_pages_in_play():  # 2 MiB pages would fault 512 times less
        assert after > 2 * PAGES  # mapped afresh and unmapped each time again: glibc's defaults are back


def test_freed_memory_kept_is_a_context_even_where_it_does_not_apply():
    with freed_memory_kept() as applied:
        assert isinstance(applied, bool)
