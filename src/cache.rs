//! The result cache's key: a hash of everything that determines a render's
//! output. Equal keys mean byte-for-byte interchangeable results.
//!
//! Only the host computes keys, from the request; nothing the sandbox says
//! enters one, so no scene can make its output be served for another request.

use sha2::{Digest, Sha256};

use crate::runtime;
use crate::spec::{Encoding, Engine, Format, Quality, SceneName};

/// What a key covers. `engine` is as requested: when absent, the engine is
/// detected from the code, which the key covers too.
pub struct KeyParts<'a> {
    /// With API keys, each key has its own cache: a hit would otherwise tell
    /// one tenant what another rendered.
    pub owner: Option<&'a str>,
    pub code: &'a str,
    pub scenes: &'a [SceneName],
    pub engine: Option<Engine>,
    pub quality: Quality,
    pub format: Format,
    pub fps: u32,
    pub seed: Option<u32>,
    pub encoding: Encoding,
    /// With narration, the speech provider's identity (provider, endpoint,
    /// model, voice; never its key): another voice is another result.
    pub narration: Option<String>,
    /// A project's scene file path and every other file's digest: an
    /// edited helper or asset is another result.
    pub project: Option<&'a crate::project::Project>,
}

pub fn key(p: &KeyParts) -> String {
    let doc = serde_json::json!({
        "v": 1,
        "owner": p.owner,
        "code": p.code,
        "scenes": p.scenes,
        "engine": p.engine,
        "quality": p.quality,
        "format": p.format,
        "fps": p.fps,
        "seed": p.seed,
        "encoding": p.encoding,
        "narration": p.narration,
        // The other files by one digest of their paths and contents: a
        // project of 500 files is keyed in microseconds, not a document of
        // 500 entries.
        "project": p.project.map(|project| serde_json::json!({
            "main": project.main,
            "files": crate::project::hex(&project.files_digest()),
        })),
        // A new engine or worker may render the same request differently.
        "manim": runtime::engine_version(Engine::Manim),
        "manimgl": runtime::engine_version(Engine::Manimgl),
        "worker": runtime::worker_hash(),
        // And so may the same engine over other locked dependencies.
        "environment": [
            runtime::environment(Engine::Manim),
            runtime::environment(Engine::Manimgl),
        ],
    });
    crate::project::hex(&Sha256::digest(doc.to_string().as_bytes()))
}

/// Gives job `to` the published files of the finished job `from` and
/// returns `to`'s result, marked as a cache hit. Fails when `from`'s files
/// are gone (it was deleted): then it is a miss.
pub async fn share(
    storage: &crate::storage::Storage,
    from: &crate::jobs::Job,
    to: &crate::jobs::JobId,
) -> Result<crate::jobs::JobResult, crate::storage::StorageError> {
    let result = from
        .result
        .as_ref()
        .ok_or(crate::storage::StorageError::NotFound)?;
    let output = format!("output.{}", result.format.extension());
    let mut names = vec![output.as_str()];
    if result.has_thumbnail {
        names.push("thumbnail.png");
    }
    if result.narration.is_some() {
        names.push(crate::narration::SUBTITLES_FILE);
    }
    storage.share(&from.id, result.attempt, to, &names).await?;
    Ok(crate::jobs::JobResult {
        attempt: 1,
        cache_hit: true,
        warm_start: false,
        render_secs: 0.0,
        engine_secs: None,
        peak_rss_bytes: None,
        // The subtitles are this job's copy.
        narration: result
            .narration
            .clone()
            .map(|n| crate::jobs::NarrationResult {
                subtitles_url: format!("/v1/renders/{to}/subtitles"),
                ..n
            }),
        ..result.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(code: &str) -> KeyParts<'_> {
        KeyParts {
            owner: None,
            code,
            scenes: &[],
            engine: None,
            quality: Quality::Low,
            format: Format::Mp4,
            fps: 15,
            seed: None,
            encoding: Encoding::Final,
            narration: None,
            project: None,
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = key(&parts("a"));
        assert_eq!(base, key(&parts("a")));
        assert_eq!(base.len(), 64);
        assert_ne!(base, key(&parts("b")));
        type Change = Box<dyn Fn(&mut KeyParts)>;
        let variants: Vec<Change> = vec![
            Box::new(|p| p.engine = Some(Engine::Manim)),
            Box::new(|p| p.quality = Quality::High),
            Box::new(|p| p.format = Format::Webm),
            Box::new(|p| p.fps = 30),
            Box::new(|p| p.seed = Some(1)),
            Box::new(|p| p.encoding = Encoding::Preview),
            Box::new(|p| p.narration = Some("espeak:en-us".into())),
        ];
        for change in variants {
            let mut p = parts("a");
            change(&mut p);
            assert_ne!(key(&p), base);
        }
        // Another voice is another result.
        let mut a = parts("a");
        a.narration = Some("espeak:en-us".into());
        let mut b = parts("a");
        b.narration = Some("espeak:de".into());
        assert_ne!(key(&a), key(&b));
        let mut p = parts("a");
        p.owner = Some("tenant");
        assert_ne!(key(&p), base);
        // A project's files count: each one's path and content.
        use crate::project::{FileRef, Project};
        let project = |files: &[(&str, &str)]| Project {
            main: "scene.py".into(),
            files: files
                .iter()
                .map(|(k, v)| ((*k).to_owned(), FileRef::Text((*v).to_owned())))
                .collect(),
            ..Project::default()
        };
        let keys: Vec<String> = [
            project(&[]),
            project(&[("h.py", "1")]),
            project(&[("h.py", "2")]),
            project(&[("g.py", "1")]),
        ]
        .iter()
        .map(|pr| {
            let mut p = parts("a");
            p.project = Some(pr);
            key(&p)
        })
        .collect();
        let unique: std::collections::BTreeSet<_> = keys.iter().chain([&base]).collect();
        assert_eq!(unique.len(), 5);
        let scenes = ["A".parse().unwrap()];
        let mut p = parts("a");
        p.scenes = &scenes;
        assert_ne!(key(&p), base);
    }
}
