"""Entry point: one job in on stdin, protocol lines out, exit code 0 or 1."""

import json
import os
import random
import sys
import time

from manimd_worker import media, memory, narration, protocol, usercode, voiceover
from manimd_worker.enginecheck import CODE as ENGINE_MISMATCH, EngineMismatch
from manimd_worker.tex import TexFailure
from manimd_worker.usercode import UserError

OUT_DIR = "/job/out"
WORK_DIR = "/job/work"


def main():
    protocol.install()
    try:
        engine = _engine_arg()
        if engine:
            # Warm start: import the engine, say so, then wait for the job.
            started = time.monotonic()
            from manimd_worker import engines

            engines.preload(engine)
            protocol.emit("warm", engine=engine, import_secs=round(time.monotonic() - started, 3))
            if engine == "manim" and not _job_arrived():
                # Waiting in the warm pool: the plugins' imports are hidden
                # here. A job already sent (a fresh sandbox) imports only
                # those its scene imports.
                from manimd_worker import plugins

                plugins.preload(_job_arrived)
        job = json.loads(sys.stdin.buffer.read())
        global _JOB_RECEIVED
        _JOB_RECEIVED = time.monotonic()
        if job.get("mode") == "inspect":
            inspect(job)
        elif job.get("mode") == "mux":
            mux(job)
        elif job.get("mode") == "preview":
            preview(job)
        elif job.get("mode") == "plan":
            plan(job)
        else:
            render(job)
    except UserError as err:
        protocol.emit("error", code=err.code, **err.fields)
        _exit(1)
    except media.MediaError as err:
        protocol.emit("error", code="encode-error", message=protocol.clip(str(err)))
        _exit(1)
    except EngineMismatch as err:
        # The installation's fault: reported before any user code has run.
        protocol.emit("error", code=ENGINE_MISMATCH, **{**err.fields, "message": protocol.clip(str(err))})
        _exit(1)
    _exit(0)


def _exit(code):
    """Exits now: threads or children the scene left running must not keep
    the job alive after it has reported its outcome."""
    sys.stderr.flush()
    os._exit(code)


_JOB_RECEIVED = None


def _job_arrived():
    """Whether the job is on stdin already (nothing is read)."""
    import select

    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready)


def _engine_arg():
    """`--engine NAME` when the supervisor wants the engine imported up front."""
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--engine" and args[1] in ("manim", "manimgl"):
        return args[1]
    return None


def _job_secs():
    """Seconds from receiving the job to now: the render's own time."""
    return round(time.monotonic() - _JOB_RECEIVED, 3) if _JOB_RECEIVED else None


def inspect(job):
    """Static facts about the file, without running it: engine and scenes."""
    tree = usercode.parse(job["code"])
    engine = usercode.detect_engine(tree)
    for module in job.get("modules") or []:
        # A project's scene file may import its engine through a module of
        # its own (3b1b's manim_imports_ext); one that does not parse says nothing.
        if engine is not None:
            break
        try:
            engine = usercode.detect_engine(usercode.parse(module))
        except UserError:
            pass
    protocol.emit(
        "inspected",
        engine=engine,
        scenes=usercode.static_scenes(tree),
        narrations=narration.literals(tree),
        voiceovers=voiceover.literals(tree),
    )


def mux(job):
    """Mixes the narration clips into the rendered video. Runs no user code;
    the video came from a scene, so it is read here, in the sandbox."""
    os.makedirs(OUT_DIR, exist_ok=True)
    fmt = job["format"]
    output = os.path.join(OUT_DIR, f"output.{fmt}")
    media.mux_narration(job["video"], job["clips"], fmt, output)
    result = {"still": False, "format": fmt, **media.probe(output)}
    protocol.emit("result", max_rss_bytes=_max_rss_bytes(), job_secs=_job_secs(), **result)


def render(job):
    memory.for_frames(job.get("width", 0), job.get("height", 0))
    driver, by_name, wanted = _load(job)
    if job.get("chunk") is not None:
        # One chunk of one scene: its pieces are the whole answer; the job's
        # last pass stitches them with the other chunks' (see timeline.Plan).
        out = _render_scene(driver, by_name, wanted[0], 0, 1)
        protocol.emit("chunk-done", plays=out.plays, job_secs=_job_secs())
        return
    outputs = []
    for index, name in enumerate(wanted):
        outputs.append((name, _render_scene(driver, by_name, name, index, len(wanted))))
    finish(job, outputs)


def plan(job):
    """Runs one scene with Manim's own skipping to learn its plays' lengths
    (the `animation` events) and whether it reads the wall clock or fresh
    entropy, so that the host can decide how to split its render (see
    timeline.Plan.planning)."""
    from manimd_worker import timeline

    watch = timeline.Determinism()
    watch.install()
    driver, by_name, wanted = _load(job)
    out = _render_scene(driver, by_name, wanted[0], 0, 1)
    protocol.emit("planned", plays=out.plays, duration=round(out.duration, 6), job_secs=_job_secs(),
                  **watch.report())


