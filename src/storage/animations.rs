//! The animation cache in a bucket: with S3 storage, each owner's entries
//! live under `prefix/animations/<owner>/<profile>/<key>.<bytes>.mp4`, so a
//! piece drawn on one node serves the owner's next render on any node.
//! The node's own shelf (`animcache::Shelf`, on its disk) is what a sandbox
//! sees; before a render it takes the entries it lacks from the bucket,
//! checked by our reader like a drawn piece, and after a render it uploads
//! the ones the bucket lacks. Local storage needs neither: the shelf is the
//! cache.
//!
//! The bucket keeps each owner within the same quota, removing the entries
//! uploaded longest ago (a bucket has no time of last use).

use std::time::SystemTime;

use super::{Backend, Storage, StorageError};
use crate::animcache::Shelf;

impl Storage {
    /// Brings the bucket's entries of `shelf` that this node lacks; returns
    /// how many. An entry our reader refuses is removed from the bucket.
    pub async fn pull_animations(&self, shelf: &Shelf) -> Result<usize, StorageError> {
        let Backend::S3(bucket) = &self.backend else {
            return Ok(0);
        };
        let rel = shelf.rel();
        let local = shelf.names();
        let mut pulled = 0;
        for (name, _, _) in bucket.list_animations(&rel).await? {
            if local.contains(&name) || shelf.path_of(&name).is_none() {
                continue;
            }
            let bytes = bucket.get_animation(&rel, &name).await?;
            let imported = {
                let shelf = shelf.clone();
                let name = name.clone();
                tokio::task::spawn_blocking(move || shelf.import(&name, &bytes))
                    .await
                    .map_err(std::io::Error::other)?
            };
            match imported {
                Ok(()) => pulled += 1,
                Err(err) => {
                    tracing::warn!(%name, %err, "a bucket's animation entry was refused; removed");
                    bucket.delete_animation(&rel, &name).await?;
                }
            }
        }
        Ok(pulled)
    }

    /// Uploads the entries of `shelf` the bucket lacks, then keeps the
    /// owner's entries in the bucket within the shelf's quota. Returns how
    /// many were uploaded.
    pub async fn push_animations(&self, shelf: &Shelf) -> Result<usize, StorageError> {
        let Backend::S3(bucket) = &self.backend else {
            return Ok(0);
        };
        let rel = shelf.rel();
        let remote: Vec<String> = bucket
            .list_animations(&rel)
            .await?
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        let mut pushed = 0;
        for name in shelf.names() {
            if remote.contains(&name) {
                continue;
            }
            let Some(path) = shelf.path_of(&name) else {
                continue;
            };
            bucket.put_animation(&rel, &name, &path).await?;
            pushed += 1;
        }
        // The owner's entries of every profile share one quota.
        let owner = shelf.owner_rel();
        let mut all: Vec<(SystemTime, u64, String)> = bucket
            .list_animations(&owner)
            .await?
            .into_iter()
            .map(|(name, size, at)| (at, size, name))
            .collect();
        let mut total: u64 = all.iter().map(|(_, size, _)| size).sum();
        all.sort();
        for (_, size, name) in all {
            if total <= shelf.quota_bytes() {
                break;
            }
            // `name` is `<profile>/<entry>` under the owner.
            bucket.delete_animation(&owner, &name).await?;
            total -= size;
        }
        Ok(pushed)
    }
}
