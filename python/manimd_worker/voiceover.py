"""manim-voiceover without its speech services: the speech comes from the host.

A scene sets a service (`GTTSService()`, `AzureService(...)`, a recorder...)
and says `with self.voiceover(text=...) as tracker:`. Here no service runs:
the sandbox has no network, and those services would ask for keys, install
packages or read a microphone. `install` hooks the import of manim-voiceover
so that every service module the scene imports is ours (`_HostService`, which
accepts any arguments), and every voiceover's audio is looked up among the
speech the host prepared (`configure`), under `/cache/voiceover`:

- the host speaks a text piece by piece between its `<bookmark mark="X"/>`
  marks and concatenates the pieces, so each bookmark's time is exact (the
  pieces' durations summed); the tracker gets word boundaries at the marks,
  so `wait_until_bookmark("X")` lands on that time;
- a text the host did not prepare (it was computed at run time) is reported
  (`voiceover-text`, with its pieces) and the render stops with
  `voiceover-unprepared`: the host speaks it and renders again;
- in a preview or a plan (no prepared speech in the job), a text gets a
  silent clip of its estimated length instead.

Each voiceover is also reported (`voiceover`: scene, start, end, text, the
marks' times) for the subtitles and the result.
"""

import importlib.abc
import importlib.util
import os
import re
import sys
import wave

from manimd_worker import narration, protocol
from manimd_worker.usercode import UserError

# Where the host lays out the prepared speech (the area's view, read-only).
SPEECH_DIR = "/cache/voiceover"
# Where placeholder clips are written (previews and plans).
SCRATCH_DIR = "/job/work/voiceover"
# manim-voiceover's own bookmark syntax (helper.remove_bookmarks).
BOOKMARK = re.compile(r"<bookmark\s*mark\s*=['\"](\w*)[\"']\s*/>")
# The tracker's unit of audio offsets (tracker.AUDIO_OFFSET_RESOLUTION).
RESOLUTION = 10_000_000

# The service modules manim-voiceover ships, and the class each defines.
SERVICES = {
    "manim_voiceover.services.gtts": "GTTSService",
    "manim_voiceover.services.azure": "AzureService",
    "manim_voiceover.services.openai": "OpenAIService",
    "manim_voiceover.services.elevenlabs": "ElevenLabsService",
    "manim_voiceover.services.pyttsx3": "PyTTSX3Service",
    "manim_voiceover.services.gemini": "GeminiService",
    "manim_voiceover.services.coqui": "CoquiService",
    "manim_voiceover.services.recorder": "RecorderService",
}

# {text: {"path": ..., "pieces": [seconds, ...]}}; None: no prepared speech
# (a preview or a plan), placeholders instead.
_prepared = None
# The index of the scene being rendered, set by the worker.
scene_index = 0


def normalize(text):
    """The text as manim-voiceover speaks it: whitespace runs made one space."""
    return " ".join(str(text).split())


def pieces(text):
    """The text cut at its bookmarks: [(mark before it or None, piece)]."""
    out = []
    mark = None
    pos = 0
    for m in BOOKMARK.finditer(text):
        out.append((mark, text[pos:m.start()]))
        mark = m.group(1)
        pos = m.end()
    out.append((mark, text[pos:]))
    return out


def literals(tree):
    """The string literals passed as a voiceover's text (`self.voiceover`,
    `add_voiceover_text`), normalized and distinct: the host speaks them
    before the render."""
    import ast

    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("voiceover", "add_voiceover_text")):
            continue
        args = list(node.args[:1]) + [k.value for k in node.keywords if k.arg == "text"]
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                text = normalize(arg.value)[:narration.MAX_TEXT]
                if text and text not in found and len(found) < narration.MAX_LITERALS:
                    found.append(text)
    return [{"text": t, "pieces": [p for _, p in pieces(t)]} for t in found]


def configure(prepared):
    """`prepared`: the job's `voiceover` ({text: {path, pieces}}), or None."""
    global _prepared
    _prepared = dict(prepared) if isinstance(prepared, dict) else None


def install():
    """Hooks the import of manim-voiceover, or patches it now when it is
    already imported (Manim imports its registered plugins)."""
    for name in SERVICES:
        if name in sys.modules:
            # Imported before any scene ran: replaced, never used.
            del sys.modules[name]
    scene = sys.modules.get("manim_voiceover.voiceover_scene")
    if scene is not None and not getattr(scene.VoiceoverScene, "_manimd", False):
        _patch(scene.VoiceoverScene)
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    """Serves our own service modules, and patches `VoiceoverScene` once
    manim-voiceover itself is imported."""

    def find_spec(self, name, path=None, target=None):
        if name in SERVICES:
            return importlib.util.spec_from_loader(name, _ServiceLoader())
        if name == "manim_voiceover.voiceover_scene":
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            if spec is not None and spec.loader is not None:
                spec.loader = _Patching(spec.loader)
            return spec
        return None


