"""remember and recall from Python, in-process, at 10,000 memories.

Run against a release build (`maturin develop --release` in a virtualenv):

    python bindings/python/bench/bench.py [-n 10000] [--recalls 500] [--db PATH]

It remembers N memories as one agent (each call a separate transaction, as an agent would),
then asks `--recalls` questions with a 1,000-token budget, and prints ops/s, p50 and p99 for
each. A scratch database is used unless --db is given.
"""

import argparse
import os
import random
import statistics
import tempfile
import time

from avm import AVM

TOPICS = [
    "staging database", "release checklist", "NVDA earnings", "kubernetes upgrade",
    "customer churn", "incident review", "budget planning", "API rate limits",
    "BTC volatility", "hiring plan", "latency regression", "feature flags",
]
WORDS = (
    "moved after review because load grew and the team agreed to watch metrics closely "
    "until the next quarter when capacity and cost are measured again with the new plan"
).split()


def memory(rng, i):
    topic = rng.choice(TOPICS)
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
    return topic, f"{topic} note {i}: {body}"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(name, lat):
    total = sum(lat)
    print(
        f"{name:<28} {len(lat) / total:>10,.0f} ops/s   p50 {pct(lat, 50) * 1e3:8.3f} ms"
        f"   p99 {pct(lat, 99) * 1e3:8.3f} ms   (n={len(lat)})"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--recalls", type=int, default=500)
    ap.add_argument("--max-tokens", type=int, default=1000)
    ap.add_argument("--db")
    a = ap.parse_args()
    os.environ.setdefault("AVM_NO_SERVER", "1")  # in-process, not through a server
    tmp = None
    if a.db is None:
        tmp = tempfile.TemporaryDirectory()
        a.db = os.path.join(tmp.name, "bench.db")
    rng = random.Random(7)
    vm = AVM(db=a.db)
    mem = vm.agent_memory("bench")
    lat = []
    for i in range(a.n):
        topic, text = memory(rng, i)
        t = time.perf_counter()
        mem.remember(text, title=f"{topic} {i}", importance=rng.random(), tags=[topic.split()[0]])
        lat.append(time.perf_counter() - t)
    report(f"remember (to {a.n:,})", lat)
    # Recall over the full store (the first calls build the topic and term indexes).
    lat = []
    for _ in range(a.recalls):
        q = f"what happened with the {rng.choice(TOPICS)}?"
        t = time.perf_counter()
        out = mem.recall(q, max_tokens=a.max_tokens)
        lat.append(time.perf_counter() - t)
        assert out
    report(f"recall at {a.n:,} ({a.max_tokens} tok)", lat)
    print(f"recall mean {statistics.mean(lat) * 1e3:.2f} ms; semantic={vm.semantic_available}")
    vm.close()


if __name__ == "__main__":
    main()
