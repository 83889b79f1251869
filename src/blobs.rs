//! Uploaded blobs: the bytes of a project's files that are sent once and
//! named by their SHA-256 (`PUT /v1/blobs/sha256:<hex>`), so that a
//! resubmitted project sends only its digests.
//!
//! Blobs belong to an owner (an API key's fingerprint, or the local owner
//! without keys): one owner's upload never serves another's project, so a
//! digest cannot be used to learn what someone else uploaded.
//!
//! Layout: `<root>/<owner>/<64 hex>`, written once (a temporary file in the
//! owner's folder, hashed while it streams, renamed after its digest
//! matched), root-owned, `0644` so a sandbox can read the hard link the
//! renderer makes to it, never writable there. The modification time is
//! the blob's last use: set at upload and by every submission that names
//! it. Each owner's blobs together stay under a quota.
//!
//! Collection (`sweep`): a blob is removed when no queued or running job
//! names it (directly or in its manifest) and its last use is older than
//! the grace period (a day by default), so a project's blobs survive
//! between a client's upload and its submission, and between edits of the
//! scene; a finished job no longer needs them (its video is made).
//!
//! Manifests (see `project`) are blobs too. The ones read lately are kept
//! here parsed, with what the last submission that used one found of its
//! blobs: a resubmission within `TOUCH_EVERY` that no sweep has followed
//! finds them all still there without looking at each again, since the
//! sweep is the only thing that removes a blob.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::animcache::LOCAL_OWNER;
use crate::job_error::{ErrorCode, JobError};
use crate::project::{Digest, Manifest, ProjectError, ProjectLimits};

/// The default of `--blob-quota-mib`: each owner's blobs together.
pub const DEFAULT_QUOTA_MIB: u64 = 1024;

/// How long an unreferenced blob is kept after its last use.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How many parsed manifests are kept (a few hundred kilobytes each at
/// most): one per project being edited is all a resubmission needs.
const MANIFESTS_KEPT: usize = 64;

/// Where the owners' blobs live and how much each may keep.
#[derive(Debug)]
pub struct Blobs {
    root: PathBuf,
    quota_bytes: u64,
    /// A project's limits: one blob's cap is its per-file cap, and a
    /// manifest is read by them.
    limits: ProjectLimits,
    /// Manifests read lately, by owner and digest.
    manifests: Mutex<Manifests>,
    /// How many sweeps removed something: a check of blobs made before
    /// the last of them may be stale.
    sweeps: AtomicU64,
}

#[derive(Debug, Default)]
struct Manifests {
    kept: HashMap<(String, Digest), Kept>,
    /// Oldest first: the first out when too many are kept.
    order: VecDeque<(String, Digest)>,
}

#[derive(Debug)]
struct Kept {
    manifest: Arc<Manifest>,
    checked: Option<Checked>,
}

/// What a submission found of a manifest's blobs: every one there, used
/// lately, holding `bytes` together.
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    at: Instant,
    /// `Blobs::sweeps` before the blobs were looked at.
    sweeps: u64,
    pub bytes: u64,
}

/// What an upload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// New bytes were kept (`201`).
    Created,
    /// The owner had them already (`200`); the body was not read.
    Known,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the bytes sent have the digest {actual}, not {expected}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("a blob may hold at most {max} bytes")]
    TooLarge { max: u64 },
    #[error("this key's blobs would pass the quota of {quota} bytes ({used} used); submit the projects that use them, or wait for unused ones to be collected")]
    Quota { quota: u64, used: u64 },
    #[error("the upload was cut: {0}")]
    Body(String),
    /// A manifest that is not there or cannot be used.
    #[error(transparent)]
    Manifest(#[from] ProjectError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl BlobError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BlobError::Mismatch { .. } => ErrorCode::DigestMismatch,
            BlobError::TooLarge { .. } => ErrorCode::FileTooLarge,
            BlobError::Quota { .. } => ErrorCode::BlobQuotaExceeded,
            BlobError::Body(_) => ErrorCode::InvalidRequest,
            BlobError::Manifest(e) => e.code(),
            BlobError::Io(_) => ErrorCode::Internal,
        }
    }

    pub fn to_error(&self) -> JobError {
        let e = JobError::new(self.code(), self.to_string());
        match self {
            BlobError::Mismatch { expected, actual } => {
                e.with("digest", expected).with("actual", actual)
            }
            BlobError::TooLarge { max } => e.with("max", max),
            BlobError::Quota { quota, used } => e.with("quota", quota).with("used", used),
            BlobError::Io(_) => JobError::internal(),
            BlobError::Manifest(e) => e.to_error(),
            BlobError::Body(_) => e,
        }
    }
}

