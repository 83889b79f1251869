//! Projects: a scene file with helper modules, images, an SVG, a CSV, a
//! sound and a font, sent as inline files and uploaded blobs, rendered in
//! both engines; hostile projects refused with their typed errors; the
//! CLI's folder upload sending only what the server lacks.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::common::{self, server::TestServer};
use manimd::server::ServeOptions;

fn opts() -> ServeOptions {
    ServeOptions {
        workers: 1,
        warm_pool: 0,
        ..ServeOptions::default()
    }
}

/// A server that takes these API keys.
fn keyed(keys: &[&str], opts: ServeOptions) -> ServeOptions {
    ServeOptions {
        api_keys: keys
            .iter()
            .map(|k| manimd::secret::Secret::new(*k).unwrap())
            .collect(),
        ..opts
    }
}

fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A file made by ffmpeg on the host (a test's own fixture, trusted).
async fn made(args: &[&str], name: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    let mut all: Vec<&OsStr> = ["-v", "error", "-f", "lavfi", "-i"]
        .iter()
        .map(OsStr::new)
        .collect();
    all.extend(args.iter().map(OsStr::new));
    all.push(out.as_os_str());
    let o = manimd::process::run_tool("ffmpeg", &all, dir.path(), &[])
        .await
        .expect("ffmpeg runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

async fn png() -> Vec<u8> {
    made(&["color=c=red:s=32x32", "-frames:v", "1"], "photo.png").await
}

async fn wav() -> Vec<u8> {
    made(&["sine=frequency=440:duration=0.5"], "click.wav").await
}

/// A font that no system font directory holds (matplotlib's Computer
/// Modern in the ManimGL venv): found by Pango only when registered.
fn font() -> Vec<u8> {
    let runtime = std::env::var("MANIMD_RUNTIME").unwrap_or_else(|_| "/opt/manimd".into());
    let path = Path::new(&runtime).join(
        "venv/manimgl-1.7.2/lib/python3.11/site-packages/matplotlib/mpl-data/fonts/ttf/cmr10.ttf",
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const LOGO: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="blue"/></svg>"#;

async fn put(
    s: &TestServer,
    key: Option<&str>,
    digest: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let mut r = s
        .client
        .put(format!("{}/v1/blobs/{digest}", s.url))
        .body(bytes);
    if let Some(key) = key {
        r = r.bearer_auth(key);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post(s: &TestServer, key: Option<&str>, path: &str, body: &Value) -> (StatusCode, Value) {
    let mut r = s.client.post(format!("{}{path}", s.url)).json(body);
    if let Some(key) = key {
        r = r.bearer_auth(key);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Uploads `blobs` (after asking which are missing) and returns their digests.
async fn upload(s: &TestServer, blobs: Vec<Vec<u8>>) -> Vec<String> {
    let digests: Vec<String> = blobs.iter().map(|b| digest(b)).collect();
    let (status, body) = post(s, None, "/v1/blobs/missing", &json!({ "digests": digests })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["missing"].as_array().unwrap().len(), digests.len());
    for (bytes, d) in blobs.into_iter().zip(&digests) {
        let (status, body) = put(s, None, d, bytes.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // Sent again: known, not stored twice.
        let (status, body) = put(s, None, d, bytes).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["created"], false);
    }
    let (_, body) = post(s, None, "/v1/blobs/missing", &json!({ "digests": digests })).await;
    assert_eq!(body["missing"], json!([]));
    digests
}

async fn video_of(s: &TestServer, id: &str) -> PathBuf {
    let bytes = s.bytes(&format!("/v1/renders/{id}/video")).await;
    let path = std::env::temp_dir().join(format!("manimd-project-{id}.mp4"));
    std::fs::write(&path, &bytes).unwrap();
    path
}

const CE_SCENE: &str = r##"from manim import *
import os
import numpy as np
import manimpango
from helpers import make_dot, LABEL

class Project(Scene):
    def construct(self):
        assert os.getcwd() == "/project", os.getcwd()
        assert __file__ == "/project/scene.py", __file__
        # Read-only: the sandbox cannot change its project.
        for attempt in (lambda: open("new.txt", "w"), lambda: os.symlink("/etc/passwd", "link"),
                        lambda: open("helpers.py", "a")):
            try:
                attempt()
            except OSError:
                pass
            else:
                raise AssertionError("the project is writable")
        # The project's manim.cfg is read; its video_dir is not.
        assert config.background_color.to_hex().lower() == "#123456", config.background_color
        assert not str(config._d["video_dir"]).startswith("/elsewhere"), config._d["video_dir"]
        assert "cmr10" in manimpango.list_fonts(), "the project's font is not registered"
        data = np.loadtxt("data/points.csv", delimiter=",")
        assert data.shape == (3, 2), data.shape
        img = ImageMobject("photo.png").scale(2)
        logo = SVGMobject("logo.svg").to_edge(LEFT)
        label = Text(LABEL, font="cmr10").to_edge(DOWN)
        self.add_sound("click.wav")
        self.play(FadeIn(img), Create(logo), Write(label), run_time=0.5)
        self.add(make_dot(data))
        self.wait(0.5)
"##;

const HELPERS: &str = "from manim import *\n\nLABEL = \"projects\"\n\ndef make_dot(data):\n    return VGroup(*[Dot([x, y, 0]) for x, y in data])\n";

const CFG: &str = "[CLI]\nbackground_color = #123456\nvideo_dir = /elsewhere/videos\n";

#[tokio::test]
async fn a_project_renders_with_helpers_assets_sound_and_font_in_manim_community() {
    let s = TestServer::start(opts()).await;
    let blobs = upload(&s, vec![png().await, wav().await, font()]).await;
    let body = json!({
        "main": "scene.py",
        "files": {
            "scene.py": CE_SCENE,
            "helpers.py": HELPERS,
            "manim.cfg": CFG,
            "data/points.csv": "0,0\n1,1\n2,0\n",
            "logo.svg": LOGO,
            "photo.png": blobs[0],
            "click.wav": blobs[1],
            "fonts/cmr10.ttf": blobs[2],
        },
    });
    let id = s.submit(body.clone()).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let video = video_of(&s, &id).await;
    let (codec, secs) = common::probe_audio(&video)
        .await
        .expect("add_sound gives the video a sound track");
    assert_eq!(codec, "aac");
    assert!(secs > 0.4, "{secs} s of sound");
    assert!(common::probe(&video).await.frames > 0);
    let _ = std::fs::remove_file(&video);

    // The same project again is the cached result; another asset is not.
    let again = s.submit(body.clone()).await;
    let job = s.wait_for(&again, None).await;
    assert_eq!(job["result"]["cache_hit"], true, "{job}");
    let mut edited = body.clone();
    edited["files"]["data/points.csv"] = json!("0,0\n1,1\n2,1\n");
    let other = s.submit(edited).await;
    let job = s.wait_for(&other, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_ne!(job["result"]["cache_hit"], true, "{job}");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn a_3b1b_style_project_renders_in_manimgl() {
    let s = TestServer::start(opts()).await;
    let blobs = upload(&s, vec![png().await, font()]).await;
    let scene = r#"from manim_imports_ext import *
import os
import numpy as np
import manimpango

class Project(Scene):
    def construct(self):
        assert os.getcwd() == "/project"
        assert "cmr10" in manimpango.list_fonts()
        data = np.loadtxt("data/points.csv", delimiter=",")
        photo = ImageMobject("photo")   # images/raster, from custom_config.yml
        logo = SVGMobject("logo")       # images/vector
        text = Text("projects", font="cmr10")
        self.play(FadeIn(photo), ShowCreation(logo), badge().animate.shift(UP), run_time=0.5)
        self.add(text, *[Dot([x, y, 0]) for x, y in data])
        self.wait(0.3)
"#;
    let config = "directories:\n  base: \"/Users/someone/Dropbox/3b1b/\"\n  subdirs:\n    output: \"/elsewhere\"\n    raster_images: \"images/raster\"\n    vector_images: \"images/vector\"\n";
    let body = json!({
        "main": "_2026/intro/scene.py",
        "files": {
            "_2026/intro/scene.py": scene,
            "manim_imports_ext.py": "from manimlib import *\nfrom custom.shapes import *\n",
            "custom/__init__.py": "",
            "custom/shapes.py": "from manimlib import *\n\ndef badge():\n    return Square().set_fill(BLUE, 0.5)\n",
            "custom_config.yml": config,
            "data/points.csv": "0,0\n1,1\n",
            "images/raster/photo.png": blobs[0],
            "images/vector/logo.svg": LOGO,
            "fonts/cmr10.ttf": blobs[1],
        },
    });
    let id = s.submit(body).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["engine"], "manimgl");
    let video = video_of(&s, &id).await;
    assert!(common::probe(&video).await.frames > 0);
    let _ = std::fs::remove_file(&video);
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn an_error_in_a_helper_module_names_its_file_and_line() {
    let s = TestServer::start(opts()).await;
    let scene = "from manim import *\nfrom helpers import broken\n\nclass A(Scene):\n    def construct(self):\n        broken()\n";
    let helpers = "from manim import *\n\ndef broken():\n    return 1 / 0\n";
    let id = s
        .submit(json!({"main": "scene.py", "files": {"scene.py": scene, "helpers.py": helpers}}))
        .await;
    let job = s.wait_for(&id, None).await;
    let error = &job["error"];
    assert_eq!(error["code"], "scene-error", "{job}");
    assert_eq!(error["file"], "helpers.py", "{error}");
    assert_eq!(error["line"], 4, "{error}");
    let files: Vec<&str> = error["traceback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["scene.py", "helpers.py"], "{error}");

    // A helper that does not parse: a syntax error with its own line.
    let id = s
        .submit(json!({"main": "scene.py", "files": {"scene.py": scene, "helpers.py": "def broken(:\n"}}))
        .await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["error"]["code"], "syntax-error", "{job}");
    assert_eq!(job["error"]["file"], "helpers.py", "{job}");
    assert_eq!(job["error"]["line"], 1, "{job}");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn hostile_projects_get_typed_errors_and_leave_nothing_behind() {
    let keys = ["key-a", "key-b"];
    let s = TestServer::start(keyed(
        &keys,
        ServeOptions {
            max_body_bytes: 32 << 20,
            blob_quota_mib: 1,
            ..opts()
        },
    ))
    .await;
    let a = Some(keys[0]);
    let b = Some(keys[1]);
    let scene = "from manim import *\n\nclass A(Scene):\n    def construct(self):\n        self.wait(0.1)\n";
    let refused = |files: Value| json!({"main": "scene.py", "files": files});
    let with = |path: &str, value: &str| {
        let mut files = serde_json::Map::new();
        files.insert("scene.py".into(), json!(scene));
        files.insert(path.into(), json!(value));
        refused(Value::Object(files))
    };
    for (body, status, code, file) in [
        (with("../x.py", "x"), 400, "invalid-path", "../x.py"),
        (with("/etc/passwd", "x"), 400, "invalid-path", "/etc/passwd"),
        (with("a/../../x", "x"), 400, "invalid-path", "a/../../x"),
        (with("a\\b", "x"), 400, "invalid-path", "a\\b"),
        (with("a\u{0}b", "x"), 400, "invalid-path", "a\u{0}b"),
        (with("a\nb", "x"), 400, "invalid-path", "a\nb"),
        (with("x.png", "sha256:00"), 400, "invalid-path", "x.png"),
    ] {
        let (got, err) = post(&s, a, "/v1/renders", &body).await;
        assert_eq!(got.as_u16(), status, "{body}: {err}");
        assert_eq!(err["error"]["code"], code, "{err}");
        assert_eq!(err["error"]["file"], file, "{err}");
    }
    // The same path twice after normalisation (either may be named first).
    let (got, err) = post(&s, a, "/v1/renders", &with("./scene.py", "x")).await;
    assert_eq!(got.as_u16(), 400, "{err}");
    assert_eq!(err["error"]["code"], "duplicate-path", "{err}");
    assert!(err["error"]["other"].is_string(), "{err}");
    // `code` and `files` together, and `main` not among the files.
    let (got, err) = post(
        &s,
        a,
        "/v1/renders",
        &json!({"code": scene, "files": {"scene.py": scene}, "main": "scene.py"}),
    )
    .await;
    assert_eq!(
        (got.as_u16(), err["error"]["field"].as_str()),
        (400, Some("code")),
        "{err}"
    );
    let (got, err) = post(&s, a, "/v1/renders", &refused(json!({"other.py": scene}))).await;
    assert_eq!(
        (got.as_u16(), err["error"]["field"].as_str()),
        (400, Some("main")),
        "{err}"
    );

    // A digest that does not match its bytes is refused and not kept.
    let bytes = b"the real bytes".to_vec();
    let wrong = digest(b"other bytes");
    let (got, err) = put(&s, a, &wrong, bytes.clone()).await;
    assert_eq!(got.as_u16(), 400, "{err}");
    assert_eq!(err["error"]["code"], "digest-mismatch", "{err}");
    let (got, _) = put(&s, a, "sha256:nothex", bytes.clone()).await;
    assert_eq!(got.as_u16(), 400);
    let (_, body) = post(&s, a, "/v1/blobs/missing", &json!({"digests": [wrong]})).await;
    assert_eq!(body["missing"], json!([wrong]));

    // Another key's blob is missing for this key.
    let mine = digest(&bytes);
    assert_eq!(
        put(&s, a, &mine, bytes.clone()).await.0,
        StatusCode::CREATED
    );
    let (got, err) = post(&s, b, "/v1/renders", &with("data.bin", &mine)).await;
    assert_eq!(got.as_u16(), 422, "{err}");
    assert_eq!(err["error"]["code"], "missing-blob");
    assert_eq!(err["error"]["digest"], mine.as_str());
    assert_eq!(err["error"]["file"], "data.bin");
    let (_, body) = post(&s, b, "/v1/blobs/missing", &json!({"digests": [mine]})).await;
    assert_eq!(body["missing"], json!([mine]));

    // Past the key's quota (1 MiB here).
    let big = vec![7u8; 2 << 20];
    let (got, err) = put(&s, a, &digest(&big), big).await;
    assert_eq!(got.as_u16(), 413, "{err}");
    assert_eq!(err["error"]["code"], "blob-quota-exceeded");

    // 100,000 files: refused at once, before anything is looked up or written.
    let mut files = serde_json::Map::new();
    files.insert("scene.py".into(), json!(scene));
    for i in 0..100_000 {
        files.insert(format!("f/{i}.txt"), json!("x"));
    }
    let started = Instant::now();
    let (got, err) = post(&s, a, "/v1/renders", &refused(Value::Object(files))).await;
    assert_eq!(got.as_u16(), 413, "{err}");
    assert_eq!(err["error"]["code"], "too-many-files");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Nothing was queued, nothing is left: no area, no project, no upload.
    let list: Value = s
        .client
        .get(format!("{}/v1/renders", s.url))
        .bearer_auth(keys[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["renders"], json!([]), "{list}");
    let blobs = s.config.data_dir.join("blobs");
    let stray: Vec<_> = walk(&blobs)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".upload-")
        })
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    assert_eq!(walk(&blobs).len(), 1, "only the one good upload");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
    let areas = s.config.sandbox_config().areas_dir;
    let left: Vec<_> = std::fs::read_dir(&areas)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().ends_with(".project")),
        "{left:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn submit_uploads_only_the_blobs_the_server_lacks_and_render_lays_the_folder_out() {
    let s = TestServer::start(opts()).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("proj");
    std::fs::create_dir_all(root.join("media/videos")).unwrap();
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(
        root.join("scene.py"),
        "from manim import *\nfrom helpers import SIDE\n\nclass A(Scene):\n    def construct(self):\n        self.add(ImageMobject(\"assets/photo.png\"), Square(SIDE))\n        self.play(FadeIn(Circle()), run_time=0.3)\n",
    )
    .unwrap();
    std::fs::write(root.join("helpers.py"), "SIDE = 1.5\n").unwrap();
    std::fs::write(root.join("assets/photo.png"), png().await).unwrap();
    std::fs::write(root.join("media/videos/old.bin"), vec![0u8; 4096]).unwrap();
    std::fs::write(root.join("big.log"), vec![b'x'; 100_000]).unwrap();
    std::fs::write(root.join(".manimdignore"), "*.log\n").unwrap();
    let scene = root.join("scene.py");
    let (scene_arg, cwd, url) = (
        scene.to_str().unwrap().to_owned(),
        dir.path().to_owned(),
        s.url.clone(),
    );
    let submit = move || {
        let (scene_arg, cwd, url) = (scene_arg.clone(), cwd.clone(), url.clone());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
                .args(["submit", &scene_arg, "--server", &url, "--quiet"])
                .current_dir(cwd)
                .output()
                .await
                .expect("manimd runs")
        }
    };
    let first = submit().await;
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(first.status.success(), "{err}");
    assert!(err.contains("uploaded assets/photo.png"), "{err}");
    // The photo, and the manifest that names it.
    assert!(err.contains("uploaded manifest (1 file)"), "{err}");
    assert!(err.contains("2 uploaded"), "{err}");
    assert!(
        !err.contains("old.bin") && !err.contains("big.log"),
        "{err}"
    );
    let second = submit().await;
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success(), "{err}");
    assert!(err.contains("0 uploaded"), "{err}");
    assert!(!err.contains("uploaded assets/photo.png"), "{err}");

    // `manimd render` lays the same folder out from the user's own files.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_manimd"))
        .args(["render", scene.to_str().unwrap(), "--quiet", "--data-dir"])
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .output()
        .expect("manimd runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn a_project_previews_and_renders_through_the_replaced_systems_call() {
    let s = TestServer::start(opts()).await;
    let scene = "from manim import *\nfrom helpers import shape\n\nclass A(Scene):\n    def construct(self):\n        self.play(Create(shape()), run_time=0.3)\n";
    let files = json!({"scene.py": scene, "helpers.py": "from manim import *\n\ndef shape():\n    return Square()\n"});
    let (status, body) = post(
        &s,
        None,
        "/v1/previews",
        &json!({"main": "scene.py", "files": files, "kind": "storyboard"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["frames"].as_array().unwrap().len(), 1, "{body}");
    let r = s
        .client
        .post(format!("{}/render", s.url))
        .json(&json!({"main": "scene.py", "files": files}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.bytes().await.unwrap().is_empty());
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn a_projects_font_is_the_one_text_is_drawn_in() {
    let s = TestServer::start(opts()).await;
    let font = upload(&s, vec![font()]).await.remove(0);
    let scene = "from manim import *\n\nclass A(Scene):\n    def construct(self):\n        self.add(Text(\"Agq 123\", font=\"cmr10\").scale(2))\n";
    let still = |files: Value| json!({"main": "scene.py", "files": files, "format": "png"});
    let with = s
        .submit(still(json!({"scene.py": scene, "fonts/cmr10.ttf": font})))
        .await;
    // Without the file, Pango falls back to another family: other pixels.
    let without = s
        .submit(still(
            json!({"scene.py": scene, "notes.txt": "no font here"}),
        ))
        .await;
    let mut frames = Vec::new();
    for id in [&with, &without] {
        let job = s.wait_for(id, None).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let png = s.bytes(&format!("/v1/renders/{id}/video")).await;
        assert!(png.starts_with(b"\x89PNG"));
        frames.push(png);
    }
    assert_ne!(
        frames[0], frames[1],
        "the text looks the same with and without the font"
    );
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

/// The studio's files panel in Chromium (`web/tests/studio_files.mjs`),
/// against a server with API keys: a project made in the page (a helper
/// module, an uploaded PNG, a second scene file chosen as main) renders,
/// survives reloads, and renders again after a rename and a delete.
/// Checked here on the server's side: the PNG the page hashed and uploaded
/// is the key's blob, and both renders are the main file's scene, a second
/// of video with its frames.
#[tokio::test]
async fn the_studio_files_panel_builds_uploads_keeps_and_renders_a_project_in_chromium() {
    let key = "studio-files-key";
    let mut s = TestServer::start(ServeOptions {
        api_keys: [key]
            .into_iter()
            .filter_map(manimd::secret::Secret::new)
            .collect(),
        warm_pool: 1,
        ..opts()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.png");
    let png = png().await;
    std::fs::write(&photo, &png).unwrap();
    let (shots, report) = common::server::run_studio_script(
        "studio_files.mjs",
        &s.url,
        &s.config.runtime_dir,
        &[photo.to_str().unwrap(), key],
    )
    .await;
    assert!(report.contains("ok: a project of helpers.py"), "{report}");
    let said = |name: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {report}"))
            .to_owned()
    };
    // The digest the page computed is the PNG's, and the key's blob.
    assert_eq!(said("digest"), digest(&png));
    let missing = json!({ "digests": [digest(&png)] });
    let (status, body) = post(&s, Some(key), "/v1/blobs/missing", &missing).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["missing"],
        json!([]),
        "the page did not upload the PNG"
    );
    let get = |path: String| {
        let r = s.client.get(format!("{}{path}", s.url)).bearer_auth(key);
        async move { r.send().await.unwrap().bytes().await.unwrap() }
    };
    for id in [said("job1"), said("job2")] {
        let job: Value = serde_json::from_slice(&get(format!("/v1/renders/{id}")).await).unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        let scenes: Vec<&Value> = job["result"]["animations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["scene"])
            .collect();
        assert_eq!(
            scenes,
            [&json!("Movie"); 2],
            "not the main file's scene: {job}"
        );
        let video = dir.path().join(format!("{id}.mp4"));
        std::fs::write(&video, get(format!("/v1/renders/{id}/video")).await).unwrap();
        common::assert_video(&video, "h264", (854, 480), 15.0, 1.0).await;
    }
    for shot in [
        "studio-files-image.png",
        "studio-files-rendered.png",
        "studio-files-reloaded.png",
        "studio-files-renamed.png",
        "studio-files-phone.png",
    ] {
        let bytes = std::fs::read(shots.join(shot)).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG", "{shot}");
    }
    println!("{report}");
    s.stop().await;
}

/// A manifest: a blob of `{path: digest}`, uploaded like any other.
async fn manifest(s: &TestServer, key: Option<&str>, entries: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(p, d)| ((*p).to_owned(), json!(d)))
        .collect();
    let bytes = serde_json::to_vec(&map).unwrap();
    let d = digest(&bytes);
    let (status, body) = put(s, key, &d, bytes).await;
    assert!(status.is_success(), "{body}");
    d
}

const MANIFEST_SCENE: &str = "from manim import *\nfrom helpers import SIDE\n\nclass M(Scene):\n    def construct(self):\n        data = open(\"data/tile.bin\", \"rb\").read()\n        assert data == bytes(range(64)), data\n        self.add(ImageMobject(\"assets/photo.png\"), Square(SIDE))\n        self.play(FadeIn(Circle()), run_time=0.3)\n";

#[tokio::test]
async fn a_project_named_by_a_manifest_renders_as_the_same_files_sent_inline() {
    let s = TestServer::start(opts()).await;
    let blobs = upload(&s, vec![png().await, (0..64).collect()]).await;
    let listing = [
        ("assets/photo.png", &*blobs[0]),
        ("data/tile.bin", &*blobs[1]),
    ];
    let m = manifest(&s, None, &listing).await;
    let files = json!({"scene.py": MANIFEST_SCENE, "helpers.py": "SIDE = 1.5\n"});
    let body = json!({"main": "scene.py", "files": files, "manifest": m});
    let id = s.submit(body.clone()).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let video = video_of(&s, &id).await;
    let probe = common::probe(&video).await;
    assert_eq!(probe.codec, "h264");
    assert!(probe.frames > 0);
    let _ = std::fs::remove_file(&video);

    // The same files, every one in the request: the same render, cached.
    let mut inline = files.clone();
    for (path, d) in listing {
        inline[path] = json!(d);
    }
    let same = s.submit(json!({"main": "scene.py", "files": inline})).await;
    let job = s.wait_for(&same, None).await;
    assert_eq!(job["result"]["cache_hit"], true, "{job}");

    // An edit of the scene file resubmits with the same manifest (its
    // blobs' check remembered) and renders anew.
    let mut edited = body.clone();
    edited["files"]["scene.py"] = json!(MANIFEST_SCENE.replace("0.3", "0.4"));
    let other = s.submit(edited).await;
    let job = s.wait_for(&other, None).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_ne!(job["result"]["cache_hit"], true, "{job}");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

#[tokio::test]
async fn hostile_manifests_get_typed_errors_and_the_sweep_keeps_what_a_queued_one_names() {
    let keys = ["key-a", "key-b"];
    // No worker: an accepted job stays queued for the sweep to see.
    let s = TestServer::start(keyed(
        &keys,
        ServeOptions {
            workers: 0,
            ..opts()
        },
    ))
    .await;
    let (a, b) = (Some(keys[0]), Some(keys[1]));
    let scene = "from manim import *\n\nclass A(Scene):\n    def construct(self):\n        self.wait(0.1)\n";
    let bytes = b"the real bytes".to_vec();
    let blob = digest(&bytes);
    assert_eq!(put(&s, a, &blob, bytes).await.0, StatusCode::CREATED);
    let good = manifest(&s, a, &[("data.bin", &blob)]).await;
    let server = &s;
    let raw = |text: &'static str| async move {
        let d = digest(text.as_bytes());
        let (status, body) = put(server, a, &d, text.as_bytes().to_vec()).await;
        assert!(status.is_success(), "{body}");
        d
    };
    let request =
        |files: Value, m: &str| json!({"main": "scene.py", "files": files, "manifest": m});
    let own = json!({"scene.py": scene});
    let never = digest(b"never uploaded");
    let cases = [
        // Not uploaded, or another key's.
        (
            a,
            request(own.clone(), &never),
            422,
            "missing-blob",
            "manifest",
        ),
        (
            b,
            request(own.clone(), &good),
            422,
            "missing-blob",
            "manifest",
        ),
        // Not a listing of blobs.
        (
            a,
            request(own.clone(), &raw("not json").await),
            400,
            "invalid-manifest",
            "manifest",
        ),
        (
            a,
            request(own.clone(), &raw("[\"a\"]").await),
            400,
            "invalid-manifest",
            "manifest",
        ),
        (
            a,
            request(own.clone(), &raw("{\"a.py\": \"print(1)\"}").await),
            400,
            "invalid-manifest",
            "manifest",
        ),
    ];
    for (key, body, status, code, field) in cases {
        let (got, err) = post(&s, key, "/v1/renders", &body).await;
        assert_eq!(got.as_u16(), status, "{body}: {err}");
        assert_eq!(err["error"]["code"], code, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
        assert_eq!(err["error"]["digest"], body["manifest"], "{err}");
    }
    // A listed path that leaves the project, or a blob nobody uploaded:
    // named by its file, as in `files`.
    let escape = manifest(&s, a, &[("../x.bin", &blob)]).await;
    let lost = manifest(&s, a, &[("gone.bin", &never)]).await;
    for (m, status, code, file) in [
        (&escape, 400, "invalid-path", "../x.bin"),
        (&lost, 422, "missing-blob", "gone.bin"),
    ] {
        let (got, err) = post(&s, a, "/v1/renders", &request(own.clone(), m)).await;
        assert_eq!(got.as_u16(), status, "{err}");
        assert_eq!(err["error"]["code"], code, "{err}");
        assert_eq!(err["error"]["file"], file, "{err}");
    }
    // A path in both, a manifest without a project, the scene file in it.
    let both = request(json!({"scene.py": scene, "./data.bin": "text"}), &good);
    let (got, err) = post(&s, a, "/v1/renders", &both).await;
    assert_eq!(
        (got.as_u16(), &err["error"]["code"]),
        (400, &json!("duplicate-path")),
        "{err}"
    );
    assert_eq!(err["error"]["file"], "./data.bin", "{err}");
    let (got, err) = post(
        &s,
        a,
        "/v1/renders",
        &json!({"code": scene, "manifest": good}),
    )
    .await;
    assert_eq!(
        (got.as_u16(), &err["error"]["field"]),
        (400, &json!("manifest")),
        "{err}"
    );
    let (got, err) = post(
        &s,
        a,
        "/v1/renders",
        &json!({"main": "data.bin", "files": {"x.py": scene}, "manifest": good}),
    )
    .await;
    assert_eq!(
        (got.as_u16(), &err["error"]["field"]),
        (400, &json!("main")),
        "{err}"
    );
    let mut preview = request(own.clone(), &never);
    preview["kind"] = json!("storyboard");
    let (got, err) = post(&s, a, "/v1/previews", &preview).await;
    assert_eq!(
        (got.as_u16(), &err["error"]["code"]),
        (422, &json!("missing-blob")),
        "{err}"
    );

    // Accepted and queued: the sweep keeps its manifest and what it names
    // however old, and collects what no job names.
    let (got, job) = post(&s, a, "/v1/renders", &request(own.clone(), &good)).await;
    assert_eq!(got, StatusCode::ACCEPTED, "{job}");
    let stored = |d: &str| {
        s.config
            .data_dir
            .join("blobs")
            .join(manimd::server::fingerprint(keys[0]))
            .join(d.trim_start_matches("sha256:"))
            .exists()
    };
    assert!(stored(&escape));
    let removed = s.service.sweep_blobs(Duration::ZERO).await.unwrap();
    assert!(removed >= 3, "{removed}");
    assert!(
        stored(&good) && stored(&blob),
        "a queued job's manifest and blob"
    );
    assert!(!stored(&escape) && !stored(&lost), "manifests no job names");
    let mut s = s;
    s.stop().await;
    s.assert_clean();
}

/// A queued job whose manifest is gone when a worker takes it (lost from
/// the data dir while the server was down) fails with the manifest's
/// `missing-blob`, not as the scene's error nor an internal one.
#[tokio::test]
async fn a_job_whose_manifest_is_gone_when_it_renders_fails_as_missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    let config = manimd::config::Config::for_tests(dir.path().join("data"));
    let no_worker = ServeOptions {
        workers: 0,
        ..opts()
    };
    let mut s = TestServer::start_on(config.clone(), no_worker).await;
    let blobs = upload(&s, vec![png().await]).await;
    let m = manifest(&s, None, &[("assets/photo.png", &blobs[0])]).await;
    let files = json!({"scene.py": MANIMD_LOST_SCENE});
    let id = s
        .submit(json!({"main": "scene.py", "files": files, "manifest": m}))
        .await;
    s.stop().await;
    let lost: Vec<PathBuf> = walk(&config.data_dir.join("blobs"))
        .into_iter()
        .filter(|p| p.ends_with(m.trim_start_matches("sha256:")))
        .collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    std::fs::remove_file(&lost[0]).unwrap();
    let mut s = TestServer::start_on(config, opts()).await;
    let job = s.wait_for(&id, None).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "missing-blob", "{job}");
    assert_eq!(job["error"]["field"], "manifest", "{job}");
    assert_eq!(job["error"]["digest"], m.as_str(), "{job}");
    s.stop().await;
    s.assert_clean();
}

const MANIMD_LOST_SCENE: &str = "from manim import *\n\nclass L(Scene):\n    def construct(self):\n        self.add(ImageMobject(\"assets/photo.png\"))\n        self.wait(0.1)\n";
