"""A LangGraph store on avm: ``AVMStore`` implements ``langgraph.store.base.BaseStore``.

Namespaces are avm directories and keys are files holding the value as JSON::

    ("users", "42", "memories"), "pref"  ->  <root>/users/42/memories/pref.json

with ``root`` ``/memory/shared/langgraph`` by default (so agents can recall what graphs
store), each label and key percent-encoded where avm paths would give a character a meaning
(``/``, ``:``, ``?``, ``%``, a leading ``.``). Values are versioned (``AVM.history``), a
delete goes to avm's trash, ``search(query=…)`` uses avm's hybrid search (full text and
meaning) when the embedding model is installed and full-text search otherwise, and ``ttl``
(minutes, as LangGraph counts) becomes the node's expiry.

    from avm import AVM
    from avm.langgraph import AVMStore
    store = AVMStore(AVM())
    store.put(("users", "42"), "pref", {"food": "pizza"})
    store.search(("users",), query="pizza")

Requires ``langgraph`` (``pip install langgraph``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote, unquote

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from avm._api import AVM, Node
from avm._avm import NotFound

__all__ = ["AVMStore"]

_SAFE = "-_.~@+=,!$&'()*;"
_EXT = ".json"


def _enc(label: str) -> str:
    s = quote(str(label), safe=_SAFE)
    if s.startswith("."):
        s = "%2E" + s[1:]
    return s


def _dec(seg: str) -> str:
    return unquote(seg)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _compare(actual: Any, cond: Any) -> bool:
    """LangGraph's filter semantics: equality, or a dict of ``$eq``/``$ne``/``$gt``/
    ``$gte``/``$lt``/``$lte``/``$in``/``$nin``, or nested dicts matched key by key."""
    if isinstance(cond, dict):
        if cond and all(isinstance(k, str) and k.startswith("$") for k in cond):
            for op, v in cond.items():
                try:
                    ok = {
                        "$eq": lambda: actual == v,
                        "$ne": lambda: actual != v,
                        "$gt": lambda: actual is not None and actual > v,
                        "$gte": lambda: actual is not None and actual >= v,
                        "$lt": lambda: actual is not None and actual < v,
                        "$lte": lambda: actual is not None and actual <= v,
                        "$in": lambda: actual in v,
                        "$nin": lambda: actual not in v,
                    }[op]()
                except (KeyError, TypeError):
                    raise ValueError(f"unsupported filter operator {op!r}") from None
                if not ok:
                    return False
            return True
        if not isinstance(actual, dict):
            return False
        return all(_compare(actual.get(k), v) for k, v in cond.items())
    return actual == cond


def _matches(value: Dict[str, Any], flt: Optional[Dict[str, Any]]) -> bool:
    if not flt:
        return True
    for k, cond in flt.items():
        cur: Any = value
        for part in k.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if not _compare(cur, cond):
            return False
    return True


def _ns_matches(ns: Tuple[str, ...], cond: MatchCondition) -> bool:
    path = tuple(cond.path)
    if len(path) > len(ns):
        return False
    part = ns[: len(path)] if cond.match_type == "prefix" else ns[len(ns) - len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, part))


class AVMStore(BaseStore):
    """LangGraph's long-term memory store kept in avm (see the module's documentation).

    ``avm`` is an opened ``AVM`` (default: ``AVM()``, the default database); pass
    ``AVM(agent="…")`` for a store that acts as an agent, with a ``root`` that agent may
    write (``/memory/private/<agent>/langgraph``). ``search_mode`` is ``"auto"`` (hybrid when
    the embedding model is installed, else full text), ``"fts"``, ``"hybrid"`` or
    ``"semantic"``.
    """

    supports_ttl: bool = True

    def __init__(
        self,
        avm: Optional[AVM] = None,
        *,
        root: str = "/memory/shared/langgraph",
        search_mode: str = "auto",
    ) -> None:
        self.avm = avm if avm is not None else AVM()
        self.root = "/" + root.strip("/")
        self.search_mode = search_mode

    # Paths

    def _dir(self, namespace: Tuple[str, ...]) -> str:
        if any(not isinstance(p, str) or p == "" for p in namespace):
            raise ValueError(f"namespace labels must be non-empty strings: {namespace!r}")
        return "/".join([self.root] + [_enc(p) for p in namespace])

    def _path(self, namespace: Tuple[str, ...], key: str) -> str:
        if not isinstance(key, str) or key == "":
            raise ValueError("key must be a non-empty string")
        return f"{self._dir(namespace)}/{_enc(key)}{_EXT}"

    def _split(self, path: str) -> Optional[Tuple[Tuple[str, ...], str]]:
        if not path.startswith(self.root + "/") or not path.endswith(_EXT):
            return None
        segs = path[len(self.root) + 1 : -len(_EXT)].split("/")
        if len(segs) < 2:
            return None
        return tuple(_dec(s) for s in segs[:-1]), _dec(segs[-1])

    def _item(self, node: Node, cls: Any = Item, **extra: Any) -> Optional[Any]:
        at = self._split(node.path)
        if at is None:
            return None
        try:
            value = json.loads(node.content) if isinstance(node.content, str) else None
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        return cls(
            value=value,
            key=at[1],
            namespace=at[0],
            created_at=node.created_at or _now(),
            updated_at=node.updated_at or _now(),
            **extra,
        )

    def _files(self, prefix: str) -> List[str]:
        """Every file path below ``prefix`` (paged through avm's listing)."""
        out: List[str] = []
        offset, page = 0, 1000
        while True:
            try:
                entries = self.avm.ls(prefix, recursive=True, limit=page, offset=offset)
            except NotFound:
                return out
            out.extend(e["path"] for e in entries if e.get("kind") != "dir")
            if len(entries) < page:
                return out
            offset += page

    # Operations

    def _get(self, op: GetOp) -> Optional[Item]:
        node = self.avm.read(self._path(tuple(op.namespace), op.key))
        return self._item(node) if node is not None else None

    def _put(self, op: PutOp) -> None:
        path = self._path(tuple(op.namespace), op.key)
        if op.value is None:
            self.avm.delete(path)
            return
        ttl = getattr(op, "ttl", None)
        self.avm.write(
            path,
            json.dumps(op.value, ensure_ascii=False, default=str),
            ttl=None if ttl is None else max(int(ttl * 60), 1),
        )

    def _mode(self) -> str:
        if self.search_mode == "auto":
            return "hybrid" if self.avm.semantic_available else "fts"
        return self.search_mode

    def _search(self, op: SearchOp) -> List[SearchItem]:
        prefix = tuple(op.namespace_prefix)
        scope = self._dir(prefix) if prefix else self.root
        items: List[SearchItem] = []
        if op.query:
            want = max(op.limit + op.offset, 10) * (4 if op.filter else 2)
            try:
                hits = self.avm.search(op.query, want, path=scope, mode=self._mode())
            except NotFound:
                return []
            for node, score in hits:
                it = self._item(node, SearchItem, score=score)
                if it is not None and _matches(it.value, op.filter):
                    items.append(it)
        else:
            for path in self._files(scope):
                node = self.avm.read(path)
                it = self._item(node, SearchItem) if node is not None else None
                if it is not None and _matches(it.value, op.filter):
                    items.append(it)
            items.sort(key=lambda i: i.updated_at, reverse=True)
        return items[op.offset : op.offset + op.limit]

    def _list_namespaces(self, op: ListNamespacesOp) -> List[Tuple[str, ...]]:
        seen = set()
        for path in self._files(self.root):
            at = self._split(path)
            if at is None:
                continue
            ns = at[0]
            if op.match_conditions and not all(_ns_matches(ns, c) for c in op.match_conditions):
                continue
            if op.max_depth is not None:
                ns = ns[: op.max_depth]
            seen.add(ns)
        return sorted(seen)[op.offset : op.offset + op.limit]

    def batch(self, ops: Iterable[Op]) -> List[Result]:
        """Runs the operations in order; one result per operation."""
        results: List[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(self._get(op))
            elif isinstance(op, SearchOp):
                results.append(self._search(op))
            elif isinstance(op, PutOp):
                self._put(op)
                results.append(None)
            elif isinstance(op, ListNamespacesOp):
                results.append(self._list_namespaces(op))
            else:
                raise ValueError(f"unknown operation {type(op).__name__}")
        return results

    async def abatch(self, ops: Iterable[Op]) -> List[Result]:
        """``batch`` on a worker thread (avm releases the GIL while it works)."""
        ops = list(ops)
        return await asyncio.get_running_loop().run_in_executor(None, self.batch, ops)
