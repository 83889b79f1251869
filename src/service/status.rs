//! What the service says about itself: health, capabilities, metrics; and
//! the periodic expiry of old jobs, which the node runs in the background.

use std::time::Duration;

use super::{Service, ServiceError};
use crate::api::{self, Compat};
use crate::jobs::JobStatus;
use crate::metrics;
use crate::spec::{Engine, Format, Quality, MAX_FPS};
use crate::storage::ServeMode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `/health`'s `status` and `service`. The replaced system's clients count
/// a server as healthy when its status starts with `ALIVE` (it answered
/// `ALIVE_V1_1_11`): in its form, manimd says `ALIVE_V` and its own
/// version, or `DRAINING_V...` while it shuts down, when it takes no jobs.
fn identity(compat: Option<Compat>, draining: bool) -> (String, &'static str) {
    match (compat, draining) {
        (None, false) => ("ok".into(), "manimd"),
        (None, true) => ("draining".into(), "manimd"),
        (Some(Compat::ManimApi), draining) => {
            let state = if draining { "DRAINING" } else { "ALIVE" };
            let version = VERSION.replace('.', "_");
            (format!("{state}_V{version}"), "manim-video-streaming-api")
        }
    }
}

impl Service {
    pub async fn health(&self) -> Result<api::Health, ServiceError> {
        let (rss, vms) = metrics::process_memory();
        let total = metrics::total_memory().max(1);
        let busy = self.executor.busy() as u64;
        let workers = self.executor.workers() as u64;
        let (status, service) = identity(self.cfg.compat, self.is_draining());
        Ok(api::Health {
            status,
            service: service.into(),
            version: VERSION.into(),
            uptime_secs: self.started.elapsed().as_secs(),
            memory: api::Memory {
                rss_bytes: rss,
                vms_bytes: vms,
                percent: (rss as f64 * 10000.0 / total as f64).round() / 100.0,
            },
            workers: api::Workers {
                busy,
                idle: workers.saturating_sub(busy),
                warm: self.executor.warm() as u64,
                rss_bytes: self.parts.renderer.sandbox().memory_in_use(),
            },
            queue: api::Queue {
                depth: self.parts.store.count(JobStatus::Queued).await?,
                capacity: self.cfg.queue_capacity,
            },
            database: self.parts.store.dialect().name().into(),
            storage: api::StorageInfo {
                backend: self.parts.storage.kind().into(),
                serve: match self.cfg.storage_serve {
                    ServeMode::Proxy => "proxy".into(),
                    ServeMode::Redirect => "redirect".into(),
                },
            },
        })
    }

    pub fn capabilities(&self) -> api::Capabilities {
        let runtime = self.parts.renderer.runtime();
        let l = &self.cfg.limits;
        api::Capabilities {
            engines: Engine::ALL
                .into_iter()
                .map(|e| api::EngineInfo {
                    name: e,
                    version: crate::runtime::engine_version(e).into(),
                    installed: runtime.is_installed(e),
                    import: match e {
                        Engine::Manim => "from manim import *".into(),
                        Engine::Manimgl => "from manimlib import *".into(),
                    },
                })
                .collect(),
            qualities: Quality::ALL
                .into_iter()
                .map(|q| {
                    let (width, height) = q.resolution();
                    api::QualityInfo {
                        name: q,
                        width,
                        height,
                        fps: q.fps(),
                    }
                })
                .collect(),
            formats: Format::ALL
                .into_iter()
                .map(|f| api::FormatInfo {
                    name: f,
                    content_type: f.content_type().into(),
                })
                .collect(),
            limits: api::LimitsInfo {
                wall_secs: l.wall_secs,
                memory_mib: l.memory_mib,
                pids: l.pids,
                output_mib: l.output_mib,
                max_body_bytes: self.cfg.max_body_bytes,
                max_fps: MAX_FPS,
                network: l.network,
                max_project_files: self.cfg.project_limits.max_files as u64,
                max_project_bytes: self.cfg.project_limits.max_bytes,
                max_file_bytes: self.cfg.project_limits.max_file_bytes,
            },
            tex: crate::runtime::tex_available(),
            sandbox: api::SandboxInfo {
                cgroup_version: self.parts.renderer.sandbox().cgroup_version(),
            },
            narration: {
                use crate::narration::TtsConfig;
                let (provider, voice, model) = match self.parts.renderer.tts().config() {
                    TtsConfig::Espeak { voice } => ("espeak", voice.clone(), None),
                    TtsConfig::OpenAi { voice, model, .. } => {
                        ("openai", voice.clone(), Some(model.clone()))
                    }
                };
                api::NarrationInfo {
                    provider: provider.into(),
                    voice,
                    model,
                    formats: vec![Format::Mp4, Format::Mov, Format::Webm],
                }
            },
            generation: self.parts.llm.is_configured(),
            plugins: crate::runtime::PLUGINS
                .iter()
                .filter_map(|p| {
                    Some(api::PluginInfo {
                        name: p.name.into(),
                        version: p.version()?.into(),
                        engine: p.engine,
                        import: p.import.into(),
                    })
                })
                .collect(),
        }
    }

    pub async fn metrics_text(&self) -> String {
        let depth = self.parts.store.count(JobStatus::Queued).await.unwrap_or(0);
        let (rss, _) = metrics::process_memory();
        self.parts.metrics.render(
            depth,
            self.executor.busy() as u64,
            rss,
            self.parts.renderer.sandbox().started_total(),
        )
    }

    /// Deletes finished jobs (and their files) older than `retention`.
    pub async fn expire(&self, retention: Duration) -> Result<usize, ServiceError> {
        let before = crate::jobs::now_ms() - retention.as_millis() as i64;
        let ids = self.parts.store.expired(before).await?;
        let mut deleted = 0;
        for id in &ids {
            // Files first; a job whose files cannot be deleted now is kept
            // and tried again at the next expiry run.
            if let Err(err) = self.parts.storage.delete(id).await {
                tracing::error!(%id, %err, "cannot delete an expired job's files");
                continue;
            }
            self.parts.store.delete(id).await?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_names_manimd_or_answers_as_the_replaced_system() {
        let version = VERSION.replace('.', "_");
        let table = [
            (None, false, "ok".to_owned(), "manimd"),
            (None, true, "draining".to_owned(), "manimd"),
            (
                Some(Compat::ManimApi),
                false,
                format!("ALIVE_V{version}"),
                "manim-video-streaming-api",
            ),
            (
                Some(Compat::ManimApi),
                true,
                format!("DRAINING_V{version}"),
                "manim-video-streaming-api",
            ),
        ];
        for (compat, draining, status, service) in table {
            assert_eq!(identity(compat, draining), (status, service));
        }
    }
}
