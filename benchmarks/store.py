"""Conversation store timings: append latency per message, and loading a long conversation.

Run: python benchmarks/store.py [--messages 10000]. Uses a temporary database, so it neither
reads nor changes your conversations. Target: loading 10,000 messages in under 100 ms.

With another process holding the write lock it also measures how soon a waiting append gets the
lock once it is released (the store polls in short slices rather than waiting inside SQLite), and
how soon an interrupt (SIGALRM raising KeyboardInterrupt, as the kernel's Stop) ends the wait.
Target: both well under 0.2 s.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clarifai_magic.store import Store, StoreInterrupted

QUESTION = "Explain the difference between a list and a tuple in Python, with an example. " * 3
ANSWER = "A list is mutable; a tuple is not. " * 40  # ~1.4 kB, a typical answer
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def bench_append(store: Store, exchanges: int) -> None:
    conv = store.conversation("bench.ipynb", "append")
    question, answer = [], []
    for i in range(exchanges):
        t0 = time.perf_counter()
        ex = store.append(conv, [{"role": "user", "content": f"{i} {QUESTION}"}])
        t1 = time.perf_counter()
        store.append(
            conv,
            [{"role": "assistant", "content": ANSWER}],
            exchange=ex,
            model="openai/chat-completion/models/gpt-4o",
            usage=(120, 350),
        )
        t2 = time.perf_counter()
        question.append(t1 - t0)
        answer.append(t2 - t1)
    for label, values in (
        ("question (new exchange)", question),
        ("answer (joins exchange)", answer),
    ):
        print(
            f"append {label:<24} mean {ms(statistics.fmean(values))}"
            f"  p95 {ms(percentile(values, 0.95))}  (n={len(values)})"
        )


def bench_load(store: Store, messages: int, runs: int) -> float:
    conv = store.conversation("bench.ipynb", "long")
    batch = []
    for i in range(messages // 4):
        batch += [
            {"role": "user", "content": f"{i} {QUESTION}"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"result": 42}'},
            {"role": "assistant", "content": ANSWER},
        ]
        if len(batch) >= 400:
            store.append(conv, batch)
            batch = []
    if batch:
        store.append(conv, batch)
    timings = []
    for _ in range(runs):
        t0 = time.perf_counter()
        loaded = store.messages(conv)
        timings.append(time.perf_counter() - t0)
    assert len(loaded) == messages // 4 * 4
    best, median = min(timings), statistics.median(timings)
    print(f"load {len(loaded)} messages               median {ms(median)}  best {ms(best)}")
    return median


HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
time.sleep(0.3)  # the waiter is surely waiting by now
db.execute("ROLLBACK")
print(time.time(), flush=True)  # released at
"""


def _hold_lock(store: Store) -> subprocess.Popen[str]:
    """Another process holding the store's write lock until told to let go."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def bench_contention(store: Store, runs: int) -> None:
    conv = store.conversation("bench.ipynb", "contention")
    handoffs, interrupts = [], []
    for _ in range(runs):
        holder = _hold_lock(store)
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        store.append(conv, [{"role": "user", "content": "waited"}])
        got = time.time()
        released = float(holder.stdout.readline())
        handoffs.append(got - released)
        holder.wait(timeout=30)

        holder = _hold_lock(store)
        # The OS delivers the alarm on time; Python can only act on it between SQLite calls.
        previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
        fires_at = time.perf_counter() + 0.3
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        try:
            store.append(conv, [{"role": "user", "content": "interrupted"}])
            raise AssertionError("the append was not interrupted")
        except StoreInterrupted:
            interrupts.append(time.perf_counter() - fires_at)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            holder.communicate("go\n", timeout=30)
    for label, values in (
        ("lock handoff (released -> written)", handoffs),
        ("interrupt during a lock wait", interrupts),
    ):
        print(f"{label:<37}median {ms(statistics.median(values))}  max {ms(max(values))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--exchanges", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        bench_append(store, args.exchanges)
        median = bench_load(store, args.messages, args.runs)
        if sys.platform != "win32":  # SIGALRM
            bench_contention(store, args.runs)
        size = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*"))
        print(f"database size (with WAL)             {size / 1e6:.1f} MB")
    if args.messages == 10_000:
        verdict = "met" if median < 0.1 else "MISSED"
        print(f"target, load 10,000 messages < 100 ms: {verdict}")


if __name__ == "__main__":
    main()
