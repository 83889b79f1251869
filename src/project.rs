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

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

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
        write!(f, "{}{}", Digest::PREFIX, self.hex())
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
/// spec's `code`) and every other file, by normalised path. Blob bytes
/// are never here, only their digests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// The scene file, relative to the project's root.
    pub main: String,
    /// The other files, by path.
    #[serde(default)]
    pub files: BTreeMap<String, FileRef>,
}

impl Project {
    /// The blobs the project refers to, with the first path of each.
    pub fn blobs(&self) -> impl Iterator<Item = (&str, Digest)> {
        self.files.iter().filter_map(|(path, f)| match f {
            FileRef::Blob(d) => Some((path.as_str(), *d)),
            FileRef::Text(_) => None,
        })
    }

    /// A digest of every file but the scene file (paths and contents):
    /// what the animation cache's profile and the result cache key add.
    pub fn files_digest(&self) -> [u8; 16] {
        let mut h = sha2::Sha256::new();
        for (path, f) in &self.files {
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

/// Lowercase hex digits of `bytes`, without a `format!` a byte: a project
/// of many blobs asks this of each several times per submission.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(DIGITS[usize::from(b >> 4)] as char);
        hex.push(DIGITS[usize::from(b & 15)] as char);
    }
    hex
}

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
            ProjectError::MissingBlob { .. } => ErrorCode::MissingBlob,
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
/// inline sizes, digests' form) before anything is looked up or written,
/// and returns the project with the scene file's text apart. Blobs' sizes
/// and existence are the blob store's to check.
pub fn check(
    files: &FileMap,
    main: &str,
    limits: &ProjectLimits,
) -> Result<(String, Project), ProjectError> {
    // First, so that a huge map is refused before any per-file work.
    if files.0.len() > limits.max_files {
        return Err(ProjectError::TooManyFiles {
            count: files.0.len(),
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
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut inline: u64 = 0;
    let mut out = BTreeMap::new();
    for (raw, value) in &files.0 {
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
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let parent = &path[..at + i];
            if out.contains_key(parent) {
                return Err(ProjectError::FileAndFolder {
                    file: seen[parent].to_owned(),
                    other: seen[path.as_str()].to_owned(),
                });
            }
            at += i + 1;
        }
    }
    let code = match out.remove(&main) {
        Some(FileRef::Text(code)) => code,
        Some(FileRef::Blob(_)) => {
            return Err(ProjectError::Main(format!(
                "the scene file {main:?} must be inline text, not a blob"
            )))
        }
        None => {
            return Err(ProjectError::Main(format!(
                "main ({main:?}) is not one of the files"
            )))
        }
    };
    Ok((code, Project { main, files: out }))
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
            &limits,
        )
        .unwrap();
        assert_eq!(ok.0, "x");
        assert_eq!(ok.1.main, "scene.py");
        assert_eq!(ok.1.files.len(), 2);
        assert_eq!(ok.1.blobs().count(), 1);

        let code = |files: &[(&str, &str)], main: &str| {
            check(&map(files), main, &limits).unwrap_err().code()
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
            &limits
        )
        .is_ok());

        let small = ProjectLimits {
            max_files: 2,
            max_bytes: 10,
            max_file_bytes: 6,
        };
        let err = check(&map(&[("a", "1"), ("b", "2"), ("c", "3")]), "a", &small).unwrap_err();
        assert_eq!(err.code(), ErrorCode::TooManyFiles);
        let err = check(&map(&[("s.py", "1234567")]), "s.py", &small).unwrap_err();
        assert_eq!(err.code(), ErrorCode::FileTooLarge);
        assert_eq!(err.to_error().details["file"], "s.py");
        let err = check(&map(&[("s.py", "123456"), ("b", "123456")]), "s.py", &small).unwrap_err();
        assert_eq!(err.code(), ErrorCode::ProjectTooLarge);
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
