"""avm — AI Virtual Memory for teams of AI agents, in Python.

A memory layer agents share: private namespaces per agent, shared namespaces for the team,
token-budgeted recall, search, links and history, over one SQLite file (or PostgreSQL).
This package runs avm in-process (the same Host, configuration and policy as the ``avm``
command); it uses a running ``avm serve`` for recall and navigation when one answers.

    from avm import AVM
    avm = AVM()
    avm.write("/memory/lesson.md", "# Trading Lesson\\n\\nRSI > 70 = overbought")
    mem = avm.agent_memory("akashi")
    mem.remember("NVDA showing weakness", tags=["market", "nvda"])
    print(mem.recall("NVDA risk", max_tokens=500))

Errors are ``avm.AVMError`` subclasses, one per avm error kind (``NotFound``,
``PermissionDenied``, ``InvalidInput``, …). ``avm.langgraph.AVMStore`` is a LangGraph store.
"""

from avm._avm import (
    AlreadyExists,
    AVMError,
    Busy,
    Internal,
    InvalidInput,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
    PermissionDenied,
    ReadOnly,
    StorageFull,
    TimedOut,
    TooLarge,
    Unavailable,
    Unsupported,
)
from avm._api import (
    AVM,
    AgentMemory,
    Edge,
    EdgeType,
    Node,
    NodeDiff,
    RememberResult,
    Strategy,
)

#: The reference's other name for the facade.
VFS = AVM

__all__ = [
    "AVM",
    "VFS",
    "AgentMemory",
    "Node",
    "Edge",
    "EdgeType",
    "NodeDiff",
    "RememberResult",
    "Strategy",
    "AVMError",
    "NotFound",
    "NotADirectory",
    "IsADirectory",
    "AlreadyExists",
    "NotEmpty",
    "PermissionDenied",
    "ReadOnly",
    "InvalidInput",
    "Unsupported",
    "TooLarge",
    "Busy",
    "StorageFull",
    "TimedOut",
    "Unavailable",
    "Internal",
]
