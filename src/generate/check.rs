//! Static checks of generated code that need no Python: the engine's own
//! API and imports, and only modules a scene needs. (The parse itself runs
//! in a sandbox, like any inspection.) These catch a model's usual mix-ups
//! before a render is spent on them; the sandbox remains the only guard.

use crate::job_error::{ErrorCode, JobError};

use crate::spec::Engine;

/// Modules a generated scene may import (the first dotted part).
const ALLOWED_MODULES: &[&str] = &[
    "manim",
    "manimlib",
    "numpy",
    "math",
    "random",
    "itertools",
    "functools",
    "operator",
    "collections",
    "dataclasses",
    "typing",
    "fractions",
    "decimal",
    "statistics",
    "cmath",
    "colour",
    "enum",
    "copy",
    "string",
    "__future__",
];

/// Names that belong to one engine only, with what the other one calls them.
/// (name, the engine it belongs to, the other engine's equivalent)
const ENGINE_ONLY: &[(&str, Engine, &str)] = &[
    ("ShowCreation", Engine::Manimgl, "Create"),
    ("TextMobject", Engine::Manimgl, "Text or Tex"),
    ("TexMobject", Engine::Manimgl, "MathTex"),
    ("TexText", Engine::Manimgl, "Tex"),
    (
        "ShowCreationThenFadeOut",
        Engine::Manimgl,
        "Create then FadeOut",
    ),
    ("manimlib", Engine::Manimgl, "manim"),
    ("Create", Engine::Manim, "ShowCreation"),
    ("MathTex", Engine::Manim, "Tex"),
];

/// Checks code for `engine`; the error is typed like a render's
/// (`code`, `message`, `line`, `text`).
pub fn check_source(code: &str, engine: Engine) -> Result<(), JobError> {
    // Inside a triple-quoted string (a docstring) the words are prose.
    let mut in_triple: Option<&str> = None;
    for (i, raw) in code.lines().enumerate() {
        let line = i as u32 + 1;
        if let Some(delim) = in_triple {
            if raw.matches(delim).count() % 2 == 1 {
                in_triple = None;
            }
            continue;
        }
        if let Some(delim) = ["\"\"\"", "'''"]
            .into_iter()
            .find(|d| raw.matches(d).count() % 2 == 1)
        {
            in_triple = Some(delim);
            continue;
        }
        let text = strip_comment(raw);
        let trimmed = text.trim_start();
        let error = |code: ErrorCode, message: String| {
            JobError::new(code, message)
                .with("line", line)
                .with("text", raw.trim())
        };
        for module in imported_modules(trimmed) {
            let root = module.split('.').next().unwrap_or("");
            let other = match engine {
                Engine::Manim => "manimlib",
                Engine::Manimgl => "manim",
            };
            if root == other {
                return Err(error(
                    ErrorCode::WrongEngine,
                    format!(
                        "`{root}` is not the engine asked for ({engine}); import {}",
                        match engine {
                            Engine::Manim => "`from manim import *`",
                            Engine::Manimgl => "`from manimlib import *`",
                        }
                    ),
                ));
            }
            if !ALLOWED_MODULES.contains(&root) {
                return Err(error(
                    ErrorCode::ForbiddenImport,
                    format!(
                        "`{root}` is not a module a scene needs; import only: {}",
                        ALLOWED_MODULES.join(", ")
                    ),
                ));
            }
        }
        if trimmed.contains("__import__") || trimmed.contains("importlib") {
            return Err(error(
                ErrorCode::ForbiddenImport,
                "dynamic imports are not allowed; import modules at the top".into(),
            ));
        }
        for word in identifiers(text) {
            if let Some((name, owner, instead)) = ENGINE_ONLY
                .iter()
                .find(|(n, e, _)| *n == word && *e != engine)
            {
                return Err(error(
                    ErrorCode::WrongEngineApi,
                    format!("`{name}` is {owner}'s API, not {engine}'s; use {instead}"),
                ));
            }
        }
    }
    Ok(())
}

/// The line without a trailing `#` comment (a `#` inside a string may cut
/// it short, which only makes the check miss, never wrongly fail, there).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}

/// Modules an `import` or `from … import` statement names.
fn imported_modules(stmt: &str) -> Vec<String> {
    if let Some(rest) = stmt.strip_prefix("from ") {
        // A relative import (`.x`) has an empty root: not allowed either.
        return vec![rest.split_whitespace().next().unwrap_or("").to_owned()];
    }
    if let Some(rest) = stmt.strip_prefix("import ") {
        return rest
            .split(',')
            .filter_map(|part| part.split_whitespace().next())
            .map(|m| m.trim_matches(['(', ')']).to_owned())
            .collect();
    }
    Vec::new()
}

