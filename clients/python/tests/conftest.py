"""The suite runs against real servers, started by the Rust integration
test `tests/it/clients.rs` (`cargo test --test it clients::`), which passes
them in the environment:

- MANIMD_TEST_URL: a server without keys, its model provider a scripted
  local mock (a storyboard, then one scene);
- MANIMD_TEST_KEYED_URL and MANIMD_TEST_KEY: a server with that API key;
- MANIMD_TEST_ARTIFACTS: where a test may leave files to look at.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise pytest.UsageError(f"{name} is not set: run this suite with `cargo test --test it clients::`")
    return value


@pytest.fixture(scope="session")
def url() -> str:
    return env("MANIMD_TEST_URL")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = Path(env("MANIMD_TEST_ARTIFACTS"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def ffprobe(path: Path) -> dict:
    """The video's first video and audio streams and its duration."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "stream=codec_type,codec_name,width,height:format=duration", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    )
    info = json.loads(out.stdout)
    streams = {s["codec_type"]: s for s in info["streams"]}
    return {"video": streams.get("video"), "audio": streams.get("audio"),
            "duration": float(info["format"]["duration"])}


def is_mp4(data: bytes) -> bool:
    """An ISO media file: its first box is `ftyp`."""
    return len(data) > 12 and data[4:8] == b"ftyp"
