"""`narrate(text)`: a spoken line that the scene waits for.

The supervisor speaks the text outside the sandbox and tells the worker how
long each known line lasts (`speech` in the job). `narrate` marks where the
line starts in the scene and, before the next line and at the end of the
scene, waits until the speech is over, so the video is at least as long as
what is said over it. Text the supervisor did not know (computed at run
time) gets an estimate from its word count; the supervisor fits the speech
to it afterwards. Without narration in the job, `narrate` does nothing.
"""

import ast

from manimd_worker import protocol

# Longest text reported; the supervisor refuses lines longer than it speaks.
MAX_TEXT = 4000
# Most distinct literals reported by inspection.
MAX_LITERALS = 200
# Speaking rate for estimates: about 150 words a minute.
WORDS_PER_SEC = 2.5

_speech = None
_current = None


def configure(speech):
    """`speech`: {text: seconds}, or None when the job has no narration."""
    global _speech
    _speech = dict(speech) if isinstance(speech, dict) else None


def estimate(text):
    return round(max(0.5, len(text.split()) / WORDS_PER_SEC + 0.3), 3)


def narrate(text):
    """Speaks `text` over the scene from now on (no-op without narration)."""
    if _speech is None or _current is None:
        return
    text = str(text)[:MAX_TEXT]
    if not text.strip():
        return  # Nothing to say, nothing to wait for.
    state = _current
    state.settle()
    start = state.now()
    secs = _speech.get(text)
    if secs is None:
        secs = estimate(text)
    protocol.emit(
        "narration",
        scene=state.name,
        index=state.index,
        start=round(float(start), 4),
        text=text,
        duration=float(secs),
    )
    state.until = start + secs


class _Scene:
    def __init__(self, scene, name, index, now, fps):
        self.scene = scene
        self.name = name
        self.index = index
        self.now = now
        self.frame = 1.0 / fps
        self.until = 0.0

    def settle(self):
        """Waits until the current line has been said. Engines round a wait
        to whole frames, down as often as up, so it waits again for what is
        left, at least a frame at a time: the next line never starts before
        this one ends (it may start up to a frame after)."""
        for _ in range(4):
            remaining = self.until - self.now()
            if remaining <= 1e-3:
                return
            self.scene.wait(max(remaining, self.frame))


def wrap(scene, name, index, now, fps):
    """Makes `scene.construct` narration-aware: `narrate` inside it knows
    its scene and time, and the scene waits for its last line to end."""
    if _speech is None:
        return
    state = _Scene(scene, name, index, now, fps)
    construct = scene.construct

    def narrated_construct():
        global _current
        _current = state
        try:
            construct()
            state.settle()
        finally:
            _current = None

    scene.construct = narrated_construct


def literals(tree):
    """The string literals passed to `narrate(...)`, distinct (the order is
    ast.walk's: only the set matters)."""
    found = []
    seen = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "narrate"):
            continue
        args = list(node.args[:1]) + [k.value for k in node.keywords if k.arg == "text"]
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.strip():
                text = arg.value[:MAX_TEXT]
                if text not in seen and len(found) < MAX_LITERALS:
                    seen.add(text)
                    found.append(text)
    return found
