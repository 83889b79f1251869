//! Where finished renders are kept: local disk (the default) or an
//! S3-compatible object store, behind one small interface chosen by a URL
//! (`Storage::open`). This module owns that interface and the choice;
//! `local` and `s3` are the two backends, `url` parses `--storage`.
//!
//! Every file lives under `<job id>/<attempt>/<name>` (with the bucket's
//! prefix in front on S3), so a stale worker can never overwrite the files
//! of a newer attempt; the job record says which attempt is served. Live
//! HLS files are `<job id>/<attempt>/live/<name>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as Key;

use crate::job_error::ErrorCode;

use crate::jobs::JobId;

mod animations;
mod blobs;
mod local;
mod s3;
mod url;
pub use self::url::StorageUrl;

use self::s3::Bucket;
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// `--storage` / `MANIMD_STORAGE` cannot be used; says why.
    #[error("invalid storage URL: {0}")]
    Url(String),
    #[error("no such stored file")]
    NotFound,
    #[error("local storage: {0}")]
    Io(#[from] std::io::Error),
    /// The object store failed or could not be reached.
    #[error("object storage: {0}")]
    Remote(object_store::Error),
    /// The configured bucket failed its check at start; says which and why.
    #[error("{0}")]
    Unusable(String),
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            e => StorageError::Remote(e),
        }
    }
}

impl StorageError {
    /// A stable code for logs and API errors.
    /// The code a client sees: a bad URL is a fault of the server's
    /// configuration, found at start, so it is internal by then.
    pub fn code(&self) -> ErrorCode {
        match self {
            StorageError::NotFound => ErrorCode::NotFound,
            StorageError::Url(_) | StorageError::Io(_) => ErrorCode::Internal,
            StorageError::Unusable(_) => ErrorCode::StorageUnavailable,
            StorageError::Remote(_) => ErrorCode::StorageUnavailable,
        }
    }
}

/// How finished videos and thumbnails reach clients when they live in an
/// object store. Live HLS files are always proxied: the playlist changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeMode {
    /// The server streams the object (ranges, ETag) like a local file.
    #[default]
    Proxy,
    /// `307` to a presigned GET URL valid 15 minutes (videos and
    /// thumbnails in a bucket; local storage is proxied).
    Redirect,
}

/// How long a presigned URL stays valid: long enough to start a download,
/// short enough that a leaked link soon stops working.
pub const PRESIGN_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// One stored file, opened: its size, and its bytes on demand.
pub struct Object {
    size: u64,
    source: Source,
}

enum Source {
    File(tokio::fs::File),
    Remote {
        store: Arc<AmazonS3>,
        key: Key,
    },
    /// A small object read whole: one consistent version of it.
    Memory(Bytes),
}

/// A stored file's bytes, as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

impl Object {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Streams `len` bytes from `start` (both within `size`).
    pub async fn read(self, start: u64, len: u64) -> Result<ByteStream, StorageError> {
        match self.source {
            Source::File(file) => local::read(file, start, len).await,
            Source::Memory(bytes) => {
                let part = bytes.slice(start as usize..(start + len) as usize);
                Ok(futures::stream::once(async { Ok(part) }).boxed())
            }
            Source::Remote { store, key } => s3::read(store, key, start, len).await,
        }
    }
}

/// Finished renders and live streams, on local disk or in a bucket.
#[derive(Clone, Debug)]
pub struct Storage {
    /// Local backend: where the files live. S3: where live streams are
    /// assembled before each file is uploaded (the packager writes files).
    spool: PathBuf,
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Local,
    S3(Arc<Bucket>),
}

