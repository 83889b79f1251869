//! The integration tests, one binary with a module per resource: they
//! render real scenes with the real engines in the real sandbox, start the
//! real server on port 0, and drive the binary as a person would. They need
//! root (sandboxes, cgroups, mounts) and `scripts/setup.sh`'s install.
//! `common` is their harness.

mod common;

mod animcache;
mod chaos;
mod chunks;
mod cli;
mod clients;
mod compat;
mod generate;
mod hls;
mod layers;
mod mcp;
mod media;
mod narration;
mod plugins;
mod previews;
mod projects;
mod render;
mod scale;
mod security;
mod server;
mod storage;
mod voiceover;
mod webhooks;
