//! `--storage` values: a path, `file:///path`, or an S3 bucket URL.

use object_store::path::Path as Key;
use std::path::PathBuf;

use super::StorageError;

/// A parsed `--storage` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    /// A directory on this machine.
    Local(PathBuf),
    /// An S3 bucket; credentials come from the `AWS_*` environment, never
    /// from the URL.
    S3 {
        bucket: String,
        /// Key prefix without leading or trailing `/`; may be empty.
        prefix: String,
        /// A custom endpoint (MinIO, Ceph, moto…); path-style addressing.
        endpoint: Option<String>,
        region: Option<String>,
    },
}

impl StorageUrl {
    /// Parses a path, `file:///path`, or
    /// `s3://BUCKET[/prefix][?endpoint=URL&region=NAME]`.
    pub fn parse(value: &str) -> Result<StorageUrl, StorageError> {
        let bad = |m: String| StorageError::Url(m);
        let value = value.trim();
        if value.is_empty() {
            return Err(bad("empty".into()));
        }
        if !value.contains("://") {
            return Ok(StorageUrl::Local(value.into()));
        }
        let url = url::Url::parse(value).map_err(|e| bad(format!("{value}: {e}")))?;
        match url.scheme() {
            "file" => {
                if url.query().is_some() || url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("a file URL is file:///absolute/path".into()));
                }
                let path = url
                    .to_file_path()
                    .map_err(|_| bad("a file URL is file:///absolute/path".into()))?;
                Ok(StorageUrl::Local(path))
            }
            "s3" => parse_s3(&url),
            other => Err(bad(format!(
                "unknown scheme {other}: use a path, file:///path or s3://bucket"
            ))),
        }
    }
}

fn parse_s3(url: &url::Url) -> Result<StorageUrl, StorageError> {
    let bad = |m: &str| StorageError::Url(m.to_owned());
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "no credentials in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    }
    if url.port().is_some() {
        return Err(bad(
            "s3://BUCKET takes no port; give ?endpoint=http://host:port",
        ));
    }
    let bucket = url.host_str().unwrap_or_default().to_owned();
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.as_bytes()[0].is_ascii_alphanumeric();
    if !valid_bucket {
        return Err(bad(
            "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens",
        ));
    }
    let prefix = url.path().trim_matches('/').to_owned();
    if !prefix.is_empty() && Key::parse(&prefix).is_err() {
        return Err(bad("the prefix has an empty, `.` or `..` segment"));
    }
    let (mut endpoint, mut region) = (None, None);
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "endpoint" => {
                let e = url::Url::parse(&v)
                    .ok()
                    .filter(|e| matches!(e.scheme(), "http" | "https") && e.host().is_some())
                    .ok_or_else(|| bad("endpoint is an http:// or https:// URL"))?;
                endpoint = Some(e.as_str().trim_end_matches('/').to_owned());
            }
            "region" if !v.is_empty() => region = Some(v.into_owned()),
            "region" => return Err(bad("region is empty")),
            other => {
                return Err(StorageError::Url(format!(
                    "unknown parameter {other}: s3 URLs take endpoint and region"
                )))
            }
        }
    }
    Ok(StorageUrl::S3 {
        bucket,
        prefix,
        endpoint,
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str, endpoint: Option<&str>, region: Option<&str>) -> StorageUrl {
        StorageUrl::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: endpoint.map(Into::into),
            region: region.map(Into::into),
        }
    }

    #[test]
    fn parses_storage_urls() {
        let p = |s: &str| StorageUrl::parse(s).unwrap();
        assert_eq!(p("/var/videos"), StorageUrl::Local("/var/videos".into()));
        assert_eq!(p("videos"), StorageUrl::Local("videos".into()));
        assert_eq!(p("file:///srv/v"), StorageUrl::Local("/srv/v".into()));
        assert_eq!(p("s3://renders"), s3("renders", "", None, None));
        assert_eq!(
            p("s3://renders/a/b/?endpoint=http://127.0.0.1:9000/&region=eu-west-1"),
            s3(
                "renders",
                "a/b",
                Some("http://127.0.0.1:9000"),
                Some("eu-west-1")
            )
        );
    }

    #[test]
    fn bad_storage_urls_say_why() {
        let err = |s: &str| match StorageUrl::parse(s) {
            Err(StorageError::Url(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        assert!(err("").contains("empty"));
        assert!(err("gs://b").contains("unknown scheme gs"));
        assert!(err("s3://B").contains("bucket name"));
        assert!(err("s3://x").contains("bucket name"));
        assert!(err("s3://key:secret@bucket").contains("AWS_ACCESS_KEY_ID"));
        assert!(err("s3://bucket:9000").contains("endpoint"));
        assert!(err("s3://bucket?endpoint=ftp://h").contains("http://"));
        assert!(err("s3://bucket?endpoint=nonsense").contains("http://"));
        assert!(err("s3://bucket?region=").contains("region"));
        assert!(err("s3://bucket?acl=public").contains("unknown parameter acl"));
        assert!(err("s3://bucket/a//b").contains("segment"));
        assert!(err("file://host/x").contains("file:///"));
    }
}
