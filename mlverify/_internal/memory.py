"""Keep peak memory proportional to what is live when handling very large signatures.

glibc's allocator serves a large allocation by ``mmap`` and returns it to the
system when freed, but only below a threshold that it raises each time such a
block is freed. Reading a 230 MB signature decodes it through several buffers
of that size; once the threshold has grown, the later ones come from the heap
and stay resident after they are freed, so a million-file verification would
hold twice the memory it uses. :func:`release_large_blocks` fixes the threshold
at 1 MiB (what glibc's ``MALLOC_MMAP_THRESHOLD_`` does), once, and only on
glibc; elsewhere it does nothing.
"""

from __future__ import annotations

import sys

_done = False


def release_large_blocks() -> None:
    """Serve every allocation over 1 MiB by ``mmap`` (glibc), so it is returned when freed."""
    global _done
    if _done:
        return
    _done = True
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    m_mmap_threshold = -3  # <malloc.h>
    mallopt(ctypes.c_int(m_mmap_threshold), ctypes.c_int(1 << 20))
