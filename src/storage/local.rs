//! The local-disk backend: files under `<root>/<job id>/<attempt>/<name>`,
//! moved into place by `rename` and shared by hard links. Its file-system
//! work runs off the async runtime (`blocking`); the S3 backend uses the
//! same directory layout as its spool for live streams.

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ByteStream, Object, Source, StorageError};

/// Moves finished files into `dir`. `rename` is atomic: a reader sees the
/// whole file or none.
pub(super) async fn publish(dir: PathBuf, files: &[(&Path, &str)]) -> Result<(), StorageError> {
    let files: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|(src, name)| (src.to_path_buf(), dir.join(name)))
        .collect();
    blocking(move || {
        std::fs::create_dir_all(&dir)?;
        for (src, dst) in files {
            std::fs::rename(src, dst)?;
        }
        Ok(())
    })
    .await
}

/// Links the files `names` of `src` into `dst` (copies them where links
/// are not possible): deleting either side leaves the other intact.
pub(super) async fn share(src: PathBuf, dst: PathBuf, names: &[&str]) -> Result<(), StorageError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    blocking(move || {
        std::fs::create_dir_all(&dst)?;
        for name in names {
            let (src, dst) = (src.join(&name), dst.join(&name));
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst)?;
            }
        }
        Ok(())
    })
    .await
}

/// Opens the file at `path`; a directory or a missing file is `NotFound`.
pub(super) async fn object(path: &Path) -> Result<Object, StorageError> {
    let file = match tokio::fs::File::open(path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound),
        other => other?,
    };
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Err(StorageError::NotFound);
    }
    Ok(Object {
        size: meta.len(),
        source: Source::File(file),
    })
}

/// Streams `len` bytes from `start` of an open file.
pub(super) async fn read(
    mut file: tokio::fs::File,
    start: u64,
    len: u64,
) -> Result<ByteStream, StorageError> {
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let reader = tokio_util::io::ReaderStream::new(file.take(len));
    Ok(reader.map_err(StorageError::Io).boxed())
}

/// The files under `dir`, as paths relative to it; none if it is missing.
pub(super) async fn list(dir: PathBuf) -> Result<Vec<String>, StorageError> {
    blocking(move || list_files(&dir, &dir)).await
}

fn list_files(root: &Path, dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            out.extend(list_files(root, &entry.path())?);
        } else if kind.is_file() {
            let rel = entry.path();
            let rel = rel.strip_prefix(root).unwrap_or(&rel);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

/// Removes `dir` and everything in it; a missing one is no error.
pub(super) async fn remove_all(dir: PathBuf) -> Result<(), StorageError> {
    blocking(move || match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    })
    .await
}

/// Empties `dir` (which must exist), keeping the directory itself.
pub(super) async fn empty(dir: PathBuf) -> Result<(), StorageError> {
    blocking(move || {
        std::fs::remove_dir_all(&dir)?;
        std::fs::create_dir_all(&dir)?;
        Ok(())
    })
    .await
}

/// Runs file-system work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))?
}
