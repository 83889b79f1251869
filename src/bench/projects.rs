//! Projects over the wire (issue 14): what `manimd submit` sends again
//! after a one-line edit of a project that holds 50 MiB of images, counted
//! by a proxy between the CLI and the server; and how long a project of
//! 500 files takes to submit, its blobs already on the server, against the
//! same scene as a single file, both measured in this process the way
//! `manimd submit` sends them.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::service::{figure, median, table_header, Server};
use super::BenchOptions;
use crate::folder;
use manimd::api::RenderRequest;
use manimd::client::Client;
use manimd::spec::{Engine, Quality};

/// The images: ten of 1600x1100 noise, which PNG cannot compress, so that
/// the folder holds about 50 MiB as a photographer's would.
const IMAGES: usize = 10;
const IMAGE_SIZE: (u32, u32) = (1600, 1100);
/// The 500-file project: the scene and 499 small binary assets.
const SMALL_FILES: usize = 499;
const SMALL_FILE_BYTES: usize = 2048;

const SCENE: &str = "from manim import *\n\n\
class Photo(Scene):\n    def construct(self):\n        \
img = ImageMobject(\"images/photo0.png\").scale_to_fit_height(4)\n        \
self.play(FadeIn(img), run_time=0.5)\n        \
self.wait(0.2)\n";
/// The one-line edit.
const EDIT: (&str, &str) = ("self.wait(0.2)", "self.wait(0.3)");

const SMALL_SCENE: &str = "from manim import *\n\n\
class Small(Scene):\n    def construct(self):\n        \
self.add(Square())\n        \
self.wait(0.1)\n";

/// `manimd bench --only projects`.
pub async fn table(opts: &BenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("manimd-bench-projects-")
        .tempdir()?;
    let server = Server::start(
        opts,
        &dir.path().join("data"),
        &["--workers", "1", "--warm-pool", "1"],
    )
    .await?;
    let tap = Tap::start(server.url()).await?;
    println!();
    println!("projects: bytes `manimd submit` sends (counted by a proxy), and submission latency; medians of {}", opts.runs.max(11));
    table_header();

    let photos = dir.path().join("photos");
    let image_bytes = make_images(opts, &photos.join("images")).await?;
    let scene = photos.join("scene.py");
    std::fs::write(&scene, SCENE)?;
    let first = tap.count(|| submit_cli(opts, &scene, &tap.url)).await?;
    std::fs::write(&scene, SCENE.replace(EDIT.0, EDIT.1))?;
    let again = tap.count(|| submit_cli(opts, &scene, &tap.url)).await?;
    let kib = |b: u64| b as f64 / 1024.0;
    let allowed = SCENE.len() as u64 + 10 * 1024;
    figure(
        &format!(
            "first submit of {:.1} MiB of images (KiB sent)",
            image_bytes as f64 / (1024.0 * 1024.0)
        ),
        kib(first),
        kib(image_bytes),
        "KiB",
        "the images, once",
    );
    figure(
        "resubmit after a one-line edit (KiB sent)",
        kib(again),
        kib(allowed),
        "KiB",
        "<= 1.00x (the scene file + 10 KiB)",
    );

    let many = dir.path().join("many");
    make_small_files(&many.join("assets"))?;
    let main = many.join("scene.py");
    std::fs::write(&main, SMALL_SCENE)?;
    // Uploads the blobs (and renders once), as a user's first submit would.
    submit_cli(opts, &main, server.url()).await?;
    let lone = dir.path().join("one").join("scene.py");
    std::fs::create_dir_all(dir.path().join("one"))?;
    let client = Client::new(server.url(), None)?;
    // Each kind timed whole (as `manimd submit` runs: the folder scanned,
    // the request sent and answered) and by its request alone.
    let (mut single, mut project) = (Timed::default(), Timed::default());
    for run in 0..opts.runs.max(11) {
        // Unique code per run, so that each is a new job, not a cached one.
        let code = format!("{SMALL_SCENE}# run {run}\n");
        std::fs::write(&main, &code)?;
        std::fs::write(&lone, &code)?;
        for as_project in [run % 2 == 0, run % 2 != 0] {
            // A sandbox that has just become warm goes on importing the
            // plugins for about a second (at the least CPU share, but on
            // two cores it still delays an inspection by up to 25 ms):
            // both kinds are measured after it has settled.
            server.warm(1).await?;
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            let scene = if as_project { &main } else { &lone };
            let (id, whole, request) = submit_in_process(&client, scene, as_project).await?;
            let timed = if as_project {
                &mut project
            } else {
                &mut single
            };
            timed.whole.push(whole);
            timed.request.push(request);
            // The next one is measured on an idle server.
            server.done(&id).await?;
        }
    }
    let files = SMALL_FILES + 1;
    for (what, pick) in [
        (
            "request only",
            (|t: &Timed| t.request.clone()) as fn(&Timed) -> Vec<f64>,
        ),
        ("scan + request", |t: &Timed| t.whole.clone()),
    ] {
        let (one, many) = (pick(&single), pick(&project));
        // Each run's two submissions were made side by side: the median
        // of their differences is the project's own cost, less noisy
        // than the difference of the medians.
        let extra = median(many.iter().zip(&one).map(|(p, s)| p - s).collect());
        let (one, many) = (median(one), median(many));
        figure(
            &format!("submit 1 file: {what} (ms)"),
            one,
            one,
            "ms",
            "the anchor",
        );
        figure(
            &format!("submit {files} files: {what} (ms)"),
            many,
            one,
            "ms",
            "<= 1.20x",
        );
        println!(
            "  the {SMALL_FILES} other files add {extra:.2} ms ({:.1} us a file; median of each run's difference)",
            extra * 1000.0 / SMALL_FILES as f64
        );
    }
    server.stop().await;
    Ok(())
}

