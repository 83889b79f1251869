"""Which plays a job draws and which it passes over, and the frames a
preview keeps. Both engines' drivers ask a `Plan` at every play.

Passing over a play is never Manim's skip: the scene's time advances
frame by frame with every updater and rate function run, and only drawing
and encoding are off ("simulate, don't skip"). Manim's own skipping moves
each play in one time step, which leaves `dt` updaters and per-frame
randomness somewhere a full render never goes; simulating keeps every
later play exactly where a full render would have it. A scene that reads
the wall clock is still not deterministic; nothing here changes that.
"""

import hashlib
import inspect
import os
import random
import time

from manimd_worker import protocol
from manimd_worker.usercode import USER_FILE

# The owner's animation cache as the host shows it: `<key>.mp4`, read-only.
CACHE_DIR = "/cache"
FRAMES_DIR = "/job/out/frames"
KEY_LENGTH = 64


class PreviewDone(BaseException):
    """Raised once a preview has every frame it asked for: the rest of the
    scene is not run. A BaseException, so the author's `except Exception`
    does not swallow it."""


class ChunkDone(BaseException):
    """Raised after the last play of a chunk: what follows is another
    chunk's (see `Plan.chunk`)."""


class Plan:
    """One job's plan: `preview` is None for a render, else `{"kind":
    "storyboard"}` or `{"kind": "still", "at": seconds}` / `{"kind":
    "still", "animation": index}`; `profile` names everything outside the
    play itself that changes its frames (engine, version, size, rate,
    encoder settings), so that it is part of every cache key."""

    def __init__(self, job, profile):
        self.preview = job.get("preview")
        # A plan (mode "plan") draws nothing: it measures how long each play
        # is and whether the scene reads the clock or fresh entropy. Its
        # plays are Manim's own skipping (one time step each), not
        # simulated: a scene whose course depends on exact time may plan
        # other plays than it renders, which only cuts its chunks unevenly,
        # since a split render's join keys and awaits every play itself.
        self.planning = job.get("mode") == "plan"
        # A chunk (`{"first": i, "last": j}`) draws plays i..j of its scene;
        # the plays before i are simulated and the scene stops after j.
        self.chunk = job.get("chunk")
        # A split render's join (`awaits_before`: i): plays before i that the
        # cache lacks are simulated, not drawn, and their pieces awaited at
        # the scene's end; the other workers' chunks are drawing them.
        self.awaits_before = job.get("awaits_before")
        self.cache = bool(job.get("cache")) and self.preview is None and job.get("format") != "png"
        self.profile = profile
        self.fps = job["fps"]
        self.frames = 0
        self._saver = None
        self._pending = []

    @property
    def simulating(self):
        """A preview or a plan draws no video: every play is passed over."""
        return self.preview is not None or self.planning

    def before_chunk(self, index):
        """Whether play `index` comes before this chunk's range."""
        return self.chunk is not None and index < self.chunk["first"]

    def awaits(self, index):
        """Whether play `index`, when not cached, is another worker's to draw."""
        return self.awaits_before is not None and index < self.awaits_before

    def chunk_ends_after(self, index):
        """Whether play `index` is this chunk's last."""
        return self.chunk is not None and index >= self.chunk["last"]

    def still_frame(self):
        """The video frame a `still` at a time wants, or None."""
        p = self.preview
        if p and p.get("kind") == "still" and p.get("at") is not None:
            # The frame on screen at `at`: frame k shows [k/fps, (k+1)/fps).
            return int(float(p["at"]) * self.fps + 1e-6)
        return None

    def wants_end_of(self, index):
        """Whether the preview keeps the frame at the end of play `index`."""
        p = self.preview
        if not p:
            return False
        if p.get("kind") == "storyboard":
            return True
        return p.get("kind") == "still" and p.get("animation") == index

    def done_after(self, index):
        """Whether nothing after play `index` is needed."""
        p = self.preview
        return bool(p) and p.get("kind") == "still" and p.get("animation") == index

    def key(self, play_hash, rng=None):
        """The cache key of a play: the engine's own hash of the play and the
        scene, the profile and, for a play that draws random numbers, the
        random generators' state at its start (`rng`, see `rng_digest`).

        The engine's hash leaves the generators out, yet such a play depends
        on them; a play that draws none does not, and keying it by their
        state would only keep an unseeded scene from ever hitting."""
        digest = hashlib.sha256()
        for part in (self.profile, str(play_hash), rng or "-"):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def lookup(self, key):
        """The cached piece for `key`, or None."""
        path = os.path.join(CACHE_DIR, key + ".mp4")
        return path if os.path.isfile(path) else None

    def await_pieces(self, keys, poll=0.02):
        """Waits until every key's piece is in the cache (the host links each
        in as its chunk ends) and returns their paths. It never gives up
        itself: a chunk that fails stops this whole pass from the host."""
        paths = [os.path.join(CACHE_DIR, key + ".mp4") for key in keys]
        if paths:
            protocol.emit("awaiting-pieces", count=len(paths))
        missing = list(paths)
        while missing:
            missing = [p for p in missing if not os.path.isfile(p)]
            if missing:
                time.sleep(poll)
        return paths

    def keep(self, image, scene, animation, time):
        """Saves a preview frame (in the background: the scene goes on
        meanwhile) and, once `flush` has it written, tells the host."""
        os.makedirs(FRAMES_DIR, exist_ok=True)
        path = os.path.join(FRAMES_DIR, f"{self.frames:03d}.png")
        if self._saver is None:
            from concurrent.futures import ThreadPoolExecutor

            # PNG's compression runs outside the GIL: a storyboard's frames
            # are encoded on the other core while the scene runs on.
            self._saver = ThreadPoolExecutor(max_workers=2)
        saved = self._saver.submit(_save_png, image, path)
        self._pending.append((saved, dict(scene=scene, n=self.frames, animation=animation,
                                          time=round(float(time), 6), path=path)))
        self.frames += 1

    def flush(self):
        """Waits for every frame to be written and reports them in order."""
        for saved, fields in self._pending:
            saved.result()
            protocol.emit("preview-frame", **fields)
        self._pending = []


