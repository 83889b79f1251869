//! The scene file's folder as a project, for `manimd render` and
//! `manimd submit`: every file under it but `media/`, `__pycache__`,
//! hidden files and folders (`.git` among them), rendered videos
//! (`.mp4`, `.webm`, `.mov`: no Manim asset) and what `.manimdignore`
//! lists (one glob a line, `#` comments; `*` and `?` stay within a path
//! component, `**` crosses them; a pattern without `/` matches a name at
//! any depth, one ending in `/` only folders).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod digests;
use digests::{Digests, Known, Stamp};

use manimd::api::{JobView, RenderRequest};
use manimd::client::{Client, ClientError};
use manimd::job_error::ErrorCode;
use manimd::project::{Digest, FileRef, Project, ProjectLimits};
use manimd::render::BlobSource;

/// Text files up to this size go inline in a submission; larger files
/// and binary ones go as blobs.
const INLINE_MAX: u64 = 64 * 1024;
/// Inline text of one submission, all files together, stays under this
/// (the server's body limit is 1 MiB by default).
const INLINE_TOTAL: u64 = 512 * 1024;

/// A file of the project on this machine.
#[derive(Clone, Debug)]
pub struct LocalFile {
    /// Relative to the folder, `/`-separated.
    pub path: String,
    pub host: PathBuf,
    pub size: u64,
    pub digest: Digest,
    /// UTF-8 text up to the inline size: it may go inline.
    pub text: bool,
    stamp: Stamp,
}

impl LocalFile {
    fn known(&self) -> Known {
        Known {
            stamp: self.stamp,
            digest: self.digest,
            text: self.text,
        }
    }
}

/// The scene's folder as a project.
#[derive(Debug)]
pub struct Folder {
    /// The scene file's path in the folder (its name).
    pub main: String,
    /// Every other file, by path.
    pub files: Vec<LocalFile>,
}

/// The folder of `scene_file` as a project, or `None` when the scene file
/// is alone in it (then it renders as a single file, as always).
pub fn scan(scene_file: &Path, limits: &ProjectLimits) -> Result<Option<Folder>, String> {
    let root = match scene_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let main = scene_file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", scene_file.display()))?
        .to_owned();
    let ignore = Ignore::read(&root.join(".manimdignore"));
    let mut walk = Walk {
        dirs: Vec::new(),
        found: Vec::new(),
        ignore,
        max_files: limits.max_files,
    };
    let top = open_dir(None, &root).map_err(|e| format!("{}: {e}", root.display()))?;
    walk.dir(top, "")?;
    walk.found.retain(|f| f.path != main);
    if walk.found.is_empty() {
        return Ok(None);
    }
    // The record is read while the files are stamped.
    let (found, digests) = std::thread::scope(|scope| {
        let digests = scope.spawn(|| Digests::load(&root));
        let found = stamp_all(&walk.dirs, walk.found, &root);
        (found, digests.join().expect("reading the record panicked"))
    });
    if found.is_empty() {
        return Ok(None);
    }
    let mut total = 0u64;
    for (path, _, stamp) in &found {
        let size = stamp.size();
        if size > limits.max_file_bytes {
            return Err(format!(
                "{path} is {size} bytes; a project's file may hold at most {} (list it in .manimdignore to leave it out)",
                limits.max_file_bytes
            ));
        }
        total += size;
        if total > limits.max_bytes {
            return Err(format!(
                "the folder holds more than {} bytes; list what the scene does not need in .manimdignore",
                limits.max_bytes
            ));
        }
    }
    // Only the files that changed since the last scan are read.
    let (mut files, mut unknown) = (Vec::new(), Vec::new());
    for (path, host, stamp) in found {
        match digests.get(&path, &stamp) {
            Some(known) => files.push(LocalFile {
                size: stamp.size(),
                digest: known.digest,
                text: known.text,
                stamp,
                path,
                host,
            }),
            None => unknown.push((path, host, stamp)),
        }
    }
    let hashed = hash_all(unknown)?;
    digests.save(
        hashed
            .iter()
            .chain(&files)
            .map(|f| (f.path.as_str(), f.known())),
    );
    files.extend(hashed);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(Folder { main, files }))
}

/// A file `Walk` found: its path, and its name in one of the open folders.
struct Found {
    path: String,
    /// Where its name starts in `path`.
    name_at: usize,
    /// Its folder, an index in `Walk::dirs`.
    dir: usize,
    link: bool,
}

