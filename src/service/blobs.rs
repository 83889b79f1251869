//! Blobs and projects: uploads (`PUT /v1/blobs/{digest}`), which of a
//! list the caller lacks, a request's project checked against the
//! caller's blobs, and the collection of blobs no job names.

use std::collections::HashSet;
use std::time::Duration;

use futures::Stream;

use super::error::{invalid, ServiceError};
use super::Service;
use crate::blobs::{owner_name, BlobError, Stored, TOUCH_EVERY};
use crate::project::{self, Digest, FileMap, FileRef, Project, ProjectError};

/// The most digests one `missing` question may ask about.
pub const MAX_MISSING_QUERY: usize = 10_000;

impl Service {
    /// Stores an upload as the caller's blob `digest` (see `Blobs::put`).
    pub async fn put_blob<S, B, E>(
        &self,
        owner: Option<&str>,
        digest: &Digest,
        length: Option<u64>,
        body: S,
    ) -> Result<Stored, ServiceError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        if self.is_draining() {
            return Err(ServiceError::ShuttingDown);
        }
        let stored = self.parts.blobs.put(owner, digest, length, body).await?;
        if stored == Stored::Created {
            // With a bucket, every node can bring it from there.
            self.parts
                .storage
                .push_blob(&self.parts.blobs, owner, digest)
                .await?;
        }
        Ok(stored)
    }

    /// The digests of `wanted` the caller has not uploaded (to this node,
    /// or, with a bucket, to any).
    pub async fn missing_blobs(
        &self,
        owner: Option<&str>,
        wanted: &[Digest],
    ) -> Result<Vec<Digest>, ServiceError> {
        if wanted.len() > MAX_MISSING_QUERY {
            return Err(invalid(
                "digests",
                format!("ask about at most {MAX_MISSING_QUERY} digests at once"),
            ));
        }
        let mut missing = Vec::new();
        for digest in self.parts.blobs.missing(owner, wanted) {
            if !self.bring_blob(owner, &digest).await? {
                missing.push(digest);
            }
        }
        Ok(missing)
    }

    /// Whether this node has the owner's blob, once brought from the
    /// bucket when another node received it.
    pub(super) async fn bring_blob(
        &self,
        owner: Option<&str>,
        digest: &Digest,
    ) -> Result<bool, ServiceError> {
        Ok(self
            .parts
            .storage
            .pull_blob(&self.parts.blobs, owner, digest)
            .await?)
    }

    /// A request's `code`, `files`, `main` and `manifest` as a scene
    /// file's text and its project (none for a single file), by the path
    /// rules and limits: of the blob store, only the manifest is read (or
    /// found in memory), and the blobs are `check_blobs`'s.
    pub(super) async fn project_of(
        &self,
        code: String,
        files: Option<&FileMap>,
        main: Option<&str>,
        manifest: Option<&Digest>,
        owner: Option<&str>,
    ) -> Result<(String, Option<Project>), ServiceError> {
        let Some(files) = files else {
            if main.is_some() {
                return Err(invalid("main", "`main` names a file of `files`; send both"));
            }
            if manifest.is_some() {
                return Err(invalid(
                    "manifest",
                    "a manifest names a project's blobs; send it with `files` and `main`",
                ));
            }
            return Ok((code, None));
        };
        let Some(main) = main else {
            return Err(invalid("main", "with `files`, `main` names the scene file"));
        };
        let listed = match manifest {
            Some(digest) => Some((*digest, self.read_manifest(owner, digest).await?)),
            None => None,
        };
        let (code, project) = project::check(files, main, listed, &self.cfg.project_limits)?;
        Ok((code, Some(project)))
    }

    /// The owner's manifest, brought from the bucket first when another
    /// node received it and it was not read here lately.
    pub(super) async fn read_manifest(
        &self,
        owner: Option<&str>,
        digest: &Digest,
    ) -> Result<std::sync::Arc<project::Manifest>, ServiceError> {
        match self.parts.blobs.manifest(owner, digest) {
            Err(BlobError::Manifest(ProjectError::MissingManifest { .. })) => {
                self.bring_blob(owner, digest).await?;
                Ok(self.parts.blobs.manifest(owner, digest)?)
            }
            other => Ok(other?),
        }
    }

    /// Each blob of `project` among the caller's (`missing-blob`), the
    /// project's sizes against the limits, and each blob marked used. The
    /// `lstat`s run on a blocking thread, so that a caller can check its
    /// code in a sandbox meanwhile. A manifest's blobs, checked by a
    /// submission lately and not swept since, are not looked at again.
    pub(super) async fn check_blobs(
        &self,
        code: &str,
        project: Option<&Project>,
        owner: Option<&str>,
    ) -> Result<(), ServiceError> {
        let Some(project) = project else {
            return Ok(());
        };
        let store = &self.parts.blobs;
        let remembered = project.manifest.and_then(|d| store.checked(owner, &d));
        let mark = store.check_mark();
        let files: Vec<(&str, &FileRef)> = match remembered {
            Some(_) => project.files.iter().map(|(p, f)| (p.as_str(), f)).collect(),
            None => project.all().collect(),
        };
        let digests: Vec<Digest> = files
            .iter()
            .filter_map(|(_, f)| match f {
                FileRef::Blob(d) => Some(*d),
                FileRef::Text(_) => None,
            })
            .collect();
        let (shared, owned) = (std::sync::Arc::clone(store), owner.map(str::to_owned));
        let stats =
            tokio::task::spawn_blocking(move || shared.stat_all(owned.as_deref(), &digests))
                .await
                .map_err(std::io::Error::other)
                .map_err(BlobError::from)?;
        let limits = &self.cfg.project_limits;
        let mut stats = stats.into_iter();
        let mut total = code.len() as u64;
        let mut listed = 0u64;
        let mut stale = Vec::new();
        let now = std::time::SystemTime::now();
        for (path, file) in files {
            let bytes = match file {
                FileRef::Text(text) => text.len() as u64,
                FileRef::Blob(digest) => {
                    let stat = match stats.next().flatten() {
                        Some(stat) => Some(stat),
                        // Another node may have received it.
                        None => {
                            self.bring_blob(owner, digest).await?;
                            store.stat(owner, digest)
                        }
                    };
                    let stat = stat.ok_or_else(|| ProjectError::MissingBlob {
                        file: path.to_owned(),
                        digest: *digest,
                    })?;
                    if now.duration_since(stat.used).unwrap_or_default() > TOUCH_EVERY {
                        stale.push(*digest);
                    }
                    if !project.files.contains_key(path) {
                        listed += stat.size;
                    }
                    stat.size
                }
            };
            if bytes > limits.max_file_bytes {
                return Err(ProjectError::FileTooLarge {
                    file: path.to_owned(),
                    bytes,
                    max: limits.max_file_bytes,
                }
                .into());
            }
            total += bytes;
        }
        // A remembered check's files were each within the limit then.
        total += remembered.map_or(0, |c| c.bytes);
        if total > limits.max_bytes {
            return Err(ProjectError::ProjectTooLarge {
                bytes: total,
                max: limits.max_bytes,
            }
            .into());
        }
        if let (Some(manifest), None) = (&project.manifest, remembered) {
            // The manifest is used like the blobs it names.
            let used = store.stat(owner, manifest).map(|s| s.used);
            if used.is_some_and(|t| now.duration_since(t).unwrap_or_default() > TOUCH_EVERY) {
                stale.push(*manifest);
            }
        }
        for digest in &stale {
            store.touch(owner, digest);
        }
        if let (Some(manifest), None) = (&project.manifest, remembered) {
            store.set_checked(owner, manifest, mark, listed);
        }
        Ok(())
    }

    /// Removes the blobs that no queued or running job names and that
    /// were last used more than `grace` ago; returns how many.
    pub async fn sweep_blobs(&self, grace: Duration) -> Result<usize, ServiceError> {
        let mut keep = HashSet::new();
        for (owner, spec) in self.parts.store.active_specs().await? {
            let Some(mut project) = spec.project else {
                continue;
            };
            let owner = owner.as_deref();
            if let Some(digest) = project.manifest {
                keep.insert((owner_name(owner), digest));
                // One that cannot be read fails its job whatever is kept.
                project.listed = self.read_manifest(owner, &digest).await.ok();
            }
            for (_, digest) in project.blobs() {
                keep.insert((owner_name(owner), digest));
            }
        }
        let blobs = std::sync::Arc::clone(&self.parts.blobs);
        let removed = tokio::task::spawn_blocking(move || blobs.sweep(&keep, grace))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(crate::blobs::BlobError::from)?;
        Ok(removed)
    }
}
