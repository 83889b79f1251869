"""The plugin allow-list inside the sandbox (README, "Plugins").

Manim imports every plugin that registers itself (the `manim.plugins` entry
points) on `import manim`: with the allow-list installed, that adds about
800 modules and a second or two to every render, inspection aside, whether
the scene uses a plugin or not. Here Manim's own loading is skipped, so a
render in a fresh sandbox imports only the plugins its scene imports; a
sandbox waiting in the warm pool imports them all (`preload`, when no job
has arrived yet), so the warm pool hides their cost too. BENCHMARKS.md has
the figures.
"""

import contextlib
import importlib
import logging

# The allow-list's modules (src/runtime.rs PLUGINS).
MODULES = ("manim_physics", "manim_chemistry", "manim_voiceover", "typst")


@contextlib.contextmanager
def deferred():
    """While Manim is imported, it finds no registered plugin. Manim keeps
    the function it imported; everyone else gets the real one back."""
    import importlib.metadata as metadata

    entry_points = metadata.entry_points

    def without_manim_plugins(**params):
        if params.get("group") == "manim.plugins":
            return metadata.EntryPoints(())
        return entry_points(**params)

    metadata.entry_points = without_manim_plugins
    try:
        yield
    finally:
        metadata.entry_points = entry_points


def quiet():
    """manim-voiceover imports pysox, which warns at length that the `sox`
    program is missing: manimd never needs it (no speed change, no
    recording). Disabled, not leveled: pysox sets its logger's level itself."""
    logging.getLogger("sox").disabled = True


def preload(arrived=lambda: False):
    """Imports every installed plugin (a warm sandbox, before its job).
    Between two plugins, `arrived()` says whether the job is there: then
    the rest is left to the scene's own imports, so that a job that takes
    a sandbox still preloading waits for one plugin at most."""
    quiet()
    for name in MODULES:
        if arrived():
            return
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
