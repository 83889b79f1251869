//! The mux pass's input: the rendered video and the placed clips, laid out
//! in a directory that a fresh sandbox sees read-only at [`MOUNT`]. The
//! worker there mixes the clips at their cue times and muxes the mix into
//! the video with the video stream copied (`python/manimd_worker/media.py`).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{Placed, Speech};

/// Where the directory appears inside the sandbox.
pub const MOUNT: &str = "/narration";

/// One clip of the sound track: part of the worker's job, so defined with
/// the protocol.
pub use crate::protocol::MuxClip;

/// Fills `dir` with `video.<ext>` and one WAV per placed line, readable by
/// the sandbox's unprivileged user, and returns the video's and the clips'
/// paths inside the sandbox.
pub fn prepare(
    dir: &Path,
    video: &Path,
    ext: &str,
    placed: &[Placed],
    speech: &Speech,
) -> io::Result<(String, Vec<MuxClip>)> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    let copy = |from: &Path, name: &str| -> io::Result<String> {
        let to = dir.join(name);
        fs::copy(from, &to)?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o644))?;
        Ok(format!("{MOUNT}/{name}"))
    };
    let video = copy(video, &format!("video.{ext}"))?;
    let mut clips = Vec::with_capacity(placed.len());
    for (i, p) in placed.iter().enumerate() {
        let Some(wav) = speech.clip(&p.cue.text) else {
            continue;
        };
        clips.push(MuxClip {
            path: copy(wav, &format!("{i}.wav"))?,
            start: (p.cue.start * 1000.0).round() / 1000.0,
            tempo: p.tempo,
        });
    }
    Ok((video, clips))
}
