//! Where finished renders are kept: a small interface over local disk now
//! (object storage can be another backend behind the same calls).
//!
//! Each attempt publishes into its own directory, so a stale worker can
//! never overwrite the files of a newer attempt; the job record says which
//! attempt is served.

use std::io;
use std::path::{Path, PathBuf};

use crate::jobs::JobId;

#[derive(Clone, Debug)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn local(root: impl Into<PathBuf>) -> io::Result<Storage> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Storage { root })
    }

    fn attempt_dir(&self, id: &JobId, attempt: u32) -> PathBuf {
        self.root.join(id.as_str()).join(attempt.to_string())
    }

    /// Moves finished files (named by the host, never by the scene) into
    /// place. `rename` is atomic: a reader sees the whole file or none.
    pub fn publish(&self, id: &JobId, attempt: u32, files: &[(&Path, &str)]) -> io::Result<()> {
        let dir = self.attempt_dir(id, attempt);
        std::fs::create_dir_all(&dir)?;
        for (src, name) in files {
            std::fs::rename(src, dir.join(name))?;
        }
        Ok(())
    }

    /// Publishes another job's files as `id`'s attempt 1, sharing their
    /// bytes (hard links; a copy where links are not possible). Used for
    /// cache hits: deleting either job leaves the other's files intact.
    pub fn share(
        &self,
        from: &JobId,
        from_attempt: u32,
        id: &JobId,
        names: &[&str],
    ) -> io::Result<()> {
        let dir = self.attempt_dir(id, 1);
        std::fs::create_dir_all(&dir)?;
        for name in names {
            let src = self.attempt_dir(from, from_attempt).join(name);
            let dst = dir.join(name);
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst)?;
            }
        }
        Ok(())
    }

    /// The path of a published file.
    pub fn path(&self, id: &JobId, attempt: u32, name: &str) -> PathBuf {
        self.attempt_dir(id, attempt).join(name)
    }

    pub fn delete(&self, id: &JobId) -> io::Result<()> {
        match std::fs::remove_dir_all(self.root.join(id.as_str())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
