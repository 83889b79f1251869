//! The plugin allow-list (README, "Plugins"): each renders a small scene in
//! the real sandbox, and `/v1/capabilities` lists them with their versions.

use manimd::server::ServeOptions;
use manimd::spec::Engine;

use crate::common::{self, server::TestServer, Harness};

async fn renders(code: &str, seconds: f64) {
    let h = Harness::new();
    let spec = common::spec(Engine::Manim, code);
    let (r, _) = h.ok(&spec).await;
    let (w, hgt) = spec.quality.resolution();
    common::assert_video(&r.output, "h264", (w, hgt), f64::from(spec.fps()), seconds).await;
    h.assert_clean();
}

#[tokio::test]
async fn manim_physics_drops_a_rigid_body() {
    renders(
        r#"from manim import *
from manim_physics import *

class Fall(SpaceScene):
    def construct(self):
        ball = Circle(radius=0.5).shift(2 * UP).set_fill(RED, 1)
        ground = Line([-4, -3, 0], [4, -3, 0])
        self.add(ball, ground)
        self.make_rigid_body(ball)
        self.make_static_body(ground)
        self.wait(1)
        assert ball.get_center()[1] < 1.5, ball.get_center()
"#,
        1.0,
    )
    .await;
}

#[tokio::test]
async fn manim_chemistry_draws_an_atom_and_its_network_calls_fail_at_once() {
    renders(
        r#"from manim import *
from manim_chemistry import *
import requests

class Atom(Scene):
    def construct(self):
        # PubChem is out of reach: the call fails (no network), never hangs.
        try:
            requests.get("https://pubchem.ncbi.nlm.nih.gov/rest/pug/compound/name/water/SDF")
        except requests.exceptions.RequestException:
            pass
        else:
            raise AssertionError("the sandbox reached the network")
        self.play(FadeIn(BohrAtom(e=3, p=3, n=4)), run_time=0.5)
"#,
        0.5,
    )
    .await;
}

#[tokio::test]
async fn typst_typesets_math_without_tex() {
    renders(
        r#"from manim import *

class Equation(Scene):
    def construct(self):
        eq = MathTypst("{{ a^2 + b^2 : lhs }} = c^2")
        words = Typst("*Hello* from _Typst!_").next_to(eq, DOWN)
        assert len(eq.select("lhs")) > 0
        self.play(Write(eq), FadeIn(words), run_time=0.5)
"#,
        0.5,
    )
    .await;
}

#[tokio::test]
async fn capabilities_list_the_plugins_with_their_pinned_versions() {
    let s = TestServer::start(ServeOptions {
        workers: 0,
        warm_pool: 0,
        ..ServeOptions::default()
    })
    .await;
    let (_, caps) = s.get("/v1/capabilities").await;
    let plugins = caps["plugins"].as_array().expect("a plugin list");
    let names: Vec<&str> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "manim-physics",
            "manim-chemistry",
            "manim-voiceover",
            "typst"
        ]
    );
    for p in plugins {
        assert_eq!(p["engine"], "manim", "{p}");
        assert!(
            p["version"]
                .as_str()
                .unwrap()
                .starts_with(|c: char| c.is_ascii_digit()),
            "{p}"
        );
    }
    let voiceover = plugins
        .iter()
        .find(|p| p["name"] == "manim-voiceover")
        .unwrap();
    assert_eq!(voiceover["version"], "0.4.0");
}
