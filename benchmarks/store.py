"""Conversation store timings: append latency per message, and loading a long conversation.

Run: python benchmarks/store.py [--messages 10000]. Uses a temporary database, so it neither
reads nor changes your conversations. Target: loading 10,000 messages in under 100 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from clarifai_magic.store import Store

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--exchanges", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        bench_append(store, args.exchanges)
        median = bench_load(store, args.messages, args.runs)
        size = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*"))
        print(f"database size (with WAL)             {size / 1e6:.1f} MB")
    if args.messages == 10_000:
        verdict = "met" if median < 0.1 else "MISSED"
        print(f"target, load 10,000 messages < 100 ms: {verdict}")


if __name__ == "__main__":
    main()
