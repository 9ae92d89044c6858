"""Fixtures: every test gets its own avm database in a scratch directory."""

import pytest

import avm


@pytest.fixture
def db(tmp_path):
    """The path of a fresh database."""
    return str(tmp_path / "avm.db")


@pytest.fixture
def vm(db):
    """avm opened on a fresh database, as the operator."""
    with avm.AVM(db=db) as v:
        yield v
