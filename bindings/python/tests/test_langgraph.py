"""avm.langgraph.AVMStore, method by method (LangGraph ships no store conformance suite)."""

import asyncio
import time

import pytest

pytest.importorskip("langgraph.store.base")

from langgraph.store.base import GetOp, Item, ListNamespacesOp, PutOp, SearchOp  # noqa: E402

import avm  # noqa: E402
from avm import AVM  # noqa: E402
from avm.langgraph import AVMStore  # noqa: E402


@pytest.fixture
def store(vm):
    return AVMStore(vm)


def test_put_get_update_delete(store, vm):
    store.put(("users", "42"), "pref", {"food": "pizza", "n": 1})
    item = store.get(("users", "42"), "pref")
    assert isinstance(item, Item)
    assert (item.namespace, item.key, item.value) == (("users", "42"), "pref", {"food": "pizza", "n": 1})
    assert item.created_at is not None and item.updated_at >= item.created_at
    # Namespaces are avm directories, values JSON files, versioned.
    assert vm.read("/memory/shared/langgraph/users/42/pref.json") is not None
    store.put(("users", "42"), "pref", {"food": "sushi", "n": 2})
    assert store.get(("users", "42"), "pref").value["food"] == "sushi"
    assert len(vm.history("/memory/shared/langgraph/users/42/pref.json")) == 2
    store.delete(("users", "42"), "pref")
    assert store.get(("users", "42"), "pref") is None
    assert store.get(("users", "nobody"), "pref") is None


def test_odd_keys_and_labels_round_trip(store):
    # LangGraph refuses periods in labels; keys may hold anything.
    ns = ("a/b", "c:d", "x y?", "%41")
    store.put(ns, ".k/e:y?%", {"v": "ünïcode ✓"})
    got = store.get(ns, ".k/e:y?%")
    assert got.value == {"v": "ünïcode ✓"} and got.namespace == ns and got.key == ".k/e:y?%"
    assert ns in store.list_namespaces()


def test_search_lists_filters_and_pages(store):
    for i in range(6):
        store.put(("docs", "team" if i % 2 else "solo"), f"d{i}", {"i": i, "kind": "even" if i % 2 == 0 else "odd"})
    everything = store.search(("docs",), limit=100)
    assert len(everything) == 6
    assert {it.key for it in store.search(("docs", "team"))} == {"d1", "d3", "d5"}
    assert {it.key for it in store.search(("docs",), filter={"kind": "even"})} == {"d0", "d2", "d4"}
    assert {it.key for it in store.search(("docs",), filter={"i": {"$gte": 4}})} == {"d4", "d5"}
    page1 = store.search(("docs",), limit=4)
    page2 = store.search(("docs",), limit=4, offset=4)
    assert len(page1) == 4 and len(page2) == 2
    assert not {i.key for i in page1} & {i.key for i in page2}
    assert store.search(("nothing",)) == []


def test_search_with_a_query_uses_avms_search(store):
    store.put(("mem", "u1"), "a", {"text": "the user loves spicy ramen"})
    store.put(("mem", "u1"), "b", {"text": "the user works on kubernetes clusters"})
    store.put(("mem", "u2"), "c", {"text": "another user also likes ramen"})
    hits = store.search(("mem", "u1"), query="ramen")
    assert [h.key for h in hits] == ["a"]
    assert hits[0].score is not None and 0 < hits[0].score <= 1
    both = store.search(("mem",), query="ramen")
    assert {h.key for h in both} == {"a", "c"}
    assert store.search(("mem",), query="ramen", filter={"text": "another user also likes ramen"})[0].key == "c"


def test_list_namespaces_with_conditions(store):
    for ns in [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("z", "b", "c")]:
        store.put(ns, "k", {"v": 1})
    assert store.list_namespaces() == [("a", "b", "c"), ("a", "b", "d"), ("a", "x"), ("z", "b", "c")]
    assert store.list_namespaces(prefix=("a",)) == [("a", "b", "c"), ("a", "b", "d"), ("a", "x")]
    assert store.list_namespaces(suffix=("c",)) == [("a", "b", "c"), ("z", "b", "c")]
    assert store.list_namespaces(prefix=("*", "b")) == [("a", "b", "c"), ("a", "b", "d"), ("z", "b", "c")]
    assert store.list_namespaces(max_depth=1) == [("a",), ("z",)]
    assert store.list_namespaces(limit=2, offset=1) == [("a", "b", "d"), ("a", "x")]


def test_batch_and_abatch(store):
    res = store.batch(
        [
            PutOp(("b",), "one", {"n": 1}),
            PutOp(("b",), "two", {"n": 2}),
            GetOp(("b",), "one"),
            SearchOp(("b",), limit=10),
            ListNamespacesOp(limit=10),
            PutOp(("b",), "one", None),
            GetOp(("b",), "one"),
        ]
    )
    assert res[0] is None and res[1] is None
    assert res[2].value == {"n": 1}
    assert {i.key for i in res[3]} == {"one", "two"}
    assert res[4] == [("b",)]
    assert res[6] is None

    async def go():
        await store.aput(("c",), "k", {"async": True})
        got = await store.aget(("c",), "k")
        found = await store.asearch(("c",))
        spaces = await store.alist_namespaces()
        await store.adelete(("c",), "k")
        gone = await store.aget(("c",), "k")
        return got, found, spaces, gone

    got, found, spaces, gone = asyncio.run(go())
    assert got.value == {"async": True} and [i.key for i in found] == ["k"]
    assert ("c",) in spaces and gone is None


def test_ttl_expires_items(store):
    store.put(("t",), "short", {"v": 1}, ttl=1 / 60)  # one second (LangGraph counts minutes)
    store.put(("t",), "long", {"v": 2})
    assert store.get(("t",), "short") is not None
    time.sleep(2.2)
    assert store.get(("t",), "short") is None
    assert store.get(("t",), "long") is not None


def test_a_store_acting_as_an_agent_keeps_to_its_private_root(db):
    alice = AVMStore(AVM(db=db, agent="alice"), root="/memory/private/alice/langgraph")
    alice.put(("notes",), "n", {"secret": True})
    assert alice.get(("notes",), "n").value == {"secret": True}
    bob = AVMStore(AVM(db=db, agent="bob"), root="/memory/private/alice/langgraph")
    with pytest.raises(avm.PermissionDenied):
        bob.get(("notes",), "n")
    with pytest.raises(avm.PermissionDenied):
        bob.put(("notes",), "n", {"secret": False})