impl Blobs {
    pub fn new(root: PathBuf, quota_mib: u64, limits: ProjectLimits) -> Blobs {
        Blobs {
            root,
            quota_bytes: quota_mib.saturating_mul(1024 * 1024),
            limits,
            manifests: Mutex::default(),
            sweeps: AtomicU64::new(0),
        }
    }

    /// The owner's manifest `digest`, parsed and checked by the project
    /// limits: from memory when it was read lately, else from its blob.
    pub fn manifest(
        &self,
        owner: Option<&str>,
        digest: &Digest,
    ) -> Result<Arc<Manifest>, BlobError> {
        let limits = &self.limits;
        let key = (owner_name(owner), *digest);
        if let Some(kept) = self.lock_manifests().kept.get(&key) {
            return Ok(Arc::clone(&kept.manifest));
        }
        let missing = || ProjectError::MissingManifest { digest: *digest };
        let path = self.path(owner, digest).ok_or_else(missing)?;
        let mut bytes = Vec::new();
        // Read no further than a manifest may go: a larger blob is refused
        // by its size, not held in memory.
        io::Read::read_to_end(
            &mut io::Read::take(fs::File::open(path)?, Manifest::max_bytes(limits) + 1),
            &mut bytes,
        )?;
        let manifest = Arc::new(Manifest::parse(digest, &bytes, limits)?);
        let mut manifests = self.lock_manifests();
        if manifests.order.len() >= MANIFESTS_KEPT {
            if let Some(old) = manifests.order.pop_front() {
                manifests.kept.remove(&old);
            }
        }
        let kept = Kept {
            manifest: Arc::clone(&manifest),
            checked: None,
        };
        if manifests.kept.insert(key.clone(), kept).is_none() {
            manifests.order.push_back(key);
        }
        Ok(manifest)
    }

    /// What the last check of the manifest's blobs found, while it still
    /// holds: no sweep removed anything since, and it is recent enough
    /// that the blobs need no new mark of use.
    pub fn checked(&self, owner: Option<&str>, manifest: &Digest) -> Option<Checked> {
        let manifests = self.lock_manifests();
        let checked = manifests
            .kept
            .get(&(owner_name(owner), *manifest))?
            .checked?;
        let holds = checked.sweeps == self.sweeps.load(Ordering::SeqCst)
            && checked.at.elapsed() < TOUCH_EVERY;
        holds.then_some(checked)
    }

    /// A mark to take before looking at a manifest's blobs, and to give
    /// `set_checked` after: a sweep in between makes the check stale.
    pub fn check_mark(&self) -> (Instant, u64) {
        (Instant::now(), self.sweeps.load(Ordering::SeqCst))
    }

    /// Every blob of the manifest was there, holding `bytes`, and was
    /// marked used, as of `mark`.
    pub fn set_checked(
        &self,
        owner: Option<&str>,
        manifest: &Digest,
        (at, sweeps): (Instant, u64),
        bytes: u64,
    ) {
        let mut manifests = self.lock_manifests();
        if let Some(kept) = manifests.kept.get_mut(&(owner_name(owner), *manifest)) {
            kept.checked = Some(Checked { at, sweeps, bytes });
        }
    }

    fn lock_manifests(&self) -> std::sync::MutexGuard<'_, Manifests> {
        // Plain data, consistent between statements: a panic elsewhere
        // cannot leave it half-written.
        self.manifests.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn max_blob_bytes(&self) -> u64 {
        self.limits.max_file_bytes
    }

