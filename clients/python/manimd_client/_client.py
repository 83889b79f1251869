"""The blocking and the async client over httpx. What the two share (request
bodies, typed answers, event decoding, errors) is plain functions here; the
classes only do the I/O."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import httpx

from . import _types as t
from ._sse import Decoder, RawEvent
from .errors import JobCanceled, JobFailed, TransportError, UnexpectedResponse, api_error

TERMINAL = ("succeeded", "failed", "canceled")

# Calls answer when their work is done: a preview draws (up to a minute),
# a code generation asks the model. Event streams wait without limit.
TIMEOUT = httpx.Timeout(180.0, connect=10.0)
STREAM_TIMEOUT = httpx.Timeout(None, connect=10.0)

EventData = Union[t.JobView, t.Progress, t.StageEvent, t.DeltaEvent, t.Attempt, dict]


@dataclass(frozen=True)
class Event:
    """One event of a job's stream: `name` is the SSE event (`status`,
    `progress`, `stage`, `delta`, `attempt`), `data` its typed payload: a
    `JobView` for `status`, one of the `Progress*` classes for `progress`,
    `StageEvent`, `DeltaEvent` or `Attempt` for a generation's steps, and
    the plain JSON for an event this client does not know."""

    name: str
    data: EventData


@dataclass(frozen=True)
class Frame:
    """One frame of a preview: the animation it ends (storyboard) or falls
    in (still), its time in the scene, and the PNG."""

    animation: int
    time: float
    png: bytes


@dataclass(frozen=True)
class Preview:
    """A storyboard or a still: the scene's animations and the frames."""

    id: str
    animations: list[t.AnimationInfo]
    frames: list[Frame]
    wall_secs: float


def _decode_event(raw: RawEvent) -> Event:
    import json

    data = json.loads(raw.data)
    readers = {
        "status": t.JobView.from_json,
        "progress": t.progress_from_json,
        "stage": t.StageEvent.from_json,
        "delta": t.DeltaEvent.from_json,
        "attempt": t.Attempt.from_json,
    }
    reader = readers.get(raw.event)
    try:
        return Event(raw.event, reader(data) if reader else data)
    except (KeyError, TypeError, ValueError):
        return Event(raw.event, data)


def _source(code: str | None, path: str | os.PathLike | None) -> str:
    if (code is None) == (path is None):
        raise ValueError("give the scene's code or a path to it, not both")
    return code if code is not None else Path(path).read_text()  # type: ignore[arg-type]


def _render_body(code: str | None, path: str | os.PathLike | None, **options: Any) -> dict:
    return t.RenderRequest(code=_source(code, path), **options).to_json()


def _preview_body(code: str | None, path: str | os.PathLike | None, **options: Any) -> dict:
    return t.PreviewRequest(code=_source(code, path), **options).to_json()


def _json(r: httpx.Response) -> Any:
    if r.is_success:
        try:
            return r.json()
        except ValueError:
            raise UnexpectedResponse(r.status_code, r.text) from None
    raise api_error(r.status_code, r.content, r.headers.get("retry-after"))


def _typed(r: httpx.Response, reader: Any) -> Any:
    body = _json(r)
    try:
        return reader(body)
    except (KeyError, TypeError, ValueError):
        raise UnexpectedResponse(r.status_code, r.text) from None


def _raise_for(r: httpx.Response) -> None:
    """Raises the typed error of a refused call whose body has been read."""
    if not r.is_success:
        raise api_error(r.status_code, r.content, r.headers.get("retry-after"))


def _outcome(view: t.JobView) -> t.JobView:
    if view.status == "failed":
        raise JobFailed(view)
    if view.status == "canceled":
        raise JobCanceled(view)
    return view


