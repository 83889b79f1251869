//! Previews: a scene's storyboard or one still, answered while the caller
//! waits. A preview is no job: it is never queued or stored in the database,
//! its frames live on this node's disk for [`PREVIEW_KEEP`], and only the
//! owner who asked can fetch them. A bounded number run at once, each in its
//! own sandbox (a warm one when the pool has it) under a short wall clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::error::{invalid, ServiceError};
use super::validate::validate;
use super::Service;
use crate::api::{PreviewMode, PreviewRequest, RenderRequest};
use crate::jobs::JobId;
use crate::protocol::PreviewKind;
use crate::render::{Preview, PreviewSpec};
use crate::spec::Engine;

/// The wall clock of one preview, in seconds (or the render limit, when
/// that is shorter): the caller waits for it, so it is far below a render's.
pub const PREVIEW_WALL_SECS: u64 = 60;

/// How long a preview's frames can be fetched.
pub const PREVIEW_KEEP: Duration = Duration::from_secs(600);

/// This node's previews: their frames on disk and who may fetch them.
pub struct Previews {
    dir: PathBuf,
    kept: Mutex<HashMap<JobId, Kept>>,
    /// Bounds the previews running at once (each holds a sandbox).
    slots: Arc<Semaphore>,
    max: usize,
}

/// A preview whose frames are kept.
struct Kept {
    owner: Option<String>,
    frames: usize,
    at: Instant,
}

impl Previews {
    /// Previews kept in `dir`, at most `max` running at once. What a
    /// previous process left there is removed (one process per data dir).
    pub fn new(dir: PathBuf, max: usize) -> Previews {
        let _ = std::fs::remove_dir_all(&dir);
        Previews {
            dir,
            kept: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Forgets previews older than [`PREVIEW_KEEP`] and removes their frames.
    pub fn sweep(&self) {
        let expired: Vec<JobId> = {
            let mut kept = self.kept.lock().expect("previews lock");
            let old: Vec<JobId> = kept
                .iter()
                .filter(|(_, k)| k.at.elapsed() >= PREVIEW_KEEP)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &old {
                kept.remove(id);
            }
            old
        };
        for id in expired {
            let _ = std::fs::remove_dir_all(self.dir.join(id.to_string()));
        }
    }

    /// Frame `n` of preview `id`, if `owner` asked for it and it is kept.
    fn frame_path(&self, id: &JobId, n: usize, owner: Option<&str>) -> Option<PathBuf> {
        let kept = self.kept.lock().expect("previews lock");
        let k = kept.get(id)?;
        (k.owner.as_deref() == owner && n < k.frames && k.at.elapsed() < PREVIEW_KEEP)
            .then(|| self.dir.join(id.to_string()).join(format!("{n:03}.png")))
    }
}

impl Service {
    /// Checks a preview request, runs it in a sandbox and keeps its frames
    /// for the `owner`. The scene's errors are the render's, typed.
    pub async fn preview(
        &self,
        req: PreviewRequest,
        owner: Option<&str>,
    ) -> Result<(JobId, Preview), ServiceError> {
        if self.is_draining() {
            return Err(ServiceError::ShuttingDown);
        }
        let (spec_files, spec_main, manifest) = (req.files.clone(), req.main.clone(), req.manifest);
        let (mut spec, detect) = preview_spec(req)?;
        let (code, project) = self
            .project_of(
                std::mem::take(&mut spec.code),
                spec_files.as_ref(),
                spec_main.as_deref(),
                manifest.as_ref(),
                owner,
            )
            .await?;
        self.check_blobs(&code, project.as_ref(), owner).await?;
        spec.code = code;
        spec.project = project;
        spec.owner = Some(crate::blobs::owner_name(owner));
        let previews = &self.previews;
        let permit = Arc::clone(&previews.slots)
            .try_acquire_owned()
            .map_err(|_| ServiceError::PreviewsBusy { max: previews.max })?;
        previews.sweep();
        let spec = if detect {
            let inspection = self
                .inspect_scenes(&spec.code, spec.project.as_ref(), spec.scene.as_slice())
                .await?;
            PreviewSpec {
                engine: inspection.engine.unwrap_or(Engine::Manim),
                ..spec
            }
        } else {
            spec
        };
        let id = JobId::new();
        let dest = previews.dir.join(id.to_string());
        let mut limits = self.cfg.limits.clone();
        limits.wall_secs = limits.wall_secs.min(PREVIEW_WALL_SECS);
        // Warm sandboxes are started with the render limits; the preview's
        // shorter wall clock applies when it runs.
        let warm = self.parts.pool.take(spec.engine, &self.cfg.limits);
        let renderer = Arc::clone(&self.parts.renderer);
        let task_dest = dest.clone();
        // Its own task: a caller who hangs up does not stop the sandbox
        // half way; it ends within its wall clock, and so does the slot.
        let task = tokio::spawn(async move {
            let _permit = permit;
            renderer
                .preview(&spec, warm, &limits, &task_dest, std::future::pending())
                .await
        });
        let preview = match task.await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let preview = match preview {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dest);
                return Err(e.into());
            }
        };
        previews.kept.lock().expect("previews lock").insert(
            id.clone(),
            Kept {
                owner: owner.map(str::to_owned),
                frames: preview.frames.len(),
                at: Instant::now(),
            },
        );
        Ok((id, preview))
    }