/// The folder's tree walked with each folder opened once: a file is then
/// stamped by its name in its folder (`fstatat`), not by a walk of its
/// whole path, which a project of many files would repeat for each.
struct Walk {
    dirs: Vec<nix::dir::Dir>,
    found: Vec<Found>,
    ignore: Ignore,
    max_files: usize,
}

impl Walk {
    /// Lists `dir` (at `rel` in the folder) and the folders in it.
    fn dir(&mut self, mut dir: nix::dir::Dir, rel: &str) -> Result<(), String> {
        use nix::dir::Type;
        use std::os::fd::AsRawFd;
        // Each entry's path made at once (one allocation a file); sorted
        // by it, the folder's entries are in their names' order.
        let name_at = if rel.is_empty() { 0 } else { rel.len() + 1 };
        let mut entries: Vec<(String, Option<Type>)> = dir
            .iter()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str().ok()?;
                let skip = name.starts_with('.')
                    || name == "__pycache__"
                    || (rel.is_empty() && name == "media");
                if skip {
                    return None;
                }
                let mut path = String::with_capacity(name_at + name.len());
                if !rel.is_empty() {
                    path.push_str(rel);
                    path.push('/');
                }
                path.push_str(name);
                Some((path, e.file_type()))
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let fd = dir.as_raw_fd();
        let index = self.dirs.len();
        self.dirs.push(dir);
        for (path, kind) in entries {
            // A file system that does not say the kind is asked.
            let kind = kind.or_else(|| {
                let st = nix::sys::stat::fstatat(
                    Some(fd),
                    &path[name_at..],
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .ok()?;
                Some(kind_of(st.st_mode))
            });
            match kind {
                // A linked folder is not followed (no loops).
                Some(Type::Directory) if !self.ignore.matches(&path, true) => {
                    let sub = open_dir(Some(fd), Path::new(&path[name_at..]))
                        .map_err(|e| format!("{path}: {e}"))?;
                    self.dir(sub, &path)?;
                }
                // A linked file is read.
                Some(kind @ (Type::File | Type::Symlink)) => {
                    if self.ignore.matches(&path, false) || is_video(&path[name_at..]) {
                        continue;
                    }
                    self.found.push(Found {
                        path,
                        name_at,
                        dir: index,
                        link: kind == Type::Symlink,
                    });
                    if self.found.len() > self.max_files {
                        return Err(format!(
                            "the folder has more than {} files; list what the scene does not need in .manimdignore",
                            self.max_files
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Opens a folder to list: the scene's own folder as named (a link to it
/// is the user's to make), and a folder in it only when it is not a link
/// (one swapped for a link since it was listed is not followed either).
fn open_dir(at: Option<std::os::fd::RawFd>, path: &Path) -> nix::Result<nix::dir::Dir> {
    use nix::fcntl::OFlag;
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if at.is_some() {
        flags |= OFlag::O_NOFOLLOW;
    }
    nix::dir::Dir::openat(at, path, flags, nix::sys::stat::Mode::empty())
}

fn kind_of(mode: nix::libc::mode_t) -> nix::dir::Type {
    use nix::dir::Type;
    use nix::sys::stat::SFlag;
    match SFlag::from_bits_truncate(mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => Type::Directory,
        SFlag::S_IFLNK => Type::Symlink,
        SFlag::S_IFREG => Type::File,
        SFlag::S_IFIFO => Type::Fifo,
        SFlag::S_IFCHR => Type::CharacterDevice,
        SFlag::S_IFBLK => Type::BlockDevice,
        _ => Type::Socket,
    }
}

/// The stamps of the files `Walk` found (a linked file's target's), on as
/// many threads as the machine has cores: a scan of many files is mostly
/// these calls. What is not a file (a link to a folder) is left out.
fn stamp_all(
    dirs: &[nix::dir::Dir],
    found: Vec<Found>,
    root: &Path,
) -> Vec<(String, PathBuf, Stamp)> {
    use nix::fcntl::AtFlags;
    use std::os::fd::AsRawFd;
    let fds: Vec<_> = dirs.iter().map(|d| d.as_raw_fd()).collect();
    let stamp = |f: Found| {
        let flags = if f.link {
            AtFlags::empty()
        } else {
            AtFlags::AT_SYMLINK_NOFOLLOW
        };
        let st = nix::sys::stat::fstatat(Some(fds[f.dir]), &f.path[f.name_at..], flags).ok()?;
        let regular = kind_of(st.st_mode) == nix::dir::Type::File;
        let host = root.join(&f.path);
        regular.then(|| (f.path, host, Stamp::of_stat(&st)))
    };
    in_parallel(found, |part| part.into_iter().filter_map(stamp).collect())
}

/// `f` over `items` split in one run per core, the results in order.
fn in_parallel<T: Send, U: Send>(items: Vec<T>, f: impl Fn(Vec<T>) -> Vec<U> + Sync) -> Vec<U> {
    // Asked once: the answer reads the process's cgroup files each time.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads =
        *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let per = items.len().div_ceil(threads).max(1);
    if items.len() <= per {
        return f(items);
    }
    let mut parts = Vec::new();
    let mut items = items.into_iter();
    loop {
        let part: Vec<T> = items.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    std::thread::scope(|scope| {
        let f = &f;
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_default();
        let workers: Vec<_> = parts.map(|part| scope.spawn(move || f(part))).collect();
        // The first part on this thread, while the others start.
        let mut out = f(first);
        for w in workers {
            out.extend(w.join().expect("a scan thread panicked"));
        }
        out
    })
}

fn is_video(name: &str) -> bool {
    let name = name.as_bytes();
    [&b".mp4"[..], b".webm", b".mov"].iter().any(|ext| {
        name.len() >= ext.len() && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext)
    })
}

/// Hashes the files, on as many threads as the machine has cores: a
/// project of many small files is mostly opens and reads.
fn hash_all(found: Vec<(String, PathBuf, Stamp)>) -> Result<Vec<LocalFile>, String> {
    in_parallel(found, |part| part.iter().map(hash_one).collect())
        .into_iter()
        .collect()
}

/// One file's digest, and whether it can go inline: a small file is read
/// whole, once, for both.
fn hash_one((path, host, stamp): &(String, PathBuf, Stamp)) -> Result<LocalFile, String> {
    use sha2::Digest as _;
    let size = stamp.size();
    let fail = |e: std::io::Error| format!("{}: {e}", host.display());
    let mut h = sha2::Sha256::new();
    let mut text = false;
    if size <= INLINE_MAX {
        let bytes = fs::read(host).map_err(fail)?;
        h.update(&bytes);
        text = std::str::from_utf8(&bytes)
            .is_ok_and(|t| !t.starts_with(Digest::PREFIX) && !t.contains('\0'));
    } else {
        let mut f = fs::File::open(host).map_err(fail)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(LocalFile {
        path: path.clone(),
        host: host.clone(),
        size,
        digest: Digest::from_bytes(h.finalize().into()),
        text,
        stamp: *stamp,
    })
}

impl Folder {
    /// The project as `manimd render` gives it to the renderer: every
    /// file a blob, found on this machine by [`LocalBlobs`].
    pub fn local(&self) -> (Project, Arc<LocalBlobs>) {
        let files = self
            .files
            .iter()
            .map(|f| (f.path.clone(), FileRef::Blob(f.digest)))
            .collect();
        let blobs = self
            .files
            .iter()
            .map(|f| (f.digest, f.host.clone()))
            .collect();
        (
            Project {
                main: self.main.clone(),
                files,
                ..Project::default()
            },
            Arc::new(LocalBlobs(blobs)),
        )
    }

    /// Makes `req` a submission of this folder to a server: small text
    /// files inline in `files` (up to a total) with the scene file `code`
    /// as `main`, and every other file as a blob, named in a `manifest`.
    /// An edit of the scene file or of a text file leaves the manifest as
    /// it was, so a resubmission sends its digest, not the list of every
    /// file again. Returns what `send` may have to upload.
    pub fn request(&self, code: &str, req: &mut RenderRequest) -> Submission<'_> {
        let mut files = vec![(self.main.clone(), code.to_owned())];
        let mut blobs = Vec::new();
        let mut inline = code.len() as u64;
        for f in &self.files {
            // Read again only when it goes inline; it may have changed since.
            let text = (f.text && inline + f.size <= INLINE_TOTAL)
                .then(|| fs::read(&f.host).ok())
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|t| !t.starts_with(Digest::PREFIX) && !t.contains('\0'));
            match text {
                Some(text) => {
                    inline += f.size;
                    files.push((f.path.clone(), text));
                }
                None => blobs.push(f),
            }
        }
        let manifest = (!blobs.is_empty()).then(|| {
            struct Listing<'a>(&'a [&'a LocalFile]);
            impl serde::Serialize for Listing<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_map(self.0.iter().map(|f| (&f.path, f.digest)))
                }
            }
            let bytes = serde_json::to_vec(&Listing(&blobs)).expect("serializable");
            ManifestBlob {
                digest: Digest::of(&bytes),
                bytes,
            }
        });
        req.code = String::new();
        req.files = Some(manimd::project::FileMap(files));
        req.main = Some(self.main.clone());
        req.manifest = manifest.as_ref().map(|m| m.digest);
        Submission { manifest, blobs }
    }
}

/// What `Folder::request` named in a request and may upload.
pub struct Submission<'a> {
    /// The request's `manifest`, when any file goes as a blob.
    pub manifest: Option<ManifestBlob>,
    /// The files the manifest names.
    pub blobs: Vec<&'a LocalFile>,
}

/// A manifest's bytes (a JSON object from paths to digests) and digest.
pub struct ManifestBlob {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// Submits a project's request the way that costs least when the server
/// has its blobs already (each resubmission after an edit): the request at
/// once, and only when it answers `missing-blob`, the question of which it
/// lacks, those uploaded (`uploaded` is told of each, by its path and
/// size; the manifest as `manifest (N files)`), and the request again. A
/// single file's request is simply sent.
pub async fn send(
    client: &Client,
    req: &RenderRequest,
    sub: Option<&Submission<'_>>,
    mut uploaded: impl FnMut(&str, u64),
) -> Result<JobView, ClientError> {
    let sub = match (client.submit(req).await, sub) {
        (Err(ClientError::Api { error, .. }), Some(sub))
            if error.code == ErrorCode::MissingBlob.as_str() =>
        {
            sub
        }
        (answer, _) => return answer,
    };
    let mut digests: Vec<_> = sub.blobs.iter().map(|f| f.digest).collect();
    digests.extend(sub.manifest.as_ref().map(|m| m.digest));
    let missing = client.missing_blobs(&digests).await?;
    for digest in &missing {
        if let Some(file) = sub.blobs.iter().find(|f| f.digest == *digest) {
            client.put_blob(digest, &file.host).await?;
            uploaded(&file.path, file.size);
        }
    }
    // Last, so that the blobs it names are there before it is.
    if let Some(manifest) = sub
        .manifest
        .as_ref()
        .filter(|m| missing.contains(&m.digest))
    {
        client
            .put_blob_bytes(&manifest.digest, manifest.bytes.clone())
            .await?;
        let n = sub.blobs.len();
        let label = format!("manifest ({n} file{})", if n == 1 { "" } else { "s" });
        uploaded(&label, manifest.bytes.len() as u64);
    }
    client.submit(req).await
}

/// A local render's blobs: the user's own files, by digest.
pub struct LocalBlobs(BTreeMap<Digest, PathBuf>);

impl BlobSource for LocalBlobs {
    fn blob_path(&self, _owner: Option<&str>, digest: &Digest) -> Option<PathBuf> {
        self.0.get(digest).cloned()
    }
}

/// The globs of `.manimdignore`.
struct Ignore(Vec<(String, bool)>);

impl Ignore {
    fn read(path: &Path) -> Ignore {
        let text = fs::read_to_string(path).unwrap_or_default();
        Ignore(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| {
                    let dir_only = l.ends_with('/');
                    (l.trim_matches('/').to_owned(), dir_only)
                })
                .collect(),
        )
    }

    fn matches(&self, path: &str, is_dir: bool) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.0.iter().any(|(glob, dir_only)| {
            if *dir_only && !is_dir {
                return false;
            }
            if glob.contains('/') {
                glob_match(glob.as_bytes(), path.as_bytes())
            } else {
                glob_match(glob.as_bytes(), name.as_bytes())
            }
        })
    }
}

/// `*` and `?` within a component, `**` across components.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    match glob {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=text.len()).any(|i| glob_match(rest, &text[i..]))
        }
        [b'*', rest @ ..] => (0..=text.len())
            .take_while(|&i| i == 0 || text[i - 1] != b'/')
            .any(|i| glob_match(rest, &text[i..])),
        [b'?', rest @ ..] => matches!(text, [c, t @ ..] if *c != b'/' && glob_match(rest, t)),
        [g, rest @ ..] => matches!(text, [c, t @ ..] if c == g && glob_match(rest, t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn ignore_globs_match_names_and_paths() {
        let ig = Ignore(vec![
            ("*.log".into(), false),
            ("build".into(), true),
            ("data/**/*.tmp".into(), false),
        ]);
        assert!(ig.matches("a.log", false));
        assert!(ig.matches("x/y/a.log", false));
        assert!(!ig.matches("a.logs", false));
        assert!(ig.matches("build", true));
        assert!(!ig.matches("build", false));
        assert!(ig.matches("data/a/b/c.tmp", false));
        assert!(ig.matches("data/c.tmp", false));
        assert!(!ig.matches("other/c.tmp", false));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a*c", b"a/c"));
    }

    #[test]
    fn a_folder_is_scanned_with_its_ignores() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("scene.py"), "x").unwrap();
        assert!(scan(&root.join("scene.py"), &ProjectLimits::default())
            .unwrap()
            .is_none());
        for (path, text) in [
            ("helpers.py", "h"),
            ("assets/logo.svg", "<svg/>"),
            ("media/videos/a.mp4", "v"),
            ("__pycache__/h.pyc", "c"),
            (".git/HEAD", "ref"),
            (".hidden", "h"),
            ("out.mp4", "v"),
            ("notes.txt", "n"),
            ("custom/__init__.py", ""),
        ] {
            let p = root.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        fs::write(root.join(".manimdignore"), "# comment\n*.txt\n").unwrap();
        let folder = scan(&root.join("scene.py"), &ProjectLimits::default())
            .unwrap()
            .unwrap();
        let paths: Vec<&str> = folder.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["assets/logo.svg", "custom/__init__.py", "helpers.py"]
        );
        assert_eq!(folder.main, "scene.py");
        let mut req = RenderRequest::default();
        let sub = folder.request("code", &mut req);
        assert_eq!(req.files.map(|f| f.0.len()), Some(4));
        assert_eq!(req.main.as_deref(), Some("scene.py"));
        assert!(sub.blobs.is_empty(), "small text goes inline");
        assert!(sub.manifest.is_none(), "no blob, no manifest");
    }

    /// A linked file is read as its target; a linked folder, a name that
    /// is not UTF-8 and what is not a file are left out.
    #[test]
    fn links_to_files_are_read_and_links_to_folders_are_not_followed() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("p"), dir.path().join("outside"));
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(root.join("scene.py"), "x").unwrap();
        fs::write(root.join("sub/real.txt"), "real").unwrap();
        fs::write(outside.join("secret.txt"), "far").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("linked.txt")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("away")).unwrap();
        fs::write(root.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), "?").unwrap();
        nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let folder = scan(&root.join("scene.py"), &ProjectLimits::default())
            .unwrap()
            .unwrap();
        let got: Vec<(&str, u64)> = folder
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.size))
            .collect();
        assert_eq!(got, [("linked.txt", 3), ("sub/real.txt", 4)]);
        let limits = ProjectLimits {
            max_files: 1,
            ..ProjectLimits::default()
        };
        assert!(scan(&root.join("scene.py"), &limits)
            .unwrap_err()
            .contains("more than 1 files"));
    }

    /// A remembered digest is used only for the file as it was: a write
    /// of the same size moves the change time, and the file is read again.
    #[test]
    fn remembered_digests_follow_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let (root, cache) = (dir.path().join("p"), dir.path().join("cache"));
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("scene.py"), "x").unwrap();
        let asset = root.join("data.bin");
        fs::write(&asset, [0xffu8; 100]).unwrap();
        // A file changed in the last two seconds is not recorded.
        let settle = || std::thread::sleep(std::time::Duration::from_millis(2100));
        settle();
        let scan_with = || {
            std::env::set_var("XDG_CACHE_HOME", &cache);
            let f = scan(&root.join("scene.py"), &ProjectLimits::default())
                .unwrap()
                .unwrap();
            f.files[0].digest
        };
        let real = Digest::from_bytes(sha2::Sha256::digest([0xffu8; 100]).into());
        assert_eq!(scan_with(), real);
        let records: Vec<_> = fs::read_dir(cache.join("manimd/folders"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(records.len(), 1, "the folder's digests are recorded");
        // The record is what a scan of the unchanged file believes.
        let mut record = fs::read(&records[0]).unwrap();
        let at = record
            .windows(32)
            .position(|w| w == real.as_bytes())
            .expect("the digest is recorded");
        let planted = Digest::from_bytes([7; 32]);
        record[at..at + 32].copy_from_slice(planted.as_bytes());
        fs::write(&records[0], record).unwrap();
        assert_eq!(scan_with(), planted, "the record is used");
        // Other contents of the same size: read again.
        fs::write(&asset, [0u8; 100]).unwrap();
        settle();
        assert_eq!(
            scan_with(),
            Digest::from_bytes(sha2::Sha256::digest([0u8; 100]).into())
        );
    }
}
