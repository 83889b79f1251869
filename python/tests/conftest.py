"""Unit tests of the worker, run with each engine's venv Python (see
scripts/test-worker.sh). Tests that need one engine skip under the other."""

import importlib.util
import io
import json
import os
import sys

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PYTHON_DIR)

HAVE_CE = importlib.util.find_spec("manim") is not None
HAVE_GL = importlib.util.find_spec("manimlib") is not None

needs_ce = pytest.mark.skipif(not HAVE_CE, reason="Manim Community is not installed in this Python")
needs_gl = pytest.mark.skipif(not HAVE_GL, reason="ManimGL is not installed in this Python")


class Lines:
    """The protocol lines emitted during a test, parsed."""

    def __init__(self):
        self.buffer = io.StringIO()

    def events(self):
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]


@pytest.fixture
def emitted(monkeypatch):
    """Sends protocol.emit to a buffer instead of the real stdout."""
    from manimd_worker import protocol

    lines = Lines()
    monkeypatch.setattr(protocol, "_out", lines.buffer)
    monkeypatch.setattr(protocol, "_last_frames_at", 0.0)
    return lines


def _namespaces(prefixes):
    """(key prefix, namespace object) for the loaded modules named by
    `prefixes` and the classes they define."""
    for name, module in list(sys.modules.items()):
        if module is None or not any(name == p or name.startswith(p + ".") for p in prefixes):
            continue
        yield f"{name}:", module
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == name and "<" not in value.__qualname__:
                yield f"{name}:{value.__qualname__}.", value


def patched_by(prefixes, action):
    """Runs `action` and returns the targets ("module:qual.name") in the
    modules `prefixes` whose value it replaced or added, then puts them back."""
    before = {}
    for prefix, ns in _namespaces(prefixes):
        for key, value in list(vars(ns).items()):
            before[prefix + key] = (ns, key, value)
    action()
    changed = {}
    for prefix, ns in _namespaces(prefixes):
        for key, value in list(vars(ns).items()):
            if key.startswith("__") and key.endswith("__"):
                continue
            old = before.get(prefix + key)
            if old is None or old[2] is not value:
                changed[prefix + key] = (ns, key, old)
    for target, (ns, key, old) in changed.items():
        if old is None:
            delattr(ns, key)
        else:
            setattr(ns, key, old[2])
    return set(changed)


def table_targets(targets):
    return {row.target for row in targets if row.kind != "sets"}


def run_worker(script, stdin=b""):
    """Runs `script` (Python that ends by calling the worker's main) in a
    fresh interpreter; returns (exit code, protocol events, stderr)."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {PYTHON_DIR!r})\n" + script],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, "EGL_PLATFORM": "surfaceless", "LIBGL_ALWAYS_SOFTWARE": "1"},
    )
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    return proc.returncode, events, proc.stderr.decode("utf-8", "replace")