impl Storage {
    /// Opens the storage a `--storage` value names (see [`StorageUrl`]);
    /// `None` is local disk under `<data_dir>/videos`. S3 credentials come
    /// from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN`. Nothing is contacted yet: a wrong endpoint shows
    /// up on first use, as `storage-unavailable`.
    pub fn open(url: Option<&str>, data_dir: &Path) -> Result<Storage, StorageError> {
        let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
            return Storage::local(data_dir.join("videos"));
        };
        match StorageUrl::parse(url)? {
            StorageUrl::Local(root) => Storage::local(root),
            StorageUrl::S3 {
                bucket,
                prefix,
                endpoint,
                region,
            } => {
                let bucket = Bucket::open(&bucket, prefix, endpoint, region)?;
                let spool = data_dir.join("live-spool");
                std::fs::create_dir_all(&spool)?;
                Ok(Storage {
                    spool,
                    backend: Backend::S3(Arc::new(bucket)),
                })
            }
        }
    }

    /// Local disk under `root`.
    pub fn local(root: impl Into<PathBuf>) -> Result<Storage, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Storage {
            spool: root,
            backend: Backend::Local,
        })
    }

    /// Checks at start that the storage can keep files: the local root is
    /// there (made at open), a bucket answers a write, a read and a
    /// delete. The error names the bucket and where it was looked for.
    pub async fn check(&self) -> Result<String, StorageError> {
        match &self.backend {
            Backend::Local => Ok(format!("local files under {}", self.spool.display())),
            Backend::S3(bucket) => match bucket.check().await {
                Ok(()) => Ok(format!("the bucket {} answers", bucket.describe())),
                Err(err) => Err(StorageError::Unusable(format!(
                    "the bucket {} cannot be used ({err}): check that it exists, the \
                     endpoint and region in --storage (MANIMD_STORAGE), and the \
                     AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY credentials",
                    bucket.describe()
                ))),
            },
        }
    }

    /// `local` or `s3`, for health reports (never an address or a secret).
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Local => "local",
            Backend::S3(_) => "s3",
        }
    }

    fn attempt_dir(&self, id: &JobId, attempt: u32) -> PathBuf {
        self.spool.join(id.as_str()).join(attempt.to_string())
    }

    /// Moves finished files (named by the host, never by the scene) into
    /// place. Locally `rename` is atomic: a reader sees the whole file or
    /// none; an object appears only when its upload completes.
    pub async fn publish(
        &self,
        id: &JobId,
        attempt: u32,
        files: &[(&Path, &str)],
    ) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local => local::publish(self.attempt_dir(id, attempt), files).await,
            Backend::S3(bucket) => bucket.publish(id, attempt, files).await,
        }
    }

    /// Publishes another job's files as `id`'s attempt 1 without moving
    /// their bytes through this process: hard links locally (a copy where
    /// links are not possible), a server-side copy on S3. Used for cache
    /// hits: deleting either job leaves the other's files intact.
    pub async fn share(
        &self,
        from: &JobId,
        from_attempt: u32,
        id: &JobId,
        names: &[&str],
    ) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local => {
                let (src, dst) = (
                    self.attempt_dir(from, from_attempt),
                    self.attempt_dir(id, 1),
                );
                local::share(src, dst, names).await
            }
            Backend::S3(bucket) => bucket.share(from, from_attempt, id, names).await,
        }
    }

    /// Opens a published file (`output.mp4`, `live/seg-0.m4s`…).
    pub async fn object(
        &self,
        id: &JobId,
        attempt: u32,
        name: &str,
    ) -> Result<Object, StorageError> {
        match &self.backend {
            Backend::Local => local::object(&self.attempt_dir(id, attempt).join(name)).await,
            Backend::S3(bucket) => bucket.object(id, attempt, name).await,
        }
    }

    /// A URL that fetches a published file without credentials for
    /// `expires`; `None` where the backend has none (local disk).
    pub async fn presign(
        &self,
        id: &JobId,
        attempt: u32,
        name: &str,
        expires: Duration,
    ) -> Result<Option<String>, StorageError> {
        match &self.backend {
            Backend::Local => Ok(None),
            Backend::S3(bucket) => bucket.presign(id, attempt, name, expires).await.map(Some),
        }
    }

    /// The local directory where the live stream of an attempt is written.
    pub fn live_dir(&self, id: &JobId, attempt: u32) -> PathBuf {
        self.attempt_dir(id, attempt).join("live")
    }

    /// Makes live files written in `live_dir` readable by every node: on S3
    /// each is uploaded, in the given order (segments before the playlist
    /// that names them). Locally they are in place already.
    pub async fn push_live(
        &self,
        id: &JobId,
        attempt: u32,
        names: &[String],
    ) -> Result<(), StorageError> {
        let Backend::S3(bucket) = &self.backend else {
            return Ok(());
        };
        let dir = self.live_dir(id, attempt);
        bucket.push_live(id, attempt, &dir, names).await
    }

    /// The live stream of an attempt is complete and uploaded: its local
    /// copy is no longer needed where the bucket holds the files.
    pub async fn end_live(&self, id: &JobId, attempt: u32) {
        if let Backend::S3(_) = self.backend {
            let _ = tokio::fs::remove_dir_all(self.attempt_dir(id, attempt)).await;
            // The job's directory too, unless another attempt still uses it.
            let _ = tokio::fs::remove_dir(self.spool.join(id.as_str())).await;
        }
    }

    /// Removes live streams a previous process left half-uploaded. Only
    /// with a bucket: on local disk the spool holds the published files.
    pub async fn reap_spool(&self) -> Result<(), StorageError> {
        if let Backend::S3(_) = self.backend {
            local::empty(self.spool.clone()).await?;
        }
        Ok(())
    }

    /// The stored files of a job, as `<attempt>/<name>`, sorted.
    pub async fn list(&self, id: &JobId) -> Result<Vec<String>, StorageError> {
        let mut names = match &self.backend {
            Backend::Local => local::list(self.spool.join(id.as_str())).await?,
            Backend::S3(bucket) => bucket.list(id).await?,
        };
        names.sort();
        Ok(names)
    }

    /// Removes every file of a job, all attempts and the live stream (on
    /// S3, the spool's copy too).
    pub async fn delete(&self, id: &JobId) -> Result<(), StorageError> {
        local::remove_all(self.spool.join(id.as_str())).await?;
        if let Backend::S3(bucket) = &self.backend {
            bucket.delete(id).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn local_files_publish_share_list_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(None, dir.path()).unwrap();
        assert_eq!(storage.kind(), "local");
        let (a, b) = (JobId::new(), JobId::new());
        let src = dir.path().join("out");
        std::fs::write(&src, b"0123456789").unwrap();
        storage
            .publish(&a, 2, &[(src.as_path(), "output.mp4")])
            .await
            .unwrap();
        storage.share(&a, 2, &b, &["output.mp4"]).await.unwrap();
        assert_eq!(storage.list(&b).await.unwrap(), vec!["1/output.mp4"]);
        let object = storage.object(&b, 1, "output.mp4").await.unwrap();
        assert_eq!(object.size(), 10);
        let bytes: Vec<Bytes> = object
            .read(2, 3)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(bytes.concat(), b"234");
        storage.delete(&a).await.unwrap();
        assert!(storage.list(&a).await.unwrap().is_empty());
        assert!(matches!(
            storage.object(&a, 2, "output.mp4").await,
            Err(StorageError::NotFound)
        ));
        assert!(storage.object(&b, 1, "output.mp4").await.is_ok());
        storage.reap_spool().await.unwrap();
        assert!(
            storage.object(&b, 1, "output.mp4").await.is_ok(),
            "local files are kept"
        );
    }

    #[tokio::test]
    async fn a_bucket_needs_no_connection_to_open_and_its_spool_is_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let url = "s3://bucket/p?endpoint=http://127.0.0.1:9&region=eu-west-1";
        let storage = Storage::open(Some(url), dir.path()).unwrap();
        assert_eq!(storage.kind(), "s3");
        let id = JobId::new();
        let live = storage.live_dir(&id, 1);
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(live.join("seg-0.m4s"), b"x").unwrap();
        assert!(live.starts_with(dir.path().join("live-spool")));
        storage.reap_spool().await.unwrap();
        assert!(!live.exists());
        assert!(dir.path().join("live-spool").is_dir());
    }
}
