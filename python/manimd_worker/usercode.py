"""The user's file: static inspection, loading, and errors in its own terms.

Line numbers in every error are the author's: the code is compiled under
USER_FILE and tracebacks are trimmed to the frames of that file.
"""

import ast
import errno
import os
import sys
import traceback
import types

from manimd_worker.protocol import clip

USER_FILE = "/job/scene.py"
DISPLAY_NAME = "scene.py"
MODULE_NAME = "scene"
# With a project, its files' frames are the author's too (see use_project).
_PROJECT = False

ENGINE_MODULES = {"manim": "manim", "manimlib": "manimgl"}


class UserError(Exception):
    """An error the author can fix, with a stable code and its fields."""

    def __init__(self, code, message, **fields):
        super().__init__(message)
        self.code = code
        self.fields = {"message": clip(message), **fields}


def use_project(main):
    """The scene file is `main` in the laid out project: compiled under its
    own path, so that tracebacks and `__file__` point into the project,
    and every project file's frames are the author's."""
    global USER_FILE, DISPLAY_NAME, MODULE_NAME, _PROJECT
    from manimd_worker import project

    USER_FILE = project.enter(main)
    DISPLAY_NAME = main
    stem = os.path.splitext(os.path.basename(main))[0]
    MODULE_NAME = stem if stem.isidentifier() else "scene"
    _PROJECT = True


def _display(filename):
    """How the author knows a frame's file, or None for a frame not theirs."""
    if filename == USER_FILE:
        return DISPLAY_NAME
    if _PROJECT:
        from manimd_worker import project

        return project.relative(filename)
    return None


def syntax_error(err):
    line = err.lineno
    column = err.offset
    text = (err.text or "").rstrip("\n")
    return UserError(
        "syntax-error",
        f"{err.msg} (line {line})" if line else err.msg,
        line=line,
        column=column,
        text=clip(text, 500),
    )


def parse(code):
    try:
        return ast.parse(code, filename=DISPLAY_NAME)
    except SyntaxError as err:
        raise syntax_error(err) from None
    except (ValueError, RecursionError, MemoryError) as err:
        # NUL bytes and pathologically deep nesting are refused by CPython's
        # parser with these rather than SyntaxError.
        raise UserError("syntax-error", f"cannot parse the file: {err}") from None


def detect_engine(tree):
    """The engine the file imports, or None when it imports neither."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.split(".")[0]
            if root in ENGINE_MODULES:
                return ENGINE_MODULES[root]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in ENGINE_MODULES:
                    return ENGINE_MODULES[root]
    return None


def _base_name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def static_scenes(tree):
    """Top-level classes that look like scenes, in file order.

    A class is a scene when one of its bases is named like an engine scene
    (`Scene`, `ThreeDScene`, `MovingCameraScene`, ...) or is a scene defined
    earlier in the file. Loading the file would be exact, but would run it;
    this answer is needed before any code runs.
    """
    scenes = []
    known = set()
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for base in node.bases:
            name = _base_name(base)
            if name and (name.endswith("Scene") or name in known):
                known.add(node.name)
                scenes.append({"name": node.name, "line": node.lineno})
                break
    return scenes


def compile_code(code):
    try:
        return compile(code, USER_FILE, "exec", dont_inherit=True)
    except SyntaxError as err:
        raise syntax_error(err) from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise UserError("syntax-error", f"cannot parse the file: {err}") from None


def load_module(code_obj):
    """Runs the file as the module `scene`; errors at import are scene errors."""
    module = types.ModuleType(MODULE_NAME)
    module.__file__ = USER_FILE
    # A builtin of scene files, like print: no import needed.
    from manimd_worker.narration import narrate

    module.__dict__["narrate"] = narrate
    sys.modules[MODULE_NAME] = module
    try:
        exec(code_obj, module.__dict__)
    except UserError:
        raise
    except BaseException as err:  # noqa: BLE001 - SystemExit is the author's too
        raise scene_error(err, None) from None
    return module


def find_scenes(module, scene_base, tree):
    """Scene subclasses defined in the file, in file order."""
    order = {node.name: node.lineno for node in tree.body if isinstance(node, ast.ClassDef)}
    found = []
    for name, obj in vars(module).items():
        if (
            isinstance(obj, type)
            and issubclass(obj, scene_base)
            and obj.__module__ == MODULE_NAME
            and name in order
        ):
            found.append((order[name], name, obj))
    found.sort()
    return [(name, obj) for _, name, obj in found]


def user_frames(tb):
    """The traceback's frames that belong to the author's files."""
    frames = []
    for summary in traceback.extract_tb(tb):
        shown = _display(summary.filename)
        if shown is not None:
            frames.append(
                {
                    "file": shown,
                    "line": summary.lineno,
                    "function": summary.name,
                    "code": clip(summary.line or "", 300),
                }
            )
    return frames[-20:]


# Write failures that mean the job ran into its disk limits.
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def scene_error(err, scene):
    if isinstance(err, SyntaxError) and _display(err.filename) not in (None, DISPLAY_NAME):
        # A helper module of the project that does not parse: its own line.
        error = syntax_error(err)
        error.fields["file"] = _display(err.filename)
        error.fields["message"] = clip(f"{_display(err.filename)}: {error.fields['message']}")
        return error
    frames = user_frames(err.__traceback__)
    if isinstance(err, OSError) and err.errno in _FULL:
        # The supervisor fills in the limits; the worker does not know them.
        return UserError("output-too-large", str(err), scene=scene, line=frames[-1]["line"] if frames else None)
    line = frames[-1]["line"] if frames else None
    kind = type(err).__name__
    text = str(err)
    message = f"{kind}: {text}" if text else kind
    if line:
        message += f" (line {line})"
    fields = {}
    if frames and frames[-1]["file"] != DISPLAY_NAME:
        # The line is in another file of the project: say which.
        fields["file"] = frames[-1]["file"]
        message = message.replace(f"(line {line})", f"({frames[-1]['file']}, line {line})")
    return UserError(
        "scene-error",
        message,
        scene=scene,
        exception=kind,
        line=line,
        traceback=frames,
        **fields,
    )


def latex_error(tex_message, expression, tb, scene):
    frames = user_frames(tb)
    line = frames[-1]["line"] if frames else None
    tex_message = (tex_message or "LaTeX failed").strip()
    message = f"LaTeX error: {tex_message.splitlines()[0] if tex_message else ''}"
    if expression:
        message += f" in {clip(expression.strip(), 200)!r}"
    return UserError(
        "latex-error",
        message,
        scene=scene,
        line=line,
        tex_error=clip(tex_message, 2000),
        expression=clip(expression or "", 2000),
        traceback=frames,
    )
