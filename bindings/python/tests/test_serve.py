"""Recall and navigation go through a running `avm serve` on the same database when one
answers on its socket (as the command's do), and to the database directly otherwise.

Needs the `avm` binary: AVM_BIN names it (tests/pytest.rs sets it when the build has one)."""

import os
import socket
import subprocess
import time

import pytest

from avm import AVM

BIN = os.environ.get("AVM_BIN")


@pytest.mark.skipif(not BIN, reason="AVM_BIN (the avm binary, to start avm serve) is not set")
def test_recall_uses_a_running_server(db, tmp_path, monkeypatch):
    vm = AVM(db=db)
    mem = vm.agent_memory("alice")
    for i in range(30):
        mem.remember(f"staging database note {i}: moved to db{i}.internal after the outage review")

    # The server's recall budget differs from this process's, so an answer tells who made it.
    env = dict(os.environ, AVM_RECALL__MAX_TOKENS="120")
    env.pop("AVM_NO_SERVER", None)
    srv = subprocess.Popen(
        [BIN, "--db", db, "serve", "--bind", "127.0.0.1:0", "--no-mounts"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"),
    )
    try:
        sock = db + ".sock"
        deadline = time.time() + 60
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(sock)
                break
            except OSError:
                assert srv.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.time() < deadline, "avm serve did not open its socket"
                time.sleep(0.1)

        monkeypatch.setenv("AVM_NO_SERVER", "1")
        direct = mem.recall("staging database")
        monkeypatch.delenv("AVM_NO_SERVER")
        served = mem.recall("staging database")
        assert "staging database note" in served
        # Through the server: its 120-token budget; directly: this process's 4000.
        assert len(served) < len(direct)
        assert len(served) <= 120 * 6
    finally:
        srv.terminate()
        srv.wait(timeout=30)
