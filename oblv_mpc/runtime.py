"""Process-level settings for the ``mpc`` command and the enclave server (not for the library).

glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB), so
after a few 4 MiB upload chunks such buffers come from the heap instead, and the heap
fragments: a client's resident memory crept from 180 to 250 MiB over a 400 MB upload. Pinning
the threshold at 1 MiB keeps chunk buffers mmapped and memory flat (measured with
benchmarks/upload.py). Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
_THRESHOLD = 1024 * 1024


def pin_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold at 1 MiB; return whether it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
