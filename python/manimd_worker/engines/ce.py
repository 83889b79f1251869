"""Manim Community (`from manim import *`)."""

import copy
import os
from pathlib import Path

from manimd_worker import narration, protocol, timeline
from manimd_worker.engines import SceneOutput
from manimd_worker.enginecheck import attr, call, sets
from manimd_worker.tex import TexFailure, body_of, errors_from_log

MEDIA_DIR = "/job/work/media"

# The Manim Community release the patches below are written for.
VERSION = "0.22.0"

# What `Driver._patch` replaces or reads, checked before any user code runs
# (see enginecheck.py): one row per target. A new patch adds its row.
TARGETS = (
    # planned_play replaces the renderer's play: the original's steps, with a
    # play that is cached or previewed simulated instead of drawn, and a
    # plan's skipped by the original with its clock moved in whole frames.
    call("manim.renderer.cairo_renderer:CairoRenderer.play", "self, scene, *args, **kwargs"),
    call("manim.renderer.cairo_renderer:CairoRenderer.render", "self, scene, time, moving_mobjects"),
    call("manim.renderer.cairo_renderer:CairoRenderer.freeze_current_frame", "self, duration"),
    call("manim.renderer.cairo_renderer:CairoRenderer.update_frame",
         "self, scene, mobjects, include_submobjects, ignore_skipping, **kwargs"),
    call("manim.renderer.cairo_renderer:CairoRenderer.save_static_frame_data", "self, scene, static_mobjects"),
    call("manim.renderer.cairo_renderer:CairoRenderer.update_skipping_status", "self"),
    sets(
        "manim.renderer.cairo_renderer:CairoRenderer.__init__",
        "num_plays, time, skip_animations, _original_skipping_status, static_image, animations_hashes, camera",
    ),
    call("manim.scene.scene:Scene.compile_animation_data", "self, *animations, **play_kwargs"),
    call("manim.scene.scene:Scene.begin_animations", "self"),
    call("manim.scene.scene:Scene.play_internal", "self, skip_rendering"),
    call("manim.scene.scene:Scene.is_current_animation_frozen_frame", "self"),
    sets("manim.scene.scene:Scene.__init__", "animations, duration, renderer, session_spec"),
    call("manim.scene.scene_file_writer:SceneFileWriter.add_partial_movie_file", "self, hash_animation"),
    call("manim.scene.scene_file_writer:SceneFileWriter.begin_animation",
         "self, allow_write, *, animation_index, file_path"),
    call("manim.scene.scene_file_writer:SceneFileWriter.end_animation", "self, allow_write"),
    sets("manim.scene.scene_file_writer:SceneFileWriter.__init__", "partial_movie_files, sections"),
    call("manim.utils.hashing:get_hash_from_play_call",
         "scene_object, camera_object, animations_list, current_mobjects_list, *, backend, "
         "encoder_fingerprint, renderer_state"),
    call("manim._config.video_encoder:video_encoder_fingerprint", "spec"),
    call("manim.scene.scene_file_writer:SceneFileWriter.write_frame", "self, pixels, *, repeat"),
    call("manim.scene.scene_file_writer:SceneFileWriter.combine_to_movie", "self"),
    # Manim's own cache bookkeeping, which would touch cached pieces in the
    # read-only /cache after a stitch with sound.
    call("manim.scene.scene_file_writer:modify_atime", "file_path"),
    sets("manim.scene.scene_file_writer:SceneFileWriter.init_audio", "includes_sound"),
    call("manim.scene.scene_file_writer:_PartialMovieEncodeJob.join", "self"),
    sets(
        "manim.scene.scene_file_writer:_PartialMovieEncodeJob.__init__",
        "path, animation_index, _abort_requested",
    ),
    call("manim.utils.tex_file_writing:compile_tex", "tex_file, tex_compiler, output_format"),
    # A setting of Manim Community's own encoder (no ffmpeg process to wrap).
    attr("manim._config.utils:ManimConfig.video_encoder_options"),
    # SVGMobject writes its restyled copy beside the file it reads: a
    # project's file is read-only, so the copy goes to /tmp (see _patch).
    call("manim.mobject.svg.svg_mobject:SVGMobject.get_file_path", "self"),
    # A project's manim.cfg, read after the engine was imported elsewhere.
    call("manim._config.utils:ManimConfig.digest_file", "self, filename"),
)