    /// The PNG of frame `n` of preview `id`; `NotFound` for another owner's,
    /// an expired one, or a number past its frames.
    pub async fn preview_frame(
        &self,
        id: &JobId,
        n: usize,
        owner: Option<&str>,
    ) -> Result<Vec<u8>, ServiceError> {
        let path = self
            .previews
            .frame_path(id, n, owner)
            .ok_or(ServiceError::PreviewNotFound)?;
        tokio::fs::read(&path)
            .await
            .map_err(|_| ServiceError::PreviewNotFound)
    }

    /// Removes expired previews' frames (the node calls it now and then).
    pub fn sweep_previews(&self) {
        self.previews.sweep();
    }
}

/// The request's checks, as a render's (code, scene, fps) and then the
/// preview's own; the spec, and whether its engine is still to be detected.
fn preview_spec(req: PreviewRequest) -> Result<(PreviewSpec, bool), ServiceError> {
    let render = RenderRequest {
        code: req.code,
        files: req.files,
        main: req.main,
        scene: req.scene,
        quality: req.quality,
        fps: req.fps,
        seed: req.seed,
        ..RenderRequest::default()
    };
    let checked = validate(&render)?;
    let kind = preview_kind(req.kind, req.at, req.animation)?;
    let spec = PreviewSpec {
        code: if render.files.is_some() {
            String::new()
        } else {
            render.code
        },
        scene: checked.scenes.into_iter().next(),
        engine: req.engine.unwrap_or(Engine::Manim),
        quality: checked.quality,
        fps: checked.fps,
        seed: checked.seed,
        kind,
        project: None,
        owner: None,
    };
    Ok((spec, req.engine.is_none()))
}

/// `storyboard` alone, or `still` with exactly one of `at` and `animation`.
fn preview_kind(
    mode: PreviewMode,
    at: Option<f64>,
    animation: Option<u32>,
) -> Result<PreviewKind, ServiceError> {
    match (mode, at, animation) {
        (PreviewMode::Storyboard, None, None) => Ok(PreviewKind::Storyboard),
        (PreviewMode::Storyboard, Some(_), _) => Err(invalid(
            "at",
            "a storyboard takes no `at`; use \"kind\": \"still\"",
        )),
        (PreviewMode::Storyboard, _, Some(_)) => Err(invalid(
            "animation",
            "a storyboard takes no `animation`; use \"kind\": \"still\"",
        )),
        (PreviewMode::Still, None, None) => Err(invalid(
            "at",
            "a still needs `at` (seconds) or `animation` (an index)",
        )),
        (PreviewMode::Still, Some(_), Some(_)) => {
            Err(invalid("animation", "give `at` or `animation`, not both"))
        }
        (PreviewMode::Still, Some(at), None) if !at.is_finite() || at < 0.0 => {
            Err(invalid("at", "`at` is a number of seconds, 0 or more"))
        }
        (PreviewMode::Still, at, animation) => Ok(PreviewKind::Still { at, animation }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_names_the_field_at_fault() {
        use PreviewMode::*;
        let field = |mode, at, animation| match preview_kind(mode, at, animation) {
            Err(ServiceError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Storyboard, Some(1.0), None), "at");
        assert_eq!(field(Storyboard, None, Some(1)), "animation");
        assert_eq!(field(Still, None, None), "at");
        assert_eq!(field(Still, Some(1.0), Some(1)), "animation");
        assert_eq!(field(Still, Some(-1.0), None), "at");
        assert_eq!(field(Still, Some(f64::NAN), None), "at");
        assert_eq!(
            preview_kind(Still, None, Some(2)).unwrap(),
            PreviewKind::Still {
                at: None,
                animation: Some(2)
            }
        );
        assert_eq!(
            preview_kind(Storyboard, None, None).unwrap(),
            PreviewKind::Storyboard
        );
    }
}
