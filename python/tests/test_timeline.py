"""The plan's watch on the clock and on fresh entropy: only the author's
calls count, and each is recorded with its line."""

import datetime
import os
import random
import time
import uuid

import pytest

from manimd_worker import timeline
from manimd_worker.usercode import USER_FILE


@pytest.fixture
def watch():
    """A Determinism installed for one test; everything it patched is put
    back afterwards."""
    import importlib

    patched = [(importlib.import_module(m), n) for table in (timeline.Determinism.CLOCK,
                                                             timeline.Determinism.ENTROPY)
               for m, names in table for n in names]
    patched += [(datetime, "datetime"), (datetime, "date"), (random, "seed")]
    try:
        import numpy.random

        patched += [(numpy.random, "default_rng"), (numpy.random, "seed")]
    except ImportError:
        pass
    saved = [(m, n, getattr(m, n)) for m, n in patched if hasattr(m, n)]
    w = timeline.Determinism()
    w.install()
    try:
        yield w
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def run_as_author(source):
    """Runs `source` as if it were the scene file."""
    exec(compile(source, USER_FILE, "exec"), {})


def test_the_authors_clock_reads_are_recorded_with_their_lines(watch):
    run_as_author("import time\nx = 1\ny = time.time()\nimport datetime\nz = datetime.datetime.now()\n")
    assert watch.report() == {"clock": [3, 5], "entropy": []}


def test_calls_from_elsewhere_do_not_count(watch):
    time.time()
    time.monotonic()
    datetime.datetime.now()
    os.urandom(4)
    assert watch.report() == {"clock": [], "entropy": []}


def test_fresh_entropy_is_recorded_but_a_seed_is_not(watch):
    run_as_author("import random, os, uuid\nrandom.seed(3)\nrandom.seed()\nos.urandom(2)\nuuid.uuid4()\n")
    assert watch.report() == {"clock": [], "entropy": [3, 4, 5]}


def test_an_unseeded_numpy_generator_is_entropy(watch):
    pytest.importorskip("numpy")
    run_as_author("import numpy as np\na = np.random.default_rng(1)\nb = np.random.default_rng()\n")
    assert watch.report()["entropy"] == [3]


def test_a_chunk_knows_its_range():
    plan = timeline.Plan({"fps": 15, "chunk": {"first": 3, "last": 5}, "cache": True}, "profile")
    assert [plan.before_chunk(i) for i in (0, 2, 3, 5)] == [True, True, False, False]
    assert [plan.chunk_ends_after(i) for i in (4, 5)] == [False, True]
    assert not plan.simulating
    planning = timeline.Plan({"fps": 15, "mode": "plan"}, "profile")
    assert planning.simulating and planning.chunk is None


def test_a_join_awaits_the_plays_before_its_own():
    join = timeline.Plan({"fps": 15, "awaits_before": 4, "cache": True}, "profile")
    assert [join.awaits(i) for i in (0, 3, 4, 9)] == [True, True, False, False]
    assert not join.simulating and join.chunk is None
    render = timeline.Plan({"fps": 15, "cache": True}, "profile")
    assert not render.awaits(0)


def test_awaited_pieces_are_waited_for_until_each_is_there(tmp_path, monkeypatch):
    import threading

    from manimd_worker import protocol

    said = []
    monkeypatch.setattr(timeline, "CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(protocol, "emit", lambda event, **fields: said.append((event, fields)))
    plan = timeline.Plan({"fps": 15, "awaits_before": 2, "cache": True}, "profile")
    (tmp_path / "a.mp4").write_bytes(b"there")
    # The host links the second piece in later, as its chunk ends.
    late = threading.Timer(0.2, lambda: (tmp_path / "b.mp4").write_bytes(b"late"))
    late.start()
    started = time.monotonic()
    paths = plan.await_pieces(["a", "b"], poll=0.01)
    assert time.monotonic() - started >= 0.15
    assert paths == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert all(os.path.isfile(p) for p in paths)
    assert said == [("awaiting-pieces", {"count": 2})]
    said.clear()
    assert plan.await_pieces([]) == [] and said == []
