"""A project: the scene file and the files beside it, laid out read-only
by the host at ROOT before the job starts. The scene runs there: ROOT is
its working directory (so relative asset paths resolve against it in both
engines) and the first entry of sys.path (so its helper modules and
packages import), and its fonts are registered for Pango.
"""

import os
import sys

ROOT = "/project"
FONT_EXTENSIONS = (".ttf", ".otf", ".ttc")


def enter(main):
    """Makes the project the scene's world; returns the scene file's path."""
    os.chdir(ROOT)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    return os.path.join(ROOT, main)


def relative(filename):
    """A file's path in the project, or None for a file outside it."""
    prefix = ROOT + "/"
    if filename and filename.startswith(prefix):
        return filename[len(prefix):]
    return None


def fonts():
    """The project's font files, in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(FONT_EXTENSIONS):
                found.append(os.path.join(dirpath, name))
    return found


def register_fonts():
    """Registers the project's fonts with fontconfig for Pango (what
    `Text` draws with in both engines); returns the ones registered."""
    paths = fonts()
    if not paths:
        return []
    import manimpango

    return [path for path in paths if manimpango.register_font(path)]