def _default_path(view: t.JobView, path: str | os.PathLike | None) -> Path:
    name = f"{view.id}.{view.result.format if view.result else view.format}"
    if path is None:
        return Path.cwd() / name
    p = Path(path)
    return p / name if p.is_dir() else p


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class _Transport:
    """Turns httpx's own failures into `TransportError`."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: Any, tb: Any) -> bool:
        if isinstance(e, httpx.TransportError):
            raise TransportError(str(e) or type(e).__name__) from e
        return False


class Client:
    """A manimd server at `url` (`http://host:port`), with an API key when
    the server has keys. Use it as a context manager, or `close()` it."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: httpx.Timeout = TIMEOUT):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=_headers(api_key), timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with _Transport():
            return self._http.request(method, path, **kw)

    def render(self, code: str | None = None, *, path: str | os.PathLike | None = None, **options: Any) -> Job:
        """`POST /v1/renders`: the scene's `code` (or the file at `path`)
        with any field of `RenderRequest` (`scene`, `scenes`, `engine`,
        `quality`, `format`, `fps`, `seed`, `encoding`, `narration`,
        `cache`, `webhook_url`). A scene that cannot render at all (a syntax
        error, no scene) raises `Unprocessable` with its line."""
        r = self._request("POST", "/v1/renders", json=_render_body(code, path, **options))
        return Job(self, _typed(r, t.JobView.from_json))

    def generate(self, prompt: str, **options: Any) -> Job:
        """`POST /v1/generations`: a scene written by the server's model from
        `prompt` and rendered; options are `GenerationRequest`'s."""
        body = t.GenerationRequest(prompt=prompt, **options).to_json()
        return Job(self, _typed(self._request("POST", "/v1/generations", json=body), t.JobView.from_json))

    def generate_code(self, prompt: str, **options: Any) -> t.CodeGeneration:
        """`POST /v1/code/generations`: checked code, not rendered."""
        body = t.GenerationRequest(prompt=prompt, **options).to_json()
        r = self._request("POST", "/v1/code/generations", json=body)
        return _typed(r, t.CodeGeneration.from_json)

    def get_job(self, id: str) -> Job:
        """`GET /v1/renders/{id}`: a render or generation job."""
        return Job(self, _typed(self._request("GET", f"/v1/renders/{id}"), t.JobView.from_json))

    def preview(self, code: str | None = None, *, path: str | os.PathLike | None = None,
                kind: t.PreviewMode = "storyboard", **options: Any) -> Preview:
        """`POST /v1/previews` and every frame's PNG. `kind` is `storyboard`
        (the end of every animation) or `still` (with `at` seconds or
        `animation`); further options are `PreviewRequest`'s."""
        r = self._request("POST", "/v1/previews", json=_preview_body(code, path, kind=kind, **options))
        view = _typed(r, t.PreviewView.from_json)
        frames = [Frame(f.animation, f.time, self._bytes(f.url)) for f in view.frames]
        return Preview(view.id, view.animations, frames, view.wall_secs)

    def storyboard(self, code: str | None = None, **options: Any) -> Preview:
        """The last frame of every animation."""
        return self.preview(code, kind="storyboard", **options)

    def still(self, code: str | None = None, **options: Any) -> bytes:
        """One frame as PNG: `at=SECONDS` or `animation=INDEX` (its end)."""
        return self.preview(code, kind="still", **options).frames[0].png

    def capabilities(self) -> t.Capabilities:
        return _typed(self._request("GET", "/v1/capabilities"), t.Capabilities.from_json)

    def health(self) -> t.Health:
        return _typed(self._request("GET", "/health"), t.Health.from_json)

    def _bytes(self, link: str) -> bytes:
        r = self._request("GET", link, follow_redirects=True)
        _raise_for(r)
        return r.content


