//! A project: the scene file and the files beside it (helper modules,
//! images, sounds, fonts, data), as a request names them. Each file is
//! inline UTF-8 text or a blob reference (`sha256:<64 hex>`) to bytes the
//! owner uploaded before. These are wire types and pure checks: no I/O,
//! so that every path rule is one table test.
//!
//! A path is relative, `/`-separated, without `..`, NUL, control
//! characters or backslashes; `.` and empty components are dropped, so
//! `a/./b` and `a//b` are both `a/b` (and a duplicate of it). Case is kept:
//! `A.png` and `a.png` are two files.
//!
//! A project of many files may name its blobs in a *manifest* instead: a
//! blob itself, the JSON object `{path: "sha256:<hex>"}` of those files,
//! uploaded once and named by its digest in each request. The request
//! then carries only the files that change between submissions (the scene
//! file, small text files), and the server checks the manifest once and
//! keeps it, as a build cache keeps a directory tree by its digest. The
//! job stores the digest, not the list.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::job_error::{ErrorCode, JobError};

/// The most files one project may have (`--max-project-files`).
pub const DEFAULT_MAX_FILES: usize = 2000;
/// The most bytes one project may hold, over all its files (`--max-project-mib`).
pub const DEFAULT_MAX_PROJECT_MIB: u64 = 200;
/// The most bytes one file of a project may hold (`--max-file-mib`).
pub const DEFAULT_MAX_FILE_MIB: u64 = 100;
/// The longest path accepted, in bytes; one component is at most 255.
pub const MAX_PATH_BYTES: usize = 1024;
const MAX_COMPONENT_BYTES: usize = 255;

/// A SHA-256 digest, written `sha256:<64 lowercase hex>` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a digest is written sha256: and 64 lowercase hex digits")]
pub struct InvalidDigest;

impl Digest {
    pub const PREFIX: &'static str = "sha256:";

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits, without the prefix: a blob's file name.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the bare 64 hex digits (a blob's file name): lowercase only.
    pub fn from_hex(hex: &str) -> Result<Digest, InvalidDigest> {
        fn nibble(b: u8) -> Result<u8, InvalidDigest> {
            match b {
                b'0'..=b'9' => Ok(b - b'0'),
                b'a'..=b'f' => Ok(b - b'a' + 10),
                _ => Err(InvalidDigest),
            }
        }
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return Err(InvalidDigest);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Ok(Digest(out))
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Digest, InvalidDigest> {
        Digest::from_hex(s.strip_prefix(Digest::PREFIX).ok_or(InvalidDigest)?)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // On the stack: a manifest writes one a file.
        let mut buf = [0u8; 64];
        for (pair, b) in buf.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX_DIGITS[usize::from(b >> 4)];
            pair[1] = HEX_DIGITS[usize::from(b & 15)];
        }
        f.write_str(Digest::PREFIX)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// One file of a project: its text, or the digest of an uploaded blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRef {
    Text(String),
    Blob(Digest),
}

impl FileRef {
    /// A value that starts with `sha256:` is a blob reference and must be
    /// a valid one; anything else is the file's text.
    pub fn parse(value: &str) -> Result<FileRef, InvalidDigest> {
        if value.starts_with(Digest::PREFIX) {
            return value.parse().map(FileRef::Blob);
        }
        Ok(FileRef::Text(value.to_owned()))
    }

    /// The digest of the file's bytes, whichever way it came.
    pub fn digest(&self) -> Digest {
        match self {
            FileRef::Text(text) => Digest::of(text.as_bytes()),
            FileRef::Blob(d) => *d,
        }
    }
}

impl Serialize for FileRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FileRef::Text(t) => s.serialize_str(t),
            FileRef::Blob(d) => s.collect_str(d),
        }
    }
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        FileRef::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A project as a job stores it: the scene file's path (its text is the
/// spec's `code`), the files the request carried, by normalised path, and
/// the manifest naming the others, if it used one. Blob bytes are never
/// here, only their digests.
///
/// A stored project keeps only its manifest's digest: its listing is
/// attached (`listed`) by whoever reads the manifest before using the
/// project, and every method that walks the files walks both, in path
/// order, as if the request had sent them all in `files`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// The scene file, relative to the project's root.
    pub main: String,
    /// The other files the request carried, by path.
    #[serde(default)]
    pub files: BTreeMap<String, FileRef>,
    /// The manifest that names the rest of the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Digest>,
    /// The manifest's files, once read; never stored.
    #[serde(skip)]
    pub listed: Option<Arc<Manifest>>,
}

