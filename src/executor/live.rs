//! The live HLS stream of a render: each finished piece is packaged into
//! the job's stream as it arrives (off the async runtime), uploaded for the
//! other nodes, and the stream is ended (`EXT-X-ENDLIST`) when the render
//! ends. Live playback is best effort: its failures never fail the job.

use std::path::PathBuf;

use tokio::sync::mpsc;

use super::Executor;
use crate::hls::{HlsError, Live};
use crate::jobs::JobId;
use crate::storage::Storage;

impl Executor {
    /// Packages each finished piece into the job's live HLS stream, and
    /// ends the stream when the render ends (when `rx` closes).
    pub(super) fn spawn_live(
        &self,
        id: JobId,
        attempt: u32,
        rx: mpsc::UnboundedReceiver<PathBuf>,
    ) -> tokio::task::JoinHandle<()> {
        let storage = self.parts.storage.clone();
        tokio::spawn(async move {
            let dir = storage.live_dir(&id, attempt);
            let live = match Live::new(dir, crate::hls::TARGET_SECS, "live/") {
                Ok(live) => live,
                Err(err) => return tracing::error!(%err, "cannot start the live stream"),
            };
            let stream = Stream {
                storage,
                id,
                attempt,
            };
            let Some(live) = stream.package(live, rx).await else {
                return;
            };
            stream.end(live).await;
        })
    }
}

/// Where one attempt's live stream goes.
struct Stream {
    storage: Storage,
    id: JobId,
    attempt: u32,
}

impl Stream {
    /// Adds each piece to the stream until `rx` closes, removing the piece
    /// files as it goes. `None` if the packager's task panicked.
    async fn package(
        &self,
        mut live: Live,
        mut rx: mpsc::UnboundedReceiver<PathBuf>,
    ) -> Option<Live> {
        let mut broken = false;
        while let Some(piece) = rx.recv().await {
            if broken {
                let _ = tokio::fs::remove_file(&piece).await;
                continue;
            }
            let (l, added) = tokio::task::spawn_blocking(move || {
                let before = live.segment_count();
                let added = std::fs::read(&piece)
                    .map_err(HlsError::from)
                    .and_then(|d| live.add_piece(&d))
                    .map(|_| live.changed_since(before));
                let _ = std::fs::remove_file(&piece);
                (live, added)
            })
            .await
            .ok()?;
            live = l;
            match added {
                // Other nodes serve the stream from the store; a failed
                // upload only delays it.
                Ok(changed) => self.push(&changed).await,
                Err(err) => {
                    // A piece the packager cannot take ends live playback
                    // for this job; the final video is unaffected.
                    tracing::warn!(%err, "live stream stopped");
                    broken = true;
                }
            }
        }
        Some(live)
    }

    /// Writes the end of the stream and uploads the final playlist.
    async fn end(&self, mut live: Live) {
        let ended = tokio::task::spawn_blocking(move || live.end())
            .await
            .unwrap_or(Ok(()));
        match ended {
            Ok(()) => {
                self.push(&["live.m3u8".to_owned()]).await;
                self.storage.end_live(&self.id, self.attempt).await;
            }
            Err(err) => tracing::warn!(%err, "cannot end the live stream"),
        }
    }

    async fn push(&self, names: &[String]) {
        if let Err(err) = self.storage.push_live(&self.id, self.attempt, names).await {
            tracing::warn!(%err, "cannot upload the live stream");
        }
    }
}
