import ast
import wave

import pytest

from conftest import needs_ce
from manimd_worker import voiceover
from manimd_worker.usercode import UserError


def test_pieces_are_cut_at_bookmarks_with_the_plugins_pattern():
    text = "Hello <bookmark mark='A'/>big<bookmark mark=\"B\"/> world<bookmark mark='C'/>"
    assert voiceover.pieces(text) == [(None, "Hello "), ("A", "big"), ("B", " world"), ("C", "")]
    assert voiceover.pieces("no marks") == [(None, "no marks")]


def test_literals_are_normalized_voiceover_texts():
    tree = ast.parse(
        "with self.voiceover(text='''One\n    <bookmark mark='A'/>two.''') as t: pass\n"
        "self.add_voiceover_text('Three.')\n"
        "with self.voiceover(text=f'{x}'): pass\n"
        "voiceover('a plain call, not a method')\n"
        "with self.voiceover(text='Three.'): pass\n"
    )
    # In ast.walk's order: only the set matters.
    found = sorted(voiceover.literals(tree), key=lambda t: t["text"])
    assert found == [
        {"text": "One <bookmark mark='A'/>two.", "pieces": ["One ", "two."]},
        {"text": "Three.", "pieces": ["Three."]},
    ]


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    monkeypatch.setattr(voiceover, "SPEECH_DIR", str(tmp_path))
    with wave.open(str(tmp_path / "0.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 3)
    text = "Hello there <bookmark mark='A'/>world of <bookmark mark='B'/>bookmarks."
    voiceover.configure({text: {"path": "0.wav", "pieces": [1.0, 0.5, 1.5]}})
    yield
    voiceover.configure(None)


@needs_ce
def test_any_service_speaks_the_prepared_clip_and_marks_land_on_their_pieces(prepared, emitted):
    from manimd_worker import engines

    engines._import_manim()
    voiceover.install()
    import manim
    from manim_voiceover import VoiceoverScene
    from manim_voiceover.services.azure import AzureService

    seen = {}

    class S(VoiceoverScene):
        def construct(self):
            self.set_speech_service(AzureService(voice="en-US-AriaNeural", style="newscast-casual"))
            self.wait(0.25)
            with self.voiceover(text="Hello there <bookmark mark='A'/>world\n  of <bookmark mark='B'/>bookmarks.") as t:
                seen["duration"] = t.duration
                seen["start"] = t.start_t
                self.wait_until_bookmark("A")
                seen["A"] = self.renderer.time
                seen["B in"] = t.time_until_bookmark("B")
            try:
                with self.voiceover(text="computed"):
                    pass
            except UserError as err:
                seen["error"] = err.code

    with manim.tempconfig({"dry_run": True, "disable_caching": True}):
        S().render()
    # Waits are whole frames (the worker's drivers may be loaded): a mark
    # is reached within one.
    frame = 1 / manim.config.frame_rate
    assert seen["duration"] == pytest.approx(3.0)
    assert seen["A"] == pytest.approx(seen["start"] + 1.0, abs=frame + 1e-6)
    assert seen["B in"] == pytest.approx(seen["start"] + 1.5 - seen["A"])
    assert seen["error"] == "voiceover-unprepared"
    events = emitted.events()
    said = [e for e in events if e["event"] == "voiceover"][0]
    assert said["marks"] == {"A": 1.0, "B": 1.5}
    assert said["start"] == pytest.approx(seen["start"])
    assert said["end"] - said["start"] == pytest.approx(3.0)
    assert said["text"] == "Hello there world of bookmarks."
    asked = [e for e in events if e["event"] == "voiceover-text"]
    assert asked == [{"event": "voiceover-text", "text": "computed", "pieces": ["computed"]}]
