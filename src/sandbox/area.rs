//! A job's writable area: a tmpfs of capped size and inode count, mounted on
//! the host for the job's lifetime and bound into the sandbox as `/job`,
//! `/tmp` and `/dev/shm`.
//!
//! After the job has run, everything in the area is hostile: files are read
//! only through [`Area::collect`] (no link is followed, only regular files are
//! accepted, nothing blocks), and nothing is ever written, chowned or chmodded
//! there. Removal is an unmount, which deletes the contents without walking
//! them, so planted links and racing file creation have nothing to act on.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statvfs::fstatvfs;
use nix::unistd::{chown, Gid, Uid};

use crate::limits::Limits;

/// The subdirectories of an area and where they appear inside the sandbox.
pub const BINDS: [(&str, &str); 3] = [("job", "/job"), ("tmp", "/tmp"), ("shm", "/dev/shm")];

/// Where the area's view appears inside the sandbox, read-only.
pub const VIEW_MOUNT: &str = "/cache";

/// The name suffix of an area's view directory, beside the area.
pub const VIEW_SUFFIX: &str = ".view";

/// Where the area's project appears inside the sandbox, read-only: the
/// scene's working directory and the first entry of `sys.path`.
pub const PROJECT_MOUNT: &str = "/project";

/// The name suffix of an area's project directory, beside the area.
pub const PROJECT_SUFFIX: &str = ".project";

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{0} is missing")]
    Missing(String),
    #[error("{0} is not a regular file (a link, a directory, a FIFO or a device)")]
    NotRegular(String),
    #[error("{0} is larger than the limit of {1} bytes")]
    TooLarge(String, u64),
    #[error("{0}: invalid path")]
    InvalidPath(String),
    #[error("cannot read {0}: {1}")]
    Io(String, io::Error),
}

#[derive(Debug)]
pub struct Area {
    root: PathBuf,
    mounted: bool,
}

