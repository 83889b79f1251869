//! Which scenes of a file to render: the one rule, from the scenes an
//! inspection found and the names a request gave. The service (before
//! queueing), `manimd render` and generation all decide with it, so a file
//! is refused the same way wherever it comes from. (The Python worker keeps
//! its own check: it is the last line for a spec that skipped this one.)

use crate::protocol::{SceneInfo, UserError};
use crate::render::RenderError;
use crate::spec::SceneName;

/// Why no scenes could be chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoChoice {
    /// None named and the file defines no scene.
    NoScene,
    /// None named and the file defines several: the request must say which.
    Several { available: Vec<String> },
    /// A named scene is not in the file.
    Missing {
        name: String,
        available: Vec<String>,
    },
}

/// The scenes to render, in order: the named ones, or the file's only
/// scene when none is named.
pub fn choose<'a>(
    available: &'a [SceneInfo],
    requested: &[SceneName],
) -> Result<Vec<&'a SceneInfo>, NoChoice> {
    let names = || available.iter().map(|s| s.name.clone()).collect();
    if requested.is_empty() {
        return match available {
            [] => Err(NoChoice::NoScene),
            [one] => Ok(vec![one]),
            _ => Err(NoChoice::Several { available: names() }),
        };
    }
    requested
        .iter()
        .map(|wanted| {
            available
                .iter()
                .find(|s| s.name == wanted.as_str())
                .ok_or_else(|| NoChoice::Missing {
                    name: wanted.as_str().to_owned(),
                    available: names(),
                })
        })
        .collect()
}

impl NoChoice {
    /// The scene's-fault error a render request gets (`no-scene` or
    /// `scene-not-found`, with the scenes that do exist).
    pub fn to_user_error(&self) -> UserError {
        let (code, message, scene, available) = match self {
            NoChoice::NoScene => (
                "no-scene",
                "the file defines no Scene subclass".into(),
                None,
                None,
            ),
            NoChoice::Several { available } => (
                "scene-not-found",
                format!(
                    "the file defines several scenes ({}); name the ones to render",
                    available.join(", ")
                ),
                None,
                Some(available.clone()),
            ),
            NoChoice::Missing { name, available } => (
                "scene-not-found",
                format!(
                    "no scene named {:?}; the file defines: {}",
                    name,
                    available.join(", ")
                ),
                Some(name.clone()),
                Some(available.clone()),
            ),
        };
        UserError {
            code: code.into(),
            message,
            line: None,
            column: None,
            scene,
            exception: None,
            text: None,
            available,
            tex_error: None,
            expression: None,
            traceback: vec![],
            plays: None,
            file: None,
        }
    }
}

impl From<NoChoice> for RenderError {
    fn from(no: NoChoice) -> RenderError {
        RenderError::User(Box::new(no.to_user_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(names: &[&str]) -> Vec<SceneInfo> {
        names
            .iter()
            .zip(1..)
            .map(|(n, line)| SceneInfo {
                name: (*n).to_owned(),
                line,
            })
            .collect()
    }

    fn named(names: &[&str]) -> Vec<SceneName> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn chosen(available: &[&str], requested: &[&str]) -> Result<Vec<String>, NoChoice> {
        let scenes = file(available);
        choose(&scenes, &named(requested)).map(|c| c.iter().map(|s| s.name.clone()).collect())
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn none_named_takes_the_only_scene() {
        assert_eq!(chosen(&["A"], &[]), Ok(strings(&["A"])));
    }

    #[test]
    fn none_named_and_none_defined_is_no_scene() {
        assert_eq!(chosen(&[], &[]), Err(NoChoice::NoScene));
    }

    #[test]
    fn none_named_and_several_defined_lists_them() {
        assert_eq!(
            chosen(&["A", "B"], &[]),
            Err(NoChoice::Several {
                available: strings(&["A", "B"])
            })
        );
    }

    #[test]
    fn named_scenes_come_in_the_requested_order_repeats_included() {
        assert_eq!(
            chosen(&["A", "B", "C"], &["C", "A", "C"]),
            Ok(strings(&["C", "A", "C"]))
        );
    }

    #[test]
    fn the_first_missing_name_is_reported() {
        assert_eq!(
            chosen(&["A", "B"], &["A", "X", "Y"]),
            Err(NoChoice::Missing {
                name: "X".into(),
                available: strings(&["A", "B"])
            })
        );
    }

    #[test]
    fn a_name_in_a_file_without_scenes_is_missing_not_no_scene() {
        assert_eq!(
            chosen(&[], &["A"]),
            Err(NoChoice::Missing {
                name: "A".into(),
                available: vec![]
            })
        );
    }

    #[test]
    fn the_errors_say_what_clients_have_always_seen() {
        let e = NoChoice::NoScene.to_user_error();
        assert_eq!(e.code, "no-scene");
        assert_eq!(e.message, "the file defines no Scene subclass");
        assert_eq!(e.available, None);

        let e = chosen(&["A", "B"], &[]).unwrap_err().to_user_error();
        assert_eq!(e.code, "scene-not-found");
        assert_eq!(
            e.message,
            "the file defines several scenes (A, B); name the ones to render"
        );
        assert_eq!(e.scene, None);
        assert_eq!(e.available, Some(strings(&["A", "B"])));

        let e = chosen(&["A", "B"], &["X"]).unwrap_err().to_user_error();
        assert_eq!(e.code, "scene-not-found");
        assert_eq!(e.message, r#"no scene named "X"; the file defines: A, B"#);
        assert_eq!(e.scene.as_deref(), Some("X"));
        assert_eq!(e.available, Some(strings(&["A", "B"])));

        let e = RenderError::from(NoChoice::NoScene);
        assert_eq!(e.code(), "no-scene");
        assert!(!e.is_internal());
    }
}
