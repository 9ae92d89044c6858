"""The node API (read, write, delete, list, search, link, links, history, mv) and errors."""

import pytest

import avm
from avm import AVM, EdgeType, Node


def test_read_missing_is_none(vm):
    assert vm.read("/memory/nothing-here.md") is None
    # As in the reference, nothing below a prefix is an empty list.
    assert vm.list("/memory/nothing-here") == []


def test_write_returns_a_node_with_the_reference_attributes(vm):
    n = vm.write("/memory/a.md", "hello", {"source": "test"}, tags=["x"], importance=0.7)
    assert isinstance(n, Node)
    assert (n.path, n.content, n.version, n.node_type) == ("/memory/a.md", "hello", 1, "file")
    assert n.meta["source"] == "test" and n.meta["importance"] == 0.7 and n.tags == ["x"]
    assert n.created_at is not None and n.updated_at is not None and n.size == 5
    n2 = vm.write("/memory/a.md", "hello again")
    assert n2.version == 2
    # meta is merged (avm), so earlier keys stay.
    assert n2.meta["source"] == "test"
    assert n2.to_dict()["path"] == "/memory/a.md"


def test_binary_content_round_trips(vm):
    vm.write("/memory/blob.bin", b"\x00\x01\xffdata")
    assert vm.read("/memory/blob.bin").content == b"\x00\x01\xffdata"


def test_delete_list_and_mv(vm):
    for i in range(3):
        vm.write(f"/memory/notes/n{i}.md", f"note {i}")
    assert [n.path for n in vm.list("/memory/notes")] == [
        "/memory/notes/n0.md",
        "/memory/notes/n1.md",
        "/memory/notes/n2.md",
    ]
    assert len(vm.list("/memory/notes", limit=2)) == 2
    assert vm.delete("/memory/notes/n0.md") is True
    assert vm.delete("/memory/notes/n0.md") is False
    assert vm.read("/memory/notes/n0.md") is None
    assert vm.mv("/memory/notes", "/memory/archive") == 2
    assert vm.read("/memory/archive/n1.md").content == "note 1"
    vm.write("/memory/x.md", "x")
    with pytest.raises(avm.AlreadyExists):
        vm.mv("/memory/archive/n1.md", "/memory/x.md")
    assert vm.mv("/memory/archive/n1.md", "/memory/x.md", force=True) == 1


def test_links_and_history(vm):
    vm.write("/memory/a.md", "alpha")
    vm.write("/memory/b.md", "beta")
    e = vm.link("/memory/a.md", "/memory/b.md", EdgeType.DERIVED, 0.5)
    assert (e.source, e.target, e.edge_type, e.weight) == ("/memory/a.md", "/memory/b.md", "derived", 0.5)
    vm.link("/memory/a.md", "/memory/c.md")
    out = vm.links("/memory/a.md", "out")
    assert {(l.target, l.edge_type) for l in out} == {("/memory/b.md", "derived"), ("/memory/c.md", "related")}
    assert [l.source for l in vm.links("/memory/b.md", "in")] == ["/memory/a.md"]
    assert vm.unlink("/memory/a.md", "/memory/c.md") == 1

    vm.write("/memory/a.md", "alpha 2")
    vm.write("/memory/a.md", "alpha 3")
    h = vm.history("/memory/a.md")
    assert [d.version for d in h] == [3, 2, 1]
    assert h[0].changed_at is not None
    assert [d.change_type for d in h] == ["update", "update", "create"]
    assert "+alpha 3" in h[0].diff_content and "-alpha 2" in h[0].diff_content
    assert vm.as_agent("bob").write("/memory/a.md", "alpha 4") and vm.history("/memory/a.md")[0].agent == "bob"
    assert len(vm.history("/memory/a.md", limit=1)) == 1


def test_search_scopes_and_semantic(vm):
    vm.write("/memory/market/btc.md", "bitcoin breaks resistance")
    vm.write("/memory/ops/db.md", "database moved to db2")
    assert [n.path for n, _ in vm.search("bitcoin", path="/memory/market")] == ["/memory/market/btc.md"]
    assert vm.search("bitcoin", path="/memory/ops") == []
    if vm.semantic_available:
        hits = vm.semantic("crypto currency rally", limit=2)
        assert hits and all(isinstance(s, float) for _, s in hits)
    else:
        with pytest.raises(avm.Unavailable):
            vm.semantic("crypto")


def test_every_error_is_an_avm_error_subclass():
    kinds = [
        avm.NotFound, avm.NotADirectory, avm.IsADirectory, avm.AlreadyExists, avm.NotEmpty,
        avm.PermissionDenied, avm.ReadOnly, avm.InvalidInput, avm.Unsupported, avm.TooLarge,
        avm.Busy, avm.StorageFull, avm.TimedOut, avm.Unavailable, avm.Internal,
    ]
    assert len(set(kinds)) == 15
    for k in kinds:
        assert issubclass(k, avm.AVMError) and issubclass(k, Exception)
        assert k.__module__ == "avm"


def test_errors_carry_avms_kind_and_message(vm):
    with pytest.raises(avm.InvalidInput, match=r"\.\."):
        vm.write("/memory/../etc.md", "x")
    with pytest.raises(avm.InvalidInput):
        vm.agent_memory("not a valid name!")
    with pytest.raises(avm.NotFound):
        vm.mv("/memory/none.md", "/memory/other.md")
    vm.write("/memory/dir/a.md", "a")
    with pytest.raises(avm.IsADirectory):
        vm.read("/memory/dir")
    with pytest.raises(avm.InvalidInput):
        vm.write("/memory/a.md", "x", importance=3)
    # An agent writing into another agent's private namespace.
    with pytest.raises(avm.PermissionDenied):
        vm.as_agent("bob").write("/memory/private/alice/x.md", "x")
    # The exception is catchable as the common base too.
    with pytest.raises(avm.AVMError):
        vm.mv("/memory/none.md", "/memory/other.md")


def test_agents_write_their_own_private_namespace(vm):
    bob = vm.as_agent("bob")
    n = bob.write("/memory/private/bob/todo.md", "ship it")
    assert n.author == "bob"
    assert bob.agent == "bob" and vm.agent is None
    # /private is bob's own namespace.
    assert bob.read("/private/todo.md").content == "ship it"


def test_stats_and_repr(vm, db):
    vm.write("/memory/a.md", "a")
    assert isinstance(vm.stats("/memory"), dict)
    assert vm.store == db
    assert "operator" in repr(vm)


def test_two_objects_share_one_database(db):
    a = AVM(db=db)
    b = AVM(db=db)
    a.write("/memory/shared.md", "from a")
    assert b.read("/memory/shared.md").content == "from a"