class Job:
    """A job on the server. `view` is its latest known state."""

    def __init__(self, client: Client, view: t.JobView):
        self._client = client
        self.view = view

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status}>"

    @property
    def id(self) -> str:
        return self.view.id

    @property
    def status(self) -> t.JobStatus:
        return self.view.status

    @property
    def result(self) -> t.JobResult | None:
        return self.view.result

    @property
    def done(self) -> bool:
        return self.view.status in TERMINAL

    def refresh(self) -> t.JobView:
        self.view = self._client.get_job(self.id).view
        return self.view

    def follow(self) -> Iterator[Event]:
        """The job's events as they come, its current state first, to the
        final `status` event. `view` follows the `status` events."""
        http = self._client._http
        with _Transport(), http.stream("GET", self.view.links.events, timeout=STREAM_TIMEOUT) as r:
            if not r.is_success:
                r.read()
                _raise_for(r)
            decoder = Decoder()
            for line in r.iter_lines():
                raw = decoder.feed(line)
                if raw is None:
                    continue
                event = _decode_event(raw)
                if isinstance(event.data, t.JobView):
                    self.view = event.data
                yield event

    def wait(self, timeout: float | None = None) -> t.JobView:
        """Follows the job to its end: the finished job, or `JobFailed`
        (`JobCanceled`) with the typed error and its line."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.done:
            try:
                for _ in self.follow():
                    if self.done or (deadline and time.monotonic() > deadline):
                        break
            except TransportError:
                pass  # the stream broke: ask for the state below
        while not self.done:
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {self.status}")
            time.sleep(0.5)
            self.refresh()
        return _outcome(self.view)

    def video(self) -> bytes:
        """The finished file's bytes (`NotReady` before)."""
        return self._client._bytes(self.view.links.video)

    def thumbnail(self) -> bytes:
        return self._client._bytes(self.view.links.thumbnail)

    def subtitles(self) -> str:
        """A narrated render's WebVTT (`NotFound` `no-subtitles` otherwise)."""
        return self._client._bytes(self.view.links.subtitles or f"/v1/renders/{self.id}/subtitles").decode()

    def download(self, path: str | os.PathLike | None = None) -> Path:
        """Writes the file to `path` (a file, or a directory for `ID.EXT`;
        default `ID.EXT` here), waiting for the job first; returns where."""
        self.wait()
        dest = _default_path(self.view, path)
        part = dest.with_name(dest.name + ".part")
        http = self._client._http
        with _Transport(), http.stream("GET", self.view.links.video, follow_redirects=True) as r:
            if not r.is_success:
                r.read()
                _raise_for(r)
            with open(part, "wb") as f:
                for chunk in r.iter_bytes():
                    f.write(chunk)
        part.replace(dest)
        return dest

    def cancel(self) -> None:
        """Cancels a queued job, stops a running one, deletes a finished one."""
        _raise_for(self._client._request("DELETE", f"/v1/renders/{self.id}"))


