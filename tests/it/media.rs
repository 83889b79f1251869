//! Images, SVGs and zoom in each engine: the media paths that lean on the
//! engines' dependencies (Pillow, svgelements, Cairo, the camera) rather
//! than on the engines themselves.
//!
//! They guard the venvs' locks (`python/locks`): Manim 0.22 builds every
//! `ImageMobject` with `Image.fromarray(..., mode="RGBA")`, which Pillow 13
//! refuses ("Invalid mode for data type"), so on an install whose
//! dependencies floated to Pillow 13 the Manim Community test fails with a
//! scene error. An upstream release must never change what renders.

use crate::common;

use common::{assert_video, fixture, spec, Harness};
use manimd::spec::Engine;

const LOW: (u32, u32) = (854, 480);

/// An `ImageMobject` from a NumPy array, an `SVGMobject` from a file the
/// scene wrote, and a `ZoomedScene` whose zoomed camera moves between them:
/// 1 s + 1 s + 0.5 s.
#[tokio::test]
async fn manim_image_svg_and_zoomed_scene_render() {
    let h = Harness::new();
    let (r, _) = h.ok(&spec(Engine::Manim, &fixture("ce_media.py"))).await;
    assert_video(&r.output, "h264", LOW, 15.0, 2.5).await;
    h.assert_clean();
}

/// The same in ManimGL: an `ImageMobject` from a PNG the scene made with
/// Pillow, an `SVGMobject`, and a zoom by animating the camera's frame
/// (ManimGL has no `ZoomedScene`).
#[tokio::test]
async fn manimgl_image_svg_and_frame_zoom_render() {
    let h = Harness::new();
    let (r, _) = h.ok(&spec(Engine::Manimgl, &fixture("gl_media.py"))).await;
    assert_video(&r.output, "h264", LOW, 15.0, 2.5).await;
    h.assert_clean();
}
