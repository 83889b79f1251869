import json

from manimd_worker import protocol


def test_emit_writes_one_ascii_json_line(emitted):
    protocol.emit("animation", scene="Sc\u00e8ne", index=2, path=object.__new__(object))
    raw = emitted.buffer.getvalue()
    assert raw.endswith("\n") and raw.count("\n") == 1
    assert raw.isascii()
    event = json.loads(raw)
    assert event["event"] == "animation"
    assert event["scene"] == "Sc\u00e8ne"
    assert event["index"] == 2
    # What JSON cannot hold is sent as its str().
    assert event["path"].startswith("<object object")


def test_event_comes_first_and_is_not_overridden_by_order(emitted):
    protocol.emit("ready", engine="manim", version="0.22.0")
    assert list(json.loads(emitted.buffer.getvalue())) == ["event", "engine", "version"]


def test_frames_are_throttled_unless_forced(emitted):
    protocol.frames("A", 1)
    protocol.frames("A", 2)
    protocol.frames("A", 3)
    protocol.frames("A", 4, force=True)
    assert [e["frames"] for e in emitted.events()] == [1, 4]
    assert emitted.events()[0] == {"event": "frames", "scene": "A", "frames": 1}


def test_clip_keeps_short_text_and_cuts_long_text():
    assert protocol.clip("abc") == "abc"
    assert protocol.clip("x" * protocol.MAX_TEXT) == "x" * protocol.MAX_TEXT
    cut = protocol.clip("x" * 10_000)
    assert len(cut) == protocol.MAX_TEXT
    assert cut.endswith("\u2026")
    assert protocol.clip("abcdef", 4) == "abc\u2026"
    assert protocol.clip(12345, 3) == "12\u2026"


def test_a_long_message_stays_under_the_supervisors_line_cap(emitted):
    protocol.emit("error", code="scene-error", message=protocol.clip("\u00e9" * 100_000))
    # Non-ASCII is escaped (6 bytes a character) and still fits in 64 KiB.
    assert len(emitted.buffer.getvalue().encode()) < 64 * 1024
