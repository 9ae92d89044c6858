"""The reference Python API (``AVM``, ``AgentMemory``, ``Node``, …) over avm's Host.

Everything here is shape: each method builds the same Host address (or the same typed call)
the ``avm`` command makes for it and turns the answer into the reference API's return values.
The work itself — permissions, storage, recall, search — happens in Rust (``avm._avm``), with
the GIL released.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from avm import _avm
from avm._avm import NotFound

__all__ = [
    "AVM",
    "AgentMemory",
    "Node",
    "Edge",
    "EdgeType",
    "NodeDiff",
    "RememberResult",
    "Strategy",
]

PathLike = Union[str, "os.PathLike[str]"]


class Strategy(str, Enum):
    """How recall ranks memories (``recall(..., strategy=Strategy.RECENCY)``).

    ``BALANCED`` (the default) weighs relevance by importance and recency; ``RELEVANCE``,
    ``IMPORTANCE`` and ``RECENCY`` rank by that signal alone. A plain string
    (``"recency"``) is accepted too.
    """

    BALANCED = "balanced"
    RELEVANCE = "relevance"
    IMPORTANCE = "importance"
    RECENCY = "recency"


class EdgeType(str, Enum):
    """The reference's link types; avm accepts any short name as a link type."""

    RELATED = "related"
    PEER = "peer"
    PARENT = "parent"
    CITATION = "citation"
    DERIVED = "derived"
    VERSION_OF = "version_of"


def _time(v: Any) -> Optional[datetime]:
    """An avm timestamp (RFC 3339 text, or microseconds) as an aware UTC datetime."""
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return datetime.fromtimestamp(v / 1e6, tz=timezone.utc)
    s = str(v)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        return None


@dataclass
class Node:
    """A stored node, with the reference's attribute names.

    ``content`` is ``str`` for text and ``bytes`` for binary content; ``meta`` holds the free
    keys plus ``tags``, ``importance``, ``author`` and ``expires_at`` as avm shows them.
    """

    path: str
    content: Union[str, bytes]
    meta: Dict[str, Any] = field(default_factory=dict)
    version: int = 0
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    accessed_at: Optional[datetime] = None
    node_type: str = "file"
    hash: Optional[str] = None
    size: int = 0

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Node":
        content: Union[str, bytes] = d.get("content") or ""
        if d.get("binary"):
            content = base64.b64decode(d.get("content_base64") or "")
        return cls(
            path=d["path"],
            content=content,
            meta=d.get("meta") or {},
            version=d.get("version") or 0,
            created_at=_time(d.get("created_at")),
            updated_at=_time(d.get("updated_at")),
            accessed_at=_time(d.get("accessed_at")),
            node_type=d.get("node_type") or "file",
            hash=d.get("hash"),
            size=d.get("size") or 0,
        )

    @property
    def tags(self) -> List[str]:
        """``meta["tags"]``."""
        return list(self.meta.get("tags") or [])

    @property
    def importance(self) -> Optional[float]:
        """``meta["importance"]``."""
        return self.meta.get("importance")

    @property
    def author(self) -> Optional[str]:
        """The agent that wrote it (stamped by avm, never taken from the content)."""
        return self.meta.get("author")

    def to_dict(self) -> Dict[str, Any]:
        """The node as a plain dict (timestamps as ISO text)."""
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {
            "path": self.path,
            "content": self.content,
            "meta": self.meta,
            "version": self.version,
            "node_type": self.node_type,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "hash": self.hash,
            "size": self.size,
        }


@dataclass
class Edge:
    """A link between two paths."""

    source: str
    target: str
    edge_type: str = "related"
    weight: float = 1.0
    meta: Dict[str, Any] = field(default_factory=dict)
    created_at: Optional[datetime] = None

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "Edge":
        return cls(
            source=d.get("source", ""),
            target=d.get("target", ""),
            edge_type=d.get("type") or d.get("edge_type") or "related",
            weight=float(d.get("weight", 1.0)),
            meta=d.get("meta") or {},
            created_at=_time(d.get("created_at")),
        )


