"""The check's own logic, on made-up targets (no engine needed)."""

import sys
import types

import pytest

from manimd_worker import enginecheck as check
from manimd_worker.enginecheck import EngineMismatch, attr, call, sets


def plain(a, b=1):
    pass


def starred(self, *animations, **kwargs):
    pass


def keyword_only(self, pixels, *, repeat=1):
    pass


def positional_only(a, b, /, c, *, d, **e):
    pass


class Writer:
    mode = "rgb"

    def __init__(self, scene):
        self.scene = scene
        self.path = None

    def write(self, frame, *, repeat=1):
        pass

    @staticmethod
    def make(x):
        pass

    @classmethod
    def build(cls, y):
        pass


class SubWriter(Writer):
    pass


@pytest.fixture
def fake_engine(monkeypatch):
    module = types.ModuleType("fake_engine_mod")
    module.Writer = Writer
    module.SubWriter = SubWriter
    module.plain = plain
    module.sp = object()
    monkeypatch.setitem(sys.modules, "fake_engine_mod", module)
    return module


@pytest.mark.parametrize(
    "fn, text",
    [
        (plain, "a, b"),
        (starred, "self, *animations, **kwargs"),
        (keyword_only, "self, pixels, *, repeat"),
        (positional_only, "a, b, /, c, *, d, **e"),
        (lambda: None, ""),
    ],
)
def test_describe_writes_parameters_like_a_def(fn, text):
    assert check.describe(fn) == text


def test_describe_follows_wrappers():
    import functools

    @functools.wraps(keyword_only)
    def wrapper(*args, **kwargs):
        pass

    assert check.describe(wrapper) == "self, pixels, *, repeat"


def test_call_rows_are_normalized():
    assert call("m:f", " self ,pixels,  *, repeat ").expected == "self, pixels, *, repeat"
    assert sets("m:C.__init__", "a, b,").expected == ("a", "b")


def test_rows_that_hold(fake_engine):
    rows = [
        call("fake_engine_mod:plain", "a, b"),
        call("fake_engine_mod:Writer.write", "self, frame, *, repeat"),
        # Inherited members are found through the class's MRO.
        call("fake_engine_mod:SubWriter.write", "self, frame, *, repeat"),
        call("fake_engine_mod:Writer.make", "x"),
        call("fake_engine_mod:Writer.build", "cls, y"),
        attr("fake_engine_mod:sp"),
        attr("fake_engine_mod:Writer.mode"),
        sets("fake_engine_mod:Writer.__init__", "scene, path"),
        # A module not imported yet is imported.
        attr("json.decoder:JSONDecodeError"),
    ]
    for row in rows:
        assert check.check_row(row) is None, row
    check.verify("fake", "1.0", "1.0", rows)


@pytest.mark.parametrize(
    "row, found",
    [
        (call("fake_engine_mod:plain", "a"), "(a, b)"),
        (call("fake_engine_mod:Writer.write", "self, frame, repeat"), "(self, frame, *, repeat)"),
        (call("fake_engine_mod:Writer.gone", "self"), "missing: fake_engine_mod.Writer has no attribute 'gone'"),
        (attr("fake_engine_mod:nothing"), "missing: fake_engine_mod has no attribute 'nothing'"),
        (attr("fake_engine_mod:Writer.mode.upper.nope"), "missing: fake_engine_mod.Writer.mode.upper has no attribute 'nope'"),
        (sets("fake_engine_mod:Writer.__init__", "scene, size"), "no size"),
        (sets("fake_engine_mod:sp", "x"), "not a Python function (object)"),
        (call("fake_engine_mod:sp", "x"), "no signature"),
    ],
)
def test_rows_that_fail_say_what_was_found(fake_engine, row, found):
    bad = check.check_row(row)
    assert bad is not None
    assert bad[1].startswith(found)


def test_a_missing_module_is_a_mismatch():
    bad = check.check_row(attr("no_such_module_for_manimd:x"))
    assert bad[1].startswith("missing: module no_such_module_for_manimd cannot be imported")


def test_verify_names_every_failing_target_and_the_versions(fake_engine):
    rows = [
        call("fake_engine_mod:plain", "a, b"),
        call("fake_engine_mod:Writer.write", "self, frame"),
        attr("fake_engine_mod:gone"),
    ]
    with pytest.raises(EngineMismatch) as info:
        check.verify("fake", "1.0", "1.0", rows)
    err = info.value
    lines = str(err).splitlines()
    assert lines[0] == "fake 1.0: the worker's patches do not fit it"
    assert lines[1] == "fake_engine_mod:Writer.write: expected (self, frame), found (self, frame, *, repeat)"
    assert lines[2].startswith("fake_engine_mod:gone: expected an attribute, found missing")
    assert len(lines) == 3
    assert err.fields["engine"] == "fake"
    assert err.fields["expected_version"] == err.fields["found_version"] == "1.0"
    assert [t["target"] for t in err.fields["targets"]] == ["fake_engine_mod:Writer.write", "fake_engine_mod:gone"]


def test_verify_refuses_another_version_even_when_the_targets_fit(fake_engine):
    with pytest.raises(EngineMismatch) as info:
        check.verify("fake", "1.0", "1.1", [attr("fake_engine_mod:sp")])
    assert str(info.value) == "fake 1.1 is installed, but the worker is written for 1.0"
    assert info.value.fields["targets"] == []


def test_long_findings_are_clipped(fake_engine, monkeypatch):
    params = ", ".join(f"p{i}" for i in range(200))
    namespace = {}
    exec(f"def wide({params}): pass", namespace)
    monkeypatch.setattr(fake_engine, "plain", namespace["wide"])
    with pytest.raises(EngineMismatch) as info:
        check.verify("fake", "1.0", "1.0", [call("fake_engine_mod:plain", "a, b")])
    found = info.value.fields["targets"][0]["found"]
    assert len(found) == 300 and found.endswith("\u2026")
