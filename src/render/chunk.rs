//! Split renders, the sandbox's part: the *plan* of a scene (every play
//! simulated, nothing drawn: each play's length, and whether the scene
//! reads the wall clock or fresh entropy) and
//! one *chunk* (a range of plays drawn into the owner's animation cache).
//!
//! A chunk simulates the plays before its range frame by frame ("simulate,
//! don't skip"), so its pieces are the ones a whole render would draw, under
//! the same keys. The job's last pass is then an ordinary render that finds
//! every piece in the cache: it stitches them, mixes the sounds once over
//! the whole video and makes the thumbnail. A piece a chunk got wrong (a
//! scene the plan could not see through) has a key that pass never asks
//! for, so it draws that play itself: the result never depends on the split.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use super::collect::Collector;
use super::error::outcome;
use super::{keep_pieces, RenderError, Renderer, Warm};
use crate::animcache::Shelf;
use crate::limits::Limits;
use crate::protocol::{ChunkRange, Progress, WorkerEvent, WorkerJob};
use crate::sandbox::{self, Started};
use crate::spec::RenderSpec;

/// What a plan learned of a scene.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenePlan {
    /// Each play's seconds, in order.
    pub plays: Vec<f64>,
    /// The scene's seconds.
    pub duration: f64,
    /// The author's lines that read the wall clock.
    pub clock: Vec<u32>,
    /// The author's lines that draw fresh entropy (an unseeded generator).
    pub entropy: Vec<u32>,
    pub wall: Duration,
}

/// A finished chunk.
#[derive(Clone, Debug)]
pub struct ChunkRendered {
    /// Keys of the range's pieces, by play index (drawn or already cached).
    pub keys: Vec<(u32, String)>,
    /// Frames drawn.
    pub frames: u64,
    pub wall: Duration,
}

/// The closing lines of a plan and a chunk.
struct Planned {
    plays: u32,
    duration: f64,
    clock: Vec<u32>,
    entropy: Vec<u32>,
}

impl Renderer {
    /// Plans the one scene of `spec` (in `warm` when it fits); `scratch`
    /// takes whatever the worker hands over that a plan does not expect.
    pub async fn plan(
        &self,
        spec: &RenderSpec,
        warm: Option<Warm>,
        limits: &Limits,
        scratch: &Path,
        cancel: impl Future<Output = ()>,
    ) -> Result<ScenePlan, RenderError> {
        let mut cancel = std::pin::pin!(cancel);
        let (prepared, started) = self
            .prepare_and_start(spec, warm, limits, scratch, cancel.as_mut())
            .await?;
        let durations = prepared
            .speech
            .as_ref()
            .map(crate::narration::Speech::durations);
        let (width, height) = spec.quality.resolution();
        let job = WorkerJob::Plan {
            code: &spec.code,
            engine: spec.engine,
            scenes: &spec.scenes,
            width,
            height,
            fps: spec.fps(),
            seed: Some(spec.seed()),
            speech: durations.as_ref(),
        };
        let stdin = serde_json::to_vec(&job).expect("serializable");
        let mut collector = Collector::new(limits, scratch.join("pieces"), None, |_| {});
        let mut planned = None;
        let mut finished = self
            .sandbox
            .finish(
                started,
                stdin,
                limits,
                |line, area| match WorkerEvent::parse(line) {
                    Some(WorkerEvent::Planned {
                        plays,
                        duration,
                        clock,
                        entropy,
                        ..
                    }) => {
                        planned = Some(Planned {
                            plays,
                            duration,
                            clock,
                            entropy,
                        })
                    }
                    Some(event) => collector.on_event(event, area),
                    None => {}
                },
                cancel,
            )
            .await?;
        let animations = collector.animations();
        let planned = outcome(
            &mut finished,
            planned,
            collector.error.take(),
            "plan",
            collector.ready,
        )?;
        // The worker's word decides only how the work is cut: a wrong count
        // costs speed, never the video (see the module's comment).
        let plays: Vec<f64> = animations
            .iter()
            .take(planned.plays as usize)
            .map(|a| (a.end - a.start).max(0.0))
            .collect();
        Ok(ScenePlan {
            plays,
            duration: planned.duration.max(0.0),
            clock: bounded(planned.clock),
            entropy: bounded(planned.entropy),
            wall: finished.wall,
        })
    }

