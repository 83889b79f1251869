//! How the CLI shows results and typed errors to a person.

use std::fmt::Write as _;
use std::path::Path;

use manimd::protocol::{MediaInfo, UserError};
use manimd::render::RenderError;

/// `error[code]: message`, then the author's line with its neighbours and
/// the trimmed traceback, so the error can be fixed without opening logs.
pub fn error(err: &RenderError, file: &Path, code: &str) -> String {
    match err {
        RenderError::User(user) => user_error(user, file, code),
        _ if err.is_internal() => format!(
            "error[{}]: {err}\n  this is a problem with the manimd installation, not with the scene\n",
            err.code()
        ),
        _ => format!("error[{}]: {err}\n", err.code()),
    }
}

/// A typed error with the author's line and its neighbours, the trimmed
/// traceback and the kind's own details.
pub fn user_error(user: &UserError, file: &Path, code: &str) -> String {
    let mut out = format!("error[{}]: {}\n", user.code, user.message);
    if let Some(line) = user.line {
        let col = user.column.map(|c| format!(":{c}")).unwrap_or_default();
        let _ = writeln!(out, "  --> {}:{line}{col}", file.display());
        let lines: Vec<&str> = code.lines().collect();
        let first = line.saturating_sub(2).max(1);
        let last = (line + 1).min(lines.len() as u32);
        let width = last.to_string().len();
        for n in first..=last {
            let marker = if n == line { '>' } else { ' ' };
            let text = lines.get(n as usize - 1).copied().unwrap_or("");
            let _ = writeln!(out, "{marker} {n:>width$} | {text}");
            if n == line {
                if let Some(col) = user.column.filter(|c| *c > 0) {
                    let _ = writeln!(out, "  {:>width$} | {}^", "", " ".repeat(col as usize - 1));
                }
            }
        }
    }
    if user.traceback.len() > 1 {
        out.push_str("  traceback (your code, most recent call last):\n");
        for frame in &user.traceback {
            let _ = writeln!(
                out,
                "    line {} in {}: {}",
                frame.line, frame.function, frame.code
            );
        }
    }
    if let Some(tex) = &user.tex_error {
        let _ = writeln!(out, "  TeX says: {}", tex.replace('\n', "\n            "));
    }
    if let Some(available) = &user.available {
        let _ = writeln!(out, "  scenes in this file: {}", available.join(", "));
    }
    out
}

/// One line about a delivered file.
pub fn media(m: &MediaInfo, bytes: u64) -> String {
    let size = match (m.width, m.height) {
        (Some(w), Some(h)) => format!("{w}x{h}"),
        _ => "?".into(),
    };
    let kib = bytes.div_ceil(1024);
    if m.still {
        format!("{size} PNG, {kib} KiB")
    } else {
        let fps = m.fps.map(|f| format!(", {f} fps")).unwrap_or_default();
        let frames = m
            .frames
            .map(|f| format!(", {f} frames"))
            .unwrap_or_default();
        format!(
            "{size}{fps}, {:.2} s{frames}, {}, {kib} KiB",
            m.duration,
            m.codec.as_deref().unwrap_or("?")
        )
    }
}