def preview(job):
    """Frames of one scene without video: every play simulated, the frames
    the preview asks for drawn and saved as PNG (see timeline.Plan)."""
    driver, by_name, wanted = _load(job)
    name = wanted[0]
    out = _render_scene(driver, by_name, name, 0, 1)
    plan = driver.plan
    wanted_play = job["preview"].get("animation")
    if wanted_play is not None and wanted_play >= out.plays:
        raise UserError(
            "no-such-animation",
            f"the scene {name} plays {out.plays} animations (0 to {out.plays - 1}); "
            f"there is no animation {wanted_play}",
            plays=out.plays,
        )
    if plan.frames == 0:
        # A still after the end, or a scene that plays nothing: its last frame.
        plan.keep(out.last_frame, name, max(out.plays - 1, 0), out.duration)
    plan.flush()
    protocol.emit("previewed", frames=plan.frames, plays=out.plays, duration=round(out.duration, 6),
                  job_secs=_job_secs())


def _render_scene(driver, by_name, name, index, count):
    protocol.emit("scene-started", scene=name, index=index, count=count)
    voiceover.scene_index = index
    try:
        out = driver.render_scene(name, by_name[name], index)
    except TexFailure as err:
        raise usercode.latex_error(err.tex_message, err.expression, err.__traceback__, name) from None
    except UserError:
        raise
    except BaseException as err:  # noqa: BLE001 - the author's exceptions, SystemExit included
        raise usercode.scene_error(err, name) from None
    protocol.emit(
        "scene-finished",
        scene=name,
        index=index,
        plays=out.plays,
        duration=round(out.duration, 4),
    )
    return out


def _load(job):
    """Runs the file with the engine loaded: the driver, the file's scenes
    by name and the names to render."""
    started = time.monotonic()
    code = job["code"]
    if job.get("main"):
        # A project, laid out by the host at /project (the scene file too).
        usercode.use_project(job["main"])
    tree = usercode.parse(code)
    code_obj = usercode.compile_code(code)
    if not job.get("main"):
        with open(usercode.USER_FILE, "w", encoding="utf-8") as f:
            # Written out so that tracebacks and `inspect` can show source lines.
            f.write(code)
    os.makedirs(OUT_DIR, exist_ok=True)
    os.makedirs(WORK_DIR, exist_ok=True)

    from manimd_worker import engines

    driver = engines.load(job["engine"], job)
    protocol.emit(
        "ready",
        engine=driver.name,
        version=driver.version,
        import_secs=round(time.monotonic() - started, 3),
    )

    if job.get("main"):
        from manimd_worker import project

        project.register_fonts()
    narration.configure(job.get("speech"))
    if driver.name == "manim":
        # manim-voiceover's speech comes from the host: a render's prepared
        # clips (none prepared is still strict), placeholders otherwise.
        voiceover.install()
        strict = job.get("mode") == "render"
        voiceover.configure((job.get("voiceover") or {}) if strict else None)
    seed = job.get("seed")
    if seed is not None:
        random.seed(seed)
        import numpy

        numpy.random.seed(seed)

    module = usercode.load_module(code_obj)
    available = usercode.find_scenes(module, driver.scene_base, tree)
    if not available:
        raise UserError("no-scene", "the file defines no Scene subclass")
    by_name = dict(available)
    wanted = job.get("scenes") or []
    if not wanted:
        if len(available) > 1:
            names = ", ".join(name for name, _ in available)
            raise UserError(
                "scene-not-found",
                f"the file defines several scenes ({names}); name the ones to render",
                available=[name for name, _ in available],
            )
        wanted = [available[0][0]]
    for name in wanted:
        if name not in by_name:
            raise UserError(
                "scene-not-found",
                f"no scene named {name!r}; the file defines: "
                + ", ".join(n for n, _ in available),
                scene=name,
                available=[n for n, _ in available],
            )

    return driver, by_name, wanted


def _max_rss_bytes():
    """Peak RSS of the worker or of its largest child (ffmpeg, LaTeX), for stats."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


def finish(job, outputs):
    fmt = job["format"]
    last = outputs[-1][1]
    thumbnail = os.path.join(OUT_DIR, "thumbnail.png")
    last.last_frame.save(thumbnail)
    videos = [path for _, out in outputs for path in out.videos]
    silent = [name for name, out in outputs if not out.plays]

    if fmt == "png" or not videos:
        still = os.path.join(OUT_DIR, "output.png")
        last.last_frame.save(still)
        width, height = last.last_frame.size
        result = {"still": True, "format": "png", "width": width, "height": height,
                  "duration": 0.0, "fps": None, "frames": 1, "codec": "png"}
        if fmt != "png":
            result["notice"] = {
                "code": "no-animation",
                "message": "the scene played no animation, so its last frame is delivered as a PNG",
            }
        protocol.emit("result", max_rss_bytes=_max_rss_bytes(), job_secs=_job_secs(), **result)
        return

    output = os.path.join(OUT_DIR, f"output.{fmt}")
    media.finalize(videos, fmt, output, os.path.join(WORK_DIR, "concat.txt"))
    result = {"still": False, "format": fmt, **media.probe(output)}
    if silent:
        result["notice"] = {
            "code": "no-animation",
            "message": "these scenes played no animation and add nothing to the video: "
            + ", ".join(silent),
            "scenes": silent,
        }
    protocol.emit("result", max_rss_bytes=_max_rss_bytes(), job_secs=_job_secs(), **result)
