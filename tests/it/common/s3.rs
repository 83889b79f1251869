//! A real S3-compatible server for storage tests: moto's server from the
//! `tools` venv (`scripts/setup.sh`), on 127.0.0.1 and a free port, with one
//! bucket. It is killed when the value is dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::ObjectStore;

/// Any credentials do for moto; real ones never appear in tests.
pub const ACCESS_KEY: &str = "manimd-test";
pub const SECRET_KEY: &str = "manimd-test-secret";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    /// Starts moto and creates `bucket`. A port taken between choosing
    /// and binding makes moto exit; then another port is tried.
    pub async fn start(bucket: &str) -> S3Server {
        let runtime = manimd::config::Config::for_tests("/").runtime_dir;
        let moto = runtime.join("venv/tools/bin/moto_server");
        assert!(
            moto.exists(),
            "{} is missing: run scripts/setup.sh",
            moto.display()
        );
        let client = reqwest::Client::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let mut child = Command::new(&moto)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts");
            let endpoint = format!("http://127.0.0.1:{port}");
            for _ in 0..300 {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                // Path-style bucket creation; moto does not check signatures.
                let created = client.put(format!("{endpoint}/{bucket}")).send().await;
                if created.is_ok_and(|r| r.status().is_success()) {
                    return S3Server {
                        child,
                        endpoint,
                        bucket: bucket.to_owned(),
                    };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not answer");
    }

    /// The `--storage` value for this bucket under `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={}&region={REGION}",
            self.bucket, self.endpoint
        )
    }

    /// The environment a server process needs to reach the bucket.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ]
    }

    /// A client of the bucket, independent of the server under test.
    pub fn store(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(REGION)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap()
    }

    /// Every key under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = Key::from(prefix);
        let mut keys: Vec<String> = self
            .store()
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    pub async fn get(&self, key: &str) -> Bytes {
        let got = self.store().get(&Key::from(key)).await;
        got.unwrap_or_else(|e| panic!("{key}: {e}"))
            .bytes()
            .await
            .unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
