//! The per-owner animation cache: one video piece per play, named by the
//! key the worker computed (the engine's hash of the play and the scene,
//! the profile, the random generators' state where the play draws from
//! them; see `python/manimd_worker/timeline.py`).
//!
//! The key comes from the sandbox, so the cache is split by owner and no
//! entry ever serves another owner: a scene can at worst spoil its own
//! owner's entries, never another's. Inside an owner, entries are split
//! by profile (engine, size, frame rate, encoding), which the host decides
//! from the request. A key is used as a file name only after it is checked
//! to be 64 lowercase hex digits.
//!
//! Layout: `<root>/<owner>/<profile>/<key>.<bytes>.mp4`, written once
//! (temporary file, then rename), root-owned and read-only. An entry is
//! admitted only after our own MP4 reader checked it (H.264, the job's
//! size, its frame count and rate); the byte count in its name lets the
//! link into a sandbox's view refuse a truncated or replaced entry with
//! one `stat`, and the entries a render used are read and checked again
//! after it. The modification time is the LRU clock: a hit touches it,
//! and admission evicts the owner's oldest entries past the quota.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::hls::mp4;
use crate::spec::{Encoding, Engine};

/// The owner of jobs without API keys (one local owner).
pub const LOCAL_OWNER: &str = "local";

/// Where the owners' entries live and how much each may keep.
#[derive(Clone, Debug)]
pub struct AnimationCache {
    root: PathBuf,
    quota_bytes: u64,
}

/// What pieces of one profile must be: the host's expectations, from the
/// request, never from the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub engine: Engine,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub encoding: Encoding,
    /// A project's files but the scene file (`Project::files_digest`):
    /// another helper module or asset is another shelf.
    pub project: Option<[u8; 16]>,
}

/// One owner's entries of one profile.
#[derive(Clone, Debug)]
pub struct Shelf {
    owner_dir: PathBuf,
    dir: PathBuf,
    profile: Profile,
    quota_bytes: u64,
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("not a cache key")]
    Key,
    #[error("not a valid H.264 piece: {0}")]
    Unreadable(#[from] mp4::Mp4Error),
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl AnimationCache {
    pub fn new(root: PathBuf, quota_mib: u64) -> AnimationCache {
        AnimationCache {
            root,
            quota_bytes: quota_mib.saturating_mul(1024 * 1024),
        }
    }

    /// `owner`'s shelf for `profile`. `owner` is a name the host made (an
    /// API key's fingerprint, or [`LOCAL_OWNER`]); anything but letters,
    /// digits, `-` and `_` is refused rather than used as a path.
    pub fn shelf(&self, owner: &str, profile: Profile) -> Option<Shelf> {
        let valid = !owner.is_empty()
            && owner.len() <= 128
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return None;
        }
        let owner_dir = self.root.join(owner);
        let dir = owner_dir.join(profile.dir_name());
        Some(Shelf {
            owner_dir,
            dir,
            profile,
            quota_bytes: self.quota_bytes,
        })
    }
}

impl Profile {
    fn dir_name(&self) -> String {
        let mut name = format!(
            "{}-{}x{}-{}-{}",
            self.engine.as_str(),
            self.width,
            self.height,
            self.fps,
            self.encoding.as_str()
        );
        if let Some(files) = self.project {
            name.push_str("-p");
            name.push_str(&crate::project::hex(&files));
        }
        name
    }
}

