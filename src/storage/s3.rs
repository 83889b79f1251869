//! The S3 backend: a bucket (with an optional key prefix) reached through
//! `object_store`. Owns the key layout `prefix/<job id>/<attempt>/<name>`,
//! the client's timeouts and retries, and the streamed uploads.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, RetryConfig};
use tokio::io::AsyncWriteExt;

use super::{ByteStream, Object, Source, StorageError};
use crate::jobs::JobId;

#[derive(Debug)]
pub(super) struct Bucket {
    store: Arc<AmazonS3>,
    /// Key prefix without trailing `/`; may be empty.
    prefix: String,
    /// The bucket's name and where it is, for messages: `renders at
    /// http://host:port` (an endpoint URL holds no credentials: the
    /// parser refuses them).
    describe: String,
}

impl Bucket {
    /// A client for `bucket`; nothing is contacted yet. Credentials come
    /// from the `AWS_*` environment.
    pub(super) fn open(
        bucket: &str,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
    ) -> Result<Bucket, StorageError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
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
        let describe = match &endpoint {
            Some(e) => format!("{bucket} at {e}"),
            None => format!("{bucket} on AWS"),
        };
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
        Ok(Bucket {
            store: Arc::new(store),
            prefix,
            describe,
        })
    }

    /// `renders at http://host:port`.
    pub(super) fn describe(&self) -> &str {
        &self.describe
    }

    /// Writes, reads back and deletes a small object under the prefix:
    /// the bucket exists, is reachable, and these credentials may do what
    /// renders need. Each start writes its own key, so nodes never race.
    pub(super) async fn check(&self) -> Result<(), StorageError> {
        let name = format!("manimd-check-{}", uuid::Uuid::now_v7().simple());
        let key = object_key(&self.prefix, &[".manimd", &name]);
        self.store
            .put(&key, bytes::Bytes::from_static(b"ok").into())
            .await?;
        let read = self.store.get(&key).await?.bytes().await?;
        self.store.delete(&key).await?;
        if read.as_ref() == b"ok" {
            Ok(())
        } else {
            Err(StorageError::Remote(object_store::Error::Generic {
                store: "S3",
                source: "the check object read back different bytes".into(),
            }))
        }
    }

    fn key_prefix(&self, id: &JobId) -> Key {
        object_key(&self.prefix, &[id.as_str()])
    }

    fn key(&self, id: &JobId, attempt: u32, name: &str) -> Key {
        object_key(&self.prefix, &[id.as_str(), &attempt.to_string(), name])
    }

    /// Uploads finished files; an object appears only when its upload
    /// completes.
    pub(super) async fn publish(
        &self,
        id: &JobId,
        attempt: u32,
        files: &[(&Path, &str)],
    ) -> Result<(), StorageError> {
        for (src, name) in files {
            self.upload(src, self.key(id, attempt, name)).await?;
        }
        Ok(())
    }

    /// Copies another job's objects as `id`'s attempt 1, server-side.
    pub(super) async fn share(
        &self,
        from: &JobId,
        from_attempt: u32,
        id: &JobId,
        names: &[&str],
    ) -> Result<(), StorageError> {
        for name in names {
            let (src, dst) = (self.key(from, from_attempt, name), self.key(id, 1, name));
            self.store.copy(&src, &dst).await?;
        }
        Ok(())
    }

    /// Opens an object: its size now, its bytes on demand.
    pub(super) async fn object(
        &self,
        id: &JobId,
        attempt: u32,
        name: &str,
    ) -> Result<Object, StorageError> {
        let key = self.key(id, attempt, name);
        // A playlist is overwritten as it grows: a size from one
        // request and bytes from another could mix two versions, so
        // it is read whole in one request (it is a few kilobytes).
        if name.ends_with(".m3u8") {
            let bytes = self.store.get(&key).await?.bytes().await?;
            return Ok(Object {
                size: bytes.len() as u64,
                source: Source::Memory(bytes),
            });
        }
        let meta = self.store.head(&key).await?;
        Ok(Object {
            size: meta.size,
            source: Source::Remote {
                store: Arc::clone(&self.store),
                key,
            },
        })
    }

    /// A GET URL signed for `expires`.
    pub(super) async fn presign(
        &self,
        id: &JobId,
        attempt: u32,
        name: &str,
        expires: Duration,
    ) -> Result<String, StorageError> {
        let key = self.key(id, attempt, name);
        let url = self
            .store
            .signed_url(reqwest::Method::GET, &key, expires)
            .await?;
        Ok(url.to_string())
    }

    /// Uploads live files written in `dir`, in the given order (segments
    /// before the playlist that names them).
    pub(super) async fn push_live(
        &self,
        id: &JobId,
        attempt: u32,
        dir: &Path,
        names: &[String],
    ) -> Result<(), StorageError> {
        for name in names {
            let key = self.key(id, attempt, &format!("live/{name}"));
            self.upload(&dir.join(name), key).await?;
        }
        Ok(())
    }

    /// A job's objects, as `<attempt>/<name>`.
    pub(super) async fn list(&self, id: &JobId) -> Result<Vec<String>, StorageError> {
        let prefix = self.key_prefix(id);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .iter()
            .filter_map(|m| m.location.prefix_match(&prefix))
            .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>())
            .map(|parts| parts.join("/"))
            .collect())
    }

    /// Deletes every object of a job; one already gone is no error.
    pub(super) async fn delete(&self, id: &JobId) -> Result<(), StorageError> {
        let prefix = self.key_prefix(id);
        let keys = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .boxed();
        let deleted = self.store.delete_stream(keys);
        deleted
            .try_for_each(|_| async { Ok(()) })
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(()),
                e => Err(StorageError::Remote(e)),
            })
    }

    /// The objects under `animations/<rel>/`: (name, size, last modified).
    pub(super) async fn list_animations(
        &self,
        rel: &str,
    ) -> Result<Vec<(String, u64, std::time::SystemTime)>, StorageError> {
        let prefix = self.animation_key(rel, None);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m
                    .location
                    .prefix_match(&prefix)?
                    .map(|p| p.as_ref().to_owned());
                let name = name.collect::<Vec<_>>().join("/");
                Some((name, m.size, m.last_modified.into()))
            })
            .collect())
    }

    pub(super) async fn get_animation(
        &self,
        rel: &str,
        name: &str,
    ) -> Result<bytes::Bytes, StorageError> {
        let got = self.store.get(&self.animation_key(rel, Some(name))).await?;
        Ok(got.bytes().await?)
    }

    pub(super) async fn put_animation(
        &self,
        rel: &str,
        name: &str,
        src: &Path,
    ) -> Result<(), StorageError> {
        self.upload(src, self.animation_key(rel, Some(name))).await
    }

    pub(super) async fn delete_animation(&self, rel: &str, name: &str) -> Result<(), StorageError> {
        match self
            .store
            .delete(&self.animation_key(rel, Some(name)))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the bucket holds the owner's blob `hex`.
    pub(super) async fn has_blob(&self, owner: &str, hex: &str) -> Result<bool, StorageError> {
        match self
            .store
            .head(&object_key(&self.prefix, &["blobs", owner, hex]))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn get_blob(
        &self,
        owner: &str,
        hex: &str,
    ) -> Result<bytes::Bytes, StorageError> {
        let got = self
            .store
            .get(&object_key(&self.prefix, &["blobs", owner, hex]))
            .await?;
        Ok(got.bytes().await?)
    }

    pub(super) async fn put_blob(
        &self,
        owner: &str,
        hex: &str,
        src: &Path,
    ) -> Result<(), StorageError> {
        self.upload(src, object_key(&self.prefix, &["blobs", owner, hex]))
            .await
    }

    /// `prefix/animations/<rel>[/<name>]`.
    fn animation_key(&self, rel: &str, name: Option<&str>) -> Key {
        let mut parts: Vec<&str> = vec!["animations"];
        parts.extend(rel.split('/'));
        parts.extend(name);
        object_key(&self.prefix, &parts)
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

/// Streams `len` bytes from `start` of an object (a ranged GET).
pub(super) async fn read(
    store: Arc<AmazonS3>,
    key: Key,
    start: u64,
    len: u64,
) -> Result<ByteStream, StorageError> {
    // An empty range is an error to S3; there is nothing to fetch.
    if len == 0 {
        return Ok(futures::stream::empty().boxed());
    }
    let opts = GetOptions {
        range: Some(GetRange::Bounded(start..start + len)),
        ..Default::default()
    };
    let got = store.get_opts(&key, opts).await?;
    Ok(got.into_stream().map_err(StorageError::from).boxed())
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
            describe: "b on AWS".into(),
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
}
