"""Prints, as JSON, the names a scene gets from an engine's star import
(`from manim import *`, `from manimlib import *`): `[[name, kind], ...]`,
sorted, kind one of class, function, module, value. The setup runs it with
each engine's own Python, so the studio completes exactly what the installed
engine exports.

    python engine-names.py manim|manimlib
"""

import inspect
import json
import os
import sys

# Only the JSON goes to standard output: whatever the engine or a plugin
# prints while it is imported (manim-voiceover's pydub warns that SoX is
# missing, through Manim's console, on stdout) goes to standard error.
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)

module = sys.argv[1]
if module not in ("manim", "manimlib"):
    sys.exit(f"unknown engine module: {module}")
# manimlib parses sys.argv when imported, and opens a window unless pyglet
# is told to run headless (as the worker does).
sys.argv = [module]
if module == "manimlib":
    import pyglet

    pyglet.options["headless"] = True
    pyglet.options["shadow_window"] = False

scope = {}
exec(f"from {module} import *", scope)


def kind(value):
    if inspect.isclass(value):
        return "class"
    if inspect.ismodule(value):
        return "module"
    if callable(value):
        return "function"
    return "value"


names = [[name, kind(value)] for name, value in sorted(scope.items()) if not name.startswith("_")]
json.dump(names, out, separators=(",", ":"))
out.close()