impl Project {
    /// Whether every file is known: no manifest, or its listing attached.
    pub fn is_resolved(&self) -> bool {
        self.manifest.is_none() || self.listed.is_some()
    }

    /// Every file but the scene file, in path order: the request's and the
    /// manifest's (which never share a path).
    pub fn all(&self) -> impl Iterator<Item = (&str, &FileRef)> {
        let listed = self.listed.as_deref().map_or(&[][..], |m| &m.files[..]);
        let mut own = self.files.iter().map(|(p, f)| (p.as_str(), f)).peekable();
        let mut listed = listed.iter().map(|(p, f)| (p.as_str(), f)).peekable();
        std::iter::from_fn(move || match (own.peek(), listed.peek()) {
            (Some(a), Some(b)) if b.0 < a.0 => listed.next(),
            (Some(_), _) => own.next(),
            (None, _) => listed.next(),
        })
    }

    /// How many files besides the scene file.
    pub fn len(&self) -> usize {
        self.files.len() + self.listed.as_ref().map_or(0, |m| m.files.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The blobs the project refers to, with the first path of each.
    pub fn blobs(&self) -> impl Iterator<Item = (&str, Digest)> {
        self.all().filter_map(|(path, f)| match f {
            FileRef::Blob(d) => Some((path, *d)),
            FileRef::Text(_) => None,
        })
    }

    /// A digest of every file but the scene file (paths and contents):
    /// what the animation cache's profile and the result cache key add.
    /// The same files give the same digest, whether a manifest named them.
    pub fn files_digest(&self) -> [u8; 16] {
        let mut h = sha2::Sha256::new();
        for (path, f) in self.all() {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(f.digest().0);
        }
        let full: [u8; 32] = h.finalize().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// A manifest's files: blob references by normalised path, in path order,
/// checked by the same rules as a request's `files`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    files: Vec<(String, FileRef)>,
}

impl Manifest {
    /// The most bytes a manifest may hold: a listing of the most files,
    /// each of the longest path, with room for JSON's escapes.
    pub fn max_bytes(limits: &ProjectLimits) -> u64 {
        (limits.max_files as u64 + 1) * (MAX_PATH_BYTES as u64 + 128)
    }

    /// Reads the manifest blob `digest`'s bytes; each error names the
    /// manifest, and the file where one is at fault.
    pub fn parse(
        digest: &Digest,
        bytes: &[u8],
        limits: &ProjectLimits,
    ) -> Result<Manifest, ProjectError> {
        let invalid = |reason: String| ProjectError::InvalidManifest {
            digest: *digest,
            reason,
        };
        if bytes.len() as u64 > Manifest::max_bytes(limits) {
            return Err(invalid(format!(
                "it is {} bytes; a manifest of at most {} files holds at most {}",
                bytes.len(),
                limits.max_files,
                Manifest::max_bytes(limits)
            )));
        }
        let map: FileMap = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "it is not a JSON object from paths to \"sha256:<hex>\" ({e})"
            ))
        })?;
        let (files, _) = check_paths(&map, limits)?;
        let mut listed = Vec::with_capacity(files.len());
        for (path, file) in files {
            if let FileRef::Text(_) = file {
                return Err(invalid(format!(
                    "{path:?} is text; a manifest lists blobs (send text files in `files`)"
                )));
            }
            listed.push((path, file));
        }
        Ok(Manifest { files: listed })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn contains(&self, path: &str) -> bool {
        self.files
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .is_ok()
    }
}

/// Lowercase hex digits of `bytes`, without a `format!` a byte: a project
/// of many blobs asks this of each several times per submission.
pub fn hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(HEX_DIGITS[usize::from(b >> 4)] as char);
        hex.push(HEX_DIGITS[usize::from(b & 15)] as char);
    }
    hex
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The request's file map as sent: every entry in order, duplicates
/// included (a JSON object may repeat a key, which a map would hide).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileMap(pub Vec<(String, String)>);