/// Whether `key` is a cache key: 64 lowercase hex digits.
pub fn is_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Shelf {
    /// Links every entry whose size is still the one it was admitted with
    /// into `view` as `<key>.mp4`, where the sandbox looks plays up; one
    /// linked before stays. Returns how many were linked now.
    pub fn link_into(&self, view: &Path) -> io::Result<usize> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut linked = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((key, bytes)) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let path = entry.path();
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() && meta.len() == bytes => {}
                _ => {
                    tracing::warn!(entry = %path.display(), "an animation cache entry changed size; removed");
                    let _ = fs::remove_file(&path);
                    continue;
                }
            }
            let link = view.join(format!("{key}.mp4"));
            match fs::hard_link(&path, &link) {
                Ok(()) => linked += 1,
                // Shown already (a split render's join links arrivals again).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                // Another file system: a copy is slower but the same.
                Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
                    fs::copy(&path, &link)?;
                    linked += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(linked)
    }

    /// Where the shelf sits under a store's root: `<owner>/<profile>`.
    pub fn rel(&self) -> String {
        let owner = self.owner_dir.file_name().unwrap_or_default();
        let profile = self.dir.file_name().unwrap_or_default();
        format!("{}/{}", owner.to_string_lossy(), profile.to_string_lossy())
    }

    /// The owner's part of a store's root: `<owner>`.
    pub fn owner_rel(&self) -> String {
        let owner = self.owner_dir.file_name().unwrap_or_default();
        owner.to_string_lossy().into_owned()
    }

    pub fn quota_bytes(&self) -> u64 {
        self.quota_bytes
    }

    /// The names of the shelf's entries (`<key>.<bytes>.mp4`).
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| parse_name(n).is_some())
            .collect()
    }

    /// The path of the entry named `name`, if it is an entry's name.
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        parse_name(name).map(|_| self.dir.join(name))
    }

    /// Takes an entry from elsewhere (another node, through the bucket),
    /// checked as a rendered piece is before admission; its name must say
    /// its size.
    pub fn import(&self, name: &str, bytes: &[u8]) -> Result<(), Refused> {
        let (_, len) = parse_name(name).ok_or(Refused::Key)?;
        if len != bytes.len() as u64 {
            return Err(Refused::Mismatch(format!(
                "{} bytes, named {len}",
                bytes.len()
            )));
        }
        self.verify(bytes, None)?;
        self.write(name, bytes)
    }

    /// The entry for `key`, if there is one.
    pub fn entry(&self, key: &str) -> Option<PathBuf> {
        if !is_key(key) {
            return None;
        }
        let prefix = format!("{key}.");
        fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .find(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .map(|e| e.path())
    }

    /// Reads the entry for `key` and checks it as admission does; a
    /// refused entry is removed. On success it counts as used now.
    pub fn check(&self, key: &str, frames: Option<u64>) -> Result<PathBuf, Refused> {
        let path = self.entry(key).ok_or(Refused::Key)?;
        let result = fs::read(&path)
            .map_err(Refused::from)
            .and_then(|bytes| self.verify(&bytes, frames));
        match result {
            Ok(()) => {
                touch(&path);
                Ok(path)
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Admits a render's drawn pieces (`(key, file, frames)`), each after
    /// checking it; a key the shelf already holds is left as it is. Returns
    /// the refused ones. Call [`Shelf::evict`] after.
    pub fn admit_all<'p>(
        &self,
        pieces: impl IntoIterator<Item = (&'p str, &'p Path, u64)>,
    ) -> Vec<(String, Refused)> {
        // One listing for the whole render, not one per piece.
        let held: std::collections::HashSet<String> = self
            .names()
            .iter()
            .filter_map(|n| parse_name(n).map(|(key, _)| key.to_owned()))
            .collect();
        let mut refused = Vec::new();
        for (key, piece, frames) in pieces {
            if held.contains(key) {
                continue;
            }
            if let Err(e) = self.admit(key, piece, frames) {
                refused.push((key.to_owned(), e));
            }
        }
        refused
    }

    fn admit(&self, key: &str, piece: &Path, frames: u64) -> Result<(), Refused> {
        if !is_key(key) {
            return Err(Refused::Key);
        }
        let bytes = fs::read(piece)?;
        self.verify(&bytes, Some(frames))?;
        self.write(&format!("{key}.{}.mp4", bytes.len()), &bytes)
    }

    /// Writes an entry whole (a temporary file, then a rename), read-only.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), Refused> {
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{name}.{}", std::process::id()));
        fs::write(&tmp, bytes)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444))?;
        fs::rename(&tmp, self.dir.join(name))?;
        Ok(())
    }

    /// Removes the owner's least recently used entries (all profiles)
    /// until they fit the quota. Returns how many were removed.
    pub fn evict(&self) -> io::Result<usize> {
        let mut entries = Vec::new();
        for profile in fs::read_dir(&self.owner_dir)?.flatten() {
            let Ok(files) = fs::read_dir(profile.path()) else {
                continue;
            };
            for file in files.flatten() {
                if let Ok(meta) = file.metadata() {
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    entries.push((used, meta.len(), file.path()));
                }
            }
        }
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        let mut removed = 0;
        for (_, len, path) in entries {
            if total <= self.quota_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn verify(&self, bytes: &[u8], frames: Option<u64>) -> Result<(), Refused> {
        let track = mp4::read(bytes)?;
        let p = &self.profile;
        if (track.width, track.height) != (p.width, p.height) {
            return Err(Refused::Mismatch(format!(
                "{}x{}, not {}x{}",
                track.width, track.height, p.width, p.height
            )));
        }
        let count = track.samples.len() as u64;
        if frames.is_some_and(|f| f != count) || count == 0 {
            return Err(Refused::Mismatch(format!(
                "{count} frames, not {}",
                frames.unwrap_or(1)
            )));
        }
        // The rate: its duration is its frame count at the profile's rate.
        let secs = track.duration() as f64 / f64::from(track.timescale.max(1));
        let expected = count as f64 / f64::from(p.fps);
        if (secs - expected).abs() > 1.0 / f64::from(p.fps) {
            return Err(Refused::Mismatch(format!(
                "{secs:.3} s for {count} frames at {} fps",
                p.fps
            )));
        }
        Ok(())
    }
}

/// `<key>.<bytes>.mp4` into its parts.
fn parse_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_suffix(".mp4")?;
    let (key, bytes) = rest.split_once('.')?;
    is_key(key).then_some(())?;
    Some((key, bytes.parse().ok()?))
}

