"""The `%%manimd` magic in a real notebook: built here with nbformat,
executed by nbclient in a real IPython kernel (this interpreter's, with the
pip-installed package) against the real server of MANIMD_TEST_URL."""

from __future__ import annotations

import base64
import random
import re
import sys

import nbclient
import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from conftest import ffprobe, is_mp4

# A seed of this run's own keeps the result cache out of it.
NARRATED = f"""%%manimd Narrated -q low --narration --seed {random.randrange(1 << 30)}
from manim import *


class Narrated(Scene):
    def construct(self):
        narrate("A circle appears.")
        self.play(Create(Circle()), run_time=1)
"""

# The scene's line 6 (the cell's line 7, under the magic's line).
FAILING = """%%manimd
from manim import *


class Broken(Scene):
    def construct(self):
        self.play(Create(undefined_circle), run_time=1)
"""

SYNTAX = """%%manimd
from manim import *


class Bad(Scene):
    def construct(self:
        pass
"""


def data_of(html: str, media_type: str) -> bytes:
    found = re.search(rf"data:{re.escape(media_type)};base64,([A-Za-z0-9+/=]+)", html)
    assert found, f"no {media_type} data URL in {html[:300]}"
    return base64.b64decode(found.group(1))


def texts(outputs: list) -> list[str]:
    return [o.get("data", {}).get("text/plain", "") for o in outputs if o.output_type == "display_data"]


class Recorder(nbclient.NotebookClient):
    """Keeps every display update the kernel sent, by cell."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.updates: dict[int, list[str]] = {}

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] == "update_display_data":
            text = msg["content"]["data"].get("text/plain", "")
            self.updates.setdefault(cell_index, []).append(text)
        return super().process_message(msg, cell, cell_index)


def test_the_magic_renders_progress_video_subtitles_and_errors(url, artifacts, monkeypatch):
    monkeypatch.setenv("MANIMD_URL", url)  # the kernel inherits it
    nb = new_notebook(cells=[
        new_code_cell("import sys\nprint(sys.executable)"),
        new_code_cell("%load_ext manimd_client"),
        new_code_cell(NARRATED),
        new_code_cell(FAILING, metadata={"tags": ["raises-exception"]}),
        # Nothing answers there: the next cell reaches the server by --server.
        new_code_cell("%env MANIMD_URL=http://127.0.0.1:9"),
        new_code_cell(SYNTAX.replace("%%manimd", f"%%manimd --server {url}"),
                      metadata={"tags": ["raises-exception"]}),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = Recorder(nb, kernel_name="python3", timeout=600,
                      resources={"metadata": {"path": str(artifacts)}})
    try:
        client.execute()
    finally:
        nbformat.write(nb, artifacts / "magic.ipynb")  # kept to look at
    where, load, narrated, failing, _, syntax = nb.cells

    # The kernel is this interpreter: the package under test is the installed one.
    assert where.outputs[0].text.strip() == sys.executable
    assert load.outputs == []

    # Progress: one display, redrawn as the render went, ending with its outcome.
    progress = [o for o in narrated.outputs if "manimd:" in o.get("data", {}).get("text/plain", "")]
    assert len(progress) == 1, narrated.outputs
    assert progress[0].data["text/plain"].startswith("manimd: done in "), progress[0].data
    # While it rendered, the line said where the render was.
    updates = client.updates[2]
    assert "manimd: running" in updates or "manimd: queued" in updates, updates
    assert any(u.startswith("manimd: Narrated: animation 1, Create(Circle) (line 7)") for u in updates), updates
    # The video, embedded as a data URL, is the rendered MP4 with its speech.
    [video] = [o for o in narrated.outputs if "<video" in o.get("data", {}).get("text/html", "")]
    html = video.data["text/html"]
    assert video.data["text/plain"].startswith("manimd video ") and "854x480" in video.data["text/plain"]
    mp4 = data_of(html, "video/mp4")
    assert is_mp4(mp4)
    path = artifacts / "narrated.mp4"
    path.write_bytes(mp4)
    probe = ffprobe(path)
    assert probe["video"]["codec_name"] == "h264" and probe["audio"]["codec_name"] == "aac"
    # The narration's subtitles, as a track of the video.
    assert "<track kind='subtitles'" in html
    vtt = data_of(html, "text/vtt").decode()
    assert vtt.startswith("WEBVTT") and "A circle appears." in vtt

    # A scene that fails: the typed error with the scene's line and the line itself.
    [error] = [o for o in failing.outputs if o.output_type == "error"]
    assert error.ename == "JobFailed"
    assert "[scene-error]" in error.evalue and "undefined_circle" in error.evalue
    trace = "\n".join(error.traceback)
    assert "JobFailed: [scene-error] NameError: name 'undefined_circle' is not defined (line 6)" in trace, trace
    assert "  scene.py, line 6, in construct: self.play(Create(undefined_circle), run_time=1)" in trace
    assert ">    6 |         self.play(Create(undefined_circle), run_time=1)" in trace, trace
    assert any(t.startswith("manimd: failed: [scene-error] NameError") for t in texts(failing.outputs))
    assert not any("<video" in o.get("data", {}).get("text/html", "") for o in failing.outputs)

    # A file that does not parse is refused at once (422), with its line.
    [error] = [o for o in syntax.outputs if o.output_type == "error"]
    assert error.ename == "Unprocessable"
    trace = "\n".join(error.traceback)
    assert "[syntax-error] '(' was never closed (line 5)" in trace, trace
    assert ">    5 |     def construct(self:" in trace, trace