impl Serialize for FileMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for FileMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FileMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object from relative paths to text or \"sha256:<hex>\"")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<FileMap, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(FileMap(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

impl utoipa::PartialSchema for FileMap {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::RefOr(
                ObjectBuilder::new().schema_type(Type::String).into(),
            )))
            .description(Some(
                "The project's files by relative path: the file's UTF-8 text, or `sha256:<64 hex>` for a blob uploaded with `PUT /v1/blobs/{digest}`",
            ))
            .into()
    }
}

impl utoipa::ToSchema for FileMap {}

/// How big a project may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectLimits {
    pub max_files: usize,
    pub max_bytes: u64,
    pub max_file_bytes: u64,
}

impl Default for ProjectLimits {
    fn default() -> Self {
        ProjectLimits {
            max_files: DEFAULT_MAX_FILES,
            max_bytes: DEFAULT_MAX_PROJECT_MIB * 1024 * 1024,
            max_file_bytes: DEFAULT_MAX_FILE_MIB * 1024 * 1024,
        }
    }
}

/// Why a project is refused; each names the file at fault.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProjectError {
    #[error("{file:?}: {reason}")]
    InvalidPath { file: String, reason: &'static str },
    #[error("{file:?} and {other:?} are the same path")]
    DuplicatePath { file: String, other: String },
    #[error("{file:?} is a file, and {other:?} puts a folder at that path")]
    FileAndFolder { file: String, other: String },
    #[error("the project has {count} files; at most {max} are allowed")]
    TooManyFiles { count: usize, max: usize },
    #[error("{file:?} is {bytes} bytes; a file may hold at most {max}")]
    FileTooLarge { file: String, bytes: u64, max: u64 },
    #[error("the project holds {bytes} bytes; at most {max} are allowed")]
    ProjectTooLarge { bytes: u64, max: u64 },
    #[error("{file:?}: {value:?} is not a blob reference (sha256: and 64 lowercase hex digits)")]
    InvalidDigest { file: String, value: String },
    #[error(
        "{file:?} refers to the blob {digest}, which was not uploaded (PUT /v1/blobs/{digest})"
    )]
    MissingBlob { file: String, digest: Digest },
    #[error("the manifest {digest} was not uploaded (PUT /v1/blobs/{digest})")]
    MissingManifest { digest: Digest },
    #[error("the manifest {digest} cannot be used: {reason}")]
    InvalidManifest { digest: Digest, reason: String },
    #[error("{0}")]
    Main(String),
}

impl ProjectError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ProjectError::InvalidPath { .. } | ProjectError::InvalidDigest { .. } => {
                ErrorCode::InvalidPath
            }
            ProjectError::DuplicatePath { .. } | ProjectError::FileAndFolder { .. } => {
                ErrorCode::DuplicatePath
            }
            ProjectError::TooManyFiles { .. } => ErrorCode::TooManyFiles,
            ProjectError::FileTooLarge { .. } => ErrorCode::FileTooLarge,
            ProjectError::ProjectTooLarge { .. } => ErrorCode::ProjectTooLarge,
            ProjectError::MissingBlob { .. } | ProjectError::MissingManifest { .. } => {
                ErrorCode::MissingBlob
            }
            ProjectError::InvalidManifest { .. } => ErrorCode::InvalidManifest,
            ProjectError::Main(_) => ErrorCode::InvalidRequest,
        }
    }

    /// The error as clients see it, with the file (and digest) named.
    pub fn to_error(&self) -> JobError {
        let e = JobError::new(self.code(), self.to_string());
        match self {
            ProjectError::InvalidPath { file, reason } => {
                e.with("file", file).with("reason", reason)
            }
            ProjectError::DuplicatePath { file, other }
            | ProjectError::FileAndFolder { file, other } => {
                e.with("file", file).with("other", other)
            }
            ProjectError::TooManyFiles { count, max } => e.with("count", count).with("max", max),
            ProjectError::FileTooLarge { file, bytes, max } => {
                e.with("file", file).with("bytes", bytes).with("max", max)
            }
            ProjectError::ProjectTooLarge { bytes, max } => e.with("bytes", bytes).with("max", max),
            ProjectError::InvalidDigest { file, .. } => {
                e.with("file", file).with("reason", "invalid digest")
            }
            ProjectError::MissingBlob { file, digest } => {
                e.with("file", file).with("digest", digest)
            }
            ProjectError::MissingManifest { digest } => {
                e.with("field", "manifest").with("digest", digest)
            }
            ProjectError::InvalidManifest { digest, .. } => {
                e.with("field", "manifest").with("digest", digest)
            }
            ProjectError::Main(_) => e.with("field", "main"),
        }
    }
}