impl Area {
    /// Mounts a fresh area at `root`, owned by the sandbox's uid and gid.
    pub fn create(root: PathBuf, limits: &Limits, uid: u32, gid: u32) -> io::Result<Area> {
        fs::DirBuilder::new().mode(0o700).create(&root)?;
        let options = format!(
            "size={},nr_inodes={},mode=0700,uid={uid},gid={gid}",
            limits.output_bytes(),
            limits.files
        );
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if let Err(err) = mount(
            Some("manimd-job"),
            &root,
            Some("tmpfs"),
            flags,
            Some(options.as_str()),
        ) {
            let _ = fs::remove_dir(&root);
            return Err(err.into());
        }
        let area = Area {
            root,
            mounted: true,
        };
        // The area is brand new, so nothing in it can redirect these writes.
        for (dir, _) in BINDS {
            let path = area.root.join(dir);
            fs::DirBuilder::new().mode(0o700).create(&path)?;
            chown(&path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        }
        let shm = area.root.join("shm");
        fs::set_permissions(&shm, fs::Permissions::from_mode(0o700))?;
        for dir in [area.view(), area.project()] {
            let _ = fs::remove_dir_all(&dir);
            fs::DirBuilder::new().mode(0o755).create(&dir)?;
        }
        Ok(area)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The area's view: a directory on the host's disk, owned by root and
    /// bound read-only at [`VIEW_MOUNT`], that the host may fill while the
    /// sandbox runs (with hard links to the owner's cached animations).
    /// The sandbox cannot write to it, so unlike the area it is removed
    /// by walking it.
    pub fn view(&self) -> PathBuf {
        view_of(&self.root)
    }

    /// The area's project: like the view, a root-owned directory on the
    /// host's disk beside the area, bound read-only at [`PROJECT_MOUNT`],
    /// that the host fills at handover (the scene file, its other files,
    /// blobs as hard links) and the sandbox can never write.
    pub fn project(&self) -> PathBuf {
        beside(&self.root, PROJECT_SUFFIX)
    }

    /// Bytes and inodes still free: the area is full when either runs out.
    pub fn is_full(&self) -> bool {
        let Ok(dir) = File::open(&self.root) else {
            return false;
        };
        match fstatvfs(&dir) {
            Ok(st) => {
                let free_bytes = st.blocks_available() * st.fragment_size();
                free_bytes < 1024 * 1024 || st.files_available() < 16
            }
            Err(_) => false,
        }
    }

    /// Copies the regular file at `rel` (relative to the area's `job` dir)
    /// to `dest`, atomically, refusing links, special files and files over
    /// `max_bytes`. Returns the number of bytes copied.
    pub fn collect(&self, rel: &str, dest: &Path, max_bytes: u64) -> Result<u64, CollectError> {
        let file = self.open_regular(rel, max_bytes)?;
        let tmp = dest.with_extension("part");
        let result = (|| {
            let mut out = File::create(&tmp)?;
            let copied = io::copy(&mut File::from(file), &mut out)?;
            out.sync_all()?;
            fs::rename(&tmp, dest)?;
            Ok(copied)
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            CollectError::Io(rel.to_owned(), e)
        })
    }

    /// Opens `job/<rel>` component by component without following links.
    fn open_regular(&self, rel: &str, max_bytes: u64) -> Result<OwnedFd, CollectError> {
        let path = Path::new(rel);
        let parts: Vec<&std::ffi::OsStr> = path
            .components()
            .map(|c| match c {
                Component::Normal(p) => Ok(p),
                _ => Err(CollectError::InvalidPath(rel.to_owned())),
            })
            .collect::<Result<_, _>>()?;
        let (file_name, dirs) = parts
            .split_last()
            .ok_or_else(|| CollectError::InvalidPath(rel.to_owned()))?;
        let missing_or = |e: nix::Error| match e {
            nix::Error::ENOENT => CollectError::Missing(rel.to_owned()),
            nix::Error::ELOOP | nix::Error::ENOTDIR => CollectError::NotRegular(rel.to_owned()),
            other => CollectError::Io(rel.to_owned(), other.into()),
        };
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let root =
            File::open(self.root.join("job")).map_err(|e| CollectError::Io(rel.to_owned(), e))?;
        let mut dir: OwnedFd = root.into();
        for part in dirs {
            let fd = openat(Some(dir.as_raw_fd()), *part, dir_flags, Mode::empty())
                .map_err(missing_or)?;
            // SAFETY: `openat` returned a new descriptor that nothing else owns.
            dir = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        }
        // O_NONBLOCK: opening a FIFO must not wait for a writer that never comes.
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        let fd =
            openat(Some(dir.as_raw_fd()), *file_name, flags, Mode::empty()).map_err(missing_or)?;
        // SAFETY: as above.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let st = fstat(fd.as_raw_fd()).map_err(missing_or)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(CollectError::NotRegular(rel.to_owned()));
        }
        if st.st_size as u64 > max_bytes {
            return Err(CollectError::TooLarge(rel.to_owned(), max_bytes));
        }
        Ok(fd)
    }

    /// Unmounts and removes the area. Call only once no process uses it.
    pub fn destroy(mut self) -> io::Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> io::Result<()> {
        if self.mounted {
            umount2(&self.root, MntFlags::MNT_DETACH)?;
            self.mounted = false;
        }
        remove_view(&self.root)?;
        match fs::remove_dir(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes an area (and its view) that a previous process left behind.
    pub fn reap(root: &Path) -> io::Result<()> {
        // Unmount first (repeatedly, in case of stacked mounts); only an
        // empty mount point directory on the host disk is then removed.
        while umount2(root, MntFlags::MNT_DETACH).is_ok() {}
        remove_view(root)?;
        match fs::remove_dir(root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn view_of(root: &Path) -> PathBuf {
    beside(root, VIEW_SUFFIX)
}

fn beside(root: &Path, suffix: &str) -> PathBuf {
    let mut name = root.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes the view and the project beside an area (both root-owned and
/// never writable by the sandbox, so walking them is safe).
fn remove_view(root: &Path) -> io::Result<()> {
    for dir in [view_of(root), beside(root, PROJECT_SUFFIX)] {
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

impl Drop for Area {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            tracing::warn!(area = %self.root.display(), %err, "cannot remove a sandbox area");
        }
    }
}
