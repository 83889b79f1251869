"""The checked-in types are what the generator makes from the document the
server serves now: a server change that was not regenerated fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx

import manimd_client._types as installed

HERE = Path(__file__).resolve().parent.parent


def generator():
    spec = importlib.util.spec_from_file_location("generate_types", HERE / "generate_types.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_types_match_the_servers_openapi_document(url):
    doc = httpx.get(f"{url}/openapi.json").raise_for_status().json()
    made = generator().generate(doc)
    checked_in = (HERE / "manimd_client" / "_types.py").read_text()
    assert made == checked_in, (
        "manimd_client/_types.py is stale: run `manimd openapi | python clients/python/generate_types.py -`"
    )
    # And pip installed that same file.
    assert Path(installed.__file__).read_text() == checked_in


def test_every_schema_has_a_type(url):
    doc = httpx.get(f"{url}/openapi.json").raise_for_status().json()
    for name in doc["components"]["schemas"]:
        assert hasattr(installed, name), name
