"""ManimGL (`from manimlib import *`), 3b1b's engine, on headless EGL."""

import functools
import subprocess
import sys

from manimd_worker import narration, protocol, timeline
from manimd_worker.engines import SceneOutput
from manimd_worker.enginecheck import attr, call, sets
from manimd_worker.tex import TexFailure

WORK_DIR = "/job/work/gl"

# The ManimGL release the patches below are written for.
VERSION = "1.7.2"

_LATEX_TO_SVG = "latex, template, additional_preamble, short_tex, show_message_during_execution"

# What `preload`, `Driver.__init__` and `Driver._patch` replace or read,
# checked before any user code runs (see enginecheck.py): one row per
# target. A new patch adds its row.
TARGETS = (
    attr("pyglet:options"),
    call("moderngl:create_standalone_context", "**kwargs"),
    call("manimlib.utils.tex_file_writing:get_tex_template_config", "template_name"),
    attr("manimlib.utils.tex_file_writing:LatexError"),
    call("manimlib.mobject.svg.tex_mobject:latex_to_svg", _LATEX_TO_SVG),
    call("manimlib.mobject.svg.old_tex_mobject:latex_to_svg", _LATEX_TO_SVG),
    call("manimlib.scene.scene:Scene.play", "self, *proto_animations, run_time, rate_func, lag_ratio"),
    call("manimlib.scene.scene:Scene.wait", "self, duration, stop_condition, note, ignore_presenter_mode"),
    call("manimlib.scene.scene:Scene.pre_play", "self"),
    call("manimlib.scene.scene:Scene.post_play", "self"),
    # A preview simulates: time per frame while the scene skips drawing.
    call("manimlib.scene.scene:Scene.get_time_progression",
         "self, run_time, n_iterations, desc, override_skip_animations"),
    call("manimlib.scene.scene:Scene.finish_animations", "self, animations"),
    call("manimlib.scene.scene:Scene.emit_frame", "self"),
    sets("manimlib.scene.scene:Scene.__init__", "skip_animations, time, camera"),
    attr("manimlib.scene.scene:Scene.random_seed"),
    sets("manimlib.scene.scene:Scene.__init__", "num_plays"),
    call("manimlib.scene.scene_file_writer:SceneFileWriter.write_frame", "self, camera"),
    call("manimlib.scene.scene_file_writer:SceneFileWriter.end_animation", "self"),
    sets("manimlib.scene.scene_file_writer:SceneFileWriter.__init__", "scene, write_to_movie, subdivide_output"),
    sets("manimlib.scene.scene_file_writer:SceneFileWriter.open_movie_pipe", "final_file_path"),
    # The module's `subprocess`, replaced by _EncoderArgs.
    attr("manimlib.scene.scene_file_writer:sp"),
    # A project's custom_config.yml, merged after the engine was imported.
    attr("manimlib.config:manim_config"),
    call("manimlib.config:load_yaml", "file_path"),
    call("manimlib.config:update_directory_config", "config"),
)