class _ServiceLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        setattr(module, SERVICES[module.__name__], _host_service())
        module.__doc__ = "manimd: speech made on the host (see manimd_worker.voiceover)."


class _Patching(importlib.abc.Loader):
    """manim-voiceover's own loader, then our patches."""

    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _patch(module.VoiceoverScene)


_service_class = None


def _host_service():
    global _service_class
    if _service_class is None:
        from manim_voiceover.services.base import SpeechService

        class _HostService(SpeechService):
            """Any speech service: the host speaks (manimd)."""

            def __init__(self, *args, **kwargs):
                speed = kwargs.get("global_speed", 1.0)
                SpeechService.__init__(self, global_speed=speed if isinstance(speed, (int, float)) else 1.0)

            def generate_from_text(self, text, cache_dir=None, path=None, **kwargs):
                return _voiced(normalize(text))

        _service_class = _HostService
    return _service_class


def _patch(scene_class):
    from manim_voiceover.services.base import SpeechService

    # A scene's own SpeechService subclass never runs either: every
    # voiceover's audio is the host's.
    SpeechService._wrap_generate_from_text = lambda self, text, **kwargs: _voiced(normalize(text))
    original = scene_class._add_voiceover_text

    def _add_voiceover_text(self, text, *args, **kwargs):
        tracker = original(self, text, *args, **kwargs)
        _report(tracker, kwargs.get("subcaption"))
        return tracker

    scene_class._add_voiceover_text = _add_voiceover_text
    scene_class._manimd = True


_last = None


def _voiced(text):
    """The tracker's data for `text`: its audio and word boundaries at the
    bookmarks."""
    global _last
    if _prepared is None:
        path, secs = _placeholder(text)
    else:
        entry = _prepared.get(text)
        if entry is None:
            protocol.emit("voiceover-text", text=text, pieces=[p for _, p in pieces(text)])
            raise UserError(
                "voiceover-unprepared",
                "a voiceover's text was not known before the render: "
                + protocol.clip(text, 200),
            )
        path = os.path.join(SPEECH_DIR, os.path.basename(str(entry["path"])))
        secs = [float(s) for s in entry["pieces"]]
    bounds = []
    offset = 0
    at = 0.0
    marks = {}
    for (mark, piece), piece_secs in zip(pieces(text), secs):
        if mark is not None:
            marks[mark] = round(at, 6)
        if not bounds or bounds[-1]["text_offset"] < offset:
            bounds.append(_bound(offset, at, piece))
        offset += len(piece)
        at += piece_secs
    if bounds[-1]["text_offset"] < offset:
        bounds.append(_bound(offset, at, "."))
    _last = (text, marks)
    return {"input_text": text, "original_audio": path, "final_audio": path, "word_boundaries": bounds}


def _bound(offset, secs, text):
    return {"audio_offset": int(round(secs * RESOLUTION)), "text_offset": offset,
            "word_length": max(len(text), 1), "text": text or ".", "boundary_type": "Word"}


def _placeholder(text):
    """A silent WAV as long as the text's estimate, split over its pieces by length."""
    os.makedirs(SCRATCH_DIR, exist_ok=True)
    parts = [p for _, p in pieces(text)]
    total = narration.estimate(BOOKMARK.sub("", text))
    chars = sum(len(p) for p in parts) or 1
    secs = [total * len(p) / chars for p in parts]
    path = os.path.join(SCRATCH_DIR, f"{len(os.listdir(SCRATCH_DIR))}.wav")
    rate = 8000
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(round(total * rate)))
    return path, secs


def _report(tracker, subcaption):
    """One `voiceover` line per voiceover: its place in its scene, its
    subtitle, and its marks' times from its start."""
    text, marks = _last if _last is not None else ("", {})
    shown = subcaption if isinstance(subcaption, str) else BOOKMARK.sub("", text)
    protocol.emit(
        "voiceover",
        index=scene_index,
        start=round(float(tracker.start_t), 6),
        end=round(float(tracker.end_t), 6),
        text=protocol.clip(normalize(shown), 2000),
        marks=marks,
    )
