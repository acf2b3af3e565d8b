"""Process-level settings for the ``mpc`` command and the enclave server (not for the library).

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), so how
a buffer of a few MiB (an upload chunk, its envelope, its plaintext) is allocated changes as a
process runs. The threshold is pinned instead, at 32 MiB: every chunk-sized buffer comes from
the heap. It was pinned at 1 MiB first (every such buffer mmapped: a client crept from 180 to
250 MiB over a 400 MB CSV upload with the moving threshold), but each mmapped buffer is paid
for with a page fault per 4 KiB page, every time: with Arrow uploads that was a third of the CPU
time of an upload (benchmarks/mpc_vs_crypto.py, 10M rows per party: 3.3 s -> 2.6 s), for 5-10%
less peak memory.

Pinning the mmap threshold also stops glibc moving its trim threshold, which then stays at
128 KiB: a chunk freed at the top of the heap is given back to the kernel at once, and the next
one faults its pages in again: on this project's 2-core VM, copying a 2.4 MB chunk and encoding
it as a request body took 3.3-4.0 ms that way and 0.25-0.28 ms with the memory kept
(`python benchmarks/allocator.py`); PSI cardinality at 1M rows per party went from 0.53-0.57 s
to 0.45-0.52 s end to end. So the trim threshold is raised too, to 64 MiB: a few chunks'
buffers in flight stay mapped and are reused. What it costs: each malloc arena (glibc makes up
to 8 per core, for threads that allocate at once) may keep up to 64 MiB it no longer uses,
which another arena's thread cannot reuse. Under `python benchmarks/hostile_load.py` (20
parties uploading 50 MB each at once, 40 attackers) the enclave's peak was 2,194-2,329 MiB with
a trim threshold of 16, 32 or 64 MiB against 2,075-2,195 MiB before, for 6-16% more throughput.
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 64 * 1024 * 1024


def pin_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold at 32 MiB and its trim threshold at 64 MiB; whether both took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mmap_pinned = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    trim_pinned = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return mmap_pinned and trim_pinned
