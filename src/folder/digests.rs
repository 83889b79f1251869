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
//! `~/.cache/...`), named by a hash of the folder's path: a line a file,
//! its stamp's numbers, digest, `t` (text) or `b`, and path, read without
//! a parser's overhead since a resubmission reads it whole. It only saves
//! time: one that cannot be read or written is ignored, a line that
//! cannot be read is left out.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
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
    pub fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
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
    known: HashMap<String, Known>,
}

impl Digests {
    /// The folder's record, or an empty one.
    pub fn load(root: &Path) -> Digests {
        let file = record_file(root);
        let known = file
            .as_ref()
            .and_then(|f| fs::read_to_string(f).ok())
            .map(|text| text.lines().filter_map(parse_line).collect())
            .unwrap_or_default();
        Digests { file, known }
    }

    /// The remembered digest of `path`, when its stamp is the recorded one.
    pub fn get(&self, path: &str, stamp: &Stamp) -> Option<&Known> {
        self.known.get(path).filter(|k| k.stamp == *stamp)
    }

    /// Records the folder's files as they are now, unless nothing changed.
    pub fn save<'a>(&self, files: impl Iterator<Item = (&'a str, Known)>) {
        let Some(file) = &self.file else {
            return;
        };
        let now = SystemTime::now();
        let known: Vec<(&str, Known)> = files
            .filter(|(path, k)| !k.stamp.is_fresh(now) && !path.contains('\n'))
            .collect();
        let same = known.len() == self.known.len()
            && known
                .iter()
                .all(|(path, k)| self.get(path, &k.stamp).is_some());
        if same {
            return;
        }
        let Some(dir) = file.parent() else {
            return;
        };
        let mut text = String::with_capacity(known.len() * 160);
        for (path, k) in &known {
            let s = &k.stamp;
            let _ = writeln!(
                text,
                "{} {} {} {} {} {} {} {} {} {path}",
                s.dev,
                s.ino,
                s.size,
                s.mtime.0,
                s.mtime.1,
                s.ctime.0,
                s.ctime.1,
                k.digest,
                if k.text { 't' } else { 'b' },
            );
        }
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        let written = fs::create_dir_all(dir)
            .and_then(|_| fs::write(&tmp, text))
            .and_then(|_| fs::rename(&tmp, file));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// One line of a record: `(path, what is known of it)`.
fn parse_line(line: &str) -> Option<(String, Known)> {
    let mut fields = line.splitn(10, ' ');
    let mut field = || fields.next();
    let stamp = Stamp {
        dev: field()?.parse().ok()?,
        ino: field()?.parse().ok()?,
        size: field()?.parse().ok()?,
        mtime: (field()?.parse().ok()?, field()?.parse().ok()?),
        ctime: (field()?.parse().ok()?, field()?.parse().ok()?),
    };
    let digest = field()?.parse().ok()?;
    let text = match field()? {
        "t" => true,
        "b" => false,
        _ => return None,
    };
    let path = field()?.to_owned();
    Some((
        path,
        Known {
            stamp,
            digest,
            text,
        },
    ))
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
    fn a_record_line_reads_back_with_spaces_in_its_path() {
        let line = format!(
            "2049 131 2048 1764800000 5 1764800001 6 {} b assets/my photo 1.png",
            Digest::from_bytes([9; 32])
        );
        let (path, known) = parse_line(&line).unwrap();
        assert_eq!(path, "assets/my photo 1.png");
        assert_eq!(known.digest, Digest::from_bytes([9; 32]));
        assert!(!known.text);
        assert_eq!(known.stamp.size(), 2048);
        // A line cut short, or of another format, is left out.
        assert!(parse_line(&line[..40]).is_none());
        assert!(parse_line("{\"scene.py\": {}}").is_none());
    }
}