class AsyncClient:
    """`Client`, with coroutines: `await client.render(...)`,
    `async for event in job.follow()`."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: httpx.Timeout = TIMEOUT):
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(api_key), timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with _Transport():
            return await self._http.request(method, path, **kw)

    async def render(self, code: str | None = None, *, path: str | os.PathLike | None = None,
                     **options: Any) -> AsyncJob:
        r = await self._request("POST", "/v1/renders", json=_render_body(code, path, **options))
        return AsyncJob(self, _typed(r, t.JobView.from_json))

    async def generate(self, prompt: str, **options: Any) -> AsyncJob:
        body = t.GenerationRequest(prompt=prompt, **options).to_json()
        r = await self._request("POST", "/v1/generations", json=body)
        return AsyncJob(self, _typed(r, t.JobView.from_json))

    async def generate_code(self, prompt: str, **options: Any) -> t.CodeGeneration:
        body = t.GenerationRequest(prompt=prompt, **options).to_json()
        r = await self._request("POST", "/v1/code/generations", json=body)
        return _typed(r, t.CodeGeneration.from_json)

    async def get_job(self, id: str) -> AsyncJob:
        r = await self._request("GET", f"/v1/renders/{id}")
        return AsyncJob(self, _typed(r, t.JobView.from_json))

    async def preview(self, code: str | None = None, *, path: str | os.PathLike | None = None,
                      kind: t.PreviewMode = "storyboard", **options: Any) -> Preview:
        r = await self._request("POST", "/v1/previews", json=_preview_body(code, path, kind=kind, **options))
        view = _typed(r, t.PreviewView.from_json)
        pngs = await asyncio.gather(*(self._bytes(f.url) for f in view.frames))
        frames = [Frame(f.animation, f.time, png) for f, png in zip(view.frames, pngs)]
        return Preview(view.id, view.animations, frames, view.wall_secs)

    async def storyboard(self, code: str | None = None, **options: Any) -> Preview:
        return await self.preview(code, kind="storyboard", **options)

    async def still(self, code: str | None = None, **options: Any) -> bytes:
        return (await self.preview(code, kind="still", **options)).frames[0].png

    async def capabilities(self) -> t.Capabilities:
        return _typed(await self._request("GET", "/v1/capabilities"), t.Capabilities.from_json)

    async def health(self) -> t.Health:
        return _typed(await self._request("GET", "/health"), t.Health.from_json)

    async def _bytes(self, link: str) -> bytes:
        r = await self._request("GET", link, follow_redirects=True)
        _raise_for(r)
        return r.content


class AsyncJob:
    """`Job`, with coroutines."""

    def __init__(self, client: AsyncClient, view: t.JobView):
        self._client = client
        self.view = view

    def __repr__(self) -> str:
        return f"<AsyncJob {self.id} {self.status}>"

    id = Job.id
    status = Job.status
    result = Job.result
    done = Job.done

    async def refresh(self) -> t.JobView:
        self.view = (await self._client.get_job(self.id)).view
        return self.view

    async def follow(self) -> AsyncIterator[Event]:
        http = self._client._http
        with _Transport():
            async with http.stream("GET", self.view.links.events, timeout=STREAM_TIMEOUT) as r:
                if not r.is_success:
                    await r.aread()
                    _raise_for(r)
                decoder = Decoder()
                async for line in r.aiter_lines():
                    raw = decoder.feed(line)
                    if raw is None:
                        continue
                    event = _decode_event(raw)
                    if isinstance(event.data, t.JobView):
                        self.view = event.data
                    yield event

    async def wait(self, timeout: float | None = None) -> t.JobView:
        async def follow_to_end() -> None:
            try:
                async for _ in self.follow():
                    if self.done:
                        break
            except TransportError:
                pass
            while not self.done:
                await asyncio.sleep(0.5)
                await self.refresh()

        if not self.done:
            try:
                await asyncio.wait_for(follow_to_end(), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"job {self.id} is still {self.status}") from None
        return _outcome(self.view)

    async def video(self) -> bytes:
        return await self._client._bytes(self.view.links.video)

    async def thumbnail(self) -> bytes:
        return await self._client._bytes(self.view.links.thumbnail)

    async def subtitles(self) -> str:
        link = self.view.links.subtitles or f"/v1/renders/{self.id}/subtitles"
        return (await self._client._bytes(link)).decode()

    async def download(self, path: str | os.PathLike | None = None) -> Path:
        await self.wait()
        dest = _default_path(self.view, path)
        part = dest.with_name(dest.name + ".part")
        http = self._client._http
        with _Transport():
            async with http.stream("GET", self.view.links.video, follow_redirects=True) as r:
                if not r.is_success:
                    await r.aread()
                    _raise_for(r)
                with open(part, "wb") as f:
                    async for chunk in r.aiter_bytes():
                        f.write(chunk)
        part.replace(dest)
        return dest

    async def cancel(self) -> None:
        _raise_for(await self._client._request("DELETE", f"/v1/renders/{self.id}"))


__all__ = ["AsyncClient", "AsyncJob", "Client", "Event", "Frame", "Job", "Preview"]
