"""One driver per engine, with the same small interface:

- `name`, `version`, `scene_base`;
- `render_scene(name, cls, index)` -> `SceneOutput`.
"""

from dataclasses import dataclass, field


@dataclass
class SceneOutput:
    # Video pieces of this scene in play order (H.264 MP4); empty when it played nothing.
    videos: list = field(default_factory=list)
    # The scene's last frame as a PIL image.
    last_frame: object = None
    plays: int = 0
    duration: float = 0.0


def preload(engine):
    """Imports the engine before any job is known: the slow part of a short
    render, done while the sandbox waits in the warm pool. Then checks it."""
    if engine == "manim":
        _import_manim()
    else:
        from manimd_worker.engines import gl

        gl.preload()
    verify(engine)


def _import_manim():
    """`import manim`, without the plugins it would import (see plugins.py)."""
    from manimd_worker import plugins

    plugins.quiet()
    with plugins.deferred():
        import manim  # noqa: F401


_verified = set()


def _module(engine):
    if engine == "manim":
        _import_manim()
        from manimd_worker.engines import ce

        return ce
    from manimd_worker.engines import gl

    return gl


def verify(engine):
    """Raises enginecheck.EngineMismatch unless the installed engine is the pinned
    version and has every target the patches expect. Once per process."""
    if engine in _verified:
        return
    from manimd_worker import enginecheck as check

    module = _module(engine)
    if engine == "manimgl":
        module.preload()
    check.verify(engine, module.VERSION, module.installed_version(), module.TARGETS)
    _verified.add(engine)


def load(engine, job):
    verify(engine)
    return _module(engine).Driver(job)
