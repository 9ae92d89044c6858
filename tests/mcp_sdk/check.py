"""Drives avm's MCP server with the official MCP Python SDK, as an agent's client would.

Run by the e2e test `mcp_sdk::the_official_python_sdk_drives_avm_over_stdio_and_http`:

    python check.py --avm target/debug/avm --db /tmp/x/avm.db [--url http://127.0.0.1:PORT/mcp]

Checks, over stdio and (with --url) streamable HTTP: every tool's input schema is one a client
can fill (no null unions, plain types, enums and minimums where they apply) and carries
annotations; remember, recall, search, semantic-free tools, inbox and forget work with typed
arguments; string arguments for plain scalars are coerced as the MCP Inspector sends them;
bad arguments come back as `isError` results starting with `invalid-input:`; resources list and
read. Exits non-zero with the first failure.
"""

import argparse
import asyncio
import logging
import sys

import httpx2 as httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def fail(msg):
    raise AssertionError(msg)


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


def walk_schema(tool, schema, where):
    """No `null` in a type, no type lists at all: clients (the Inspector) take plain types."""
    t = schema.get("type")
    if isinstance(t, list):
        fail(f"{tool}: {where} has a type union {t}")
    if "anyOf" in schema or "oneOf" in schema:
        fail(f"{tool}: {where} uses anyOf/oneOf: {schema}")
    for name, sub in (schema.get("properties") or {}).items():
        walk_schema(tool, sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        walk_schema(tool, schema["items"], f"{where}[]")


async def check_tools(session, label):
    tools = (await session.list_tools()).tools
    names = {t.name for t in tools}
    for needed in ["avm_remember", "avm_recall", "avm_search", "avm_inbox", "avm_forget", "avm_tell"]:
        if needed not in names:
            fail(f"{label}: no tool {needed} in {sorted(names)}")
    by_name = {t.name: t for t in tools}
    for t in tools:
        walk_schema(t.name, t.input_schema, "input")
        if t.annotations is None:
            fail(f"{label}: {t.name} has no annotations")
    recall = by_name["avm_recall"].input_schema["properties"]
    if recall["max_tokens"].get("type") != "integer" or "minimum" not in recall["max_tokens"]:
        fail(f"{label}: avm_recall.max_tokens is {recall['max_tokens']}")
    if "enum" not in recall["strategy"]:
        fail(f"{label}: avm_recall.strategy has no enum: {recall['strategy']}")
    if "enum" not in by_name["avm_tell"].input_schema["properties"]["priority"]:
        fail(f"{label}: avm_tell.priority has no enum")
    if not by_name["avm_recall"].annotations.read_only_hint:
        fail(f"{label}: avm_recall is not marked read-only")
    if not by_name["avm_forget"].annotations.destructive_hint:
        fail(f"{label}: avm_forget is not marked destructive")
    return by_name


async def call(session, name, args):
    r = await session.call_tool(name, args)
    return r, text_of(r)


async def exercise(session, label, word):
    await check_tools(session, label)
    r, t = await call(session, "avm_remember", {
        "content": f"The {word} rollout is blocked on the staging certificate",
        "title": f"{word} rollout",
        "importance": 0.8,
        "tags": [word, "deploy"],
    })
    if r.is_error:
        fail(f"{label}: remember failed: {t}")
    path = next((w for w in t.split() if w.startswith("/memory/")), None)
    if path is None:
        fail(f"{label}: remember answered no path: {t}")
    # Typed arguments.
    r, t = await call(session, "avm_recall", {"query": f"{word} rollout", "max_tokens": 300})
    if r.is_error or word not in t:
        fail(f"{label}: recall: {t}")
    # The Inspector sends every field as a string: plain scalars are coerced.
    r, t = await call(session, "avm_recall", {"query": f"{word} rollout", "max_tokens": "300"})
    if r.is_error or word not in t:
        fail(f"{label}: recall with max_tokens as a string: {t}")
    r, t = await call(session, "avm_search", {"query": word, "limit": "5"})
    if r.is_error or path not in t:
        fail(f"{label}: search with limit as a string: {t}")
    # Bad arguments: an isError result a model can read, never a protocol error.
    for bad in [{"query": word, "max_tokens": "lots"}, {"query": word, "max_tokens": -5},
                {"query": word, "strategy": "vibes"}, {}]:
        r, t = await call(session, "avm_recall", bad)
        if not r.is_error or not t.startswith("invalid-input:"):
            fail(f"{label}: recall {bad} answered {r.is_error} {t!r}")
    # Messages: unread by default, marked read only when asked.
    r, t = await call(session, "avm_tell", {"to": "alice", "message": f"{word} ping", "priority": "urgent"})
    if r.is_error:
        fail(f"{label}: tell: {t}")
    r, t = await call(session, "avm_inbox", {})
    if r.is_error or f"{word} ping" not in t:
        fail(f"{label}: inbox: {t}")
    r, t = await call(session, "avm_inbox", {"mark_read": "true"})
    r, t = await call(session, "avm_inbox", {})
    if f"{word} ping" in t:
        fail(f"{label}: a message marked read is still unread: {t}")
    # Resources.
    res = (await session.list_resources()).resources
    mine = [x for x in res if str(x.uri).endswith(path.rsplit("/", 1)[1])]
    if not mine:
        fail(f"{label}: {path} is not among the resources")
    if not (mine[0].title or mine[0].description):
        fail(f"{label}: resource {mine[0].uri} has no title or description")
    body = await session.read_resource(mine[0].uri)
    if word not in "".join(getattr(c, "text", "") for c in body.contents):
        fail(f"{label}: reading {mine[0].uri} gave {body}")
    # Forget goes to the trash: recall no longer finds it.
    r, t = await call(session, "avm_forget", {"path": path})
    if r.is_error:
        fail(f"{label}: forget: {t}")
    r, t = await call(session, "avm_search", {"query": word})
    if path in t:
        fail(f"{label}: a forgotten memory is still found: {t}")


async def over_stdio(avm, db):
    params = StdioServerParameters(command=avm, args=["--db", db, "--agent", "alice", "mcp"])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await exercise(session, "stdio", "tamarind")


async def over_http(url):
    async with httpx.AsyncClient(headers={"X-Avm-Agent": "alice"}, timeout=30) as client:
        async with streamable_http_client(url, http_client=client) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await exercise(session, "http", "quince")


class Warnings(logging.Handler):
    """The SDK's own warnings (a session it could not end, a result it could not validate):
    each one is a failure here, since a user would see it."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = []

    def emit(self, record):
        self.seen.append(record.getMessage())


def main():
    warnings = Warnings()
    logging.getLogger("mcp").addHandler(warnings)
    ap = argparse.ArgumentParser()
    ap.add_argument("--avm", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--url")
    a = ap.parse_args()
    asyncio.run(over_stdio(a.avm, a.db))
    print("stdio: ok")
    if a.url:
        asyncio.run(over_http(a.url))
        print("http: ok")
    if warnings.seen:
        fail(f"the SDK warned: {warnings.seen}")


if __name__ == "__main__":
    try:
        main()
    except BaseException as e:  # noqa: BLE001 - the SDK's task groups wrap the failure
        while isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
