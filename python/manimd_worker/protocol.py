"""The worker's half of the protocol: JSON lines on the process's stdout.

The user's own prints must never be mistaken for protocol lines, so at start
the real stdout is duplicated for the protocol and fd 1 is pointed at stderr:
whatever the scene (or a subprocess it starts) prints lands on stderr.
"""

import json
import os
import sys
import time

_out = None
_last_frames_at = 0.0

# A protocol line stays well below the supervisor's line cap (64 KiB).
MAX_TEXT = 4000


def install():
    """Claims the real stdout for the protocol and sends fd 1 to stderr."""
    global _out
    sys.stdout.flush()
    _out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def emit(event, **fields):
    fields = {"event": event, **fields}
    line = json.dumps(fields, ensure_ascii=True, default=str)
    _out.write(line + "\n")
    _out.flush()


def frames(scene, count, force=False):
    """Reports frames written, at most a few times a second."""
    global _last_frames_at
    now = time.monotonic()
    if force or now - _last_frames_at >= 0.25:
        _last_frames_at = now
        emit("frames", scene=scene, frames=count)


def clip(text, limit=MAX_TEXT):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
