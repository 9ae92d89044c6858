"""One AVM object used by many threads at once (every call releases the GIL)."""

import threading
import time

from avm import AVM


def test_eight_threads_write_and_read_concurrently(db):
    vm = AVM(db=db)
    errors = []

    def work(t):
        try:
            mem = vm.agent_memory(f"agent{t}")
            for i in range(40):
                p = f"/memory/threads/t{t}/n{i}.md"
                vm.write(p, f"thread {t} note {i}")
                assert vm.read(p).content == f"thread {t} note {i}"
                if i % 10 == 0:
                    mem.remember(f"thread {t} memory {i} about rockets")
                    mem.recall("rockets", max_tokens=200)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(vm.ls("/memory/threads", recursive=True, limit=1000)) == 8 * 40
    for t in range(8):
        assert vm.agent_memory(f"agent{t}").stats()["private_count"] == 4


def test_calls_release_the_gil(db):
    """A pure-Python thread keeps running while another thread is inside avm."""
    vm = AVM(db=db)
    for i in range(300):
        vm.write(f"/memory/g/{i}.md", f"gil test note {i} with searchable words")
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0005)

    th = threading.Thread(target=ticker)
    th.start()
    try:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            vm.list("/memory/g", limit=300)
    finally:
        stop.set()
        th.join()
    # The ticker ran throughout: it was never held out for long.
    assert len(ticks) > 20