    /// Draws the plays `range` of the one scene of `spec` into the owner's
    /// `shelf` (in `warm` when it fits). The pieces are admitted (checked
    /// by our reader) before this returns.
    #[allow(clippy::too_many_arguments)]
    pub async fn render_chunk(
        &self,
        spec: &RenderSpec,
        shelf: &Shelf,
        range: ChunkRange,
        warm: Option<Warm>,
        limits: &Limits,
        dest_dir: &Path,
        progress: impl FnMut(Progress),
        cancel: impl Future<Output = ()>,
    ) -> Result<ChunkRendered, RenderError> {
        let mut cancel = std::pin::pin!(cancel);
        // A narrated scene waits for its lines' speech: spoken here too (on
        // this node), so that its plays are timed as in the last pass.
        let (prepared, started) = self
            .prepare_and_start(spec, warm, limits, dest_dir, cancel.as_mut())
            .await?;
        self.show_shelf(shelf, &started).await;
        if let Err(e) = super::lay_out_voice(&prepared, &started) {
            self.sandbox.discard(started).await;
            return Err(e);
        }
        let stdin = super::render_job(spec, &prepared, true, Some(range), None);
        let mut collector = Collector::new(limits, dest_dir.join("pieces"), Some(shelf), progress);
        let mut keys = Vec::new();
        let mut done = None;
        let mut finished = self
            .sandbox
            .finish(
                started,
                stdin,
                limits,
                |line, area| match WorkerEvent::parse(line) {
                    Some(WorkerEvent::ChunkDone { plays, .. }) => done = Some(plays),
                    Some(event) => {
                        if let WorkerEvent::PartialMovie {
                            index,
                            key: Some(key),
                            ..
                        } = &event
                        {
                            if (range.first..=range.last).contains(index) {
                                keys.push((*index, key.clone()));
                            }
                        }
                        collector.on_event(event, area)
                    }
                    None => {}
                },
                cancel,
            )
            .await?;
        outcome(
            &mut finished,
            done,
            collector.error.take(),
            "chunk",
            collector.ready,
        )?;
        let fresh = std::mem::take(&mut collector.fresh);
        let frames = fresh.iter().map(|p| p.frames).sum();
        let shelf = shelf.clone();
        let _ = tokio::task::spawn_blocking(move || keep_pieces(&shelf, fresh)).await;
        keys.sort_by_key(|(index, _)| *index);
        keys.dedup_by_key(|(index, _)| *index);
        Ok(ChunkRendered {
            keys,
            frames,
            wall: finished.wall,
        })
    }

