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
    render, done while the sandbox waits in the warm pool."""
    if engine == "manim":
        import manim  # noqa: F401
    else:
        from manimd_worker.engines import gl

        gl.preload()


def load(engine, job):
    if engine == "manim":
        from manimd_worker.engines.ce import Driver
    else:
        from manimd_worker.engines.gl import Driver
    return Driver(job)