    /// The owner's folder; `None` for a name the host did not make
    /// (anything but letters, digits, `-` and `_`).
    fn owner_dir(&self, owner: Option<&str>) -> Option<PathBuf> {
        let owner = owner.unwrap_or(LOCAL_OWNER);
        let valid = !owner.is_empty()
            && owner.len() <= 128
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| self.root.join(owner))
    }

    /// The owner's blob with this digest: a regular file, never a link.
    pub fn path(&self, owner: Option<&str>, digest: &Digest) -> Option<PathBuf> {
        let path = self.owner_dir(owner)?.join(digest.hex());
        let meta = fs::symlink_metadata(&path).ok()?;
        meta.file_type().is_file().then_some(path)
    }

    /// The blob's size and time of last use, when the owner has it (one
    /// `lstat`: a project of many files asks this of each).
    pub fn stat(&self, owner: Option<&str>, digest: &Digest) -> Option<BlobStat> {
        let path = self.owner_dir(owner)?.join(digest.hex());
        let meta = fs::symlink_metadata(path).ok()?;
        meta.file_type().is_file().then(|| BlobStat {
            size: meta.len(),
            used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    /// [`Blobs::stat`] of each of `digests`, in order, the owner's folder
    /// opened once: each is then an `fstatat` of a name in it rather than a
    /// walk of the whole path, which a project of many blobs repeats.
    pub fn stat_all(&self, owner: Option<&str>, digests: &[Digest]) -> Vec<Option<BlobStat>> {
        use nix::sys::stat::{fstatat, SFlag};
        use std::os::fd::AsRawFd;
        // A name that is not a folder opens, and then no `fstatat` in it does.
        let Some(dir) = self.owner_dir(owner).and_then(|d| fs::File::open(d).ok()) else {
            return vec![None; digests.len()];
        };
        digests
            .iter()
            .map(|digest| {
                let st = fstatat(
                    Some(dir.as_raw_fd()),
                    digest.hex().as_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .ok()?;
                let regular =
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
                regular.then(|| BlobStat {
                    size: st.st_size as u64,
                    used: SystemTime::UNIX_EPOCH
                        + Duration::new(
                            st.st_mtime.max(0) as u64,
                            st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
                        ),
                })
            })
            .collect()
    }

    /// Marks the blob used now: it is kept at least the grace period longer.
    pub fn touch(&self, owner: Option<&str>, digest: &Digest) {
        if let Some(path) = self.path(owner, digest) {
            if let Ok(f) = fs::File::options().append(true).open(&path) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    }

    /// The digests of `wanted` the owner has not uploaded, in order, once each.
    pub fn missing(&self, owner: Option<&str>, wanted: &[Digest]) -> Vec<Digest> {
        let mut seen = HashSet::new();
        wanted
            .iter()
            .filter(|d| seen.insert(**d) && self.path(owner, d).is_none())
            .copied()
            .collect()
    }

    /// Bytes the owner's blobs hold.
    pub fn usage(&self, owner: Option<&str>) -> u64 {
        let Some(dir) = self.owner_dir(owner) else {
            return 0;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    /// Stores `body` as the owner's blob `digest`, hashing it as it
    /// streams: refused past the blob cap or the owner's quota, and unless
    /// its digest matches. A blob the owner has is not read again.
    pub async fn put<S, B, E>(
        &self,
        owner: Option<&str>,
        digest: &Digest,
        length: Option<u64>,
        mut body: S,
    ) -> Result<Stored, BlobError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let dir = self
            .owner_dir(owner)
            .ok_or_else(|| io::Error::other("not an owner name"))?;
        if let Some(path) = self.path(owner, digest) {
            if let Ok(f) = fs::File::options().append(true).open(&path) {
                let _ = f.set_modified(SystemTime::now());
            }
            return Ok(Stored::Known);
        }
        if length.is_some_and(|n| n > self.limits.max_file_bytes) {
            return Err(BlobError::TooLarge {
                max: self.limits.max_file_bytes,
            });
        }
        let used = self.usage(owner);
        let room = self.quota_bytes.saturating_sub(used);
        if length.is_some_and(|n| n > room) {
            return Err(BlobError::Quota {
                quota: self.quota_bytes,
                used,
            });
        }
        let tmp = dir.join(format!(".upload-{}", uuid::Uuid::now_v7().simple()));
        let result = async {
            let mut file = create_in(&dir, &tmp).await?;
            let mut hasher = Sha256::new();
            let mut n: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                let chunk = chunk.as_ref();
                n += chunk.len() as u64;
                if n > self.limits.max_file_bytes {
                    return Err(BlobError::TooLarge {
                        max: self.limits.max_file_bytes,
                    });
                }
                if n > room {
                    return Err(BlobError::Quota {
                        quota: self.quota_bytes,
                        used,
                    });
                }
                hasher.update(chunk);
                file.write_all(chunk).await?;
            }
            let actual = Digest::from_bytes(hasher.finalize().into());
            if actual != *digest {
                return Err(BlobError::Mismatch {
                    expected: *digest,
                    actual,
                });
            }
            file.sync_all().await?;
            drop(file);
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
            fs::rename(&tmp, dir.join(digest.hex()))?;
            Ok(Stored::Created)
        }
        .await;
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes every blob that `keep` does not name (owner, digest) and
    /// that was last used more than `grace` ago, and uploads cut off that
    /// long ago. Returns how many files went.
    pub fn sweep(&self, keep: &HashSet<(String, Digest)>, grace: Duration) -> io::Result<usize> {
        let Ok(owners) = fs::read_dir(&self.root) else {
            return Ok(0);
        };
        let now = SystemTime::now();
        let old = |path: &Path| {
            fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > grace)
                .unwrap_or(false)
        };
        let mut removed = 0;
        for owner in owners.flatten() {
            let owner_name = owner.file_name().to_string_lossy().into_owned();
            let Ok(entries) = fs::read_dir(owner.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let kept = Digest::from_hex(&name)
                    .map(|d| keep.contains(&(owner_name.clone(), d)))
                    .unwrap_or(false);
                if !kept && old(&entry.path()) && fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                    self.sweeps.fetch_add(1, Ordering::SeqCst);
                }
            }
            // An owner with nothing left leaves no folder.
            let _ = fs::remove_dir(owner.path());
        }
        Ok(removed)
    }
}

/// Creates `file` in the owner's folder `dir`, making the folder. The
/// sweep removes an owner's folder once it is empty, and may do so between
/// the two steps: the folder is then made again.
async fn create_in(dir: &Path, file: &Path) -> io::Result<tokio::fs::File> {
    let mut tries = 0;
    loop {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
        match tokio::fs::File::create(file).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
            other => return other,
        }
    }
}

/// What `Blobs::stat` finds.
#[derive(Clone, Copy, Debug)]
pub struct BlobStat {
    pub size: u64,
    /// When it was uploaded or last marked used.
    pub used: SystemTime,
}

/// A blob marked used less than this long ago is not marked again: a
/// project resubmitted at each edit costs one `lstat` a blob, and the
/// sweep's grace (a day) counts from a mark at most this old.
pub const TOUCH_EVERY: Duration = Duration::from_secs(3600);

/// The owner's name in the blob store: the caller's, or the local owner.
pub fn owner_name(owner: Option<&str>) -> String {
    owner.unwrap_or(LOCAL_OWNER).to_owned()
}

impl crate::render::BlobSource for Blobs {
    fn blob_path(&self, owner: Option<&str>, digest: &Digest) -> Option<PathBuf> {
        self.path(owner, digest)
    }
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> impl Stream<Item = Result<&'static [u8], String>> + Unpin {
        futures::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    /// A manifest is read once and kept per owner; what a check found of
    /// its blobs holds until a sweep removes anything.
    #[tokio::test]
    async fn manifests_are_kept_read_and_their_checks_end_with_a_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(dir.path().join("blobs"), 1, ProjectLimits::default());
        let listed = Digest::of(b"png");
        let text: &'static [u8] = Box::leak(
            format!("{{\"a.png\": \"{listed}\"}}")
                .into_bytes()
                .into_boxed_slice(),
        );
        let m = Digest::of(text);
        let missing = blobs.manifest(Some("a"), &m).unwrap_err();
        assert_eq!(missing.code(), ErrorCode::MissingBlob);
        assert_eq!(missing.to_error().details["field"], "manifest");
        blobs.put(Some("a"), &m, None, body(&[text])).await.unwrap();
        assert_eq!(blobs.manifest(Some("a"), &m).unwrap().len(), 1);
        assert!(
            blobs.manifest(Some("b"), &m).is_err(),
            "another owner's manifest is not read"
        );
        // Kept: its blob gone, it is still known (a job may name it).
        let path = blobs.path(Some("a"), &m).unwrap();
        fs::rename(&path, dir.path().join("aside")).unwrap();
        assert!(blobs.manifest(Some("a"), &m).is_ok());
        fs::rename(dir.path().join("aside"), &path).unwrap();

        assert!(blobs.checked(Some("a"), &m).is_none(), "never checked");
        let mark = blobs.check_mark();
        blobs.set_checked(Some("a"), &m, mark, 3);
        assert_eq!(blobs.checked(Some("a"), &m).unwrap().bytes, 3);
        assert!(blobs.checked(Some("b"), &m).is_none());
        // A sweep that removes nothing leaves the check standing.
        let keep = HashSet::from([("a".to_owned(), m)]);
        assert_eq!(blobs.sweep(&keep, Duration::ZERO).unwrap(), 0);
        assert!(blobs.checked(Some("a"), &m).is_some());
        // One that removes a blob ends it, and a check begun before it.
        let mark = blobs.check_mark();
        let other = Digest::of(b"old");
        blobs
            .put(Some("a"), &other, None, body(&[b"old"]))
            .await
            .unwrap();
        assert_eq!(blobs.sweep(&keep, Duration::ZERO).unwrap(), 1);
        assert!(blobs.checked(Some("a"), &m).is_none());
        blobs.set_checked(Some("a"), &m, mark, 3);
        assert!(blobs.checked(Some("a"), &m).is_none());
    }

    #[tokio::test]
    async fn uploads_are_checked_kept_per_owner_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(
            dir.path().join("blobs"),
            1,
            ProjectLimits {
                max_file_bytes: 1000,
                ..ProjectLimits::default()
            },
        );
        let d = Digest::of(b"hello world");
        assert_eq!(
            blobs
                .put(Some("a"), &d, None, body(&[b"hello ", b"world"]))
                .await
                .unwrap(),
            Stored::Created
        );
        assert_eq!(
            blobs
                .put(Some("a"), &d, None, body(&[b"ignored"]))
                .await
                .unwrap(),
            Stored::Known
        );
        // Another owner does not have it.
        assert!(blobs.path(Some("b"), &d).is_none());
        assert_eq!(blobs.missing(Some("b"), &[d, d]), vec![d]);
        assert!(blobs.missing(Some("a"), &[d]).is_empty());
        let wrong = Digest::of(b"other");
        let err = blobs
            .put(Some("a"), &wrong, None, body(&[b"hello"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::DigestMismatch);
        let big = Digest::of(&[0u8; 1001]);
        let err = blobs
            .put(Some("a"), &big, None, body(&[&[0u8; 1001]]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::FileTooLarge);
        // Nothing of the refused uploads is left.
        let names: Vec<_> = fs::read_dir(dir.path().join("blobs/a"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(names.len(), 1);
        assert!(blobs
            .put(Some("../x"), &d, None, body(&[b"hello world"]))
            .await
            .is_err());

        // Kept while named or recent; then collected.
        let keep: HashSet<_> = [("a".to_owned(), d)].into();
        assert_eq!(blobs.sweep(&keep, Duration::ZERO).unwrap(), 0);
        assert_eq!(
            blobs
                .sweep(&HashSet::new(), Duration::from_secs(60))
                .unwrap(),
            0
        );
        assert_eq!(blobs.sweep(&HashSet::new(), Duration::ZERO).unwrap(), 1);
        assert!(blobs.path(Some("a"), &d).is_none());
    }

    #[tokio::test]
    async fn stat_all_sees_what_stat_sees_and_no_link() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(
            dir.path().join("blobs"),
            1,
            ProjectLimits {
                max_file_bytes: 1000,
                ..ProjectLimits::default()
            },
        );
        let (a, b) = (Digest::of(b"hello world"), Digest::of(b"hi"));
        blobs
            .put(Some("a"), &a, None, body(&[b"hello world"]))
            .await
            .unwrap();
        // A link planted under a digest's name is not that blob.
        let link = Digest::of(b"planted");
        std::os::unix::fs::symlink(
            dir.path().join("blobs/a").join(a.hex()),
            dir.path().join("blobs/a").join(link.hex()),
        )
        .unwrap();
        let all = blobs.stat_all(Some("a"), &[a, b, link]);
        let one = blobs.stat(Some("a"), &a).unwrap();
        assert_eq!(all[0].map(|s| (s.size, s.used)), Some((11, one.used)));
        assert!(all[1].is_none() && all[2].is_none());
        assert!(blobs.stat(Some("a"), &link).is_none());
        // An owner with no folder, or no valid name, has none.
        assert!(blobs.stat_all(Some("b"), &[a]).iter().all(Option::is_none));
        assert!(blobs
            .stat_all(Some("../a"), &[a])
            .iter()
            .all(Option::is_none));
    }

    #[tokio::test]
    async fn the_quota_counts_an_owners_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let mut blobs = Blobs::new(
            dir.path().to_owned(),
            1,
            ProjectLimits {
                max_file_bytes: 100,
                ..ProjectLimits::default()
            },
        );
        blobs.quota_bytes = 10;
        let a = Digest::of(b"12345678");
        blobs
            .put(None, &a, Some(8), body(&[b"12345678"]))
            .await
            .unwrap();
        let b = Digest::of(b"abcdef");
        let err = blobs
            .put(None, &b, Some(6), body(&[b"abcdef"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::BlobQuotaExceeded);
        // Without a length, the stream is stopped at the quota.
        let err = blobs
            .put(None, &b, None, body(&[b"abcdef"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::BlobQuotaExceeded);
        assert_eq!(blobs.usage(None), 8);
    }
}
