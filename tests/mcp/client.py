"""Drives manimd's MCP server with the official MCP Python SDK's client.

Run by tests/it/mcp.rs in the tools venv (/opt/manimd/venv/tools):

    client.py stdio BINARY SERVER_URL [--key KEY] PLAN OUT
    client.py http MCP_URL [--key KEY] PLAN OUT

stdio spawns `BINARY mcp --server SERVER_URL` through the SDK's stdio
client; http connects to MCP_URL with the SDK's Streamable HTTP client, the
key (when given) sent as `Authorization: Bearer`. PLAN is a JSON file: a
list of steps, each {"name": label, "tool": tool name, "args": {...}},
plus the special steps "initialize" and "list_tools" (given as tool). Every
step's outcome goes into OUT as JSON, one entry per label: what the server
answered, read through the SDK's types (text, images decoded with their PNG
size, structured content, isError). A step's exception is recorded too, so
the Rust test asserts on everything the assistant would have seen.
"""

import asyncio
import base64
import json
import struct
import sys
import traceback

import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


def png_size(data: bytes):
    """(width, height) of a PNG, or None when it is not one."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return list(struct.unpack(">II", data[16:24]))


def describe(result) -> dict:
    out = {"is_error": bool(result.is_error), "texts": [], "images": []}
    for block in result.content:
        if block.type == "text":
            out["texts"].append(block.text)
        elif block.type == "image":
            data = base64.b64decode(block.data)
            out["images"].append(
                {"mime": block.mime_type, "bytes": len(data), "png": png_size(data)}
            )
    out["structured"] = result.structured_content
    return out


async def run_plan(session: ClientSession, plan: list) -> dict:
    report = {}
    for step in plan:
        name, tool = step["name"], step["tool"]
        try:
            if tool == "initialize":
                init = await session.initialize()
                report[name] = {
                    "server": init.server_info.name,
                    "version": init.server_info.version,
                    "protocol": init.protocol_version,
                    "tools": init.capabilities.tools is not None,
                }
            elif tool == "list_tools":
                listed = await session.list_tools()
                report[name] = {
                    t.name: {"description": t.description, "schema": t.input_schema}
                    for t in listed.tools
                }
            else:
                result = await session.call_tool(
                    tool, step.get("args", {}), read_timeout_seconds=600
                )
                report[name] = describe(result)
        except Exception as e:  # recorded for the test to judge
            report[name] = {
                "exception": f"{type(e).__name__}: {e}",
                "code": getattr(e, "code", None),
                "data": repr(getattr(e, "data", None)),
                "trace": traceback.format_exc(),
            }
            if tool == "initialize":
                break
    return report


async def main(argv: list) -> None:
    transport, rest = argv[0], argv[1:]
    key = None
    if "--key" in rest:
        at = rest.index("--key")
        key = rest[at + 1]
        del rest[at : at + 2]
    if transport == "stdio":
        binary, server, plan_path, out_path = rest
    else:
        url, plan_path, out_path = rest
    with open(plan_path) as f:
        plan = json.load(f)

    if transport == "stdio":
        env = {"MANIMD_API_KEY": key} if key else {}
        params = StdioServerParameters(
            command=binary, args=["mcp", "--server", server], env=env
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                report = await run_plan(session, plan)
    else:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            async with httpx2.AsyncClient(
                headers=headers, timeout=httpx2.Timeout(30, read=600)
            ) as http:
                async with streamable_http_client(url, http_client=http) as (read, write):
                    async with ClientSession(read, write) as session:
                        report = await run_plan(session, plan)
        except BaseException as e:  # a refused connection ends the session itself
            report = {"transport_error": f"{type(e).__name__}: {e}"}
            if isinstance(e, BaseExceptionGroup):
                report["transport_error"] += " " + " ".join(
                    f"{type(x).__name__}: {x}" for x in e.exceptions
                )
    with open(out_path, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