/// The normalised form of a project path, or why it is refused. The
/// reason never repeats the path (the error names it).
pub fn normalize(path: &str) -> Result<String, &'static str> {
    if path.is_empty() {
        return Err("a path is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return Err("the path is longer than 1024 bytes");
    }
    if path.chars().any(|c| c == '\0') {
        return Err("the path has a NUL character");
    }
    if path.chars().any(char::is_control) {
        return Err("the path has a control character");
    }
    if path.contains('\\') {
        return Err("the path has a backslash; separate folders with /");
    }
    if path.starts_with('/') {
        return Err("the path is absolute; paths are relative to the project");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => continue,
            ".." => return Err("the path has a .. component"),
            p if p.len() > MAX_COMPONENT_BYTES => {
                return Err("a component of the path is longer than 255 bytes")
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("the path names no file");
    }
    Ok(parts.join("/"))
}

/// Checks a request's `files` and `main` (count, paths, duplicates,
/// inline sizes, digests' form), with the files of its `manifest` when it
/// named one (checked when it was read), before anything is looked up or
/// written, and returns the project with the scene file's text apart.
/// Blobs' sizes and existence are the blob store's to check.
pub fn check(
    files: &FileMap,
    main: &str,
    manifest: Option<(Digest, Arc<Manifest>)>,
    limits: &ProjectLimits,
) -> Result<(String, Project), ProjectError> {
    // First, so that a huge map is refused before any per-file work.
    let listed = manifest.as_ref().map_or(0, |(_, m)| m.len());
    if files.0.len() + listed > limits.max_files {
        return Err(ProjectError::TooManyFiles {
            count: files.0.len() + listed,
            max: limits.max_files,
        });
    }
    let main = normalize(main).map_err(|reason| ProjectError::InvalidPath {
        file: main.to_owned(),
        reason,
    })?;
    if !main.ends_with(".py") {
        return Err(ProjectError::Main(format!(
            "main ({main:?}) names the scene file, a .py file"
        )));
    }
    let (mut out, seen) = check_paths(files, limits)?;
    if let Some((_, m)) = &manifest {
        overlaps(&out, &seen, m)?;
    }
    let code = match out.remove(&main) {
        Some(FileRef::Text(code)) => code,
        Some(FileRef::Blob(_)) => {
            return Err(ProjectError::Main(format!(
                "the scene file {main:?} must be inline text, not a blob"
            )))
        }
        None if manifest.as_ref().is_some_and(|(_, m)| m.contains(&main)) => {
            return Err(ProjectError::Main(format!(
                "the scene file {main:?} must be inline text in `files`, not in the manifest"
            )))
        }
        None => {
            return Err(ProjectError::Main(format!(
                "main ({main:?}) is not one of the files"
            )))
        }
    };
    let (manifest, listed) = manifest.map_or((None, None), |(d, m)| (Some(d), Some(m)));
    let project = Project {
        main,
        files: out,
        manifest,
        listed,
    };
    Ok((code, project))
}

/// Files by normalised path, and the path each was sent as.
type Checked<'a> = (BTreeMap<String, FileRef>, BTreeMap<String, &'a str>);

