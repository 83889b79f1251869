//! manimd: Manim scenes in, video out, every scene in a sandbox.
//!
//! See ARCHITECTURE.md for the map of modules and their invariants.

pub mod bench;
pub mod cli;
pub mod config;
pub mod limits;
pub mod process;
pub mod protocol;
pub mod render;
pub mod runtime;
pub mod sandbox;
pub mod spec;