/// Noise PNGs made by the engine's own Pillow; returns their bytes.
async fn make_images(opts: &BenchOptions, dir: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let python = opts.runtime.venv(Engine::Manim).join("bin/python");
    let script = format!(
        "import sys, numpy as np\nfrom PIL import Image\nrng = np.random.default_rng(7)\n\
         for i in range({IMAGES}):\n    \
         a = rng.integers(0, 256, ({h}, {w}, 3), dtype=np.uint8)\n    \
         Image.fromarray(a).save(f'{{sys.argv[1]}}/photo{{i}}.png', compress_level=1)\n",
        w = IMAGE_SIZE.0,
        h = IMAGE_SIZE.1,
    );
    let status = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .status()
        .await
        .with_context(|| python.display().to_string())?;
    if !status.success() {
        bail!("making the bench's images failed");
    }
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// Small binary files (sent as blobs, never inline), each different.
fn make_small_files(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..SMALL_FILES {
        let bytes: Vec<u8> = (0..SMALL_FILE_BYTES)
            .map(|j| ((i * 7919 + j * 31) % 251) as u8 | 0x80)
            .collect();
        std::fs::write(dir.join(format!("tile{i:03}.bin")), bytes)?;
    }
    Ok(())
}

/// `manimd submit FILE` as a user runs it, to the end of the render.
async fn submit_cli(opts: &BenchOptions, scene: &Path, server: &str) -> anyhow::Result<()> {
    let out = scene.with_extension("mp4");
    let output = tokio::process::Command::new(&opts.manimd)
        .arg("submit")
        .arg(scene)
        .args(["--quiet", "--server", server, "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "manimd submit failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A kind of submission's times, in ms: whole, and its request alone.
#[derive(Default)]
struct Timed {
    whole: Vec<f64>,
    request: Vec<f64>,
}

/// What `manimd submit` does before it follows the job: the folder
/// scanned and hashed (a single file's folder holds only it), the request
/// sent (and the blobs, had the server lacked any). Returns the job's id,
/// the whole time and the request's, in ms.
async fn submit_in_process(
    client: &Client,
    scene: &Path,
    as_project: bool,
) -> anyhow::Result<(String, f64, f64)> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let whole = Instant::now();
    let code = std::fs::read_to_string(scene)?;
    let mut req = RenderRequest {
        quality: Some(Quality::Low),
        ..Default::default()
    };
    let folder = folder::scan(scene, &Default::default()).map_err(anyhow::Error::msg)?;
    if !as_project {
        if folder.is_some() {
            bail!("the single file's folder holds other files");
        }
        req.code = code;
        let sent = Instant::now();
        let id = client.submit(&req).await?.id;
        return Ok((id, ms(whole), ms(sent)));
    }
    let dir = folder.context("the folder holds one file")?;
    let sub = dir.request(&code, &mut req);
    let sent = Instant::now();
    let mut uploads = 0;
    let job = folder::send(client, &req, Some(&sub), |_, _| uploads += 1).await?;
    let request = ms(sent);
    if uploads > 0 {
        bail!("the server lacked blobs that were uploaded");
    }
    Ok((job.id, ms(whole), request))
}

/// A TCP proxy that counts the bytes clients send through it.
struct Tap {
    url: String,
    sent: Arc<AtomicU64>,
}

impl Tap {
    async fn start(upstream: &str) -> anyhow::Result<Tap> {
        let target = upstream
            .strip_prefix("http://")
            .context("the server's URL")?
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, counter) = (target.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        let _ = relay(client, server, counter).await;
                    }
                });
            }
        });
        Ok(Tap { url, sent })
    }

    /// Bytes sent through the proxy while `f` ran.
    async fn count<F, Fut>(&self, f: F) -> anyhow::Result<u64>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let before = self.sent.load(Ordering::SeqCst);
        f().await?;
        Ok(self.sent.load(Ordering::SeqCst) - before)
    }
}

/// Copies both ways, counting what the client sends.
async fn relay(client: TcpStream, server: TcpStream, sent: Arc<AtomicU64>) -> std::io::Result<()> {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return sw.shutdown().await;
            }
            sent.fetch_add(n as u64, Ordering::SeqCst);
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async move {
        tokio::io::copy(&mut sr, &mut cw).await?;
        cw.shutdown().await
    };
    tokio::try_join!(up, down).map(|_| ())
}
