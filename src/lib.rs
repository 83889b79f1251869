//! manimd: Manim scenes in, video out, every scene in a sandbox.
//!
//! See ARCHITECTURE.md for the map of modules and their invariants.
//!
//! Without the default `service` feature only the parsers of what the
//! sandbox writes (`hls`, `protocol`) and the wire types remain, with none
//! of the service's heavy dependencies: that is what the fuzz targets in
//! `fuzz/` build.

#[cfg(feature = "service")]
pub mod animcache;
#[cfg(feature = "service")]
pub mod api;
#[cfg(feature = "service")]
pub mod blobs;
#[cfg(feature = "service")]
pub mod bus;
#[cfg(feature = "service")]
pub mod cache;
#[cfg(feature = "service")]
pub mod client;
#[cfg(feature = "service")]
pub mod components;
#[cfg(feature = "service")]
pub mod config;
#[cfg(feature = "service")]
pub mod control;
#[cfg(feature = "service")]
pub mod doctor;
#[cfg(feature = "service")]
pub mod events;
#[cfg(feature = "service")]
pub mod executor;
#[cfg(feature = "service")]
pub mod generate;
pub mod hls;
pub mod job_error;
#[cfg(feature = "service")]
pub mod jobs;
#[cfg(feature = "service")]
pub mod limits;
#[cfg(feature = "service")]
pub mod llm;
#[cfg(feature = "service")]
pub mod mcp;
#[cfg(feature = "service")]
pub mod metrics;
#[cfg(feature = "service")]
pub mod narration;
#[cfg(feature = "service")]
pub mod pool;
#[cfg(feature = "service")]
pub mod process;
pub mod project;
pub mod protocol;
#[cfg(feature = "service")]
pub mod render;
#[cfg(feature = "service")]
pub mod runtime;
#[cfg(feature = "service")]
pub mod sandbox;
#[cfg(feature = "service")]
pub mod scenes;
pub mod secret;
#[cfg(feature = "service")]
pub mod server;
#[cfg(feature = "service")]
pub mod service;
pub mod spec;
pub mod sse;
#[cfg(feature = "service")]
pub mod storage;
#[cfg(feature = "service")]
pub mod webhooks;