def _save_png(image, path):
    # Fast compression: a storyboard saves one full-size frame per play.
    image.convert("RGB").save(path, compress_level=1)


def rng_digest():
    """A digest of the global generators' state (`random`, `numpy.random`)."""
    digest = hashlib.sha256(repr(random.getstate()).encode())
    try:
        import numpy

        name, keys, pos, has_gauss, gauss = numpy.random.get_state()
        digest.update(f"{name}:{pos}:{has_gauss}:{gauss!r}".encode())
        digest.update(keys.tobytes())
    except ImportError:
        pass
    return digest.hexdigest()


def author_line():
    """The line of the author's file that is running now (the innermost
    frame of the scene file), or None."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_filename == USER_FILE:
                return frame.f_lineno
            frame = frame.f_back
        return None
    finally:
        del frame


class Determinism:
    """Records the author's lines that read the wall clock or fresh entropy
    while a plan runs. Such a scene differs from run to run, so its plays
    cannot be drawn by separate workers and stitched. Only calls made from
    the author's file count: the engine reads the clock for its own
    bookkeeping, which changes no frame."""

    CLOCK = (
        ("time", ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns")),
    )
    ENTROPY = (
        ("os", ("urandom", "getrandom")),
        ("secrets", ("token_bytes", "token_hex", "randbits", "randbelow", "choice")),
        ("uuid", ("uuid1", "uuid4")),
    )

    def __init__(self):
        self.clock = set()
        self.entropy = set()

    def install(self):
        import importlib

        for found, table in ((self.clock, self.CLOCK), (self.entropy, self.ENTROPY)):
            for module_name, names in table:
                module = importlib.import_module(module_name)
                for name in names:
                    if hasattr(module, name):
                        setattr(module, name, self._watch(getattr(module, name), found))
        self._watch_datetime()
        self._watch_numpy()
        self.install_reseed()

    def _watch(self, fn, found):
        def watched(*args, **kwargs):
            line = _caller_line()
            if line is not None:
                found.add(line)
            return fn(*args, **kwargs)

        watched.__wrapped__ = fn
        return watched

    def _watch_datetime(self):
        import datetime

        clock = self.clock

        class WatchedDatetime(datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                _note(clock)
                return super().now(tz)

            @classmethod
            def utcnow(cls):
                _note(clock)
                return super().utcnow()

            @classmethod
            def today(cls):
                _note(clock)
                return super().today()

        class WatchedDate(datetime.date):
            @classmethod
            def today(cls):
                _note(clock)
                return super().today()

        datetime.datetime = WatchedDatetime
        datetime.date = WatchedDate

    def _watch_numpy(self):
        try:
            import numpy.random
        except ImportError:
            return
        default_rng = numpy.random.default_rng
        entropy = self.entropy

        def watched_default_rng(seed=None):
            # A generator made without a seed draws from the OS's entropy.
            if seed is None:
                _note(entropy)
            return default_rng(seed)

        numpy.random.default_rng = watched_default_rng
        numpy.random.seed = self._reseed(numpy.random.seed)

    def install_reseed(self):
        random.seed = self._reseed(random.seed)

    def _reseed(self, seed_fn):
        entropy = self.entropy

        def watched_seed(*args, **kwargs):
            # Reseeding with no seed takes fresh entropy.
            if not args or args[0] is None:
                _note(entropy)
            return seed_fn(*args, **kwargs)

        return watched_seed

    def report(self):
        return {"clock": sorted(self.clock), "entropy": sorted(self.entropy)}


def _note(found):
    line = _caller_line(depth=3)
    if line is not None:
        found.add(line)


def _caller_line(depth=2):
    """The author's line when the call `depth` frames up comes from the
    author's file, else None."""
    import sys

    try:
        frame = sys._getframe(depth)
    except ValueError:
        return None
    return frame.f_lineno if frame.f_code.co_filename == USER_FILE else None
