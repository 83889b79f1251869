//! Where finished renders are kept: local disk (the default) or an
//! S3-compatible object store, behind one small interface chosen by a URL
//! (`Storage::open`).
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
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, RetryConfig};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::job_error::ErrorCode;

use crate::jobs::JobId;

mod url;
pub use self::url::StorageUrl;

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
            Source::File(mut file) => {
                file.seek(std::io::SeekFrom::Start(start)).await?;
                let reader = tokio_util::io::ReaderStream::new(file.take(len));
                Ok(reader.map_err(StorageError::Io).boxed())
            }
            Source::Memory(bytes) => {
                let part = bytes.slice(start as usize..(start + len) as usize);
                Ok(futures::stream::once(async { Ok(part) }).boxed())
            }
            // An empty range is an error to S3; there is nothing to fetch.
            Source::Remote { .. } if len == 0 => Ok(futures::stream::empty().boxed()),
            Source::Remote { store, key } => {
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(start..start + len)),
                    ..Default::default()
                };
                let got = store.get_opts(&key, opts).await?;
                Ok(got.into_stream().map_err(StorageError::from).boxed())
            }
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

#[derive(Debug)]
struct Bucket {
    store: Arc<AmazonS3>,
    /// Key prefix without trailing `/`; may be empty.
    prefix: String,
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
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&bucket)
                    .with_region(region.unwrap_or_else(|| "us-east-1".into()))
                    .with_retry(RetryConfig {
                        // A request waits on the store: fail within seconds
                        // (503, retry later) rather than the default minutes.
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(15),
                        backoff: Default::default(),
                    })
                    .with_client_options(
                        // The overall limit covers streaming a whole video
                        // to a slow client through the proxy.
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(600)),
                    );
                if let Some(endpoint) = endpoint {
                    // Custom endpoints (MinIO, moto) expect path-style
                    // requests; plain HTTP is for an endpoint on the LAN.
                    builder = builder
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false)
                        .with_endpoint(endpoint);
                }
                let store = builder
                    .build()
                    .map_err(|e| StorageError::Url(e.to_string()))?;
                let spool = data_dir.join("live-spool");
                std::fs::create_dir_all(&spool)?;
                Ok(Storage {
                    spool,
                    backend: Backend::S3(Arc::new(Bucket {
                        store: Arc::new(store),
                        prefix,
                    })),
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
            Backend::Local => {
                let dir = self.attempt_dir(id, attempt);
                let files: Vec<(PathBuf, PathBuf)> = files
                    .iter()
                    .map(|(src, name)| (src.to_path_buf(), dir.join(name)))
                    .collect();
                blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    for (src, dst) in files {
                        std::fs::rename(src, dst)?;
                    }
                    Ok(())
                })
                .await
            }
            Backend::S3(bucket) => {
                for (src, name) in files {
                    bucket.upload(src, bucket.key(id, attempt, name)).await?;
                }
                Ok(())
            }
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
                let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                blocking(move || {
                    std::fs::create_dir_all(&dst)?;
                    for name in names {
                        let (src, dst) = (src.join(&name), dst.join(&name));
                        if std::fs::hard_link(&src, &dst).is_err() {
                            std::fs::copy(&src, &dst)?;
                        }
                    }
                    Ok(())
                })
                .await
            }
            Backend::S3(bucket) => {
                for name in names {
                    let (src, dst) = (
                        bucket.key(from, from_attempt, name),
                        bucket.key(id, 1, name),
                    );
                    bucket.store.copy(&src, &dst).await?;
                }
                Ok(())
            }
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
            Backend::Local => {
                let path = self.attempt_dir(id, attempt).join(name);
                let file = match tokio::fs::File::open(&path).await {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(StorageError::NotFound)
                    }
                    other => other?,
                };
                let meta = file.metadata().await?;
                if !meta.is_file() {
                    return Err(StorageError::NotFound);
                }
                Ok(Object {
                    size: meta.len(),
                    source: Source::File(file),
                })
            }
            // A playlist is overwritten as it grows: a size from one
            // request and bytes from another could mix two versions, so
            // it is read whole in one request (it is a few kilobytes).
            Backend::S3(bucket) if name.ends_with(".m3u8") => {
                let key = bucket.key(id, attempt, name);
                let bytes = bucket.store.get(&key).await?.bytes().await?;
                Ok(Object {
                    size: bytes.len() as u64,
                    source: Source::Memory(bytes),
                })
            }
            Backend::S3(bucket) => {
                let key = bucket.key(id, attempt, name);
                let meta = bucket.store.head(&key).await?;
                Ok(Object {
                    size: meta.size,
                    source: Source::Remote {
                        store: Arc::clone(&bucket.store),
                        key,
                    },
                })
            }
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
            Backend::S3(bucket) => {
                let key = bucket.key(id, attempt, name);
                let url = bucket
                    .store
                    .signed_url(reqwest::Method::GET, &key, expires)
                    .await?;
                Ok(Some(url.to_string()))
            }
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
        for name in names {
            let key = bucket.key(id, attempt, &format!("live/{name}"));
            bucket.upload(&dir.join(name), key).await?;
        }
        Ok(())
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
            let spool = self.spool.clone();
            blocking(move || {
                std::fs::remove_dir_all(&spool)?;
                std::fs::create_dir_all(&spool)?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// The stored files of a job, as `<attempt>/<name>`, sorted.
    pub async fn list(&self, id: &JobId) -> Result<Vec<String>, StorageError> {
        let mut names = match &self.backend {
            Backend::Local => {
                let dir = self.spool.join(id.as_str());
                blocking(move || list_files(&dir, &dir)).await?
            }
            Backend::S3(bucket) => {
                let prefix = bucket.key_prefix(id);
                let metas: Vec<_> = bucket.store.list(Some(&prefix)).try_collect().await?;
                metas
                    .iter()
                    .filter_map(|m| m.location.prefix_match(&prefix))
                    .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>())
                    .map(|parts| parts.join("/"))
                    .collect()
            }
        };
        names.sort();
        Ok(names)
    }

    /// Removes every file of a job, all attempts and the live stream.
    pub async fn delete(&self, id: &JobId) -> Result<(), StorageError> {
        let dir = self.spool.join(id.as_str());
        blocking(move || match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        })
        .await?;
        if let Backend::S3(bucket) = &self.backend {
            let prefix = bucket.key_prefix(id);
            let keys = bucket
                .store
                .list(Some(&prefix))
                .map_ok(|m| m.location)
                .boxed();
            let deleted = bucket.store.delete_stream(keys);
            deleted
                .try_for_each(|_| async { Ok(()) })
                .await
                .or_else(|e| match e {
                    object_store::Error::NotFound { .. } => Ok(()),
                    e => Err(StorageError::Remote(e)),
                })?;
        }
        Ok(())
    }
}