# What a project's manim.cfg may not change: where files are written, how
# the sandbox renders (the renderer its patches are for, the format, the
# cache, what runs and shows), the log. The worker sets the rest of what it
# needs (size, rate, encoder, seed) after the file is read.
SANDBOX_KEYS = (
    "media_dir", "video_dir", "images_dir", "partial_movie_dir", "tex_dir", "text_dir", "log_dir",
    "output_file", "input_file", "renderer", "format", "save_sections", "write_all",
    "from_animation_number", "upto_animation_number", "preview", "show_in_file_browser",
    "log_to_file", "disable_caching", "dry_run", "zero_pad", "scene_names", "media_embed",
    "progress_bar", "verbosity", "max_files_cached", "enable_gui",
)


def project_config(config):
    """Honours the project's manim.cfg (the engine was imported before the
    project was known, elsewhere), except the keys the sandbox decides."""
    import os

    from manimd_worker import project
    from manimd_worker.usercode import UserError

    path = os.path.join(project.ROOT, "manim.cfg")
    if not os.path.isfile(path):
        return
    kept = {key: copy.deepcopy(config._d[key]) for key in SANDBOX_KEYS if key in config._d}
    try:
        config.digest_file(path)
    except Exception as err:  # noqa: BLE001 - any fault of the file is the author's
        raise UserError("scene-error", protocol.clip(f"manim.cfg: {err}"), file="manim.cfg") from None
    for key, value in kept.items():
        setattr(config, key, value)


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
        self.still = job.get("format") == "png"
        self.fps = job["fps"]
        if job.get("main"):
            project_config(config)
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
        # This render's plays: frames per piece, cache keys, by play index.
        self._piece_frames = {}
        self._keys = {}
        # A join's plays drawn elsewhere: (index, key), in order.
        self._awaited = []
        profile = " ".join(
            str(part)
            for part in ("manim", self.version, job.get("environment"), job["width"], job["height"],
                         job["fps"], job.get("encoding"), sorted(options.items()))
        )
        self.plan = timeline.Plan(job, profile)
        self._patch()

    def _patch(self):
        from manim.scene.scene import Scene
        from manim.scene import scene_file_writer
        from manim.utils import tex_file_writing

        driver = self

        from manim.renderer.cairo_renderer import CairoRenderer

        play = CairoRenderer.play

        def planned_play(renderer, scene, *args, **kwargs):
            if driver.plan.planning:
                # A plan only weighs the plays for cutting them into chunks:
                # Manim's own skipping (each play one time step) is many
                # times faster than simulating them frame by frame, and a
                # play it gets a little wrong costs balance, never frames.
                # Its clock still moves by whole frames, as a render's does,
                # so that waits measured against it (narration's) come out
                # as many as in the render.
                index, start = renderer.num_plays, float(renderer.time)
                renderer._original_skipping_status = True
                play(renderer, scene, *args, **kwargs)
                fps = renderer.camera.frame_rate
                renderer.time = start + _drawn_frames(scene, fps) / fps
                driver._announce(scene, index, start, cached=False)
                return
            renderer.skip_animations = renderer._original_skipping_status
            renderer.update_skipping_status()
            if renderer.skip_animations and not driver.plan.simulating:
                # Manim's own skipping (a still, or a section the author
                # skips) stays Manim's: nothing of it reaches the video.
                index, start = renderer.num_plays, float(renderer.time)
                play(renderer, scene, *args, **kwargs)
                driver._announce(scene, index, start, cached=False)
                return
            driver._play(renderer, scene, *args, **kwargs)

        CairoRenderer.play = planned_play

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
                index = job.animation_index
                protocol.emit(
                    "partial-movie",
                    scene=driver._scene,
                    index=index,
                    path=str(job.path),
                    frames=driver._piece_frames.get(index),
                    key=driver._keys.get(index),
                    cached=False,
                )

        scene_file_writer._PartialMovieEncodeJob.join = reporting_join

        combine = scene_file_writer.SceneFileWriter.combine_to_movie

        def deferred_combine(writer):
            # A split render's join: the other workers' pieces first.
            driver._join_pieces()
            # The pieces are stitched once, for all scenes, by media.finalize;
            # Manim's own pass would copy every frame one more time. Sound
            # needs Manim's muxing, so a scene with sound keeps it.
            # A plan or a chunk makes no video: the job's last pass does.
            if writer.includes_sound and not (driver.plan.planning or driver.plan.chunk is not None):
                combine(writer)

        scene_file_writer.SceneFileWriter.combine_to_movie = deferred_combine
        # Manim's cache is off (ours keys the plays); its access times
        # mean nothing, and a cached piece is not ours to touch.
        scene_file_writer.modify_atime = lambda file_path: None

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

        from manim.mobject.svg.svg_mobject import SVGMobject

        get_file_path = SVGMobject.get_file_path

        def writable_file_path(mobject):
            # generate_mobject writes `<stem>_.svg` beside the file it reads;
            # a file in a read-only folder (a project's) is read from a copy.
            import os
            import shutil
            import tempfile

            path = get_file_path(mobject)
            if os.access(path.parent, os.W_OK):
                return path
            copy = Path(tempfile.mkdtemp(prefix="svg-")) / path.name
            shutil.copyfile(path, copy)
            return copy

        SVGMobject.get_file_path = writable_file_path

    def render_scene(self, name, cls, index):
        from PIL import Image

        self._scene = name
        self._frames = 0
        self._piece_frames = {}
        self._keys = {}
        self._awaited = []
        scene = cls()
        narration.wrap(scene, name, index, lambda: float(scene.renderer.time), self.fps)
        try:
            scene.render()
        except timeline.PreviewDone:
            return SceneOutput(plays=scene.renderer.num_plays, duration=float(scene.renderer.time))
        except timeline.ChunkDone:
            # The pieces still being encoded are this chunk's.
            scene.renderer.file_writer.join_all_encode_jobs()
            return SceneOutput(plays=scene.renderer.num_plays, duration=float(scene.renderer.time))
        if self.plan.planning or self.plan.chunk is not None:
            scene.renderer.file_writer.join_all_encode_jobs()
            return SceneOutput(plays=scene.renderer.num_plays, duration=float(scene.renderer.time))
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
        if self.plan.simulating:
            out.last_frame = self._capture(renderer, scene).convert("RGB")
        else:
            out.last_frame = Image.fromarray(renderer.get_frame()).convert("RGB")
        protocol.frames(name, self._frames, force=True)
        return out

    # One play, as CairoRenderer.play does it, except that a play whose
    # piece is cached, or any play of a preview, is simulated: its frames
    # are stepped through with drawing and encoding off.
    def _play(self, renderer, scene, *args, **kwargs):
        plan = self.plan
        scene.compile_animation_data(*args, **kwargs)
        index = renderer.num_plays
        start = float(renderer.time)
        before = plan.before_chunk(index)
        play_hash = self._hash(renderer, scene) if plan.cache and not before else None
        rng = timeline.rng_digest() if play_hash else None
        key = cached = None
        if play_hash:
            # Whether the play draws random numbers is known only once it
            # ran: an entry of one that does not is keyed without them.
            for key in (plan.key(play_hash), plan.key(play_hash, rng)):
                cached = plan.lookup(key)
                if cached:
                    break
        # A play another worker draws (a join's): simulated here, its piece
        # awaited. One without a hash has no key to await: drawn here.
        awaited = play_hash is not None and cached is None and plan.awaits(index)
        self._announce(scene, index, start, cached=cached is not None or awaited)
        writer = renderer.file_writer
        frames_before = self._frames
        simulate = plan.simulating or cached is not None or before or awaited
        if simulate:
            writer.add_partial_movie_file(None)
            renderer.animations_hashes.append(None)
            if cached is not None:
                # The cached piece takes the play's place, for the stitch
                # and for Manim's own pass when the scene has sound.
                writer.partial_movie_files[-1] = cached
                writer.sections[-1].partial_movie_files[-1] = cached
        else:
            placeholder = f"uncached_{index:05}"
            writer.add_partial_movie_file(placeholder)
            renderer.animations_hashes.append(placeholder)
        writer.begin_animation(not simulate, animation_index=index)
        scene.begin_animations()
        if simulate:
            renderer.static_image = None
            with _Simulated(self, renderer, scene):
                if scene.is_current_animation_frozen_frame():
                    renderer.freeze_current_frame(scene.duration)
                else:
                    scene.play_internal()
        else:
            renderer.save_static_frame_data(scene, scene.static_mobjects)
            if scene.is_current_animation_frozen_frame():
                renderer.update_frame(scene, mobjects=scene.moving_mobjects)
                renderer.freeze_current_frame(scene.duration)
            else:
                scene.play_internal()
        self._piece_frames[index] = self._frames - frames_before
        if play_hash and cached is None:
            drew = timeline.rng_digest() != rng
            self._keys[index] = plan.key(play_hash, rng if drew else None)
        if awaited:
            # Its place in the stitch is where the host will link the piece.
            path = os.path.join(timeline.CACHE_DIR, self._keys[index] + ".mp4")
            writer.partial_movie_files[-1] = path
            writer.sections[-1].partial_movie_files[-1] = path
            self._awaited.append((index, self._keys[index]))
        writer.end_animation(not simulate)
        renderer.num_plays += 1
        if cached is not None:
            protocol.emit(
                "partial-movie",
                scene=self._scene,
                index=index,
                path=cached,
                frames=self._piece_frames[index],
                key=key,
                cached=True,
            )
            protocol.frames(self._scene, self._frames)
        if plan.wants_end_of(index):
            plan.keep(self._capture(renderer, scene), self._scene, index, renderer.time)
            if plan.done_after(index):
                raise timeline.PreviewDone()
        if plan.chunk_ends_after(index):
            raise timeline.ChunkDone()

    def _join_pieces(self):
        """Waits for the pieces of a join's awaited plays, then reports each
        as taken from the cache (the host checks it with its reader)."""
        if not self._awaited:
            return
        keys = [key for _, key in self._awaited]
        for (index, key), path in zip(self._awaited, self.plan.await_pieces(keys)):
            protocol.emit(
                "partial-movie",
                scene=self._scene,
                index=index,
                path=path,
                frames=self._piece_frames.get(index),
                key=key,
                cached=True,
            )
        self._awaited = []

    def _announce(self, scene, index, start, cached):
        """Tells the host which play this is: its name, the author's line,
        where it starts, whether it comes from the cache."""
        animations = scene.animations or []
        name = ", ".join(str(a) for a in animations[:3]) + (", ..." if len(animations) > 3 else "")
        protocol.emit(
            "animation",
            scene=self._scene,
            index=index,
            name=protocol.clip(name or "Wait", 200),
            run_time=float(scene.duration or 0.0),
            line=timeline.author_line(),
            start=round(start, 6),
            cached=cached,
        )

    def _hash(self, renderer, scene):
        from manim._config.video_encoder import video_encoder_fingerprint
        from manim.utils.hashing import get_hash_from_play_call

        # The camera's lazily filled table of drawing functions is hashed
        # too; a simulated play never fills it, and it draws nothing.
        camera = copy.copy(renderer.camera)
        vars(camera).pop("display_funcs", None)
        try:
            play_hash = get_hash_from_play_call(
                scene,
                camera,
                scene.animations,
                scene.mobjects,
                backend="cairo",
                encoder_fingerprint=video_encoder_fingerprint(scene.session_spec.video_encoder),
                renderer_state=(),
            )
        except Exception:  # noqa: BLE001 - a play Manim cannot hash is rendered, not cached
            return None
        return play_hash

    @staticmethod
    def _capture(renderer, scene):
        """The scene as it stands, drawn whole (no static background kept)."""
        from PIL import Image

        renderer.static_image = None
        renderer.update_frame(scene)
        return Image.fromarray(renderer.get_frame())