def _merge_into(target, extra):
    """Merges `extra` into `target` in place, dictionaries recursively:
    modules hold `manim_config` itself, so it must stay the same object."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def project_config():
    """Honours the project's custom_config.yml (ManimGL read the one of the
    directory it was imported in, before the project was known): its
    directories (relative to the project; an absolute `base`, which names
    the author's machine, becomes the project), styles and settings, but
    not where files are written (output, downloads, cache, temporary
    storage) nor what the worker sets itself (size, rate, file writer)."""
    import os

    from manimlib import config as gl_config

    from manimd_worker import project
    from manimd_worker.usercode import UserError

    path = os.path.join(project.ROOT, "custom_config.yml")
    if not os.path.isfile(path):
        return
    try:
        custom = gl_config.load_yaml(path)
    except Exception as err:  # noqa: BLE001 - any fault of the file is the author's
        raise UserError("scene-error", protocol.clip(f"custom_config.yml: {err}"),
                        file="custom_config.yml") from None
    if not isinstance(custom, dict):
        raise UserError("scene-error", "custom_config.yml: not a mapping", file="custom_config.yml")
    dirs = custom.get("directories")
    if isinstance(dirs, dict):
        if isinstance(dirs.get("base"), str) and os.path.isabs(dirs["base"]):
            dirs["base"] = ""
        for key in ("output", "downloads", "cache", "temporary_storage", "removed_mirror_prefix"):
            dirs.pop(key, None)
        dirs["mirror_module_path"] = False
        if isinstance(dirs.get("subdirs"), dict):
            for key in ("output", "downloads"):
                dirs["subdirs"].pop(key, None)
    for key in ("file_writer", "window", "run", "embed"):
        custom.pop(key, None)
    config = gl_config.manim_config
    saved = {key: config.directories.get(key) for key in ("output", "downloads", "cache", "temporary_storage")}
    _merge_into(config, custom)
    gl_config.update_directory_config(config)
    for key, value in saved.items():
        config.directories[key] = value


def installed_version():
    import manimlib

    return manimlib.__version__

# ManimGL's default template wants dsfont, which only the gigabyte-sized
# texlive-fonts-extra provides. This is that template without it, with
# \mathds falling back to \mathbb so scenes that use it still typeset.
LIGHT_TEMPLATE = {
    "description": "manimd: ManimGL's default without dsfont",
    "compiler": "latex",
    "preamble": "\n".join(
        [
            r"\usepackage[english]{babel}",
            r"\usepackage[utf8]{inputenc}",
            r"\usepackage[T1]{fontenc}",
            r"\usepackage{amsmath}",
            r"\usepackage{amssymb}",
            r"\providecommand{\mathds}[1]{\mathbb{#1}}",
            r"\usepackage{setspace}",
            r"\usepackage{tipa}",
            r"\usepackage{relsize}",
            r"\usepackage{textcomp}",
            r"\usepackage{mathrsfs}",
            r"\usepackage{calligra}",
            r"\usepackage{wasysym}",
            r"\usepackage{ragged2e}",
            r"\usepackage{physics}",
            r"\usepackage{xcolor}",
            r"\usepackage{microtype}",
            r"\usepackage{pifont}",
            r"\DisableLigatures{encoding = *, family = * }",
            r"\linespread{1}",
        ]
    ),
}


_preloaded = False


def preload():
    """Imports manimlib headless: pyglet and moderngl must both use EGL."""
    global _preloaded
    if _preloaded:
        return
    # manimlib parses sys.argv when imported.
    sys.argv = ["manimgl"]
    import pyglet

    pyglet.options["headless"] = True
    pyglet.options["shadow_window"] = False
    import moderngl

    create = moderngl.create_standalone_context

    # wraps: the engine check reads the original's signature through it.
    @functools.wraps(create)
    def egl_context(*args, **kwargs):
        kwargs.setdefault("backend", "egl")
        return create(*args, **kwargs)

    moderngl.create_standalone_context = egl_context
    import manimlib  # noqa: F401

    _preloaded = True


class _EncoderArgs:
    """Stands in for `subprocess` in ManimGL's file writer, adding encoder
    options to its ffmpeg command (ManimGL has no setting for them)."""

    def __init__(self, extra):
        self._extra = extra

    def __getattr__(self, name):
        return getattr(subprocess, name)

    def Popen(self, cmd, *args, **kwargs):
        if "-vcodec" in cmd:
            i = cmd.index("-vcodec") + 2
            cmd = cmd[:i] + self._extra + cmd[i:]
        return subprocess.Popen(cmd, *args, **kwargs)


class Driver:
    name = "manimgl"

    def __init__(self, job):
        preload()
        import manimlib
        from importlib.metadata import version
        from manimlib.scene.scene import Scene

        self.version = version("manimgl")
        self.scene_base = Scene
        if job.get("main"):
            project_config()
        self.still = job.get("format") == "png"
        self.width = job["width"]
        self.height = job["height"]
        self.fps = job["fps"]
        self._frames = 0
        self._scene = None
        self._pending = "Wait"
        # ManimGL has no hash of a play, so nothing is cached; previews
        # simulate (see timeline.py).
        self.plan = timeline.Plan({**job, "cache": False}, "manimgl")
        if job.get("seed") is not None:
            # Scene.__init__ reseeds from random_seed (0 unless a scene sets its own).
            Scene.random_seed = job["seed"]
        self._patch()
        from manimlib.scene import scene_file_writer

        # A keyframe at least every second: live playback cuts segments there.
        extra = ["-g", str(self.fps)]
        if job.get("encoding") == "preview":
            extra += ["-preset", "ultrafast"]
        scene_file_writer.sp = _EncoderArgs(extra)
        del manimlib

    def _patch(self):
        from manimlib.scene.scene import Scene
        from manimlib.scene.scene_file_writer import SceneFileWriter
        from manimlib.utils import tex_file_writing
        from manimlib.mobject.svg import tex_mobject, old_tex_mobject

        driver = self

        get_config = tex_file_writing.get_tex_template_config

        def light_template(name):
            if name.replace(" ", "_").lower() in ("", "default"):
                return dict(LIGHT_TEMPLATE)
            return get_config(name)

        tex_file_writing.get_tex_template_config = light_template

        def typed(latex_to_svg):
            def wrapper(latex, *args, **kwargs):
                try:
                    return latex_to_svg(latex, *args, **kwargs)
                except tex_file_writing.LatexError as err:
                    expression = kwargs.get("short_tex") or latex
                    raise TexFailure(str(err), expression) from None

            return wrapper

        tex_mobject.latex_to_svg = typed(tex_mobject.latex_to_svg)
        old_tex_mobject.latex_to_svg = typed(old_tex_mobject.latex_to_svg)

        play = Scene.play

        def naming_play(scene, *animations, **kwargs):
            names = [str(a) for a in animations[:3]]
            driver._pending = ", ".join(names) + (", ..." if len(animations) > 3 else "")
            return play(scene, *animations, **kwargs)

        Scene.play = naming_play

        wait = Scene.wait

        def naming_wait(scene, *args, **kwargs):
            driver._pending = "Wait"
            return wait(scene, *args, **kwargs)

        Scene.wait = naming_wait

        pre_play = Scene.pre_play

        def reporting_pre_play(scene):
            protocol.emit(
                "animation",
                scene=driver._scene,
                index=scene.num_plays,
                name=protocol.clip(driver._pending or "Wait", 200),
                line=timeline.author_line(),
                start=round(float(scene.time), 6),
                cached=False,
            )
            return pre_play(scene)

        Scene.pre_play = reporting_pre_play

        post_play = Scene.post_play

        def previewing_post_play(scene):
            post_play(scene)
            index = scene.num_plays - 1
            if driver.plan.wants_end_of(index):
                driver.plan.keep(_capture(scene), driver._scene, index, scene.time)
                if driver.plan.done_after(index):
                    raise timeline.PreviewDone()

        Scene.post_play = previewing_post_play

        get_time_progression = Scene.get_time_progression

        def simulated_time_progression(scene, run_time, n_iterations=None, desc="",
                                       override_skip_animations=False):
            if driver.plan.simulating:
                # Every frame's time step, as when drawing, while the scene
                # skips (which would take the play in one step).
                return get_time_progression(scene, run_time, n_iterations, desc, True)
            return get_time_progression(scene, run_time, n_iterations, desc, override_skip_animations)

        Scene.get_time_progression = simulated_time_progression

        finish_animations = Scene.finish_animations

        def simulated_finish(scene, animations):
            if not driver.plan.simulating:
                return finish_animations(scene, animations)
            # A skipping scene updates by the whole run time at the end; a
            # drawn one (and so a simulated one) by nothing.
            scene.skip_animations = False
            try:
                return finish_animations(scene, animations)
            finally:
                scene.skip_animations = True

        Scene.finish_animations = simulated_finish

        emit_frame = Scene.emit_frame

        def simulated_emit_frame(scene):
            if not driver.plan.simulating:
                return emit_frame(scene)
            target = driver.plan.still_frame()
            if target is not None and driver._frames == target:
                driver.plan.keep(_capture(scene), driver._scene, scene.num_plays, target / driver.fps)
                raise timeline.PreviewDone()
            driver._frames += 1

        Scene.emit_frame = simulated_emit_frame

        write_frame = SceneFileWriter.write_frame

        def counting_write_frame(writer, camera):
            write_frame(writer, camera)
            if writer.write_to_movie:
                driver._frames += 1
                protocol.frames(driver._scene, driver._frames)

        SceneFileWriter.write_frame = counting_write_frame

        end_animation = SceneFileWriter.end_animation

        def reporting_end_animation(writer):
            end_animation(writer)
            if writer.subdivide_output and writer.write_to_movie:
                path = str(writer.final_file_path)
                driver._pieces.append(path)
                protocol.emit(
                    "partial-movie",
                    scene=driver._scene,
                    index=writer.scene.num_plays,
                    path=path,
                )

        SceneFileWriter.end_animation = reporting_end_animation

    def render_scene(self, name, cls, index):
        self._scene = name
        self._frames = 0
        self._pieces = []
        scene = cls(
            camera_config=dict(resolution=(self.width, self.height), fps=self.fps),
            file_writer_config=dict(
                write_to_movie=not (self.still or self.plan.simulating),
                subdivide_output=True,
                save_last_frame=False,
                output_directory=f"{WORK_DIR}/{index:03d}",
                quiet=True,
            ),
            skip_animations=self.still or self.plan.simulating,
        )
        narration.wrap(scene, name, index, lambda: float(scene.time), self.fps)
        try:
            scene.run()
        except timeline.PreviewDone:
            return SceneOutput(plays=scene.num_plays, duration=float(scene.time))
        out = SceneOutput(plays=scene.num_plays)
        if self.plan.simulating:
            out.duration = float(scene.time)
        if scene.num_plays and not self.still:
            out.videos = list(self._pieces)
            out.duration = float(scene.time)
        if self.plan.simulating:
            out.last_frame = _capture(scene).convert("RGB")
        else:
            scene.update_frame(force_draw=True)
            out.last_frame = scene.camera.get_image().convert("RGB")
        protocol.frames(name, self._frames, force=True)
        return out


def _capture(scene):
    """The scene as it stands, drawn, without running its updaters."""
    scene.camera.capture(*scene.render_groups)
    return scene.camera.get_image()
