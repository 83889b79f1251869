import errno
import sys

import pytest

from manimd_worker import usercode
from manimd_worker.usercode import UserError


@pytest.fixture(autouse=True)
def forget_scene_module():
    yield
    sys.modules.pop(usercode.MODULE_NAME, None)


def user_error(fn, *args):
    with pytest.raises(UserError) as info:
        fn(*args)
    return info.value


# --- parsing -----------------------------------------------------------------


def test_syntax_error_has_the_authors_line_and_column():
    err = user_error(usercode.parse, "from manim import *\n\nclass A(Scene)\n    pass\n")
    assert err.code == "syntax-error"
    assert err.fields["line"] == 3
    assert err.fields["column"] == 15
    assert err.fields["text"] == "class A(Scene)"
    assert "(line 3)" in err.fields["message"]


@pytest.mark.parametrize("code", ["x = 1\x00\n", "(" * 1000 + ")" * 1000])
def test_what_the_parser_refuses_otherwise_is_a_syntax_error(code):
    for step in (usercode.parse, usercode.compile_code):
        err = user_error(step, code)
        assert err.code == "syntax-error"


def test_compile_code_names_the_users_file():
    code_obj = usercode.compile_code("x = 1\n")
    assert code_obj.co_filename == usercode.USER_FILE
    err = user_error(usercode.compile_code, "def f(:\n")
    assert (err.code, err.fields["line"]) == ("syntax-error", 1)


def test_user_error_clips_its_message():
    err = UserError("scene-error", "x" * 10_000, scene="A")
    assert len(err.fields["message"]) == 4000
    assert err.fields["scene"] == "A"
    assert str(err) == "x" * 10_000


# --- static inspection -------------------------------------------------------


@pytest.mark.parametrize(
    "code, engine",
    [
        ("from manim import *", "manim"),
        ("import manim", "manim"),
        ("from manim.scene.scene import Scene", "manim"),
        ("from manimlib import *", "manimgl"),
        ("import manimlib.scene as s", "manimgl"),
        ("import numpy as np", None),
        ("from .manim import Scene", None),
        ("import manimpango", None),
        ("def f():\n    from manimlib import Scene", "manimgl"),
    ],
)
def test_detect_engine(code, engine):
    assert usercode.detect_engine(usercode.parse(code)) == engine


def test_static_scenes_in_file_order_with_their_lines():
    code = (
        "from manim import *\n"
        "class Helper:\n    pass\n"
        "class A(Scene):\n    pass\n"
        "class B(A):\n    pass\n"
        "class C(m.ThreeDScene, Helper):\n    pass\n"
        "class D(Helper):\n    pass\n"
        "def f():\n    class Inner(Scene):\n        pass\n"
    )
    assert usercode.static_scenes(usercode.parse(code)) == [
        {"name": "A", "line": 4},
        {"name": "B", "line": 6},
        {"name": "C", "line": 8},
    ]


# --- loading and errors in the author's terms --------------------------------


class Base:
    pass


def load(code):
    tree = usercode.parse(code)
    return tree, usercode.load_module(usercode.compile_code(code))


def test_find_scenes_keeps_file_order_and_skips_imports():
    code = (
        "from tests_base import Base, Other\n"
        "class Zed(Base):\n    pass\n"
        "class Alpha(Zed):\n    pass\n"
        "class NotAScene:\n    pass\n"
        "Alias = Alpha\n"
    )
    fake = type(sys)("tests_base")
    fake.Base = Base
    fake.Other = type("Other", (Base,), {})
    sys.modules["tests_base"] = fake
    try:
        tree, module = load(code)
    finally:
        del sys.modules["tests_base"]
    found = usercode.find_scenes(module, Base, tree)
    assert [name for name, _ in found] == ["Zed", "Alpha"]
    assert all(cls.__module__ == usercode.MODULE_NAME for _, cls in found)


def test_narrate_is_a_builtin_of_the_file():
    _, module = load("x = narrate\n")
    from manimd_worker.narration import narrate

    assert module.x is narrate


def test_an_exception_at_import_is_a_scene_error_with_the_authors_frames():
    code = "def inner():\n    return 1 / 0\n\ndef outer():\n    inner()\n\nouter()\n"
    err = user_error(load, code)
    assert err.code == "scene-error"
    f = err.fields
    assert f["exception"] == "ZeroDivisionError"
    assert f["scene"] is None
    assert f["line"] == 2
    assert f["message"] == "ZeroDivisionError: division by zero (line 2)"
    assert [(fr["line"], fr["function"]) for fr in f["traceback"]] == [(7, "<module>"), (5, "outer"), (2, "inner")]
    assert all(fr["file"] == usercode.DISPLAY_NAME for fr in f["traceback"])


def test_system_exit_is_the_authors_too():
    err = user_error(load, "import sys\nsys.exit(3)\n")
    assert (err.code, err.fields["exception"], err.fields["line"]) == ("scene-error", "SystemExit", 2)


def test_frames_outside_the_file_are_left_out():
    code = "import json\ndef go():\n    json.loads('{')\n"
    _, module = load(code)
    try:
        module.go()
    except ValueError as err:
        frames = usercode.user_frames(err.__traceback__)
        error = usercode.scene_error(err, "A")
    assert [fr["line"] for fr in frames] == [3]
    assert error.fields["scene"] == "A"
    assert error.fields["exception"] == "JSONDecodeError"


def test_only_the_last_twenty_frames_are_kept():
    _, module = load("def down(n):\n    if n == 0:\n        raise RuntimeError('deep')\n    down(n - 1)\n")
    try:
        module.down(50)
    except RuntimeError as err:
        frames = usercode.user_frames(err.__traceback__)
    assert len(frames) == 20
    assert frames[-1]["line"] == 3


def test_an_exception_without_text_is_named_alone():
    err = usercode.scene_error(KeyboardInterrupt(), "A")
    assert err.fields["message"] == "KeyboardInterrupt"
    assert err.fields["line"] is None


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT])
def test_a_full_disk_is_output_too_large(code):
    err = usercode.scene_error(OSError(code, "No space left"), "A")
    assert err.code == "output-too-large"
    assert err.fields["scene"] == "A"


def test_other_os_errors_are_scene_errors():
    err = usercode.scene_error(FileNotFoundError(errno.ENOENT, "gone"), "A")
    assert (err.code, err.fields["exception"]) == ("scene-error", "FileNotFoundError")


def test_latex_error_names_the_first_tex_line_and_expression():
    err = usercode.latex_error("Undefined control sequence. l.7 \\foo\nMore", "  \\foo{x}  ", None, "A")
    assert err.code == "latex-error"
    f = err.fields
    assert f["message"] == "LaTeX error: Undefined control sequence. l.7 \\foo in '\\\\foo{x}'"
    assert f["tex_error"].endswith("More")
    assert f["expression"] == "  \\foo{x}  "
    assert (f["line"], f["traceback"]) == (None, [])
    assert usercode.latex_error(None, "", None, "A").fields["message"] == "LaTeX error: LaTeX failed"
