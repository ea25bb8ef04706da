"""Giving the memory of a freed block back to the operating system.

glibc keeps freed heap pages for reuse instead of returning them, and raises its threshold
for serving allocations from separate mappings after large ones are freed; a block-by-block
walk then sees its resident memory creep up with every block although nothing is kept.
``malloc_trim(0)`` returns the free pages; elsewhere (musl, macOS, Windows) nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return None
    return trim


def return_freed_memory() -> bool:
    """Return freed heap pages to the operating system; True where that is possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
