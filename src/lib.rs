//! manimd: Manim scenes in, video out, every scene in a sandbox.
//!
//! See ARCHITECTURE.md for the map of modules and their invariants.

pub mod api;
pub mod bench;
pub mod bus;
pub mod cache;
pub mod cli;
pub mod components;
pub mod config;
pub mod control;
pub mod events;
pub mod executor;
pub mod generate;
pub mod hls;
pub mod job_error;
pub mod jobs;
pub mod limits;
pub mod llm;
pub mod load;
pub mod metrics;
pub mod narration;
pub mod pool;
pub mod process;
pub mod protocol;
pub mod render;
pub mod runtime;
pub mod sandbox;
pub mod secret;
pub mod server;
pub mod service;
pub mod spec;
pub mod storage;
pub mod webhooks;
