//! A render request's own checks: pure, no I/O and no sandbox, so that
//! every malformed request is refused the same way before anything is
//! looked up or started, and the rules can be tested as a table. What needs
//! the world (the webhook's address, the code's scenes) is `submit`'s.

use super::error::{invalid, ServiceError};
use crate::api::RenderRequest;
use crate::spec::{Encoding, Engine, Format, Parallel, Quality, SceneName, MAX_FPS};

/// A request's settings, checked, with the defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Validated {
    /// As requested; empty means the file's only scene.
    pub scenes: Vec<SceneName>,
    /// As requested; `None` lets the imports decide.
    pub engine: Option<Engine>,
    pub quality: Quality,
    pub format: Format,
    /// As requested; `None` is the quality's rate.
    pub fps: Option<u32>,
    pub seed: Option<u32>,
    pub encoding: Encoding,
    pub narration: bool,
    pub cache: bool,
    pub parallel: Parallel,
}

/// Checks a render request in the order clients have always seen its
/// errors: the code, the scenes, the frame rate, narration.
pub(super) fn validate(req: &RenderRequest) -> Result<Validated, ServiceError> {
    check_code(&req.code, req.files.is_some())?;
    let scenes = scene_names(req)?;
    if let Some(fps) = req.fps {
        if fps == 0 || fps > MAX_FPS {
            return Err(invalid(
                "fps",
                format!("fps must be between 1 and {MAX_FPS}"),
            ));
        }
    }
    let quality = req.quality.unwrap_or(Quality::Low);
    let format = req.format.unwrap_or(Format::Mp4);
    let narration = req.narration.unwrap_or(false);
    check_narration(narration, format)?;
    Ok(Validated {
        scenes,
        engine: req.engine,
        quality,
        format,
        fps: req.fps,
        seed: req.seed,
        encoding: req.encoding.unwrap_or_default(),
        narration,
        cache: req.cache.unwrap_or(true),
        parallel: req.parallel.unwrap_or_default(),
    })
}

/// A single file's code is not empty and has no NUL; a project's scene
/// file is one of its `files` (checked with them), so `code` stays out.
pub(super) fn check_code(code: &str, project: bool) -> Result<(), ServiceError> {
    if project {
        if !code.is_empty() {
            return Err(invalid(
                "code",
                "give `code` or `files` with `main`, not both: the scene file is one of the files",
            ));
        }
        return Ok(());
    }
    if code.trim().is_empty() {
        return Err(invalid("code", "code is empty"));
    }
    if code.contains('\0') {
        return Err(invalid("code", "code contains a NUL byte"));
    }
    Ok(())
}

/// `scene` or `scenes` (not both), each a valid class name.
fn scene_names(req: &RenderRequest) -> Result<Vec<SceneName>, ServiceError> {
    let names: &[String] = match (&req.scene, &req.scenes) {
        (Some(_), Some(_)) => return Err(invalid("scene", "give `scene` or `scenes`, not both")),
        (Some(one), None) => std::slice::from_ref(one),
        (None, Some(many)) => many,
        (None, None) => &[],
    };
    names
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<SceneName>()
                .map_err(|e| invalid(&format!("scenes[{i}]"), e.to_string()))
        })
        .collect()
}

