"""The client against a real server: renders, events, errors, previews,
generation, keys. The package under test is the one pip installed."""

from __future__ import annotations

import asyncio
import random
import struct
import sys
from pathlib import Path

import pytest

import manimd_client
from manimd_client import (
    AsyncClient, Client, Event, JobFailed, NotFound, TooManyRequests, Unauthorized, Unprocessable,
)
from manimd_client import types as t
from manimd_client._sse import Decoder
from manimd_client.errors import api_error

from conftest import env, ffprobe, is_mp4

# A seed of this run's own: it is part of the result cache's key, so a
# render that must run is never answered from an earlier run's cache.
SEED = random.randrange(1 << 30)

CIRCLE = """from manim import *


class Circles(Scene):
    def construct(self):
        self.play(Create(Circle()), run_time=1)
        self.wait(0.5)
"""

# A NameError at line 6 when the scene runs.
BROKEN = """from manim import *


class Broken(Scene):
    def construct(self):
        self.play(Create(undefined_circle), run_time=1)
"""

# Does not parse: the bracket opened at line 5 is never closed.
SYNTAX = """from manim import *


class Bad(Scene):
    def construct(self:
        pass
"""

# The model's scripted answer (tests/it/clients.rs gives the same text).
GENERATED = """from manim import *


class Gen(Scene):
    def construct(self):
        self.play(Create(Square()), run_time=1)
"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_installed_package_is_the_one_under_test():
    # pip installed it into this interpreter's environment (not the source tree).
    assert Path(manimd_client.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), manimd_client.__file__
    assert "site-packages" in manimd_client.__file__


def test_render_follow_download(url, tmp_path):
    with Client(url) as client:
        job = client.render(CIRCLE, quality="low", seed=SEED)
        assert job.status == "queued" and len(job.id) == 32
        events = list(job.follow())
        done = job.wait()
        assert done.status == "succeeded"

        names = [e.name for e in events]
        assert names[0] == "status" and names[-1] == "status", names
        assert isinstance(events[-1].data, t.JobView) and events[-1].data.status == "succeeded"
        steps = [e.data for e in events if e.name == "progress"]
        assert isinstance(steps[0], t.ProgressReady) and steps[0].engine == "manim"
        animations = [s for s in steps if isinstance(s, t.ProgressAnimation)]
        assert [(a.index, a.line) for a in animations] == [(0, 6), (1, 7)], animations
        assert animations[0].name.startswith("Create")
        assert any(isinstance(s, t.ProgressFrames) and s.frames > 0 for s in steps)
        finished = [s for s in steps if isinstance(s, t.ProgressSceneFinished)]
        assert finished[0].scene == "Circles" and finished[0].plays == 2

        result = job.result
        assert result is not None and result.format == "mp4"
        assert (result.width, result.height, result.fps) == (854, 480, 15.0)
        assert abs(result.duration - 1.5) < 0.15
        assert [a.line for a in result.animations] == [6, 7]

        path = job.download(tmp_path)
        assert path == tmp_path / f"{job.id}.mp4"
        data = path.read_bytes()
        assert is_mp4(data) and len(data) == result.bytes
        probe = ffprobe(path)
        assert probe["video"]["codec_name"] == "h264"
        assert (probe["video"]["width"], probe["video"]["height"]) == (854, 480)
        assert abs(probe["duration"] - 1.5) < 0.15
        assert job.thumbnail()[:8] == b"\x89PNG\r\n\x1a\n"

        # The same job, found again by its id.
        again = client.get_job(job.id)
        assert again.status == "succeeded" and again.result.bytes == result.bytes


def test_render_from_a_path_with_the_scene_named(url, tmp_path):
    scene = tmp_path / "two.py"
    scene.write_text(CIRCLE + "\n\nclass Other(Scene):\n    def construct(self):\n        self.wait(1)\n")
    with Client(url) as client:
        # Two scenes and none named: the server lists them.
        with pytest.raises(Unprocessable) as e:
            client.render(path=scene)
        assert e.value.code == "scene-not-found" and e.value.status == 422
        assert sorted(e.value.details["available"]) == ["Circles", "Other"]
        job = client.render(path=scene, scene="Other", quality="low", seed=SEED)
        view = job.wait()
        assert view.scenes == ["Other"] and abs(view.result.duration - 1.0) < 0.15
        # The same request again: the result cache answers at once.
        again = client.render(path=scene, scene="Other", quality="low", seed=SEED)
        assert again.status == "succeeded" and again.result.cache_hit is True
        assert [e.name for e in again.follow()] == ["status"]


def test_a_syntax_error_is_422_with_its_line(url):
    with Client(url) as client:
        with pytest.raises(Unprocessable) as e:
            client.render(SYNTAX)
    err = e.value
    assert (err.status, err.code, err.line) == (422, "syntax-error", 5), err
    assert "never closed" in err.message


def test_a_failing_scene_fails_the_job_with_its_line(url):
    with Client(url) as client:
        job = client.render(BROKEN, quality="low")
        with pytest.raises(JobFailed) as e:
            job.wait()
    err = e.value
    assert (err.code, err.line) == ("scene-error", 6), err
    assert "undefined_circle" in err.message
    assert err.details["scene"] == "Broken"
    assert err.job.status == "failed" and err.job.id == job.id


def test_unknown_jobs_and_bad_requests_are_typed(url):
    with Client(url) as client:
        with pytest.raises(NotFound) as e:
            client.get_job("0" * 32)
        assert (e.value.status, e.value.code) == (404, "not-found")
        # The generated request types refuse a field the API does not have.
        with pytest.raises(TypeError):
            client.render(CIRCLE, colour="red")


def test_storyboard_and_still_are_pngs(url):
    with Client(url) as client:
        board = client.storyboard(CIRCLE, quality="low")
        assert [f.animation for f in board.frames] == [0, 1]
        # Each animation's last frame, at 15 frames a second.
        for frame, end in zip(board.frames, [1.0, 1.5]):
            assert end - 1 / 15 - 1e-6 <= frame.time <= end, board.frames
        assert [a.name.split("(")[0] for a in board.animations] == ["Create", "Wait"]
        for frame in board.frames:
            assert png_size(frame.png) == (854, 480)
        still = client.still(CIRCLE, at=0.5, quality="medium")
        assert png_size(still) == (1280, 720)
        with pytest.raises(Unprocessable) as e:
            client.still(BROKEN, animation=0)
        assert (e.value.code, e.value.line) == ("scene-error", 6)


def test_generate_through_the_servers_model(url, tmp_path):
    with Client(url) as client:
        assert client.capabilities().generation is True
        job = client.generate("draw a square", quality="low", max_attempts=1)
        assert job.view.kind == "generation"
        events = list(job.follow())
        view = job.wait()
    assert view.status == "succeeded", view.error
    stages = [e.data.stage for e in events if isinstance(e.data, t.StageEvent)]
    assert stages == ["planning", "writing", "checking", "rendering"], stages
    # The model's answer as it streamed (fenced), and the code taken from it.
    streamed = "".join(e.data.text for e in events if isinstance(e.data, t.DeltaEvent))
    assert GENERATED in streamed and streamed.startswith("Here is the scene"), streamed
    attempts = [e.data for e in events if isinstance(e.data, t.Attempt)]
    assert len(attempts) == 1 and attempts[0].error is None and attempts[0].code == GENERATED
    assert view.generation.prompt == "draw a square"
    assert view.generation.storyboard == "1. A square is drawn."


def test_async_client_renders_and_follows(url):
    code = CIRCLE.replace("Circle()", "Square()").replace("self.wait(0.5)\n", "")

    async def main() -> tuple[list[Event], t.JobView, bytes, bytes]:
        async with AsyncClient(url) as client:
            job = await client.render(code, quality="low", seed=SEED)
            events = [e async for e in job.follow()]
            view = await job.wait(timeout=300)
            video, still = await asyncio.gather(job.video(), client.still(code, animation=0))
            return events, view, video, still

    events, view, video, still = asyncio.run(main())
    assert view.status == "succeeded"
    assert events[-1].data.status == "succeeded"
    assert [e.data.line for e in events if isinstance(e.data, t.ProgressAnimation)] == [6]
    assert is_mp4(video) and len(video) == view.result.bytes
    assert png_size(still) == (854, 480)


def test_a_keyed_server_wants_the_key():
    url, key = env("MANIMD_TEST_KEYED_URL"), env("MANIMD_TEST_KEY")
    for wrong in (None, key + "-wrong"):
        with Client(url, wrong) as client:
            with pytest.raises(Unauthorized) as e:
                client.capabilities()
            assert (e.value.status, e.value.code) == (401, "unauthorized")
            with pytest.raises(Unauthorized):
                client.render(CIRCLE)
    with Client(url, key) as client:
        assert [e.name for e in client.capabilities().engines] == ["manim", "manimgl"]
        # Past the key check: the handler answers for this key.
        with pytest.raises(NotFound):
            client.get_job("0" * 32)


def test_busy_answers_carry_retry_after():
    body = b'{"error": {"code": "queue-full", "message": "the queue is full"}}'
    err = api_error(429, body, "7")
    assert isinstance(err, TooManyRequests)
    assert (err.status, err.code, err.retry_after) == (429, "queue-full", 7.0)
    assert api_error(503, b"<html>proxy</html>", None).code == "unexpected-response"


def test_event_stream_decoder():
    d = Decoder()
    lines = [": keep-alive", "event: progress", 'data: {"a":', "data: 1}", "", "", "data: x", ""]
    events = [e for e in map(d.feed, lines) if e]
    assert [(e.event, e.data) for e in events] == [("progress", '{"a":\n1}'), ("message", "x")]
