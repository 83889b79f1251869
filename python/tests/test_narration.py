import ast

import pytest

from manimd_worker import narration


@pytest.fixture(autouse=True)
def no_speech():
    narration.configure(None)
    yield
    narration.configure(None)


def test_literals_are_distinct_non_blank_strings():
    tree = ast.parse(
        "narrate('Hello.')\n"
        "narrate(text='World.')\n"
        "narrate('Hello.')\n"
        "narrate('   ')\n"
        "narrate(f'{x}')\n"
        "obj.narrate('method, not the builtin')\n"
        "narrate(42)\n"
    )
    assert sorted(narration.literals(tree)) == ["Hello.", "World."]


def test_literals_are_capped():
    code = "\n".join(f"narrate('line {i}')" for i in range(narration.MAX_LITERALS + 50))
    assert len(narration.literals(ast.parse(code))) == narration.MAX_LITERALS
    long = "narrate('" + "a" * (narration.MAX_TEXT + 10) + "')"
    assert narration.literals(ast.parse(long)) == ["a" * narration.MAX_TEXT]


def test_estimate_grows_with_words_and_has_a_floor():
    assert narration.estimate("") == 0.5
    assert narration.estimate("one two three four five") == pytest.approx(5 / 2.5 + 0.3)
    assert narration.estimate("a " * 100) > narration.estimate("a " * 10)


def test_narrate_without_speech_does_nothing(emitted):
    narration.narrate("Hello.")
    assert emitted.events() == []


class FakeScene:
    def __init__(self, fps):
        self.time = 0.0
        self.waits = []
        self.fps = fps

    def construct(self):
        narration.narrate("Known line.")
        self.time += 0.5
        narration.narrate("an unknown line of six words")

    def wait(self, secs):
        self.waits.append(secs)
        # Engines round waits to whole frames.
        self.time += round(secs * self.fps) / self.fps


def test_narrated_scene_waits_for_each_line(emitted):
    narration.configure({"Known line.": 2.0})
    scene = FakeScene(fps=10)
    narration.wrap(scene, "A", 0, lambda: scene.time, scene.fps)
    scene.construct()
    events = emitted.events()
    assert [e["text"] for e in events] == ["Known line.", "an unknown line of six words"]
    first, second = events
    assert (first["start"], first["duration"]) == (0.0, 2.0)
    # The second line waited for the first to end.
    assert second["start"] >= 2.0
    assert second["duration"] == narration.estimate("an unknown line of six words")
    # The scene ends after its last line.
    assert scene.time >= second["start"] + second["duration"] - 1e-3