/// The files of `map` by normalised path, each checked (path, duplicate,
/// digest's form, inline size), and the path each was sent as.
fn check_paths<'a>(map: &'a FileMap, limits: &ProjectLimits) -> Result<Checked<'a>, ProjectError> {
    if map.0.len() > limits.max_files {
        return Err(ProjectError::TooManyFiles {
            count: map.0.len(),
            max: limits.max_files,
        });
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut inline: u64 = 0;
    let mut out = BTreeMap::new();
    for (raw, value) in &map.0 {
        let path = normalize(raw).map_err(|reason| ProjectError::InvalidPath {
            file: raw.clone(),
            reason,
        })?;
        if let Some(other) = seen.insert(path.clone(), raw) {
            return Err(ProjectError::DuplicatePath {
                file: raw.clone(),
                other: other.to_owned(),
            });
        }
        let file = FileRef::parse(value).map_err(|_| ProjectError::InvalidDigest {
            file: raw.clone(),
            value: value.chars().take(80).collect(),
        })?;
        if let FileRef::Text(text) = &file {
            let bytes = text.len() as u64;
            if bytes > limits.max_file_bytes {
                return Err(ProjectError::FileTooLarge {
                    file: raw.clone(),
                    bytes,
                    max: limits.max_file_bytes,
                });
            }
            inline += bytes;
        }
        out.insert(path, file);
    }
    if inline > limits.max_bytes {
        return Err(ProjectError::ProjectTooLarge {
            bytes: inline,
            max: limits.max_bytes,
        });
    }
    // A file and a folder at one path: `a` and `a/b`. Sorted, a folder's
    // files follow the file of the same name, after `a` + '/' ... ; look
    // each path's parents up instead, which is exact.
    for path in out.keys() {
        if let Some(parent) = parents(path).find(|p| out.contains_key(*p)) {
            return Err(ProjectError::FileAndFolder {
                file: seen[parent].to_owned(),
                other: seen[path.as_str()].to_owned(),
            });
        }
    }
    Ok((out, seen))
}

/// A request's files against its manifest's: no path in both, and no file
/// of one where the other needs a folder.
fn overlaps(
    own: &BTreeMap<String, FileRef>,
    seen: &BTreeMap<String, &str>,
    manifest: &Manifest,
) -> Result<(), ProjectError> {
    for path in own.keys() {
        if manifest.contains(path) {
            return Err(ProjectError::DuplicatePath {
                file: seen[path.as_str()].to_owned(),
                other: format!("{path} (in the manifest)"),
            });
        }
        if let Some(parent) = parents(path).find(|p| manifest.contains(p)) {
            return Err(ProjectError::FileAndFolder {
                file: format!("{parent} (in the manifest)"),
                other: seen[path.as_str()].to_owned(),
            });
        }
    }
    if own.is_empty() {
        return Ok(());
    }
    for (path, _) in &manifest.files {
        if let Some(parent) = parents(path).find(|p| own.contains_key(*p)) {
            return Err(ProjectError::FileAndFolder {
                file: seen[parent].to_owned(),
                other: format!("{path} (in the manifest)"),
            });
        }
    }
    Ok(())
}

