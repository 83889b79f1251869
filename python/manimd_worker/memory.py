"""How the render's process keeps the memory it frees.

Each frame of a large render passes through buffers of several megabytes
(the engine's RGBA frame, its copy into a video frame, the YUV conversion).
glibc gives such blocks back to the system when they are freed and takes
new ones for the next frame, so every frame pays for page faults on fresh
memory again. Keeping freed memory for reuse made a 1080p60 render about
5 % faster here, in a hand A/B of five pairs (BENCHMARKS.md, run L; no
bench figure isolates it). It also keeps the process at its
peak size, so small renders, which gained 3 % for half as much memory
again, keep glibc's defaults.
"""

import ctypes

# mallopt's parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# Frames from 1920x1080 up keep their memory.
LARGE_FRAME_PIXELS = 1920 * 1080
# Blocks below this come from the heap, not from their own mapping: a 4K
# RGBA frame is 33.2 MB.
MMAP_THRESHOLD = 32 << 20
# The heap is given back only when this much of its top is free.
TRIM_THRESHOLD = 2 << 30


def for_frames(width, height):
    """Keeps freed memory for reuse when frames of this size are large.
    Returns whether it did."""
    if width * height < LARGE_FRAME_PIXELS:
        return False
    # The interpreter's own symbols hold the C library's: no library
    # search, which would start `ldconfig` inside the sandbox.
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # Each returns 1 on success; setting either also stops glibc from
    # moving the thresholds itself.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
