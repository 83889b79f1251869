#!/usr/bin/env python3
"""Writes manimd_client/_types.py from manimd's OpenAPI document.

The document is the one source of the client's types: every schema under
`components.schemas` becomes a frozen dataclass (objects), a `Literal`
alias (string enums) or a `Union` of dataclasses (`oneOf`), each with a
`from_json` that reads the server's JSON and, for objects, a `to_json`
that writes a request body.

    manimd openapi | python generate_types.py -           # write the file
    python generate_types.py --check http://127.0.0.1:8080/openapi.json

`--check` writes nothing and exits 1, with a diff, when the checked-in file
differs from what the document makes. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import difflib
import json
import keyword
import sys
import urllib.request
from pathlib import Path

OUT = Path(__file__).resolve().parent / "manimd_client" / "_types.py"

HEADER = '''\
"""The API's types, generated from manimd's OpenAPI document by
clients/python/generate_types.py: do not edit by hand."""

from __future__ import annotations

from dataclasses import dataclass, field as _field
from typing import Any, Literal, Union


'''


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def py_name(name: str) -> str:
    """A field name Python accepts (`self` and `import` get a trailing `_`)."""
    return name + "_" if keyword.iskeyword(name) or name == "self" else name


def camel(tag: str) -> str:
    return "".join(part.capitalize() for part in tag.replace("_", "-").split("-"))


def is_scalar(schema: dict) -> bool:
    """A plain value: a string, number or boolean, not an object."""
    return "$ref" not in schema and "properties" not in schema and schema.get("type") in (
        "string", "integer", "number", "boolean")


def strip_null(schema: dict) -> tuple[dict, bool]:
    """The schema without its `null` alternative, and whether it had one."""
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = [k for k in kind if k != "null"]
        return {**schema, "type": rest[0] if len(rest) == 1 else rest}, True
    one = schema.get("oneOf")
    if one and any(s.get("type") == "null" for s in one):
        rest = [s for s in one if s.get("type") != "null"]
        if len(rest) == 1:
            return rest[0], True
        return {**schema, "oneOf": rest}, True
    return schema, False


class Generator:
    def __init__(self, doc: dict):
        self.schemas: dict = doc["components"]["schemas"]
        self.out: list[str] = []

    # What a schema is, as a Python annotation and a converter from JSON.

    def kind_of(self, name: str) -> str:
        s = self.schemas[name]
        if "enum" in s:
            return "enum"
        if "oneOf" in s and all(is_scalar(v) for v in s["oneOf"]):
            return "scalar"
        if "oneOf" in s:
            return "union"
        return "object"

    def annotation(self, schema: dict) -> str:
        schema, nullable = strip_null(schema)
        ann = self._annotation(schema)
        return f"{ann} | None" if nullable and ann != "Any" else ann

    def _annotation(self, s: dict) -> str:
        if "$ref" in s:
            return ref_name(s["$ref"])
        kind = s.get("type")
        if kind == "array":
            return f"list[{self.annotation(s.get('items', {}))}]"
        if "enum" in s and kind == "string":
            return "Literal[" + ", ".join(json.dumps(v) for v in s["enum"]) + "]"
        return {
            "string": "str",
            "integer": "int",
            "number": "float",
            "boolean": "bool",
            "object": "dict[str, Any]",
        }.get(kind, "Any")

    def converter(self, schema: dict, value: str) -> str:
        """An expression that turns JSON `value` into the annotation's type."""
        schema, nullable = strip_null(schema)
        expr = self._converter(schema, value)
        if nullable and expr != value:
            return f"None if {value} is None else {expr}"
        return expr

    def _converter(self, s: dict, value: str) -> str:
        if "$ref" in s:
            name = ref_name(s["$ref"])
            if self.kind_of(name) == "object":
                return f"{name}.from_json({value})"
            if self.kind_of(name) == "union":
                return f"{name.lower()}_from_json({value})"
            return value
        kind = s.get("type")
        if kind == "array":
            inner = self.converter(s.get("items", {}), "x")
            return value if inner == "x" else f"[{inner} for x in {value}]"
        if kind == "number":
            return f"float({value})"
        return value

    def writer(self, schema: dict, value: str) -> str:
        """An expression that turns `value` back into JSON."""
        schema, nullable = strip_null(schema)
        expr = self._writer(schema, value)
        if nullable and expr != value:
            return f"None if {value} is None else {expr}"
        return expr

    def _writer(self, s: dict, value: str) -> str:
        if "$ref" in s and self.kind_of(ref_name(s["$ref"])) not in ("enum", "scalar"):
            return f"{value}.to_json()"
        if s.get("type") == "array":
            inner = self.writer(s.get("items", {}), "x")
            return value if inner == "x" else f"[{inner} for x in {value}]"
        return value

    # Emitting.

    def emit(self, line: str = "") -> None:
        self.out.append(line)

    def docstring(self, text: str | None, indent: str) -> None:
        if text:
            text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
            lines = text.strip().splitlines()
            if len(lines) == 1:
                self.emit(f'{indent}"""{lines[0]}"""')
            else:
                self.emit(f'{indent}"""{lines[0]}')
                for line in lines[1:]:
                    self.emit(f"{indent}{line}".rstrip())
                self.emit(f'{indent}"""')

    def scalar(self, name: str, s: dict) -> None:
        """A `oneOf` of plain values (such as `"auto"` or a number): an
        alias of their union, read and written as it is."""
        self.emit(f"{name} = Union[{', '.join(self._annotation(v) for v in s['oneOf'])}]")
        self.docstring(s.get("description"), "")
        self.emit()

    def enum(self, name: str, s: dict) -> None:
        values = ", ".join(json.dumps(v) for v in s["enum"])
        self.emit(f"{name} = Literal[{values}]")
        self.docstring(s.get("description"), "")
        self.emit()

    def dataclass(self, name: str, s: dict, tag: tuple[str, str] | None = None) -> None:
        """An object schema as a dataclass. `tag` is a union variant's
        (property, value): fixed, so left out of the constructor."""
        props: dict = {}
        required: list[str] = []
        extra = False
        parts = s.get("allOf", [s])
        for part in parts:
            props.update(part.get("properties", {}))
            required += part.get("required", [])
            if part.get("type") == "object" and "properties" not in part:
                extra = True  # further fields of the kind, kept in `extra`
        if tag:
            props = {k: v for k, v in props.items() if k != tag[0]}
            required = [r for r in required if r != tag[0]]
        first = [k for k in required if k in props]
        rest = sorted(k for k in props if k not in first)
        self.emit("@dataclass(frozen=True)")
        self.emit(f"class {name}:")
        description = s.get("description") or next(
            (p.get("description") for p in parts if p.get("description")), None
        )
        self.docstring(description, "    ")
        if tag:
            self.emit(f"    {tag[0]}: Literal[{json.dumps(tag[1])}] = _field(default={json.dumps(tag[1])}, init=False)")
        for key in first:
            self.emit(f"    {py_name(key)}: {self.annotation(props[key])}")
        for key in rest:
            ann = self.annotation(props[key])
            if not ann.endswith("| None") and ann != "Any":
                ann += " | None"
            self.emit(f"    {py_name(key)}: {ann} = None")
        if extra:
            self.emit("    extra: dict[str, Any] = _field(default_factory=dict)")
        self.emit()
        self.emit("    @classmethod")
        self.emit(f"    def from_json(cls, d: dict[str, Any]) -> {name}:")
        self.emit("        return cls(")
        for key in first:
            self.emit(f"            {py_name(key)}={self.converter(props[key], f'd[{key!r}]')},")
        for key in rest:
            conv = self._converter(strip_null(props[key])[0], "v")
            if conv == "v":
                self.emit(f"            {py_name(key)}=d.get({key!r}),")
            else:
                self.emit(f"            {py_name(key)}=_opt(d.get({key!r}), lambda v: {conv}),")
        if extra:
            known = tuple(sorted(props))
            self.emit(f"            extra={{k: v for k, v in d.items() if k not in {known!r}}},")
        self.emit("        )")
        self.emit()
        self.emit("    def to_json(self) -> dict[str, Any]:")
        self.emit("        d: dict[str, Any] = {}")
        if tag:
            self.emit(f"        d[{tag[0]!r}] = self.{py_name(tag[0])}")
        for key in first + rest:
            attr = f"self.{py_name(key)}"
            self.emit(f"        if {attr} is not None:")
            self.emit(f"            d[{key!r}] = {self.writer(props[key], attr)}")
        if extra:
            self.emit("        d.update(self.extra)")
        self.emit("        return d")
        self.emit()
        self.emit()

    def union(self, name: str, s: dict) -> None:
        """A `oneOf`: internally tagged variants (a property with one fixed
        value) are told apart by that property, the others by their
        required fields, in order, as the server's untagged enums are."""
        variants: list[tuple[str, tuple[str, str] | None, list[str]]] = []
        for v in s["oneOf"]:
            if "$ref" in v:
                ref = ref_name(v["$ref"])
                variants.append((ref, None, self.schemas[ref].get("required", [])))
                continue
            tag = next(
                ((k, p["enum"][0]) for k, p in v.get("properties", {}).items()
                 if p.get("type") == "string" and len(p.get("enum", [])) == 1),
                None,
            )
            cls = v.get("title") or (name + camel(tag[1]) if tag else None)
            if cls is None:
                raise SystemExit(f"{name}: a oneOf variant with neither a title nor a tag")
            self.dataclass(cls, v, tag)
            variants.append((cls, tag, [r for r in v.get("required", []) if not tag or r != tag[0]]))
        self.emit(f"{name} = Union[{', '.join(v[0] for v in variants)}]")
        self.docstring(s.get("description"), "")
        self.emit()
        self.emit()
        self.emit(f"def {name.lower()}_from_json(d: dict[str, Any]) -> {name}:")
        self.emit(f'    """Reads one {name} variant."""')
        for cls, tag, required in variants:
            if tag:
                self.emit(f"    if d.get({tag[0]!r}) == {tag[1]!r}:")
            else:
                self.emit(f"    if all(k in d for k in {tuple(required)!r}):")
            self.emit(f"        return {cls}.from_json(d)")
        self.emit(f'    raise ValueError(f"not a {name}: {{sorted(d)}}")')
        self.emit()
        self.emit()

    def run(self) -> str:
        self.emit("def _opt(v: Any, f: Any) -> Any:")
        self.emit("    return None if v is None else f(v)")
        self.emit()
        self.emit()
        for name in sorted(self.schemas):
            if self.kind_of(name) == "enum":
                self.enum(name, self.schemas[name])
            elif self.kind_of(name) == "scalar":
                self.scalar(name, self.schemas[name])
        self.emit()
        for name in sorted(self.schemas):
            kind = self.kind_of(name)
            if kind == "object":
                self.dataclass(name, self.schemas[name])
            elif kind == "union":
                self.union(name, self.schemas[name])
        return HEADER + "\n".join(self.out).rstrip() + "\n"


def load(source: str) -> dict:
    if source == "-":
        return json.load(sys.stdin)
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as r:
            return json.load(r)
    return json.loads(Path(source).read_text())


def generate(doc: dict) -> str:
    return Generator(doc).run()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="the document: a file, a URL, or - for stdin")
    ap.add_argument("--check", action="store_true", help="compare with the checked-in file")
    args = ap.parse_args()
    text = generate(load(args.source))
    if not args.check:
        OUT.write_text(text)
        return 0
    current = OUT.read_text() if OUT.exists() else ""
    if current == text:
        return 0
    sys.stdout.writelines(difflib.unified_diff(
        current.splitlines(True), text.splitlines(True), str(OUT), "generated"))
    print(f"{OUT} is stale: regenerate it with generate_types.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
