"""Final output: stitching, container and format conversion, probing.

All of this runs inside the sandbox, because the partial files it reads were
written by the scene and are as untrusted as the scene itself.
"""

import io
import json
import subprocess

from manimd_worker.protocol import clip

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"


class MediaError(Exception):
    pass


def _run(args):
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace")[-1500:]
        raise MediaError(f"{args[0]} failed ({proc.returncode}): {clip(tail, 1500)}")
    return proc.stdout


def _concat_input(inputs, list_path):
    """ffmpeg input arguments reading `inputs` back to back without re-encoding."""
    if len(inputs) == 1:
        return ["-i", inputs[0]]
    with open(list_path, "w", encoding="utf-8") as f:
        for path in inputs:
            escaped = path.replace("'", "'\\''")
            f.write(f"file '{escaped}'\n")
    return ["-f", "concat", "-safe", "0", "-i", list_path]


def _av():
    """PyAV, where the engine's environment has it: remuxing and probing
    in-process saves starting ffmpeg and ffprobe, a tenth of a second each."""
    try:
        import av

        return av
    except ImportError:
        return None


def _av_remux(av, inputs, fmt, out_path):
    """Concatenates the pieces without re-encoding, index first (faststart)."""
    lines = "".join("file '{}'\n".format(p.replace("'", "'\\''")) for p in inputs)
    manifest = io.BytesIO(lines.encode())
    src = av.open(manifest, format="concat", options={"safe": "0"})
    try:
        # A scene with sound comes as Manim's own movie, its sound mixed in
        # (AAC): that track is copied too.
        streams = [src.streams.video[0]] + list(src.streams.audio[:1])
        out = av.open(out_path, mode="w", format="mp4" if fmt == "mp4" else "mov", options={"movflags": "+faststart"})
        try:
            dst = {s.index: out.add_stream_from_template(template=s) for s in streams}
            for packet in src.demux(streams):
                if packet.dts is None:
                    continue
                # Timestamps restart in each piece; libav recomputes dts.
                packet.dts = None
                packet.stream = dst[packet.stream.index]
                out.mux(packet)
        finally:
            out.close()
    finally:
        src.close()


def _av_probe(av, path):
    with av.open(path) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        duration = c.duration / av.time_base if c.duration else float((s.duration or 0) * s.time_base)
        return {
            "codec": cc.name,
            "width": cc.width,
            "height": cc.height,
            "fps": round(float(s.average_rate), 3) if s.average_rate else 0.0,
            "duration": round(float(duration), 6),
            "frames": s.frames or None,
        }


def finalize(inputs, fmt, out_path, list_path):
    """Writes the deliverable for `fmt` from the rendered H.264 pieces."""
    av = _av()
    if av is not None and fmt in ("mp4", "mov"):
        try:
            return _av_remux(av, inputs, fmt, out_path)
        except av.error.FFmpegError:
            pass  # ffmpeg's own concat copes with more; it runs below.
    base = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    src = _concat_input(inputs, list_path)
    if fmt in ("mp4", "mov"):
        # Stream copy: the pieces share one encoder configuration. faststart
        # moves the index (moov) before the media data so playback and
        # seeking over HTTP start before the whole file has arrived.
        args = src + ["-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-movflags", "+faststart"]
    elif fmt == "webm":
        args = src + [
            "-map", "0:v:0", "-map", "0:a:0?", "-c:a", "libopus", "-b:a", "96k",
            "-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p",
            "-crf", "32", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8",
            "-row-mt", "1",
        ]
    elif fmt == "gif":
        args = src + [
            "-filter_complex",
            "[0:v]split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=4",
            "-loop", "0",
        ]
    else:
        raise MediaError(f"unknown format {fmt}")
    _run(base + args + [out_path])


def probe(path):
    """Codec, size, frame rate, duration and frame count of a video file."""
    av = _av()
    if av is not None:
        try:
            return _av_probe(av, path)
        except (av.error.FFmpegError, IndexError):
            pass
    out = _run(
        [
            FFPROBE, "-v", "error", "-select_streams", "v:0",
            "-show_entries", "stream=codec_name,width,height,avg_frame_rate,nb_frames:format=duration",
            "-of", "json", path,
        ]
    )
    data = json.loads(out)
    stream = (data.get("streams") or [{}])[0]
    num, _, den = (stream.get("avg_frame_rate") or "0/1").partition("/")
    fps = float(num) / float(den) if den and float(den) else 0.0
    frames = stream.get("nb_frames")
    return {
        "codec": stream.get("codec_name"),
        "width": stream.get("width"),
        "height": stream.get("height"),
        "fps": round(fps, 3),
        "duration": float(data.get("format", {}).get("duration") or 0.0),
        "frames": int(frames) if frames and frames.isdigit() else None,
    }


def _has_audio(path):
    out = _run([FFPROBE, "-v", "error", "-select_streams", "a", "-show_entries", "stream=index",
                "-of", "csv=p=0", path])
    return bool(out.strip())


def mux_narration(video, clips, fmt, out_path):
    """Adds a sound track to `video`: each clip delayed to its start (and
    sped up by its tempo), mixed without level normalization, encoded as
    AAC (Opus for WebM). The video stream is copied untouched."""
    if fmt not in ("mp4", "mov", "webm"):
        raise MediaError(f"narration cannot be muxed into {fmt}")
    args = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", video]
    chains = []
    for i, c in enumerate(clips, start=1):
        args += ["-i", c["path"]]
        filters = []
        tempo = float(c.get("tempo") or 1.0)
        if abs(tempo - 1.0) > 1e-3:
            filters.append(f"atempo={tempo:.4f}")
        delay_ms = max(0, int(round(float(c["start"]) * 1000)))
        filters.append(f"adelay={delay_ms}:all=1")
        chains.append(f"[{i}:a]{','.join(filters)}[a{i}]")
    labels = "".join(f"[a{i}]" for i in range(1, len(clips) + 1))
    inputs = len(clips)
    if _has_audio(video):
        # The scene's own sounds (`add_sound`) are mixed in with the speech.
        labels = "[0:a]" + labels
        inputs += 1
    chains.append(f"{labels}amix=inputs={inputs}:normalize=0:dropout_transition=0:duration=longest[aout]")
    args += ["-filter_complex", ";".join(chains), "-map", "0:v:0", "-map", "[aout]", "-c:v", "copy"]
    if fmt == "webm":
        args += ["-c:a", "libopus", "-b:a", "64k"]
    else:
        # faststart: the index before the media data, as for silent videos.
        args += ["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"]
    _run(args + [out_path])
