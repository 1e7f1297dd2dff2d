"""Benchmark: a model turn with N parallel tool calls, each sleeping S seconds, through the engine.

Starts the offline server in this process and runs real turns with
:func:`clarifai_magic.engine.run_turn` and a real ``openai.OpenAI`` client: one streamed answer
holding N tool calls, then a text answer. The tool phase is timed by the view (from the draw that
says "running tools" to the draw with every result in) and, inside the tools, from the first call
starting to the last one ending. It is compared with the sequential sum of the calls' own measured
durations (about N x S). Done for a sync tool (``time.sleep``) and an ``async def`` tool
(``asyncio.sleep``). The most threads alive during a sync call (over those before the turn) is
shown too: the runner starts at most ``ToolRunner.max_threads`` (16) tool threads at once, so
with more calls than that the sync phase takes about ceil(N / 16) x S.

Run ``python benchmarks/tools_parallel.py`` (a few seconds; ``--calls``, ``--sleep``,
``--repeat`` to change the defaults of 8 calls, 0.5 s, 3 repetitions). Target: 8 calls of 0.5 s
finish in well under 1 s of tool time. The engine ends a turn whose response asks for more than
``max_tool_calls`` (64) calls before running any, so ``--calls`` above 64 fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import openai  # noqa: E402

from clarifai_magic.engine import Transcript, TurnOptions, run_turn  # noqa: E402
from clarifai_magic.testing import OfflineServer, text, tool_calls  # noqa: E402
from clarifai_magic.tools import ToolRunner, as_tool  # noqa: E402

MODEL = "https://clarifai.com/openai/chat-completion/models/gpt-4o"
TARGET_SECONDS = 1.0


@dataclass
class Spans:
    """When each tool call started and ended (perf_counter), appended from the tools' threads."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)  # threading.active_count() in each call
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, started: float, ended: float, threads: int) -> None:
        with self.lock:
            self.starts.append(started)
            self.ends.append(ended)
            self.threads.append(threads)


class PhaseClock:
    """A view that notes when the tool phase starts and when its results are all in."""

    def __init__(self) -> None:
        self.began: float | None = None
        self.done: float | None = None

    def show(self, transcript: Transcript, *, final: bool = False, force: bool = False) -> None:
        if not transcript.rounds or not transcript.rounds[0].tools:
            return
        activities = transcript.rounds[0].tools
        if self.began is None and all(a.outcome is None for a in activities):
            self.began = time.perf_counter()
        elif self.done is None and all(a.outcome is not None for a in activities):
            self.done = time.perf_counter()


@dataclass
class Result:
    phase: float  # the view's tool phase, wall clock
    span: float  # first tool start to last tool end
    sequential: float  # the calls' own durations, summed
    turn: float  # the whole turn: two requests plus the tools
    threads: int  # the most threads alive during a call, over those alive before the turn


def make_tools(spans: Spans) -> dict[str, Callable[..., Any]]:
    def nap(seconds: float) -> float:
        """Sleep, then say for how long."""
        started = time.perf_counter()
        threads = threading.active_count()
        time.sleep(seconds)
        spans.record(started, time.perf_counter(), threads)
        return seconds

    async def async_nap(seconds: float) -> float:
        """Sleep without blocking the loop, then say for how long."""
        started = time.perf_counter()
        threads = threading.active_count()
        await asyncio.sleep(seconds)
        spans.record(started, time.perf_counter(), threads)
        return seconds

    return {"sync": nap, "async": async_nap}


def one_turn(
    server: OfflineServer,
    client: openai.OpenAI,
    runner: ToolRunner,
    func: Callable[..., Any],
    spans: Spans,
    calls: int,
    sleep: float,
) -> Result:
    spec = as_tool(func)
    arguments = json.dumps({"seconds": sleep})
    server.clear()
    server.enqueue(
        tool_calls([(f"call_{i}", spec.name, arguments) for i in range(calls)]),
        text("All done."),
    )
    spans.starts.clear()
    spans.ends.clear()
    spans.threads.clear()
    clock = PhaseClock()
    threads_before = threading.active_count()
    started = time.perf_counter()
    transcript = run_turn(
        client,
        [{"role": "user", "content": f"Sleep {calls} times at once."}],
        TurnOptions(model=MODEL, tools={spec.name: spec}),
        clock,
        runner=runner,
    )
    turn = time.perf_counter() - started
    outcomes = [a.outcome for a in transcript.rounds[0].tools]
    if transcript.status != "done" or not all(o is not None and o.ok for o in outcomes):
        raise SystemExit(f"The turn did not complete: {transcript.status} {transcript.error}")
    if clock.began is None or clock.done is None or len(spans.starts) != calls:
        raise SystemExit("The view did not see the tool phase; the benchmark is broken.")
    return Result(
        phase=clock.done - clock.began,
        span=max(spans.ends) - min(spans.starts),
        sequential=sum(o.duration for o in outcomes if o is not None),
        turn=turn,
        threads=max(spans.threads) - threads_before,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Parallel tool calls through the engine.")
    parser.add_argument("--calls", type=int, default=8, help="parallel calls in one turn")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds each call sleeps")
    parser.add_argument("--repeat", type=int, default=3, help="turns per kind (median shown)")
    args = parser.parse_args(argv)

    print("$ python " + shlex.join(sys.argv))
    print(
        f"Python {platform.python_version()}, openai {openai.__version__}, "
        f"{platform.system()} {platform.machine()}; "
        f"{args.calls} calls x {args.sleep:g} s, {args.repeat} turns per kind (median, then range)"
    )
    spans = Spans()
    tools = make_tools(spans)
    rows: dict[str, list[Result]] = {}
    with OfflineServer() as server, ToolRunner() as runner:
        client = openai.OpenAI(base_url=server.base_url, api_key="offline", max_retries=0)
        try:
            for kind, func in tools.items():
                one_turn(server, client, runner, func, spans, 1, 0.0)  # warm up threads, loop
                rows[kind] = [
                    one_turn(server, client, runner, func, spans, args.calls, args.sleep)
                    for _ in range(args.repeat)
                ]
        finally:
            client.close()

    def fmt(values: list[float], unit: str = " s", digits: int = 3) -> str:
        median = statistics.median(values)
        return f"{median:.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    print()
    header = ("tool", "tool phase (wall)", "sequential sum", "ratio", "first start->last end")
    print(
        f"{header[0]:<6} {header[1]:<26} {header[2]:<26} {header[3]:<22} {header[4]:<26} "
        "peak threads"
    )
    verdicts = []
    for kind, results in rows.items():
        phases = [r.phase for r in results]
        ratios = [r.phase / r.sequential for r in results]
        print(
            f"{kind:<6} {fmt(phases):<26} {fmt([r.sequential for r in results]):<26} "
            f"{fmt(ratios, '', 3):<22} {fmt([r.span for r in results]):<26} "
            f"{max(r.threads for r in results)}"
        )
        verdicts.append(f"{kind}: {'yes' if max(phases) < TARGET_SECONDS else 'NO'}")
    print()
    for kind, results in rows.items():
        print(f"whole turn ({kind}, two requests + tools): {fmt([r.turn for r in results])}")
    print(
        f"nominal sequential sum: {args.calls} x {args.sleep:g} s = {args.calls * args.sleep:g} s"
    )
    print(f"target, tool phase < {TARGET_SECONDS:g} s in every turn: " + ", ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
