"""Checks, before any user code runs, that the installed engine is the one
the worker's patches were written for.

Each engine module declares its pinned `VERSION` and one table, `TARGETS`,
of what it patches or relies on, one row per target (see `call`, `attr`,
`sets`). Adding a patch means adding a row. A mismatch is an installation
fault, not the scene's: the worker reports `engine-mismatch` and exits.

The check only resolves attributes of modules the engine import has already
loaded and reads signatures: about 0.3 ms (Manim Community) and 1 ms
(ManimGL), paid on every sandbox start, warm ones included.
"""

import sys
from collections import namedtuple

CODE = "engine-mismatch"

# target: "package.module:Qualified.name"; kind: "call", "attr" or "sets";
# expected: the parameter list ("call"), or the attribute names ("sets").
Row = namedtuple("Row", "target kind expected")


def call(target, params):
    """A callable whose parameters are exactly `params`: names in order, with
    `/`, `*` and `*args`/`**kwargs` as in a `def` (no defaults, no types)."""
    return Row(target, "call", _normalize(params))


def attr(target):
    """An attribute that must exist (a module global, a class attribute)."""
    return Row(target, "attr", None)


def sets(target, names):
    """A function (usually `__init__`) that must assign or read the instance
    attributes `names`: the patches read them from the engine's objects."""
    return Row(target, "sets", tuple(n.strip() for n in names.split(",") if n.strip()))


class EngineMismatch(Exception):
    """The installed engine differs from the pinned one the patches expect."""

    def __init__(self, message, **fields):
        super().__init__(message)
        self.fields = {"message": message, **fields}


def _normalize(params):
    return ", ".join(p.strip() for p in params.split(",") if p.strip())


def describe(obj):
    """`obj`'s parameters in the notation of `call`."""
    import inspect  # Here: the worker's passes without an engine never need it.

    sig = inspect.signature(obj)
    out = []
    saw_positional_only = False
    star = False
    for p in sig.parameters.values():
        if p.kind is p.POSITIONAL_ONLY:
            saw_positional_only = True
        elif saw_positional_only:
            out.append("/")
            saw_positional_only = False
        if p.kind is p.VAR_POSITIONAL:
            out.append("*" + p.name)
            star = True
        elif p.kind is p.KEYWORD_ONLY:
            if not star:
                out.append("*")
                star = True
            out.append(p.name)
        elif p.kind is p.VAR_KEYWORD:
            out.append("**" + p.name)
        else:
            out.append(p.name)
    if saw_positional_only:
        out.append("/")
    return ", ".join(out)


_MISSING = object()


def resolve(target):
    """The object at `module:qual.name`, or raises LookupError saying which
    part is missing. Modules already imported are taken from sys.modules."""
    module_name, _, qualname = target.partition(":")
    obj = sys.modules.get(module_name)
    if obj is None:
        import importlib

        try:
            obj = importlib.import_module(module_name)
        except ImportError as err:
            raise LookupError(f"module {module_name} cannot be imported ({err})") from None
    path = module_name
    for part in qualname.split("."):
        # Class attributes are read raw: a descriptor is what gets patched.
        value = _MISSING
        if isinstance(obj, type):
            for klass in obj.__mro__:
                if part in vars(klass):
                    value = vars(klass)[part]
                    break
        else:
            value = getattr(obj, part, _MISSING)
        if value is _MISSING:
            raise LookupError(f"{path} has no attribute {part!r}")
        obj = value
        path = f"{path}.{part}"
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return obj


def check_row(row):
    """None when the row holds, else a (expected, found) pair of strings."""
    try:
        obj = resolve(row.target)
    except LookupError as err:
        return _expected(row), f"missing: {err}"
    if row.kind == "attr":
        return None
    if row.kind == "call":
        try:
            found = describe(obj)
        except (TypeError, ValueError) as err:
            return _expected(row), f"no signature ({err})"
        return None if found == row.expected else (_expected(row), f"({found})")
    code = getattr(obj, "__code__", None)
    if code is None:
        return _expected(row), f"not a Python function ({type(obj).__name__})"
    names = set(code.co_names)
    missing = [n for n in row.expected if n not in names]
    return (_expected(row), "no " + ", ".join(missing)) if missing else None


def _expected(row):
    if row.kind == "call":
        return f"({row.expected})"
    if row.kind == "attr":
        return "an attribute"
    return "uses " + ", ".join(row.expected)


def verify(engine, expected_version, found_version, targets):
    """Raises EngineMismatch unless the version is the pinned one and every
    row of `targets` holds. The message names each failing target."""
    problems = []
    for row in targets:
        bad = check_row(row)
        if bad is not None:
            expected, found = (text if len(text) <= 300 else text[:299] + "\u2026" for text in bad)
            problems.append({"target": row.target, "expected": expected, "found": found})
    if found_version == expected_version and not problems:
        return
    if found_version != expected_version:
        head = f"{engine} {found_version} is installed, but the worker is written for {expected_version}"
    else:
        head = f"{engine} {found_version}: the worker's patches do not fit it"
    lines = [head] + [
        f"{p['target']}: expected {p['expected']}, found {p['found']}" for p in problems[:20]
    ]
    raise EngineMismatch(
        "\n".join(lines),
        engine=engine,
        expected_version=expected_version,
        found_version=found_version,
        targets=problems[:20],
    )
