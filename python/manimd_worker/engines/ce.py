"""Manim Community (`from manim import *`)."""

from pathlib import Path

from manimd_worker import narration, protocol
from manimd_worker.engines import SceneOutput
from manimd_worker.enginecheck import attr, call, sets
from manimd_worker.tex import TexFailure, body_of, errors_from_log

MEDIA_DIR = "/job/work/media"

# The Manim Community release the patches below are written for.
VERSION = "0.22.0"

# What `Driver._patch` replaces or reads, checked before any user code runs
# (see enginecheck.py): one row per target. A new patch adds its row.
TARGETS = (
    call("manim.scene.scene:Scene.compile_animation_data", "self, *animations, **play_kwargs"),
    # reporting_compile reads the compiled play from the scene.
    sets("manim.scene.scene:Scene.__init__", "animations, duration, renderer"),
    sets("manim.renderer.cairo_renderer:CairoRenderer.__init__", "num_plays, time"),
    call("manim.scene.scene_file_writer:SceneFileWriter.write_frame", "self, pixels, *, repeat"),
    call("manim.scene.scene_file_writer:SceneFileWriter.combine_to_movie", "self"),
    sets("manim.scene.scene_file_writer:SceneFileWriter.init_audio", "includes_sound"),
    call("manim.scene.scene_file_writer:_PartialMovieEncodeJob.join", "self"),
    sets(
        "manim.scene.scene_file_writer:_PartialMovieEncodeJob.__init__",
        "path, animation_index, _abort_requested",
    ),
    call("manim.utils.tex_file_writing:compile_tex", "tex_file, tex_compiler, output_format"),
    # A setting of Manim Community's own encoder (no ffmpeg process to wrap).
    attr("manim._config.utils:ManimConfig.video_encoder_options"),
)


def installed_version():
    import manim

    return manim.__version__


class Driver:
    name = "manim"

    def __init__(self, job):
        import manim
        from manim import Scene, config

        self.version = manim.__version__
        self.scene_base = Scene
        self.still = job["format"] == "png"
        self.fps = job["fps"]
        config.media_dir = MEDIA_DIR
        config.pixel_width = job["width"]
        config.pixel_height = job["height"]
        config.frame_rate = job["fps"]
        config.disable_caching = True
        config.verbosity = "WARNING"
        config.progress_bar = "none"
        if self.still:
            config.save_last_frame = True
        # A keyframe at least every second: live playback cuts segments there.
        options = {"crf": "23", "g": str(job["fps"])}
        if job.get("encoding") == "preview":
            # Same quality target, a much faster x264 preset. Manim already
            # encodes each animation on its own thread while rendering goes on.
            options["preset"] = "ultrafast"
        config.video_encoder_options = options
        if job.get("seed") is not None:
            # Scene.__init__ reseeds from config.seed (entropy when unset).
            config.seed = job["seed"]
        self._frames = 0
        self._scene = None
        self._patch()

    def _patch(self):
        from manim.scene.scene import Scene
        from manim.scene import scene_file_writer
        from manim.utils import tex_file_writing

        driver = self

        compile_animation_data = Scene.compile_animation_data

        def reporting_compile(scene, *args, **kwargs):
            result = compile_animation_data(scene, *args, **kwargs)
            animations = scene.animations or []
            name = ", ".join(str(a) for a in animations[:3]) + (", ..." if len(animations) > 3 else "")
            protocol.emit(
                "animation",
                scene=driver._scene,
                index=scene.renderer.num_plays,
                name=protocol.clip(name or "Wait", 200),
                run_time=float(scene.duration or 0.0),
            )
            return result

        Scene.compile_animation_data = reporting_compile

        write_frame = scene_file_writer.SceneFileWriter.write_frame

        def counting_write_frame(writer, pixels, *, repeat=1):
            write_frame(writer, pixels, repeat=repeat)
            driver._frames += repeat
            protocol.frames(driver._scene, driver._frames)

        scene_file_writer.SceneFileWriter.write_frame = counting_write_frame

        join = scene_file_writer._PartialMovieEncodeJob.join

        def reporting_join(job):
            join(job)
            if not job._abort_requested:
                protocol.emit(
                    "partial-movie",
                    scene=driver._scene,
                    index=job.animation_index,
                    path=str(job.path),
                )

        scene_file_writer._PartialMovieEncodeJob.join = reporting_join

        combine = scene_file_writer.SceneFileWriter.combine_to_movie

        def deferred_combine(writer):
            # The pieces are stitched once, for all scenes, by media.finalize;
            # Manim's own pass would copy every frame one more time. Sound
            # needs Manim's muxing, so a scene with sound keeps it.
            if writer.includes_sound:
                combine(writer)

        scene_file_writer.SceneFileWriter.combine_to_movie = deferred_combine

        compile_tex = tex_file_writing.compile_tex

        def typed_compile_tex(tex_file, tex_compiler, output_format):
            try:
                return compile_tex(tex_file, tex_compiler, output_format)
            except ValueError as err:
                tex_file = Path(tex_file)
                log = tex_file.with_suffix(".log")
                message = errors_from_log(log.read_text("utf-8", "replace")) if log.exists() else str(err)
                expression = body_of(tex_file.read_text("utf-8", "replace")) if tex_file.exists() else ""
                raise TexFailure(message or str(err), expression) from None

        tex_file_writing.compile_tex = typed_compile_tex

    def render_scene(self, name, cls, index):
        from PIL import Image

        self._scene = name
        self._frames = 0
        scene = cls()
        narration.wrap(scene, name, index, lambda: float(scene.renderer.time), self.fps)
        scene.render()
        renderer = scene.renderer
        plays = renderer.num_plays
        out = SceneOutput(plays=plays)
        writer = renderer.file_writer
        if plays and not self.still:
            if writer.includes_sound:
                out.videos = [str(writer.movie_file_path)]
            else:
                out.videos = [str(p) for p in writer.partial_movie_files if p is not None]
            out.duration = float(renderer.time)
        out.last_frame = Image.fromarray(renderer.get_frame()).convert("RGB")
        protocol.frames(name, self._frames, force=True)
        return out
