"""The reference README's Python examples, run against the package (Quick Start, agent
memory, multi-agent isolation, token-aware recall, navigation and discovery)."""

import re

import pytest

import avm
from avm import AVM, Strategy


def test_quick_start(db):
    vm = AVM(db=db)

    # Read/Write
    vm.write("/memory/lesson.md", "# Trading Lesson\n\nRSI > 70 = overbought")
    node = vm.read("/memory/lesson.md")
    assert node is not None
    assert node.path == "/memory/lesson.md"
    assert node.content == "# Trading Lesson\n\nRSI > 70 = overbought"
    assert node.version == 1

    # Search
    results = vm.search("RSI")
    assert [n.path for n, _ in results] == ["/memory/lesson.md"]
    assert 0 < results[0][1] <= 1

    # Agent Memory
    mem = vm.agent_memory("akashi")
    r = mem.remember("NVDA showing weakness", tags=["market", "nvda"])
    assert r.path.startswith("/memory/private/akashi/")
    context = mem.recall("NVDA risk", max_tokens=4000)
    assert "NVDA showing weakness" in context


def test_agent_memory_remember_and_recall(vm):
    agent = vm.agent_memory("akashi")
    r = agent.remember(
        "RSI > 70 on NVDA → average -12% in 5 days",
        title="nvda_rsi_rule",
        importance=0.9,
        tags=["trading", "nvda"],
    )
    assert r.created
    assert re.fullmatch(r"/memory/private/akashi/\d{8}_\d{6}_\d{6}_nvda_rsi_rule\.md", r.path)
    node = r.node
    assert node.meta["importance"] == 0.9
    assert node.tags == ["trading", "nvda"]
    assert node.author == "akashi"
    # The reference's stored format: heading, created line, tags, rule, content.
    assert node.content.startswith("# nvda_rsi_rule\n")
    assert "*Tags: trading, nvda*" in node.content
    assert node.content.rstrip().endswith("RSI > 70 on NVDA → average -12% in 5 days")

    context = agent.recall("NVDA risk", max_tokens=2000)
    assert "-12% in 5 days" in context

    # Cross-agent sharing: share directly via namespace=
    shared = agent.remember("Market regime: risk-off, reduce exposure", namespace="market")
    assert shared.path.startswith("/memory/shared/market/")

    # The same content again in the same place: the first memory back.
    again = agent.remember("RSI > 70 on NVDA → average -12% in 5 days", title="nvda_rsi_rule")
    assert not again.created and again.path == r.path


def test_real_examples_trader_and_analyst(vm):
    trader = vm.agent_memory("trader")
    analyst = vm.agent_memory("analyst")
    # Trading agent remembers across sessions
    trader.remember("NVDA RSI at 72, overbought", importance=0.9, tags=["market"])
    out = trader.recall("what did I observe about NVDA?", max_tokens=500)
    assert "NVDA RSI at 72" in out
    # Multi-agent collaboration: the analyst's shared memory reaches the trader.
    analyst.remember("SPY pattern: higher lows since March", namespace="shared")
    assert "SPY pattern" in trader.recall("SPY pattern")
    # What it knows
    assert "NVDA" in trader.topics() or "market" in trader.topics()
    assert "NVDA RSI at 72" in trader.timeline(7)


def test_multi_agent_isolation(vm):
    trader = vm.agent_memory("trader")
    analyst = vm.agent_memory("analyst")
    trader.remember("NVDA warning: RSI at 72, reduce exposure", title="nvda_warning", importance=0.9)
    trader.remember("BTC holding 65K support", title="btc_note", importance=0.7)
    trader.remember("Fed notes: rates on hold", title="fed")
    private = analyst.remember("SPY pattern: double bottom forming", title="spy_pattern")

    # The trader's recall never shows the analyst's private memory...
    assert "double bottom" not in trader.recall("SPY pattern double bottom")
    # ...nor may the trader read it: avm's policy refuses another agent's private namespace.
    with pytest.raises(avm.PermissionDenied):
        trader.read(private.path)
    with pytest.raises(avm.PermissionDenied):
        vm.as_agent("trader").read(private.path)
    # The analyst reads its own, and the operator reads everything.
    assert analyst.read(private.path).content.rstrip().endswith("double bottom forming")
    assert vm.read(private.path) is not None

    assert trader.stats()["private_count"] == 3
    assert analyst.stats()["private_count"] == 1
    assert trader.stats()["private_prefix"] == "/memory/private/trader"


def test_token_aware_recall(vm):
    mem = vm.agent_memory("akashi")
    for i in range(40):
        mem.remember(
            f"NVDA observation {i}: volume spike with RSI {60 + i % 20}, "
            "watch the support level and reduce risk when it breaks",
            title=f"nvda {i}",
            importance=(i % 10) / 10,
        )
    small = mem.recall("NVDA risk", max_tokens=120)
    large = mem.recall("NVDA risk", max_tokens=2000)
    assert small and large
    assert len(small) < len(large)
    # The whole answer fits the budget (cl100k tokens; at least ~3 characters a token here).
    assert len(small) <= 120 * 6
    data = mem.recall_data("NVDA risk", max_tokens=300)
    assert data["tokens"] <= 300

    # The three strategies of the reference (and RELEVANCE), as enum members or strings.
    for s in (Strategy.RECENCY, Strategy.IMPORTANCE, Strategy.BALANCED, "relevance"):
        assert "NVDA observation" in mem.recall("NVDA risk", max_tokens=500, strategy=s)
    with pytest.raises(avm.InvalidInput):
        mem.recall("NVDA risk", strategy="loudest")

    # Nothing relevant: an empty answer.
    assert "NVDA" not in mem.recall("zebra giraffe okapi")


def test_navigation_and_discovery(vm):
    mem = vm.agent_memory("trader")
    a = mem.remember("NVDA RSI at 72, overbought", title="nvda_alert", tags=["market", "technical"])
    b = mem.remember("BTC holding $65K", title="btc_note", tags=["market", "crypto"])
    vm.link(a.path, b.path)

    topics = mem.topics()
    assert topics.strip()
    tree = mem.browse("/memory", depth=3)
    assert "private" in tree
    found = mem.browse(query="BTC")
    assert "btc_note" in found or b.path in found
    timeline = mem.timeline(7)
    assert "nvda_alert" in timeline or "NVDA" in timeline
    graph = mem.explore(a.path)
    assert b.path in graph or "btc_note" in graph
    full = mem.fetch(a.path, b.path)
    assert "NVDA RSI at 72" in full and "BTC holding $65K" in full
    # recall's @id handles fetch too.
    handle = re.search(r"@\w+", mem.recall("BTC holding"))
    assert handle, mem.recall("BTC holding")
    assert "BTC holding $65K" in mem.fetch(handle.group(0))


def test_tell_and_inbox(vm):
    alice = vm.agent_memory("alice")
    bob = vm.agent_memory("bob")
    sent = bob.tell("alice", "deploy is broken", priority="urgent")
    assert "alice" in sent
    box = alice.inbox()
    assert "deploy is broken" in box
    alice.inbox(mark_read=True)
    assert "deploy is broken" not in alice.inbox()
    assert "deploy is broken" in alice.inbox(all=True)