def _drawn_frames(scene, fps):
    """The frames the play just made would write when drawn, by Manim's own
    arithmetic: a static wait freezes `int(duration * fps)`, anything else
    steps through `arange(0, duration, 1 / fps)`."""
    import numpy as np

    dt = 1 / fps
    if scene.is_current_animation_frozen_frame():
        return int(scene.duration / dt)
    return len(np.arange(0, scene.duration, dt))


class _Simulated:
    """Inside it the renderer steps time per frame as it would when drawing
    (the same arithmetic as `add_frame`), but draws and writes nothing. A
    preview's still at a time is drawn when its frame comes."""

    def __init__(self, driver, renderer, scene):
        self.driver = driver
        self.renderer = renderer
        self.scene = scene

    def __enter__(self):
        driver, renderer, scene = self.driver, self.renderer, self.scene
        target = driver.plan.still_frame()

        def frames(count):
            first = driver._frames
            if target is not None and first <= target < first + count:
                image = Driver._capture(renderer, scene)
                driver.plan.keep(image, driver._scene, renderer.num_plays, target / renderer.camera.frame_rate)
                raise timeline.PreviewDone()
            renderer.time += count * (1 / renderer.camera.frame_rate)
            driver._frames += count

        renderer.render = lambda scene, time, moving_mobjects=None: frames(1)
        renderer.freeze_current_frame = lambda duration: frames(int(duration / (1 / renderer.camera.frame_rate)))
        return self

    def __exit__(self, *exc):
        del self.renderer.render
        del self.renderer.freeze_current_frame
        return False
