//! What the model is told: the storyboard request, the code request for the
//! chosen engine (and narration), the repair request with the error and the
//! lines around it; and how its answer becomes a file.

use super::check::context_lines;
use crate::job_error::JobError;
use crate::llm::Message;
use crate::spec::Engine;

/// The engine's import line and the API names that set it apart.
fn engine_notes(engine: Engine) -> &'static str {
    match engine {
        Engine::Manim => {
            "Use Manim Community (v0.18+): start with `from manim import *`. \
             Use its API: Create (not ShowCreation), Text, MathTex/Tex, Write, FadeIn, FadeOut, \
             Transform, self.play, self.wait. Do not use manimlib, ShowCreation, TextMobject or TexMobject."
        }
        Engine::Manimgl => {
            "Use ManimGL (3b1b's manimlib, v1.7): start with `from manimlib import *`. \
             Use its API: ShowCreation (not Create), Text, Tex, TexText, Write, FadeIn, FadeOut, \
             Transform, self.play, self.wait. Do not use `from manim import`, Create or MathTex."
        }
    }
}

const NARRATION_CODE: &str = "Call `narrate(\"<line>\")` (a builtin, no import) at the start of each step; \
the scene waits for the speech to finish before the next step. Use the storyboard's narration lines.";

pub fn storyboard(prompt: &str, narration: bool) -> Vec<Message> {
    let mut ask = String::from(
        "Plan a short Manim animation (at most 5 steps, under 15 seconds in all) for the request below. \
         Answer with a numbered list of steps, one line each, saying what appears and how it moves. \
         No code.",
    );
    if narration {
        ask.push_str(
            " After each step add a line `Narration: \"...\"` with one sentence to be spoken during it.",
        );
    }
    vec![
        Message::system("You plan short mathematical animations made with Manim."),
        Message::user(format!("{ask}\n\nRequest: {prompt}")),
    ]
}

fn system(engine: Engine, narration: bool) -> String {
    let mut s = format!(
        "You write one Python file with one Scene subclass that renders with {engine}. {} \
         Import only what the scene needs: the engine, numpy, math, random, itertools, functools. \
         No files, network, subprocesses or other modules. Keep animations short (run_time 1 or less). \
         Answer with the code only, in one ```python block.",
        engine_notes(engine)
    );
    if narration {
        s.push(' ');
        s.push_str(NARRATION_CODE);
    }
    s
}

pub fn code(engine: Engine, narration: bool, prompt: &str, storyboard: &str) -> Vec<Message> {
    vec![
        Message::system(system(engine, narration)),
        Message::user(format!(
            "Request: {prompt}\n\nStoryboard:\n{storyboard}\n\nWrite the scene."
        )),
    ]
}

/// The conversation that asks for a fix: the task, the last code, the error
/// with the lines around the failing one.
pub fn repair(
    engine: Engine,
    narration: bool,
    prompt: &str,
    storyboard: &str,
    last_code: &str,
    error: &JobError,
) -> Vec<Message> {
    let mut ask = format!(
        "That code failed with error `{}`: {}",
        error.code, error.message
    );
    // A line past u32 is no line of this code.
    if let Some(line) = error.line() {
        ask.push_str(&format!(
            "\nAt line {line}:\n```\n{}\n```",
            context_lines(last_code, line, 3)
        ));
    }
    ask.push_str("\nFix it and answer with the whole corrected file only.");
    let mut messages = code(engine, narration, prompt, storyboard);
    messages.push(Message::assistant(format!("```python\n{last_code}\n```")));
    messages.push(Message::user(ask));
    messages
}

/// The code in a model's answer: the first fenced block if there is one
/// (```python, ```py or bare ```), else the whole answer.
pub fn strip_fences(answer: &str) -> String {
    let Some(start) = answer.find("```") else {
        return answer.trim().to_owned() + "\n";
    };
    let after = &answer[start + 3..];
    // The info string (`python`) runs to the end of the fence's line.
    let body = match after.find('\n') {
        Some(nl) => &after[nl + 1..],
        None => "",
    };
    let body = match body.find("```") {
        Some(end) => &body[..end],
        None => body,
    };
    body.trim_matches('\n').to_owned() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_error(v: serde_json::Value) -> JobError {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn fences_are_stripped() {
        let code = "from manim import *\nclass A(Scene):\n    pass\n";
        for answer in [
            format!("```python\n{code}```"),
            format!("Here you go:\n\n```py\n{code}```\nEnjoy."),
            format!("```\n{code}\n```"),
            code.to_owned(),
            format!("```python\n{code}"),
        ] {
            assert_eq!(strip_fences(&answer), code, "{answer:?}");
        }
    }

    #[test]
    fn the_repair_request_carries_the_error_and_its_lines() {
        let code = "a\nb\nc\nd\ne\nf\ng\n";
        let err = job_error(
            serde_json::json!({"code": "scene-error", "message": "NameError: x", "line": 4}),
        );
        let m = repair(Engine::Manim, false, "p", "s", code, &err);
        let last = &m.last().unwrap().content;
        assert!(last.contains("scene-error") && last.contains("NameError: x"));
        assert!(
            last.contains("line 4") && last.contains(">    4 | d"),
            "{last}"
        );
        assert!(m
            .iter()
            .any(|x| x.role == "assistant" && x.content.contains("a\nb")));
    }

    #[test]
    fn a_line_out_of_range_is_no_line() {
        let code = "a\nb\nc\nd\ne\n";
        for line in [u64::MAX, (1u64 << 32) + 4] {
            let err =
                job_error(serde_json::json!({"code": "scene-error", "message": "m", "line": line}));
            let last = repair(Engine::Manim, false, "p", "s", code, &err)
                .pop()
                .unwrap()
                .content;
            assert!(!last.contains("At line") && !last.contains("| d"), "{last}");
        }
        let err =
            job_error(serde_json::json!({"code": "scene-error", "message": "m", "line": u32::MAX}));
        let last = repair(Engine::Manim, false, "p", "s", code, &err)
            .pop()
            .unwrap()
            .content;
        assert!(last.contains(&format!("At line {}", u32::MAX)), "{last}");
        assert!(!last.contains("| a"), "{last}");
    }

    #[test]
    fn narration_is_asked_for_only_when_wanted() {
        assert!(storyboard("p", true)[1].content.contains("Narration:"));
        assert!(!storyboard("p", false)[1].content.contains("Narration:"));
        assert!(code(Engine::Manim, true, "p", "s")[0]
            .content
            .contains("narrate(\"<line>\")"));
        assert!(!code(Engine::Manimgl, false, "p", "s")[0]
            .content
            .contains("narrate"));
    }
}
