//! Projects' blobs in a bucket: with S3 storage, each upload is also kept
//! at `prefix/blobs/<owner>/<64 hex>`, so that the node that renders a
//! project (or another API node) finds the blobs another node received.
//! A node brings the ones it lacks into its own blob store before it uses
//! them, checking each one's digest: the bucket is trusted no more than
//! the client was. Local storage needs neither: the blob store is shared.
//! The bucket's copies are not collected by manimd; a lifecycle rule on
//! `prefix/blobs/` (expire after some days) keeps the bucket bounded.

use super::{Backend, Storage, StorageError};
use crate::blobs::{owner_name, Blobs};
use crate::project::Digest;

impl Storage {
    /// Keeps a copy of the owner's new blob in the bucket.
    pub async fn push_blob(
        &self,
        blobs: &Blobs,
        owner: Option<&str>,
        digest: &Digest,
    ) -> Result<(), StorageError> {
        let Backend::S3(bucket) = &self.backend else {
            return Ok(());
        };
        let Some(path) = blobs.path(owner, digest) else {
            return Ok(());
        };
        bucket
            .put_blob(&owner_name(owner), &digest.hex(), &path)
            .await
    }

    /// Brings the owner's blob from the bucket when this node lacks it;
    /// whether the node has it now. Bytes that do not hash to the digest
    /// are not kept.
    pub async fn pull_blob(
        &self,
        blobs: &Blobs,
        owner: Option<&str>,
        digest: &Digest,
    ) -> Result<bool, StorageError> {
        if blobs.path(owner, digest).is_some() {
            return Ok(true);
        }
        let Backend::S3(bucket) = &self.backend else {
            return Ok(false);
        };
        let name = owner_name(owner);
        if !bucket.has_blob(&name, &digest.hex()).await? {
            return Ok(false);
        }
        let bytes = bucket.get_blob(&name, &digest.hex()).await?;
        let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        match blobs.put(owner, digest, None, body).await {
            Ok(_) => Ok(true),
            Err(err) => {
                tracing::warn!(%digest, %err, "a bucket's blob was refused");
                Ok(false)
            }
        }
    }
}