impl Bucket {
    fn key_prefix(&self, id: &JobId) -> Key {
        object_key(&self.prefix, &[id.as_str()])
    }

    fn key(&self, id: &JobId, attempt: u32, name: &str) -> Key {
        object_key(&self.prefix, &[id.as_str(), &attempt.to_string(), name])
    }

    /// Streams a local file into an object (multipart when it is large),
    /// never holding the whole file in memory.
    async fn upload(&self, src: &Path, key: Key) -> Result<(), StorageError> {
        let mut file = tokio::fs::File::open(src).await?;
        let store: Arc<dyn ObjectStore> = Arc::clone(&self.store) as _;
        let mut writer = object_store::buffered::BufWriter::new(store, key);
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        // The writer reports the store's failures as I/O errors; the source
        // is a local file we just opened, so a failure here is the store's.
        let result = match copied {
            Ok(_) => writer.shutdown().await,
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        };
        result.map_err(|e| {
            StorageError::Remote(object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })
        })
    }
}

/// `prefix/part/part…`: the key layout of every stored file.
fn object_key(prefix: &str, parts: &[&str]) -> Key {
    let joined = parts.join("/");
    let full = if prefix.is_empty() {
        joined
    } else {
        format!("{prefix}/{joined}")
    };
    // Every part is made by the host (ids, numbers, fixed names) and the
    // prefix was checked when the URL was parsed.
    Key::parse(full).expect("a valid object key")
}

fn list_files(root: &Path, dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            out.extend(list_files(root, &entry.path())?);
        } else if kind.is_file() {
            let rel = entry.path();
            let rel = rel.strip_prefix(root).unwrap_or(&rel);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

/// Runs file-system work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_job_and_attempt() {
        let id = JobId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let bucket = |prefix: &str| Bucket {
            store: Arc::new(
                AmazonS3Builder::new()
                    .with_bucket_name("b")
                    .with_region("us-east-1")
                    .build()
                    .unwrap(),
            ),
            prefix: prefix.into(),
        };
        assert_eq!(
            bucket("").key(&id, 2, "output.mp4").as_ref(),
            "0123456789abcdef0123456789abcdef/2/output.mp4"
        );
        assert_eq!(
            bucket("team/renders")
                .key(&id, 1, "live/seg-3.m4s")
                .as_ref(),
            "team/renders/0123456789abcdef0123456789abcdef/1/live/seg-3.m4s"
        );
        assert_eq!(
            bucket("p").key_prefix(&id).as_ref(),
            "p/0123456789abcdef0123456789abcdef"
        );
    }

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
