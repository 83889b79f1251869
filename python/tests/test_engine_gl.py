"""The engine check against the installed ManimGL (imported headless)."""

import time

import pytest

from conftest import needs_gl, patched_by, run_worker, table_targets
from manimd_worker import enginecheck
from manimd_worker.enginecheck import EngineMismatch

pytestmark = needs_gl


@pytest.fixture
def gl():
    from manimd_worker.engines import gl

    gl.preload()
    return gl


def verify(gl):
    enginecheck.verify("manimgl", gl.VERSION, gl.installed_version(), gl.TARGETS)


def test_the_installed_engine_is_the_pinned_one_and_fits(gl):
    from importlib.metadata import version

    assert gl.installed_version() == version("manimgl") == gl.VERSION == "1.7.2"
    verify(gl)


def test_the_check_is_cheap(gl):
    verify(gl)
    started = time.perf_counter()
    for _ in range(10):
        verify(gl)
    per_check = (time.perf_counter() - started) / 10
    assert per_check < 0.02, f"{per_check * 1000:.1f} ms"


def test_the_egl_wrapper_keeps_moderngls_signature(gl):
    import moderngl

    assert moderngl.create_standalone_context.__wrapped__ is not None
    assert enginecheck.check_row(enginecheck.call("moderngl:create_standalone_context", "**kwargs")) is None


def test_another_version_is_a_mismatch(gl, monkeypatch):
    import manimlib

    monkeypatch.setattr(manimlib, "__version__", "1.7.3")
    with pytest.raises(EngineMismatch) as info:
        verify(gl)
    assert str(info.value).startswith("manimgl 1.7.3 is installed, but the worker is written for 1.7.2")


def test_a_removed_target_is_a_mismatch(gl, monkeypatch):
    from manimlib.scene import scene_file_writer

    monkeypatch.delattr(scene_file_writer, "sp")
    with pytest.raises(EngineMismatch) as info:
        verify(gl)
    assert "manimlib.scene.scene_file_writer:sp: expected an attribute, found missing" in str(info.value)


def test_a_changed_signature_is_a_mismatch(gl, monkeypatch):
    from manimlib.scene.scene import Scene

    def play(self, *animations, run_time=None, rate_func=None, lag_ratio=None):
        pass

    monkeypatch.setattr(Scene, "play", play)
    with pytest.raises(EngineMismatch) as info:
        verify(gl)
    assert (
        "manimlib.scene.scene:Scene.play: expected (self, *proto_animations, run_time, rate_func, lag_ratio),"
        " found (self, *animations, run_time, rate_func, lag_ratio)"
    ) in str(info.value)


def test_every_patch_has_its_row(gl):
    job = {"format": "mp4", "fps": 15, "width": 320, "height": 180, "seed": 3, "encoding": "preview"}
    patched = patched_by(["manimlib"], lambda: gl.Driver(job))
    assert "manimlib.scene.scene_file_writer:sp" in patched
    assert patched <= table_targets(gl.TARGETS), patched - table_targets(gl.TARGETS)


def test_the_worker_reports_a_mismatch_before_it_is_warm():
    code, events, stderr = run_worker(
        "from manimd_worker.engines import gl\ngl.preload()\n"
        "from manimlib.scene.scene import Scene\ndel Scene.pre_play\n"
        "sys.argv = ['w', '--engine', 'manimgl']\nfrom manimd_worker.main import main\nmain()\n"
    )
    assert code == 1, stderr
    assert [e["event"] for e in events] == ["error"]
    error = events[0]
    assert (error["code"], error["engine"]) == ("engine-mismatch", "manimgl")
    assert "manimlib.scene.scene:Scene.pre_play: expected (self), found missing" in error["message"]


def test_a_fitting_engine_gets_warm():
    code, events, stderr = run_worker(
        "sys.argv = ['w', '--engine', 'manimgl']\nfrom manimd_worker.main import main\nmain()\n",
        stdin=b'{"mode": "inspect", "code": "from manimlib import *\\nclass A(Scene): pass\\n"}',
    )
    assert code == 0, stderr
    assert [e["event"] for e in events] == ["warm", "inspected"]
    assert events[1]["engine"] == "manimgl"
