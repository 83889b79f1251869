//! The folder's digests remembered between runs, as git's index remembers
//! its files: a file whose device, inode, size, modification and change
//! times are those recorded keeps its recorded digest and is not read
//! again. Resubmitting a project of many files, or of large images, after
//! an edit then reads only what changed. Any write to a file moves its
//! change time, which no tool can set back, so a recorded digest is never
//! trusted for other contents. A file modified in the last two seconds is
//! not recorded: a second write within the clock's resolution could
//! otherwise keep the time it had.
//!
//! One file per folder under `$XDG_CACHE_HOME/manimd/folders/` (or
//! `~/.cache/...`), named by a hash of the folder's path: after a magic
//! line, an entry a file in path order, each of fixed-width numbers (its
//! stamp), its digest's 32 bytes, a text flag and its path, so that a
//! resubmission reads it with no parsing beyond slicing. It only saves
//! time: one that cannot be read or written is ignored, and one cut
//! short is read up to the cut.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use manimd::project::Digest;

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// What `fstatat` found.
    pub fn of_stat(st: &nix::sys::stat::FileStat) -> Stamp {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the file changed so recently that its times may not yet
    /// tell a next write apart.
    fn is_fresh(&self, now: SystemTime) -> bool {
        let newest = self.mtime.max(self.ctime);
        let at = SystemTime::UNIX_EPOCH
            + Duration::new(
                newest.0.max(0) as u64,
                newest.1.clamp(0, 999_999_999) as u32,
            );
        now.duration_since(at)
            .map_or(true, |age| age < Duration::from_secs(2))
    }
}

/// A file's remembered digest, and whether it may go inline.
#[derive(Clone, Debug)]
pub struct Known {
    pub stamp: Stamp,
    pub digest: Digest,
    pub text: bool,
}

/// The remembered digests of one folder, by relative path.
pub struct Digests {
    file: Option<PathBuf>,
    /// In path order.
    known: Vec<(String, Known)>,
}

/// The record's first bytes: a record of another format is not read.
const MAGIC: &[u8] = b"manimd folder digests 2\n";
/// An entry's bytes before its path: its path's length, seven numbers of
/// the stamp, the digest and the text flag.
const FIXED: usize = 4 + 7 * 8 + 32 + 1;

impl Digests {
    /// The folder's record, or an empty one.
    pub fn load(root: &Path) -> Digests {
        let file = record_file(root);
        let known = file
            .as_ref()
            .and_then(|f| fs::read(f).ok())
            .map(|bytes| decode(&bytes))
            .unwrap_or_default();
        Digests { file, known }
    }

    /// The remembered digest of `path`, when its stamp is the recorded one.
    pub fn get(&self, path: &str, stamp: &Stamp) -> Option<&Known> {
        let i = self
            .known
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .ok()?;
        Some(&self.known[i].1).filter(|k| k.stamp == *stamp)
    }

    /// Records the folder's files as they are now (`files` in path
    /// order), unless nothing changed.
    pub fn save<'a>(&self, files: impl Iterator<Item = (&'a str, Known)>) {
        let Some(file) = &self.file else {
            return;
        };
        let now = SystemTime::now();
        let known: Vec<(&str, Known)> = files.filter(|(_, k)| !k.stamp.is_fresh(now)).collect();
        let same = known.len() == self.known.len()
            && known
                .iter()
                .zip(&self.known)
                .all(|((path, k), (was, w))| path == was && k.stamp == w.stamp);
        if same {
            return;
        }
        let Some(dir) = file.parent() else {
            return;
        };
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        let written = fs::create_dir_all(dir)
            .and_then(|_| fs::write(&tmp, encode(&known)))
            .and_then(|_| fs::rename(&tmp, file));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }
}

fn encode(known: &[(&str, Known)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + known.len() * (FIXED + 32));
    out.extend_from_slice(MAGIC);
    for (path, k) in known {
        let s = &k.stamp;
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        for n in [s.dev, s.ino, s.size] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for n in [s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(k.digest.as_bytes());
        out.push(u8::from(k.text));
        out.extend_from_slice(path.as_bytes());
    }
    out
}

/// The entries of a record, up to the first that cannot be read.
fn decode(bytes: &[u8]) -> Vec<(String, Known)> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return Vec::new();
    };
    let mut known = Vec::new();
    while rest.len() >= FIXED {
        let (fixed, tail) = rest.split_at(FIXED);
        let u64_at =
            |i: usize| u64::from_le_bytes(fixed[4 + i * 8..12 + i * 8].try_into().unwrap());
        let i64_at = |i: usize| u64_at(i) as i64;
        let len = u32::from_le_bytes(fixed[..4].try_into().unwrap()) as usize;
        let Some(path) = tail.get(..len).and_then(|p| std::str::from_utf8(p).ok()) else {
            break;
        };
        let digest: [u8; 32] = fixed[60..92].try_into().unwrap();
        let stamp = Stamp {
            dev: u64_at(0),
            ino: u64_at(1),
            size: u64_at(2),
            mtime: (i64_at(3), i64_at(4)),
            ctime: (i64_at(5), i64_at(6)),
        };
        let text = fixed[92] == 1;
        known.push((
            path.to_owned(),
            Known {
                stamp,
                digest: Digest::from_bytes(digest),
                text,
            },
        ));
        rest = &tail[len..];
    }
    // Written in path order; a record that is not is still read right.
    if !known.is_sorted_by(|a, b| a.0 < b.0) {
        known.sort_by(|a, b| a.0.cmp(&b.0));
        known.dedup_by(|a, b| a.0 == b.0);
    }
    known
}

/// `$XDG_CACHE_HOME/manimd/folders/<hash of the folder's path>.stamps`.
fn record_file(root: &Path) -> Option<PathBuf> {
    use sha2::Digest as _;
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let root = fs::canonicalize(root).ok()?;
    let name = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    let name = manimd::project::hex(&name[..16]);
    Some(cache.join("manimd/folders").join(format!("{name}.stamps")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_one_cut_short_up_to_the_cut() {
        let known = |n: u8, text: bool| Known {
            stamp: Stamp {
                dev: 2049,
                ino: u64::from(n),
                size: 2048,
                mtime: (1_764_800_000, 5),
                ctime: (-1, 999_999_999),
            },
            digest: Digest::from_bytes([n; 32]),
            text,
        };
        let entries = [
            ("assets/my photo 1.png", known(1, false)),
            ("b.py", known(2, true)),
        ];
        let bytes = encode(&entries);
        let back = decode(&bytes);
        assert_eq!(back.len(), 2);
        for ((path, k), (was, w)) in back.iter().zip(&entries) {
            assert_eq!(
                (path.as_str(), k.stamp, k.digest, k.text),
                (*was, w.stamp, w.digest, w.text)
            );
        }
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).len(),
            1,
            "cut in the last path"
        );
        assert!(
            decode(b"2049 131 2048 1764800000 5 1764800001 6").is_empty(),
            "another format"
        );
    }
}
