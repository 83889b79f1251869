//! The worker protocol's line parser on arbitrary bytes: the worker runs
//! the author's code, so any line it prints is hostile. Parsing must never
//! panic, whatever it returns. Seeded with fuzz/seeds/worker_event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manimd::protocol::WorkerEvent;

fuzz_target!(|line: &[u8]| {
    let _ = WorkerEvent::parse(line);
});
