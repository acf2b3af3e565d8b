"""Process-level settings for the ``mpc`` command and the enclave server (not for the library).

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), so how
a buffer of a few MiB (an upload chunk, its envelope, its plaintext) is allocated changes as a
process runs. The threshold is pinned instead, at 32 MiB: every chunk-sized buffer comes from
the heap and is reused. It was pinned at 1 MiB first (every such buffer mmapped: a client
crept from 180 to 250 MiB over a 400 MB CSV upload with the moving threshold), but each mmapped
buffer is paid for with a page fault per 4 KiB page, every time: with Arrow uploads that was a
third of the CPU time of an upload (benchmarks/mpc_vs_crypto.py, 10M rows per party: 3.3 s ->
2.6 s), for 5-10% less peak memory. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_THRESHOLD = 32 * 1024 * 1024


def pin_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold at 32 MiB; return whether it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
