//! `manimd render --watch`: after the first render, renders the file again
//! on every save and says which animations the edit changed. Each render
//! runs in a fresh sandbox like any other; the animation cache in the data
//! dir is what makes the second one fast: unchanged plays are simulated,
//! not drawn, and their pieces reused.

use std::path::Path;
use std::time::{Duration, SystemTime};

use manimd::render::{AnimationInfo, Rendered};
use manimd::spec::RenderSpec;

/// How often the file's modification time is read.
const POLL: Duration = Duration::from_millis(250);

/// Waits for the next save of `file`: a modification time other than
/// `seen`, stable for one poll (an editor's write may come in parts).
pub async fn next_save(file: &Path, seen: &mut Option<SystemTime>) {
    loop {
        tokio::time::sleep(POLL).await;
        let now = modified(file);
        if now.is_some() && now != *seen {
            tokio::time::sleep(POLL).await;
            if modified(file) == now {
                *seen = now;
                return;
            }
        }
    }
}

pub fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// The spec for the file as saved now (the scenes, engine and settings
/// stay those of the first render).
pub fn respec(spec: &RenderSpec, code: String) -> RenderSpec {
    RenderSpec {
        code,
        ..spec.clone()
    }
}

/// One line per render: how long it took, and which animations were drawn
/// (the ones the edit changed; the others came from the cache).
pub fn summary(rendered: &Rendered, took: Duration, output: &Path) -> String {
    let drawn: Vec<&AnimationInfo> = rendered.animations.iter().filter(|a| !a.cached).collect();
    let total = rendered.animations.len();
    let what = match drawn.len() {
        0 if total > 0 => format!("no animation changed ({total} reused)"),
        0 => "no animation".to_owned(),
        n if n == total => format!("all {total} animations rendered"),
        n => format!(
            "{n} of {total} changed: {}",
            drawn
                .iter()
                .map(|a| describe(a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{what}; {:.2} s -> {}",
        took.as_secs_f64(),
        output.display()
    )
}

fn describe(a: &AnimationInfo) -> String {
    match a.line {
        Some(line) => format!("#{} {} (line {line})", a.index, a.name),
        None => format!("#{} {}", a.index, a.name),
    }
}