fn touch(path: &Path) {
    if let Ok(file) = fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_64_lowercase_hex_digits() {
        assert!(is_key(&"a".repeat(64)));
        assert!(!is_key(&"A".repeat(64)));
        assert!(!is_key(&"a".repeat(63)));
        assert!(!is_key("../../etc/passwd"));
        assert!(!is_key(&format!("{}/", "a".repeat(63))));
    }

    #[test]
    fn names_carry_the_admitted_size() {
        let key = "0".repeat(64);
        assert_eq!(
            parse_name(&format!("{key}.123.mp4")),
            Some((key.as_str(), 123))
        );
        assert_eq!(parse_name(&format!("{key}.mp4")), None);
        assert_eq!(parse_name(&format!(".{key}.1.mp4.77")), None);
    }

    #[test]
    fn the_least_recently_used_entries_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AnimationCache::new(dir.path().to_owned(), 1);
        let p = Profile {
            engine: Engine::Manim,
            width: 1,
            height: 1,
            fps: 1,
            encoding: Encoding::Final,
            project: None,
        };
        let shelf = cache.shelf("o", p).unwrap();
        let other = cache.shelf("o", Profile { fps: 2, ..p }).unwrap();
        let now = SystemTime::now();
        let make = |shelf: &Shelf, n: u8, age_secs: u64| {
            fs::create_dir_all(&shelf.dir).unwrap();
            let key = format!("{n:064x}");
            let path = shelf.dir.join(format!("{key}.400000.mp4"));
            fs::write(&path, vec![0u8; 400_000]).unwrap();
            let file = fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(now - std::time::Duration::from_secs(age_secs))
                .unwrap();
            key
        };
        let oldest = make(&shelf, 1, 300);
        let old = make(&other, 2, 200);
        let newer = make(&shelf, 3, 100);
        let newest = make(&other, 4, 0);
        // 1.6 MB in two profiles against 1 MiB: the two oldest go.
        assert_eq!(shelf.evict().unwrap(), 2);
        let kept: u64 = [&shelf, &other]
            .iter()
            .flat_map(|s| fs::read_dir(&s.dir).unwrap().flatten())
            .map(|f| f.metadata().unwrap().len())
            .sum();
        assert!(kept <= 1024 * 1024, "{kept}");
        assert!(shelf.entry(&oldest).is_none() && other.entry(&old).is_none());
        assert!(shelf.entry(&newer).is_some() && other.entry(&newest).is_some());
    }

    #[test]
    fn owners_are_names_not_paths() {
        let cache = AnimationCache::new("/x".into(), 1);
        let p = Profile {
            engine: Engine::Manim,
            width: 1,
            height: 1,
            fps: 1,
            encoding: Encoding::Final,
            project: None,
        };
        assert!(cache.shelf("local", p).is_some());
        assert!(cache.shelf("../y", p).is_none());
        assert!(cache.shelf("", p).is_none());
    }
}
