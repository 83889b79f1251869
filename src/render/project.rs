//! A project laid out for its sandbox: the scene file and every other file
//! written or linked by the host into the area's project directory
//! (`Area::project`), which the sandbox sees read-only at `/project`, its
//! working directory and the first entry of `sys.path`.
//!
//! The host writes there, before any user code runs, into a directory
//! the sandbox can never write, so nothing it plants can redirect these
//! writes. Blobs are hard links to the owner's uploads (a copy when the
//! blob store is on another file system): read-only for the sandbox's
//! user, whose files they are not.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{RenderError, Renderer};
use crate::project::{normalize, Digest, FileRef, Project};
use crate::sandbox::{self, SandboxError};

/// Where blobs' bytes are on this host: the blob store for the server,
/// the user's own files for `manimd render`.
pub trait BlobSource: Send + Sync {
    /// The host file holding `digest` for `owner`, if there is one.
    fn blob_path(&self, owner: Option<&str>, digest: &Digest) -> Option<PathBuf>;
}

impl Renderer {
    /// Lays `project` (with `code` as its scene file) out in the sandbox's
    /// project directory, off the runtime's threads. Nothing to do for a
    /// single-file scene.
    pub(super) async fn lay_out(
        &self,
        started: &sandbox::Started,
        code: &str,
        project: Option<&Project>,
        owner: Option<&str>,
    ) -> Result<(), RenderError> {
        let (Some(project), Some(dir)) = (project, started.project()) else {
            return Ok(());
        };
        if !project.is_resolved() {
            // Every reader of a stored job reads its manifest first.
            let unread = io::Error::other("a project's manifest was not read before its render");
            return Err(RenderError::Sandbox(SandboxError::Area(
                dir.clone(),
                unread,
            )));
        }
        // Finding a project's blobs is a file system call each, and a
        // project may hold thousands: all of it off the runtime's threads.
        let (code, project, owner) = (code.to_owned(), project.clone(), owner.map(str::to_owned));
        let blobs = self.blobs.clone();
        let target = dir.clone();
        let laid = tokio::task::spawn_blocking(move || {
            let mut files: Vec<(String, Source)> = Vec::with_capacity(project.len() + 1);
            files.push((project.main.clone(), Source::Text(code)));
            for (path, file) in project.all() {
                let source = match file {
                    FileRef::Text(text) => Source::Text(text.clone()),
                    FileRef::Blob(digest) => {
                        let found = blobs
                            .as_ref()
                            .and_then(|b| b.blob_path(owner.as_deref(), digest));
                        match found {
                            Some(host) => Source::File(host),
                            None => {
                                return Ok(Err(RenderError::MissingBlob {
                                    file: path.to_owned(),
                                    digest: *digest,
                                }))
                            }
                        }
                    }
                };
                files.push((path.to_owned(), source));
            }
            write_all(&target, &files).map(Ok)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|e| RenderError::Sandbox(SandboxError::Area(dir, e)))?;
        laid
    }
}

enum Source {
    Text(String),
    File(PathBuf),
}

fn write_all(dir: &Path, files: &[(String, Source)]) -> io::Result<()> {
    for (path, source) in files {
        // The paths were checked at submission; a stored spec is ours, but
        // a path is joined to a host directory only in its checked form.
        if normalize(path).as_deref() != Ok(path.as_str()) {
            return Err(io::Error::other(format!("not a project path: {path:?}")));
        }
        let dest = dir.join(path);
        if let Some(parent) = dest.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        match source {
            Source::Text(text) => {
                let mut f = fs::File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&dest)?;
                f.write_all(text.as_bytes())?;
            }
            Source::File(host) => {
                // A link shares its file's mode: one the sandbox's user
                // cannot read (a user's private file) is copied instead.
                let linked = fs::hard_link(host, &dest).is_ok();
                let readable = linked
                    && fs::metadata(&dest).is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
                if !readable {
                    if linked {
                        fs::remove_file(&dest)?;
                    }
                    fs::copy(host, &dest)?;
                    fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
                }
            }
        }
    }
    Ok(())
}
