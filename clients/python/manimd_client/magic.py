"""The `%%manimd` cell magic: the cell is a scene file, rendered by a manimd
server; progress shows while it renders, then the video (with a narrated
render's subtitles) is embedded in the output as data URLs, so it plays
offline and stays in the saved notebook."""

from __future__ import annotations

import base64
import html
import os
import time
from typing import Any

from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from . import _types as t
from ._client import Client, Event
from .errors import ManimdError

DEFAULT_SERVER = "http://127.0.0.1:8080"

# A frame count redraws the progress line at most this often.
REDRAW_SECS = 0.2

MEDIA_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime",
               "gif": "image/gif", "png": "image/png"}


def describe(event: Event) -> str | None:
    """One line for the progress display, or None to leave it as it is."""
    d = event.data
    if isinstance(d, t.JobView):
        return {"queued": "queued", "running": "running"}.get(d.status)
    if isinstance(d, t.ProgressReady):
        return f"{d.engine} {d.version} ready"
    if isinstance(d, t.ProgressSceneStarted):
        return f"{d.scene} ({d.index + 1} of {d.count})"
    if isinstance(d, t.ProgressAnimation):
        where = f" (line {d.line})" if d.line is not None else ""
        cached = ", from the cache" if d.cached else ""
        return f"{d.scene}: animation {d.index + 1}, {d.name}{where}{cached}"
    if isinstance(d, t.ProgressSceneFinished):
        return f"{d.scene}: {d.plays} animations, {d.duration:.1f} s"
    return None


class ProgressLine:
    """An updating display: one line that each event redraws."""

    def __init__(self) -> None:
        self.handle = display(self._bundle("submitting"), raw=True, display_id=True)
        self.text = "submitting"
        self.drawn = 0.0

    @staticmethod
    def _bundle(text: str) -> dict[str, str]:
        return {"text/plain": f"manimd: {text}",
                "text/html": f"<pre class='manimd-progress'>manimd: {html.escape(text)}</pre>"}

    def show(self, text: str, force: bool = False) -> None:
        self.text = text
        now = time.monotonic()
        if force or now - self.drawn >= REDRAW_SECS:
            self.drawn = now
            if self.handle is not None:
                self.handle.update(self._bundle(text), raw=True)

    def on(self, event: Event) -> None:
        """A step is drawn at once; frame counts at most every REDRAW_SECS."""
        if isinstance(event.data, t.ProgressFrames):
            self.show(self.text.split(" · ")[0] + f" · {event.data.frames} frames")
        elif (line := describe(event)) is not None:
            self.show(line, force=True)


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def media_bundle(view: t.JobView, data: bytes, vtt: str | None) -> dict[str, str]:
    """The output for a finished render: a video (or image) element whose
    source is the file itself, with the subtitles as a track."""
    r = view.result
    fmt = r.format if r else view.format
    media_type = MEDIA_TYPES[fmt]
    summary = f"manimd video {view.id}: {fmt}"
    if r and r.width and r.height:
        summary += f", {r.width}x{r.height}"
    if r and r.duration:
        summary += f", {r.duration:.2f} s"
    src = data_url(media_type, data)
    if media_type.startswith("image/"):
        element = f"<img src='{src}' alt='{html.escape(summary)}'/>"
    else:
        track = ""
        if vtt:
            track = (f"<track kind='subtitles' srclang='en' label='Narration' default "
                     f"src='{data_url('text/vtt', vtt.encode())}'/>")
        muted = "" if vtt else " muted autoplay"
        element = (f"<video controls loop playsinline{muted} style='max-width: 100%'>"
                   f"<source src='{src}' type='{media_type}'/>{track}</video>")
    return {"text/plain": summary, "text/html": element}


def source_context(code: str, line: int | None, around: int = 2) -> list[str]:
    """The scene's lines around `line`, numbered, the line itself marked."""
    if line is None:
        return []
    lines = code.splitlines()
    out = []
    for n in range(max(1, line - around), min(len(lines), line + around) + 1):
        mark = ">" if n == line else " "
        out.append(f"{mark}{n:5} | {lines[n - 1]}")
    return out


@magics_class
class ManimdMagics(Magics):
    @magic_arguments()
    @argument("scene", nargs="?", help="the scene to render (the cell's only one when left out)")
    @argument("-q", "--quality", choices=["low", "medium", "high", "production", "4k"])
    @argument("--engine", choices=["manim", "manimgl"], help="default: from the imports")
    @argument("--format", default="mp4", choices=["mp4", "webm", "gif", "png"])
    @argument("--fps", type=int)
    @argument("--seed", type=int)
    @argument("--narration", action="store_true", help="speak the narrate() lines, with subtitles")
    @argument("--no-cache", action="store_true", help="render every animation afresh")
    @argument("--server", help=f"the manimd server (default $MANIMD_URL, else {DEFAULT_SERVER})")
    @argument("-o", "--output", help="also write the file here")
    @cell_magic
    def manimd(self, line: str, cell: str) -> None:
        """Renders the cell, a complete scene file, on a manimd server and
        shows the video. The API key comes from $MANIMD_API_KEY."""
        args = parse_argstring(self.manimd, line)
        url = args.server or os.environ.get("MANIMD_URL") or DEFAULT_SERVER
        options: dict[str, Any] = {
            "scene": args.scene, "quality": args.quality, "engine": args.engine,
            "format": args.format, "fps": args.fps, "seed": args.seed,
            "narration": args.narration or None, "cache": False if args.no_cache else None,
        }
        progress = ProgressLine()
        with Client(url, os.environ.get("MANIMD_API_KEY") or None) as client:
            try:
                job = client.render(cell, **options)
                for event in job.follow():
                    progress.on(event)
                view = job.wait()
                data = job.video()
                vtt = job.subtitles() if args.narration else None
            except ManimdError as e:
                e.context = source_context(cell, e.line)
                progress.show(f"failed: [{e.code}] {e.message}", force=True)
                raise
        if args.output:
            with open(args.output, "wb") as f:
                f.write(data)
        secs = view.timings.render_secs
        progress.show("done" + (f" in {secs:.1f} s" if secs is not None else "")
                      + (", from the result cache" if view.result and view.result.cache_hit else ""), force=True)
        display(media_bundle(view, data, vtt), raw=True)


def load(ipython: Any) -> None:
    ipython.register_magics(ManimdMagics)


__all__ = ["ManimdMagics", "load"]