/// Narration needs a format with a sound track.
pub(super) fn check_narration(narration: bool, format: Format) -> Result<(), ServiceError> {
    if narration && matches!(format, Format::Gif | Format::Png) {
        return Err(invalid(
            "narration",
            format!(
                "{} has no sound track: narration needs mp4, mov or webm",
                format.extension()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_error::ErrorCode;

    /// Validates the request `json` and compares: `Ok(())` for a valid one,
    /// else the field at fault and the message.
    fn check(json: &str, want: Result<(), (&str, &str)>) {
        let req: RenderRequest = serde_json::from_str(json).expect(json);
        let got = validate(&req);
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err((field, message))) => {
                assert_eq!(e.code(), ErrorCode::InvalidRequest, "{json}");
                let ServiceError::Invalid {
                    field: f,
                    message: m,
                } = &e
                else {
                    panic!("{json}: not an invalid-request error: {e:?}");
                };
                assert_eq!((f.as_str(), m.as_str()), (field, message), "{json}");
                // The body names the field.
                assert_eq!(e.to_error().details["field"], field, "{json}");
            }
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    const NAME_RULE: &str =
        "a scene name is a Python class name (letters, digits and _, not starting with a digit)";

    #[test]
    fn malformed_requests_name_the_field_at_fault() {
        let bad_name = |shown: &str| format!("invalid scene name {shown:?}: {NAME_RULE}");
        let cases: &[(&str, (&str, &str))] = &[
            (r#"{"code": ""}"#, ("code", "code is empty")),
            (r#"{"code": "  \n\t "}"#, ("code", "code is empty")),
            (
                r#"{"code": "a\u0000b"}"#,
                ("code", "code contains a NUL byte"),
            ),
            (
                r#"{"code": "x", "files": {"s.py": "x"}, "main": "s.py"}"#,
                (
                    "code",
                    "give `code` or `files` with `main`, not both: the scene file is one of the files",
                ),
            ),
            (
                r#"{"code": "x", "scene": "A", "scenes": ["B"]}"#,
                ("scene", "give `scene` or `scenes`, not both"),
            ),
            (
                r#"{"code": "x", "scene": "A", "scenes": []}"#,
                ("scene", "give `scene` or `scenes`, not both"),
            ),
            (
                r#"{"code": "x", "fps": 0}"#,
                ("fps", "fps must be between 1 and 120"),
            ),
            (
                r#"{"code": "x", "fps": 121}"#,
                ("fps", "fps must be between 1 and 120"),
            ),
            (
                r#"{"code": "x", "narration": true, "format": "gif"}"#,
                (
                    "narration",
                    "gif has no sound track: narration needs mp4, mov or webm",
                ),
            ),
            (
                r#"{"code": "x", "narration": true, "format": "png"}"#,
                (
                    "narration",
                    "png has no sound track: narration needs mp4, mov or webm",
                ),
            ),
        ];
        for (json, (field, message)) in cases {
            check(json, Err((*field, *message)));
        }
        // Scene names: the index of the first bad one.
        for (json, field, shown) in [
            (r#"{"code": "x", "scene": "1Scene"}"#, "scenes[0]", "1Scene"),
            (r#"{"code": "x", "scene": ""}"#, "scenes[0]", ""),
            (
                r#"{"code": "x", "scenes": ["A", "-o /x"]}"#,
                "scenes[1]",
                "-o /x",
            ),
            (
                r#"{"code": "x", "scenes": ["A", "B", "a b", "c;d"]}"#,
                "scenes[2]",
                "a b",
            ),
            (
                r#"{"code": "x", "scenes": ["Ünïcode"]}"#,
                "scenes[0]",
                "Ünïcode",
            ),
        ] {
            check(json, Err((field, bad_name(shown).as_str())));
        }
        let long = "A".repeat(201);
        let json = format!(r#"{{"code": "x", "scene": "{long}"}}"#);
        check(
            &json,
            Err(("scenes[0]", bad_name(&"A".repeat(60)).as_str())),
        );
    }

    #[test]
    fn the_first_fault_in_request_order_is_reported() {
        // Code before scenes before fps before narration.
        check(
            r#"{"code": "", "scene": "1", "fps": 0}"#,
            Err(("code", "code is empty")),
        );
        check(
            r#"{"code": "x", "scene": "1", "fps": 0}"#,
            Err((
                "scenes[0]",
                format!("invalid scene name \"1\": {NAME_RULE}").as_str(),
            )),
        );
        check(
            r#"{"code": "x", "fps": 0, "narration": true, "format": "gif"}"#,
            Err(("fps", "fps must be between 1 and 120")),
        );
    }

    #[test]
    fn valid_requests_pass() {
        for json in [
            r#"{"code": "x"}"#,
            r#"{"code": "x", "scene": "A"}"#,
            r#"{"code": "x", "scenes": []}"#,
            r#"{"code": "x", "scenes": ["A", "_b", "C9", "A"]}"#,
            r#"{"code": "x", "fps": 1}"#,
            r#"{"code": "x", "fps": 120}"#,
            r#"{"code": "x", "narration": true}"#,
            r#"{"code": "x", "narration": true, "format": "webm"}"#,
            r#"{"code": "x", "narration": false, "format": "gif"}"#,
            r#"{"code": "x", "format": "png", "quality": "high", "seed": 7}"#,
            r#"{"code": "x", "engine": "manimgl", "encoding": "preview"}"#,
            // Checked by `submit`, against the network: not here.
            r#"{"code": "x", "webhook_url": "not a url"}"#,
            // A project's files are checked with the blob store, by `submit`.
            r#"{"files": {"s.py": "x"}, "main": "s.py"}"#,
        ] {
            check(json, Ok(()));
        }
    }

    #[test]
    fn defaults_are_filled_in_and_choices_kept() {
        let req: RenderRequest = serde_json::from_str(r#"{"code": "x"}"#).unwrap();
        let v = validate(&req).unwrap();
        assert_eq!(
            v,
            Validated {
                scenes: vec![],
                engine: None,
                quality: Quality::Low,
                format: Format::Mp4,
                fps: None,
                seed: None,
                encoding: Encoding::default(),
                narration: false,
                cache: true,
                parallel: Parallel::Auto,
            }
        );
        let req: RenderRequest = serde_json::from_str(
            r#"{"code": "x", "scene": "A", "engine": "manimgl", "quality": "high",
                "format": "webm", "fps": 24, "seed": 3, "narration": true}"#,
        )
        .unwrap();
        let v = validate(&req).unwrap();
        assert_eq!(v.scenes, vec!["A".parse::<SceneName>().unwrap()]);
        assert_eq!(v.engine, Some(Engine::Manimgl));
        assert_eq!((v.quality, v.format), (Quality::High, Format::Webm));
        assert_eq!((v.fps, v.seed, v.narration), (Some(24), Some(3), true));
    }
}