@dataclass
class NodeDiff:
    """One change in a node's history (``AVM.history``)."""

    node_path: str
    version: int
    change_type: str
    changed_at: Optional[datetime]
    diff_content: Optional[str] = None
    agent: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The change as a plain dict (the reference's keys)."""
        return {
            "node_path": self.node_path,
            "version": self.version,
            "change_type": self.change_type,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "diff_content": self.diff_content,
        }


@dataclass
class RememberResult:
    """What ``AgentMemory.remember`` returns: the memory's ``path``, whether it was ``created``
    (``False``: the same content was already remembered there, and that memory is returned)
    and its ``importance``. ``node`` reads the memory."""

    path: str
    created: bool
    importance: Optional[float]
    _core: Any = field(repr=False, default=None)

    @property
    def node(self) -> Optional[Node]:
        """The remembered node, read now (``None`` if it is gone)."""
        try:
            _, data = self._core.read(self.path)
        except NotFound:
            return None
        return Node._from(data)


def _ttl(ttl: Union[None, str, int, float]) -> Optional[str]:
    """A TTL as avm's duration text: seconds as a number, or ``"90s"``, ``"2h"``, ``"7d"``."""
    if ttl is None:
        return None
    if isinstance(ttl, (int, float)):
        return f"{max(int(ttl), 1)}s"
    return str(ttl)


def _value(x: Any) -> str:
    """An enum member's value, else the text of ``x``."""
    return x.value if isinstance(x, Enum) else str(x)


class AVM:
    """avm opened in this process (``AVM()``: the default database and configuration).

    ``db`` is a SQLite file or a PostgreSQL address; ``config`` an extra configuration file
    read after the system and user ones (as ``avm --config``); ``agent`` makes every call
    act as that agent instead of the operator. The same sources as the command apply
    (``AVM_*`` variables included), and reads of recall and navigation go through a running
    ``avm serve`` on the same database when one answers, as the command's do.

    One object may be shared by many threads: every call releases the GIL.
    """

    def __init__(
        self,
        db: Optional[PathLike] = None,
        config: Optional[PathLike] = None,
        *,
        agent: Optional[str] = None,
    ) -> None:
        self._core = _avm.Core(db, config, agent)

    @classmethod
    def _wrap(cls, core: Any) -> "AVM":
        obj = cls.__new__(cls)
        obj._core = core
        return obj

    def __repr__(self) -> str:
        who = self.agent or "operator"
        return f"AVM(store={self.store!r}, as={who})"

    def __enter__(self) -> "AVM":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Flushes buffered access times (also done when the last object goes away)."""
        self._core.sync()

    @property
    def agent(self) -> Optional[str]:
        """The agent this object acts as (``None``: the operator)."""
        return self._core.agent

    @property
    def store(self) -> str:
        """The SQLite file or PostgreSQL address in use."""
        return self._core.store

    @property
    def semantic_available(self) -> bool:
        """Whether semantic and hybrid search are available (the model installed and on)."""
        return self._core.semantic_available

    def as_agent(self, agent_id: str) -> "AVM":
        """The same opened avm, acting as ``agent_id``."""
        return AVM._wrap(self._core.as_agent(agent_id))

    def agent_memory(self, agent_id: str) -> "AgentMemory":
        """The agent-memory API of ``agent_id`` (its private namespace, recall, messages)."""
        return AgentMemory(self._core.as_agent(agent_id))

    # Nodes

    def read(self, path: str) -> Optional[Node]:
        """The node at ``path``, or ``None`` when there is none. Raises ``PermissionDenied``
        when the caller may not read it."""
        try:
            text, data = self._core.read(path)
        except NotFound:
            return None
        if not isinstance(data, dict) or "path" not in data:
            # A provider or suffix that answers without a node: its text as the content.
            return Node(path=path, content=text)
        return Node._from(data)

    def write(
        self,
        path: str,
        content: Union[str, bytes],
        meta: Optional[Dict[str, Any]] = None,
        *,
        tags: Optional[Sequence[str]] = None,
        importance: Optional[float] = None,
        ttl: Union[None, str, int, float] = None,
    ) -> Node:
        """Writes ``content`` at ``path`` (a new version when it exists) and returns the node.

        ``meta`` keys are merged into the node's metadata (a ``None`` value removes a key);
        ``tags`` replaces the tag set; ``ttl`` (seconds, or ``"2h"``) makes it expire.
        """
        data = self._core.write(
            path,
            content,
            json.dumps(meta) if meta is not None else None,
            list(tags) if tags is not None else None,
            importance,
            _ttl(ttl),
        )
        if "content" not in data:
            node = self.read(data.get("path", path))
            if node is None:
                raise NotFound(f"{path} was written but cannot be read back")
            return node
        return Node._from(data)

    def append(self, path: str, content: str) -> Node:
        """Appends ``content`` to the node at ``path`` (creating it) and returns the node."""
        data = self._core.write(path, content, None, None, None, None, False, True)
        return Node._from(data)

    def delete(self, path: str, hard: bool = False, *, recursive: bool = False) -> bool:
        """Deletes ``path`` (to the trash, where ``avm restore`` finds it; for good with
        ``hard``). ``True`` when something was deleted, ``False`` when nothing was there."""
        try:
            data = self._core.remove(path, recursive, hard)
        except NotFound:
            return False
        return int(data.get("count", 1)) > 0

    def list(self, prefix: str = "/", limit: int = 100) -> List[Node]:
        """The nodes below ``prefix`` (every depth, in path order), at most ``limit``; ``[]``
        when there is nothing at ``prefix``."""
        try:
            entries, _ = self._core.list(prefix, True, limit, 0)
        except NotFound:
            return []
        nodes = []
        for e in entries:
            if e.get("kind") not in (None, "file", "symlink"):
                continue
            n = self.read(e["path"])
            if n is not None:
                nodes.append(n)
        return nodes

    def ls(
        self, prefix: str = "/", *, recursive: bool = False, limit: int = 100, offset: int = 0
    ) -> List[Dict[str, Any]]:
        """The entries below ``prefix`` without their content: ``path``, ``kind``
        (``file``/``dir``), ``size``, ``version``, ``updated_at`` (µs)."""
        entries, _ = self._core.list(prefix, recursive, limit, offset)
        return entries

    def search(
        self, query: str, limit: int = 10, *, path: str = "/", mode: str = "fts"
    ) -> List[Tuple[Node, float]]:
        """Searches the nodes the caller may read: ``[(node, score)]``, best first, scores in
        0..1. ``mode`` is ``fts`` (full text, the default), ``semantic`` or ``hybrid`` (both
        need the embedding model: ``avm model install``)."""
        hits = self._core.search(query, path, limit, mode)
        out = []
        for h in hits:
            n = self.read(h["path"])
            if n is not None:
                out.append((n, float(h.get("score", 0.0))))
        return out

    def semantic(self, query: str, limit: int = 10, *, path: str = "/") -> List[Tuple[Node, float]]:
        """Semantic search (``avm semantic``): ``[(node, cosine)]``; raises ``Unavailable``
        without the embedding model."""
        return self.search(query, limit, path=path, mode="semantic")

    def link(
        self,
        src: str,
        tgt: str,
        edge_type: Union[EdgeType, str] = EdgeType.RELATED,
        weight: float = 1.0,
    ) -> Edge:
        """Links ``src`` to ``tgt`` (re-linking the same pair and type replaces the weight)."""
        kind = _value(edge_type)
        self._core.write_suffix(
            src, "links", [("target", tgt), ("type", kind), ("weight", str(weight))], ""
        )
        return Edge(source=src, target=tgt, edge_type=kind, weight=float(weight))

    def unlink(self, src: str, tgt: str, edge_type: Union[EdgeType, str, None] = None) -> int:
        """Removes links from ``src`` to ``tgt`` (of one type, or all): how many went."""
        pairs = [("op", "remove"), ("target", tgt)]
        if edge_type is not None:
            pairs.append(("type", _value(edge_type)))
        _, data = self._core.write_suffix(src, "links", pairs, "")
        return int(data.get("count", 0)) if isinstance(data, dict) else 0

    def links(self, path: str, direction: str = "both") -> List[Edge]:
        """The links of ``path``: ``out``, ``in`` or ``both``."""
        _, data = self._core.read_suffix(path, "links", [("direction", direction)])
        return [Edge._from(d) for d in data or []]

    def history(self, path: str, limit: int = 10) -> List[NodeDiff]:
        """The changes of ``path``, newest first, each with its unified diff against the
        version before."""
        _, rows = self._core.read_suffix(
            path, "history", [("limit", str(limit)), ("verbose", "1")]
        )
        return [
            NodeDiff(
                node_path=path,
                version=d.get("version", 0),
                change_type=d.get("kind") or "",
                changed_at=_time(d.get("at")),
                diff_content=d.get("diff"),
                agent=d.get("author"),
                raw=d,
            )
            for d in rows or []
        ]

    def mv(self, src: str, dst: str, *, force: bool = False) -> int:
        """Moves a node or a subtree (``avm mv``): how many nodes moved. An existing
        destination is refused (``AlreadyExists``) unless ``force``."""
        data = self._core.rename(src, dst, force)
        return int(data.get("count", 1))

    rename = mv

    def stats(self, path: str = "/") -> Dict[str, Any]:
        """Counts below ``path`` (``avm stats``)."""
        _, data = self._core.read_suffix(path, "stats", [])
        return data


class AgentMemory:
    """One agent's memory (``AVM().agent_memory("akashi")``).

    Memories go to ``/memory/private/<agent>/…`` (``private_prefix``), which only that agent
    (and the operator) may read, or to a shared namespace ``/memory/shared/<ns>/…``.
    """

    def __init__(self, core: Any) -> None:
        self._core = core
        self.agent_id: str = core.agent
        self.private_prefix = f"/memory/private/{self.agent_id}"
        self.shared_prefix = "/memory/shared"

    def __repr__(self) -> str:
        return f"AgentMemory({self.agent_id!r})"

    @property
    def avm(self) -> AVM:
        """The node API acting as this agent (its reads and writes checked as its own)."""
        return AVM._wrap(self._core)

    def read(self, path: str) -> Optional[Node]:
        """The node at ``path`` as this agent reads it (``None`` when missing;
        ``PermissionDenied`` when it is another agent's private memory)."""
        return self.avm.read(path)

    def remember(
        self,
        content: str,
        title: Optional[str] = None,
        importance: Optional[float] = 0.5,
        tags: Optional[Sequence[str]] = None,
        namespace: Optional[str] = None,
        ttl: Union[None, str, int, float] = None,
        *,
        source: str = "python",
        at: Optional[str] = None,
    ) -> RememberResult:
        """Stores a memory: in the private namespace, or in ``/memory/shared/<namespace>``.

        The file is ``<YYYYMMDD_HHMMSS_ffffff>_<title slug>.md`` with the reference's header
        (``# title``, ``*Created: …*``, ``*Tags: …*``, ``---``); the author is this agent.
        ``ttl`` (seconds, or ``"2h"``, ``"7d"``) forgets it after that long; ``at`` records
        when what it tells happened (``2023-05-08``). Remembering the same content in the same
        place again returns the first memory (``created`` is ``False``).
        """
        pairs: List[Tuple[str, str]] = [("source", source)]
        if title is not None:
            pairs.append(("title", title))
        if importance is not None:
            pairs.append(("importance", str(importance)))
        if tags:
            pairs.append(("tags", ",".join(tags)))
        t = _ttl(ttl)
        if t is not None:
            pairs.append(("ttl", t))
        if at is not None:
            pairs.append(("at", at))
        where = self.private_prefix
        if namespace is not None:
            where = f"/memory/shared/{namespace.strip().strip('/')}"
        _, data = self._core.write_suffix(where, "remember", pairs, content)
        return RememberResult(
            path=data["path"],
            created=bool(data.get("created", True)),
            importance=data.get("importance"),
            _core=self._core,
        )

    def recall(
        self,
        query: str,
        max_tokens: Optional[int] = None,
        strategy: Union[Strategy, str, None] = None,
        *,
        min_relevance: Optional[float] = None,
        include_shared: bool = True,
        namespaces: Optional[Iterable[str]] = None,
        paths: bool = False,
        scope: str = "/",
    ) -> str:
        """Memories relevant to ``query`` as compact Markdown whose whole text fits in
        ``max_tokens`` cl100k tokens (default: ``recall.max_tokens``, 4000). Entries are named
        by their ``@id`` handle (``fetch`` takes it), or by path with ``paths=True``.
        ``include_shared=False`` keeps to the private namespace; ``namespaces`` to those
        shared ones. Returns ``""`` when nothing relevant is found."""
        pairs: List[Tuple[str, str]] = [("q", query)]
        if paths:
            pairs.append(("paths", "true"))
        if max_tokens is not None:
            pairs.append(("max_tokens", str(int(max_tokens))))
        if strategy is not None:
            pairs.append(("strategy", _value(strategy)))
        if min_relevance is not None:
            pairs.append(("min_relevance", str(min_relevance)))
        if not include_shared:
            pairs.append(("shared", "false"))
        ns = list(namespaces or [])
        if ns:
            pairs.append(("ns", ",".join(ns)))
        text, data = self._core.read_suffix(scope, "recall", pairs, True)
        # Nothing relevant: the reference's empty answer.
        if isinstance(data, dict) and not data.get("items"):
            return ""
        return text

    def recall_data(self, query: str, max_tokens: Optional[int] = None, **kw: Any) -> Dict[str, Any]:
        """``recall``'s structured form: every entry's path, handle, score, relevance and
        tokens, and the text."""
        pairs: List[Tuple[str, str]] = [("q", query)]
        if max_tokens is not None:
            pairs.append(("max_tokens", str(int(max_tokens))))
        if kw.get("strategy") is not None:
            pairs.append(("strategy", _value(kw["strategy"])))
        _, data = self._core.read_suffix(kw.get("scope", "/"), "recall", pairs, True)
        return data

    def browse(
        self,
        path: str = "/memory",
        depth: int = 2,
        *,
        query: Optional[str] = None,
        limit: int = 10,
        width: int = 100,
    ) -> str:
        """Without ``query``: the tree below ``path`` with counts. With ``query``: phase one of
        two-phase retrieval, paths and one-line summaries to ``fetch`` from."""
        if query is not None:
            pairs = [("q", query), ("limit", str(limit)), ("width", str(width))]
        else:
            pairs = [("depth", str(depth))]
        text, _ = self._core.read_suffix(path, "browse", pairs, True)
        return text

    def fetch(self, *paths: Union[str, Sequence[str]]) -> str:
        """The full content of memories, by path or by recall's ``@id`` handle; the missing
        ones are named."""
        flat: List[str] = []
        for p in paths:
            if isinstance(p, str):
                flat.append(p)
            else:
                flat.extend(p)
        text, _ = self._core.read_suffix(self.private_prefix, "fetch", [("path", p) for p in flat])
        return text

    def topics(self, path: str = "/memory", limit: int = 30) -> str:
        """The topics memories below ``path`` are about, with counts."""
        text, _ = self._core.read_suffix(path, "topics", [("limit", str(limit))], True)
        return text

    def timeline(self, days: int = 7, limit: int = 20, *, path: str = "/") -> str:
        """Memories of the last ``days`` (when they are about, else when they changed),
        newest first, grouped by date."""
        text, _ = self._core.read_suffix(
            path, "timeline", [("days", str(days)), ("limit", str(limit))], True
        )
        return text

    def explore(self, path: str, depth: int = 2) -> str:
        """The link graph around the memory at ``path``, ``depth`` hops out."""
        text, _ = self._core.read_suffix(path, "explore", [("depth", str(depth))], True)
        return text

    def tell(
        self, to: str, message: str, priority: str = "normal", expires: Optional[str] = None
    ) -> str:
        """Sends ``message`` to agent ``to`` (or ``"@all"``); ``priority`` is ``urgent``,
        ``normal`` or ``low``; ``expires`` hides it after a while (``"2h"``)."""
        pairs = [("priority", priority)]
        if expires is not None:
            pairs.append(("expires", expires))
        text, _ = self._core.write_suffix(f"/tell/{to}", "", pairs, message)
        return text.strip()

    def inbox(self, mark_read: bool = False, *, all: bool = False) -> str:
        """Unread messages to this agent (``all``: the read ones too); ``mark_read`` marks
        the ones shown read."""
        pairs: List[Tuple[str, str]] = []
        if mark_read:
            pairs.append(("mark", "read"))
        if not all:
            pairs.append(("only", "unread"))
        text, _ = self._core.read_suffix(self.private_prefix, "inbox", pairs)
        return text

    def stats(self) -> Dict[str, Any]:
        """``{agent, private_count, shared_accessible, private_prefix, last_change, ops}``
        (``avm agent-stats``)."""
        _, data = self._core.agent_stats()
        return data