    /// The speech `spec` waits for, then its sandbox (`warm` when it fits);
    /// a warm one is ended when the speech fails.
    pub(super) async fn prepare_and_start(
        &self,
        spec: &RenderSpec,
        warm: Option<Warm>,
        limits: &Limits,
        dest_dir: &Path,
        cancel: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(super::narrate::Prepared, Started), RenderError> {
        match self.prepare_speech(spec, limits, dest_dir, cancel).await {
            Ok(prepared) => Ok((
                prepared,
                self.start_or_take(spec.engine, warm, limits).await?,
            )),
            Err(e) => {
                if let Some(warm) = warm {
                    self.discard(warm).await;
                }
                Err(e)
            }
        }
    }

    /// `warm` when it was started for `engine`, else a fresh sandbox.
    pub(super) async fn start_or_take(
        &self,
        engine: crate::spec::Engine,
        warm: Option<Warm>,
        limits: &Limits,
    ) -> Result<Started, RenderError> {
        self.runtime.check(engine)?;
        match warm {
            Some(warm) if warm.engine == engine => Ok(warm.take_up().0),
            other => {
                if let Some(warm) = other {
                    self.discard(warm).await;
                }
                Ok(self
                    .sandbox
                    .start(&sandbox::new_id(), &self.command(engine, true), limits)
                    .await?)
            }
        }
    }
}

/// The worker's lists of lines, capped: it is untrusted.
fn bounded(mut lines: Vec<u32>) -> Vec<u32> {
    lines.truncate(20);
    lines
}

/// Cuts plays of the given lengths into at most `n` runs of whole plays,
/// in order, the longest run as short as it can be. Empty plays go with
/// their neighbours; fewer runs come back when there are fewer plays.
pub fn split(plays: &[f64], n: usize) -> Vec<ChunkRange> {
    if plays.is_empty() || n <= 1 {
        return whole(plays);
    }
    let total: f64 = plays.iter().sum();
    let longest = plays.iter().copied().fold(0.0, f64::max);
    // The smallest bound on a run's length that `n` runs can meet, found
    // by bisection over what a greedy cut needs.
    let (mut low, mut high) = (longest.max(total / n as f64), total.max(longest));
    for _ in 0..60 {
        let mid = (low + high) / 2.0;
        if greedy(plays, mid).len() <= n {
            high = mid;
        } else {
            low = mid;
        }
    }
    greedy(plays, high)
}

fn whole(plays: &[f64]) -> Vec<ChunkRange> {
    if plays.is_empty() {
        return Vec::new();
    }
    vec![ChunkRange {
        first: 0,
        last: plays.len() as u32 - 1,
    }]
}

/// Runs of whole plays, each at most `bound` long (a longer play alone).
fn greedy(plays: &[f64], bound: f64) -> Vec<ChunkRange> {
    let mut runs = Vec::new();
    let (mut first, mut sum) = (0usize, 0.0);
    for (i, &d) in plays.iter().enumerate() {
        if i > first && sum + d > bound + 1e-9 {
            runs.push(ChunkRange {
                first: first as u32,
                last: i as u32 - 1,
            });
            (first, sum) = (i, 0.0);
        }
        sum += d;
    }
    runs.push(ChunkRange {
        first: first as u32,
        last: plays.len() as u32 - 1,
    });
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(plays: &[f64], runs: &[ChunkRange]) -> Vec<f64> {
        runs.iter()
            .map(|r| plays[r.first as usize..=r.last as usize].iter().sum())
            .collect()
    }

    #[test]
    fn runs_cover_every_play_once_in_order() {
        let plays: Vec<f64> = (0..23).map(|i| 0.25 + (i % 5) as f64 * 0.5).collect();
        for n in 1..=30 {
            let runs = split(&plays, n);
            assert!(runs.len() <= n.max(1) && !runs.is_empty(), "{n}: {runs:?}");
            assert_eq!(runs[0].first, 0);
            assert_eq!(runs.last().unwrap().last, 22);
            for pair in runs.windows(2) {
                assert_eq!(pair[1].first, pair[0].last + 1, "{runs:?}");
            }
        }
    }

    #[test]
    fn runs_are_balanced_by_length_and_never_cut_a_play() {
        // Twenty one-second plays in two: ten each.
        let even = vec![1.0; 20];
        assert_eq!(lengths(&even, &split(&even, 2)), vec![10.0, 10.0]);
        // One long play cannot be cut: it is a run of its own.
        let lumpy = [1.0, 1.0, 8.0, 1.0, 1.0];
        let runs = split(&lumpy, 3);
        assert_eq!(
            lengths(&lumpy, &runs).iter().copied().fold(0.0, f64::max),
            8.0
        );
        assert!(runs.contains(&ChunkRange { first: 2, last: 2 }), "{runs:?}");
        // Four chunks of a 30-play scene with uneven plays: the longest run
        // is within one play of the ideal quarter.
        let plays: Vec<f64> = (0..30).map(|i| 0.5 + (i % 3) as f64).collect();
        let total: f64 = plays.iter().sum();
        let longest = lengths(&plays, &split(&plays, 4))
            .into_iter()
            .fold(0.0, f64::max);
        assert!(longest <= total / 4.0 + 2.5, "{longest} of {total}");
    }

    #[test]
    fn nothing_to_split_is_one_run_or_none() {
        assert!(split(&[], 4).is_empty());
        assert_eq!(split(&[2.0], 4), vec![ChunkRange { first: 0, last: 0 }]);
        assert_eq!(
            split(&[1.0, 1.0, 1.0], 1),
            vec![ChunkRange { first: 0, last: 2 }]
        );
    }
}
