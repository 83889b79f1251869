"""The engine check against the installed Manim Community."""

import time

import pytest

from conftest import needs_ce, patched_by, run_worker, table_targets
from manimd_worker import enginecheck
from manimd_worker.enginecheck import EngineMismatch

pytestmark = needs_ce


@pytest.fixture
def ce():
    import manim  # noqa: F401
    from manimd_worker.engines import ce

    return ce


def verify(ce):
    enginecheck.verify("manim", ce.VERSION, ce.installed_version(), ce.TARGETS)


def test_the_installed_engine_is_the_pinned_one_and_fits(ce):
    assert ce.installed_version() == ce.VERSION == "0.22.0"
    verify(ce)


def test_the_check_is_cheap(ce):
    verify(ce)
    started = time.perf_counter()
    for _ in range(10):
        verify(ce)
    per_check = (time.perf_counter() - started) / 10
    assert per_check < 0.02, f"{per_check * 1000:.1f} ms"


def test_another_version_is_a_mismatch(ce, monkeypatch):
    import manim

    monkeypatch.setattr(manim, "__version__", "0.23.0")
    with pytest.raises(EngineMismatch) as info:
        verify(ce)
    assert str(info.value).startswith("manim 0.23.0 is installed, but the worker is written for 0.22.0")
    assert info.value.fields["found_version"] == "0.23.0"


def test_a_removed_target_is_a_mismatch(ce, monkeypatch):
    from manim.scene import scene_file_writer

    monkeypatch.delattr(scene_file_writer._PartialMovieEncodeJob, "join")
    with pytest.raises(EngineMismatch) as info:
        verify(ce)
    assert "manim.scene.scene_file_writer:_PartialMovieEncodeJob.join: expected (self), found missing" in str(info.value)


def test_a_changed_signature_is_a_mismatch(ce, monkeypatch):
    from manim.utils import tex_file_writing

    def compile_tex(tex_file, tex_compiler, output_format, extra):
        pass

    monkeypatch.setattr(tex_file_writing, "compile_tex", compile_tex)
    with pytest.raises(EngineMismatch) as info:
        verify(ce)
    assert (
        "manim.utils.tex_file_writing:compile_tex: expected (tex_file, tex_compiler, output_format),"
        " found (tex_file, tex_compiler, output_format, extra)"
    ) in str(info.value)


def test_a_renamed_instance_attribute_is_a_mismatch(ce, monkeypatch):
    from manim.scene import scene_file_writer

    def __init__(self, *, animation_index, encoder, frame_queue_size):
        self.target = encoder.target
        self.animation_index = animation_index
        self._abort_requested = False

    monkeypatch.setattr(scene_file_writer._PartialMovieEncodeJob, "__init__", __init__)
    with pytest.raises(EngineMismatch) as info:
        verify(ce)
    assert "_PartialMovieEncodeJob.__init__: expected uses path, animation_index, _abort_requested, found no path" in str(info.value)


def test_every_patch_has_its_row(ce):
    job = {"format": "mp4", "fps": 15, "width": 320, "height": 180, "seed": 3, "encoding": "preview"}
    patched = patched_by(["manim"], lambda: ce.Driver(job))
    assert patched, "the driver patched nothing: the test sees nothing"
    assert patched <= table_targets(ce.TARGETS), patched - table_targets(ce.TARGETS)


BREAK = """
from manim.scene.scene_file_writer import SceneFileWriter
del SceneFileWriter.combine_to_movie
"""


def test_the_worker_reports_a_mismatch_before_it_is_warm():
    # Manim imported as the worker imports it (without the plugins it would
    # import, one of which logs to stdout before the protocol claims it).
    code, events, stderr = run_worker(
        "from manimd_worker import engines\nengines._import_manim()\n"
        + BREAK
        + "sys.argv = ['w', '--engine', 'manim']\n"
        "from manimd_worker.main import main\nmain()\n"
    )
    assert code == 1, stderr
    assert [e["event"] for e in events] == ["error"]
    error = events[0]
    assert error["code"] == "engine-mismatch"
    assert error["engine"] == "manim"
    assert (error["expected_version"], error["found_version"]) == ("0.22.0", "0.22.0")
    assert "SceneFileWriter.combine_to_movie: expected (self), found missing" in error["message"]


def test_loading_the_driver_checks_first(ce, monkeypatch):
    from manim.scene.scene_file_writer import SceneFileWriter

    from manimd_worker import engines

    monkeypatch.setattr(engines, "_verified", set())
    monkeypatch.delattr(SceneFileWriter, "combine_to_movie")
    with pytest.raises(EngineMismatch):
        engines.load("manim", {"format": "mp4", "fps": 15, "width": 320, "height": 180})
    assert engines._verified == set()


def test_a_fitting_engine_gets_warm():
    code, events, stderr = run_worker(
        "sys.argv = ['w', '--engine', 'manim']\nfrom manimd_worker.main import main\nmain()\n",
        stdin=b'{"mode": "inspect", "code": "from manim import *\\nclass A(Scene): pass\\n"}',
    )
    assert code == 0, stderr
    assert [e["event"] for e in events] == ["warm", "inspected"]
    assert events[1]["scenes"] == [{"name": "A", "line": 2}]


def test_a_plans_clock_moves_in_the_frames_a_render_draws(ce):
    from types import SimpleNamespace

    def play(duration, frozen):
        return SimpleNamespace(duration=duration, is_current_animation_frozen_frame=lambda: frozen)

    # 0.5 s at 15 fps: a drawn play steps arange(0, 0.5, 1/15), 8 frames;
    # a static wait freezes int(0.5 * 15) = 7.
    assert ce._drawn_frames(play(0.5, False), 15) == 8
    assert ce._drawn_frames(play(0.5, True), 15) == 7
    assert ce._drawn_frames(play(1.0, False), 60) == 60