/// Identifiers on a line, outside string literals.
fn identifiers(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start: Option<usize> = None;
    for (i, c) in line
        .char_indices()
        .chain(std::iter::once((line.len(), ' ')))
    {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == '_' || c.is_ascii_alphanumeric() {
            start.get_or_insert(i);
            continue;
        }
        if let Some(s) = start.take() {
            out.push(&line[s..i]);
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
        }
    }
    out
}

/// The lines around `line` (1-based), numbered, the failing one marked.
pub fn context_lines(code: &str, line: u32, radius: u32) -> String {
    let first = line.saturating_sub(radius).max(1);
    // The line comes from a sandbox's error: it may be anything.
    let last = line.saturating_add(radius);
    code.lines()
        .enumerate()
        .map(|(i, l)| (i as u32 + 1, l))
        .filter(|(n, _)| (first..=last).contains(n))
        .map(|(n, l)| {
            let mark = if n == line { '>' } else { ' ' };
            format!("{mark}{n:>5} | {l}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_source(code: &str, engine: Engine) -> Result<(), serde_json::Value> {
        super::check_source(code, engine).map_err(|e| serde_json::to_value(e).unwrap())
    }

    const CE: &str = "from manim import *\nimport numpy as np\n\nclass A(Scene):\n    def construct(self):\n        self.play(Create(Circle()))\n";

    #[test]
    fn code_for_its_engine_passes() {
        assert_eq!(check_source(CE, Engine::Manim), Ok(()));
        let gl = "from manimlib import *\n\nclass A(Scene):\n    def construct(self):\n        self.play(ShowCreation(Circle()))  # not Create\n        t = Text(\"Create\")\n";
        assert_eq!(check_source(gl, Engine::Manimgl), Ok(()));
    }

    #[test]
    fn the_other_engines_api_is_caught_at_its_line() {
        let bad = CE.replace("Create(", "ShowCreation(");
        let e = check_source(&bad, Engine::Manim).unwrap_err();
        assert_eq!(e["code"], "wrong-engine-api");
        assert_eq!(e["line"], 6);
        assert!(e["message"].as_str().unwrap().contains("Create"));
        let e = check_source(CE, Engine::Manimgl).unwrap_err();
        assert_eq!(
            (e["code"].as_str(), e["line"].as_u64()),
            (Some("wrong-engine"), Some(1))
        );
    }

    #[test]
    fn only_modules_a_scene_needs_may_be_imported() {
        for bad in [
            "import os",
            "import numpy, subprocess",
            "from socket import socket",
            "x = __import__('os')",
        ] {
            let code = format!("from manim import *\n{bad}\n");
            let e = check_source(&code, Engine::Manim).unwrap_err();
            assert_eq!(
                (e["code"].as_str(), e["line"].as_u64()),
                (Some("forbidden-import"), Some(2)),
                "{bad}"
            );
        }
        let ok = "from manim import *\nimport math, random\nfrom numpy import linspace\n";
        assert_eq!(check_source(ok, Engine::Manim), Ok(()));
    }

    #[test]
    fn docstrings_are_prose() {
        let code = "from manim import *\n\n\nclass A(Scene):\n    \"\"\"Unlike ShowCreation,\n    import os is not needed.\n    \"\"\"\n    def construct(self):\n        \"\"\"One line: ShowCreation.\"\"\"\n        self.play(Create(Circle()))\n        self.play(ShowCreation(Circle()))\n";
        let e = check_source(code, Engine::Manim).unwrap_err();
        assert_eq!(
            (e["code"].as_str(), e["line"].as_u64()),
            (Some("wrong-engine-api"), Some(11))
        );
    }

    #[test]
    fn context_marks_the_failing_line() {
        let c = context_lines("a\nb\nc\nd\ne\n", 2, 1);
        assert_eq!(c, "     1 | a\n>    2 | b\n     3 | c");
    }

    #[test]
    fn a_huge_line_gives_no_context_and_no_overflow() {
        assert_eq!(context_lines("a\nb\n", u32::MAX, 3), "");
        // A radius that reaches past u32 takes everything, unmarked.
        assert_eq!(
            context_lines("a\nb\n", u32::MAX - 1, u32::MAX),
            "     1 | a\n     2 | b"
        );
    }
}