/// The folders a normalised path is in, outermost first: `a`, `a/b` for
/// `a/b/c`.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> FileMap {
        FileMap(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn paths_are_normalised_or_refused_with_a_reason() {
        let cases: [(&str, Result<&str, &str>); 17] = [
            ("a.py", Ok("a.py")),
            ("a/./b.png", Ok("a/b.png")),
            ("./a//b.png", Ok("a/b.png")),
            ("dir/", Ok("dir")),
            ("Photo.PNG", Ok("Photo.PNG")),
            ("..", Err("the path has a .. component")),
            ("../x", Err("the path has a .. component")),
            ("a/../../x", Err("the path has a .. component")),
            ("a/..", Err("the path has a .. component")),
            (
                "/etc/passwd",
                Err("the path is absolute; paths are relative to the project"),
            ),
            (
                "a\\b",
                Err("the path has a backslash; separate folders with /"),
            ),
            ("a\0b", Err("the path has a NUL character")),
            ("a\nb", Err("the path has a control character")),
            ("a\u{7f}", Err("the path has a control character")),
            ("", Err("a path is empty")),
            (".", Err("the path names no file")),
            ("./", Err("the path names no file")),
        ];
        for (path, want) in cases {
            assert_eq!(
                normalize(path).as_ref().map(|s| s.as_str()).map_err(|e| *e),
                want,
                "{path:?}"
            );
        }
        assert!(normalize(&"a".repeat(256)).is_err());
        assert!(normalize(&"a/".repeat(600)).is_err());
    }

    #[test]
    fn projects_are_checked_file_by_file() {
        let limits = ProjectLimits::default();
        let ok = check(
            &map(&[("scene.py", "x"), ("lib/h.py", "y"), ("a.png", D)]),
            "./scene.py",
            None,
            &limits,
        )
        .unwrap();
        assert_eq!(ok.0, "x");
        assert_eq!(ok.1.main, "scene.py");
        assert_eq!(ok.1.files.len(), 2);
        assert_eq!(ok.1.blobs().count(), 1);

        let code = |files: &[(&str, &str)], main: &str| {
            check(&map(files), main, None, &limits).unwrap_err().code()
        };
        assert_eq!(code(&[("../x", "a")], "s.py"), ErrorCode::InvalidPath);
        assert_eq!(code(&[("/abs", "a")], "s.py"), ErrorCode::InvalidPath);
        assert_eq!(code(&[("s.py", "a")], "../s.py"), ErrorCode::InvalidPath);
        assert_eq!(
            code(&[("a/b", "1"), ("a/./b", "2")], "s.py"),
            ErrorCode::DuplicatePath
        );
        assert_eq!(
            code(&[("a/b", "1"), ("a/b", "2")], "s.py"),
            ErrorCode::DuplicatePath
        );
        assert_eq!(
            code(&[("a", "1"), ("a/b", "2")], "s.py"),
            ErrorCode::DuplicatePath
        );
        assert_eq!(code(&[("x", "sha256:zz")], "s.py"), ErrorCode::InvalidPath);
        assert_eq!(code(&[("x", "1")], "s.py"), ErrorCode::InvalidRequest);
        assert_eq!(code(&[("s.py", D)], "s.py"), ErrorCode::InvalidRequest);
        assert_eq!(code(&[("s.txt", "x")], "s.txt"), ErrorCode::InvalidRequest);
        // Case is kept: two files.
        assert!(check(
            &map(&[("A.png", "1"), ("a.png", "2"), ("s.py", "x")]),
            "s.py",
            None,
            &limits
        )
        .is_ok());

        let small = ProjectLimits {
            max_files: 2,
            max_bytes: 10,
            max_file_bytes: 6,
        };
        let err = check(
            &map(&[("a", "1"), ("b", "2"), ("c", "3")]),
            "a",
            None,
            &small,
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::TooManyFiles);
        let err = check(&map(&[("s.py", "1234567")]), "s.py", None, &small).unwrap_err();
        assert_eq!(err.code(), ErrorCode::FileTooLarge);
        assert_eq!(err.to_error().details["file"], "s.py");
        let err = check(
            &map(&[("s.py", "123456"), ("b", "123456")]),
            "s.py",
            None,
            &small,
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ProjectTooLarge);
    }

    #[test]
    fn a_manifest_lists_blobs_by_the_same_rules_and_joins_the_requests_files() {
        let limits = ProjectLimits::default();
        let d = Digest::of(b"m");
        let b = |n: u8| format!("sha256:{}", hex(&[n; 32]));
        let bytes = |entries: &[(&str, String)]| {
            serde_json::to_vec(&map(&entries
                .iter()
                .map(|(p, v)| (*p, v.as_str()))
                .collect::<Vec<_>>()))
            .unwrap()
        };
        let manifest = Manifest::parse(
            &d,
            &bytes(&[("img/b.png", b(2)), ("./img/a.png", b(1)), ("z.wav", b(3))]),
            &limits,
        )
        .unwrap();
        assert_eq!(manifest.len(), 3);
        let manifest = Arc::new(manifest);
        let (code, project) = check(
            &map(&[("scene.py", "x"), ("lib.py", "y")]),
            "scene.py",
            Some((d, Arc::clone(&manifest))),
            &limits,
        )
        .unwrap();
        assert_eq!(code, "x");
        assert_eq!(project.manifest, Some(d));
        assert_eq!(project.files.len(), 1, "only the request's own files");
        let all: Vec<&str> = project.all().map(|(p, _)| p).collect();
        assert_eq!(all, ["img/a.png", "img/b.png", "lib.py", "z.wav"]);
        assert_eq!(project.blobs().count(), 3);
        // The same files sent inline give the same digest.
        let inline = check(
            &map(&[
                ("scene.py", "x"),
                ("lib.py", "y"),
                ("img/a.png", &b(1)),
                ("img/b.png", &b(2)),
                ("z.wav", &b(3)),
            ]),
            "scene.py",
            None,
            &limits,
        )
        .unwrap()
        .1;
        assert_eq!(inline.files_digest(), project.files_digest());
        // Stored, the project keeps the manifest's digest, not its files.
        let stored: Project =
            serde_json::from_str(&serde_json::to_string(&project).unwrap()).unwrap();
        assert_eq!(stored.manifest, Some(d));
        assert!(!stored.is_resolved());
        assert_eq!(stored.len(), 1);

        let with = |files: &[(&str, &str)], main: &str| {
            check(&map(files), main, Some((d, Arc::clone(&manifest))), &limits).unwrap_err()
        };
        let err = with(&[("s.py", "x"), ("img//a.png", "t")], "s.py");
        assert_eq!(err.code(), ErrorCode::DuplicatePath);
        assert_eq!(err.to_error().details["file"], "img//a.png");
        assert_eq!(
            with(&[("s.py", "x"), ("img", "t")], "s.py").code(),
            ErrorCode::DuplicatePath,
            "a file where the manifest needs a folder"
        );
        assert_eq!(
            with(&[("s.py", "x"), ("z.wav/x", "t")], "s.py").code(),
            ErrorCode::DuplicatePath,
            "a folder where the manifest has a file"
        );
        assert_eq!(
            with(&[("s.py", "x")], "z.wav").code(),
            ErrorCode::InvalidRequest
        );
        let few = ProjectLimits {
            max_files: 3,
            ..limits
        };
        assert_eq!(
            check(&map(&[("s.py", "x")]), "s.py", Some((d, manifest)), &few)
                .unwrap_err()
                .code(),
            ErrorCode::TooManyFiles,
            "the manifest's files count"
        );

        // What a manifest may not be, each named.
        let refused =
            |bytes: &[u8], limits: &ProjectLimits| Manifest::parse(&d, bytes, limits).unwrap_err();
        for bad in [&b"[]"[..], b"{\"a\": 1}", b"not json", b""] {
            let err = refused(bad, &limits);
            assert_eq!(err.code(), ErrorCode::InvalidManifest, "{bad:?}");
            assert_eq!(err.to_error().details["digest"], d.to_string());
        }
        let text = refused(&bytes(&[("a.py", "print(1)".into())]), &limits);
        assert_eq!(text.code(), ErrorCode::InvalidManifest);
        assert!(text.to_string().contains("a.py"), "{text}");
        for (path, code) in [
            ("../x", ErrorCode::InvalidPath),
            ("/etc/passwd", ErrorCode::InvalidPath),
            ("a\u{0}b", ErrorCode::InvalidPath),
        ] {
            assert_eq!(refused(&bytes(&[(path, b(1))]), &limits).code(), code);
        }
        assert_eq!(
            refused(&bytes(&[("a", b(1)), ("./a", b(2))]), &limits).code(),
            ErrorCode::DuplicatePath
        );
        assert_eq!(
            refused(&bytes(&[("a", b(1)), ("a/b", b(2))]), &limits).code(),
            ErrorCode::DuplicatePath
        );
        assert_eq!(
            refused(&bytes(&[("a", "sha256:00".into())]), &limits).code(),
            ErrorCode::InvalidPath
        );
        let four: Vec<(String, String)> = (0..4).map(|i| (format!("f{i}"), b(i))).collect();
        let four: Vec<(&str, String)> = four.iter().map(|(p, v)| (p.as_str(), v.clone())).collect();
        assert_eq!(refused(&bytes(&four), &few).code(), ErrorCode::TooManyFiles);
        let huge = vec![b' '; Manifest::max_bytes(&few) as usize + 1];
        assert_eq!(refused(&huge, &few).code(), ErrorCode::InvalidManifest);
    }

    #[test]
    fn digests_and_file_refs_round_trip() {
        let d: Digest = D.parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string(), D);
        assert!("sha256:E3B0".parse::<Digest>().is_err());
        assert!(D.to_uppercase().parse::<Digest>().is_err());
        assert!(format!("sha256:{}", "g".repeat(64))
            .parse::<Digest>()
            .is_err());
        assert!(format!("sha256:{}é", "0".repeat(62))
            .parse::<Digest>()
            .is_err());
        assert_eq!(FileRef::parse(D).unwrap(), FileRef::Blob(d));
        assert_eq!(
            FileRef::parse("print(1)").unwrap(),
            FileRef::Text("print(1)".into())
        );
        let json = serde_json::to_string(&map(&[("a", "1"), ("a", "2")])).unwrap();
        let back: FileMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0.len(), 2, "duplicate keys are kept for the check");
    }
}
