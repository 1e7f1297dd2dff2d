"""Benchmark: what ``%%clarifai`` costs over the raw ``openai`` client, measured in one real kernel.

Starts the offline server in this process and one ipykernel (this interpreter) with
jupyter_client, then measures, inside the kernel:

* ``%load_ext clarifai_magic`` time (fresh kernel, before ``openai`` is imported) and the one-off
  cost of the first request (importing ``openai``, building the client);
* a fast 20,000-chunk stream, raw client vs ``%%clarifai --no-history`` (and ``--new``, which
  writes the conversation store), interleaved repetitions: time ratio magic/raw (medians),
  display messages, display bytes / answer bytes, next to what an update-per-chunk renderer
  would send (computed, not run);
* a realistic-speed stream (3,000 chunks 15 ms apart): display updates per second, bytes ratio.

Run ``python benchmarks/stream_overhead.py`` (about 1.5 minutes; ``--quick`` for a smoke run,
``--json PATH`` to dump every figure, ``--profile`` for cProfile of one run of each inside the
kernel). See benchmarks/README.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import queue
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jupyter_client import KernelManager  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

from clarifai_magic.offline import (  # noqa: E402
    OfflineServer,
    Script,
    raw,
    render_events,
    split_text,
    text,
)

CHUNK_CHARS = 4  # about one token of English
FAST_CHUNKS = 20_000
REAL_CHUNKS = 3_000
QUICK_REAL_CHUNKS = 1_000
# --smoke: tiny sizes, so the test suite can run the whole benchmark and it cannot rot.
SMOKE_FAST_CHUNKS, SMOKE_REAL_CHUNKS = 300, 30
REAL_DELAY = 0.015
PROMPT = "Write a long Markdown answer with sections, lists, tables and code."
RAW_MODEL = "gpt-4o"
STARTUP_TIMEOUT = 60.0
# Generous: a noisy shared machine can be several times slower than a quiet one.
CELL_TIMEOUT = 120.0

# Deterministic, Markdown-heavy filler: what a long LLM answer looks like to a renderer.
_BLOCKS = (
    "## Section {n}\n\n",
    "Streaming answers arrive in small pieces, and a renderer has to decide how often to redraw "
    "them. This paragraph has `inline code`, **bold** and *italic* words, and a naïve résumé — "
    "so that some characters take more than one byte.\n\n",
    "- first point about item {n}\n- a second point, a little longer than the first one\n"
    "- third point\n\n",
    "```python\ndef step_{n}(x):\n    return x * {n} + 1\n```\n\n",
    "| column | value |\n|---|---|\n| a | {n} |\n| b | {m} |\n\n",
)


def make_answer(chars: int) -> str:
    """``chars`` characters of Markdown, the same every run."""
    parts: list[str] = []
    size = n = 0
    while size < chars:
        n += 1
        for block in _BLOCKS:
            piece = block.format(n=n, m=n * n)
            parts.append(piece)
            size += len(piece)
    return "".join(parts)[:chars]


def prerendered(content: str, chunks: int, delay: float = 0.0) -> Script:
    """A ``text()`` stream with its SSE payloads encoded once, here.

    The server would otherwise JSON-encode all chunks on every request inside the timed region
    (about 90 ms for 20,000 chunks), the same for both sides, which would dilute the ratio.
    """
    script = text(content, chunks=chunks)
    request = {"model": RAW_MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    events = render_events(script, request, "chatcmpl-bench", int(time.time()))
    payloads = [e.decode()[len("data: ") : -2] for e in events if not e.startswith(b"data: [DONE]")]
    return raw(list(payloads), delay=delay)


def naive_bytes(content: str, chunks: int) -> int:
    """Markdown bytes an update-per-chunk renderer sends: the whole answer so far, every chunk."""
    total = so_far = 0
    for piece in split_text(content, chunks=chunks):
        so_far += len(piece.encode())
        total += so_far
    return total


# -- the kernel ------------------------------------------------------------------------------
@dataclass
class Display:
    kind: str  # display_data | update_display_data
    size: int  # bytes of the MIME bundle as JSON (UTF-8)
    at: datetime  # kernel-side send time (message header)


@dataclass
class CellRun:
    values: dict[str, Any]
    displays: list[Display]


class KernelError(RuntimeError):
    """A benchmark cell failed in the kernel; the message holds the kernel's traceback."""


class Kernel:
    """One ipykernel running this interpreter; ``run`` executes a cell and collects its IOPub."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        # A private kernel spec so the kernel is this interpreter, whatever else is installed.
        spec_dir = workdir / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec = {"argv": argv, "display_name": "bench", "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        specs = KernelSpecManager(kernel_dirs=[str(workdir / "kernels")])
        self.km = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
        self.km.start_kernel(env=env, cwd=str(workdir))
        self.kc = self.km.client()
        try:
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            self.km.shutdown_kernel(now=True)

    def run(self, code: str, timeout: float = CELL_TIMEOUT) -> CellRun:
        """Run ``code``; return ``_bench`` (a dict of literals) and the cell's display messages."""
        msg_id = self.kc.execute(
            code, store_history=False, user_expressions={"bench": "_bench"}, allow_stdin=False
        )
        deadline = time.monotonic() + timeout
        displays: list[Display] = []
        errors: list[str] = []
        while True:
            msg = self._next(self.kc.get_iopub_msg, deadline, code)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind in ("display_data", "update_display_data"):
                size = len(json.dumps(content["data"], ensure_ascii=False).encode())
                displays.append(Display(kind, size, msg["header"]["date"]))
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))
            elif kind == "stream" and content["name"] == "stderr":
                errors.append(content["text"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        while True:
            reply = self._next(self.kc.get_shell_msg, deadline, code)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        content = reply["content"]
        if content["status"] != "ok" or errors:
            raise KernelError(f"Cell failed in the kernel:\n{code}\n---\n" + "\n".join(errors))
        result = content["user_expressions"]["bench"]
        if result.get("status") != "ok":
            raise KernelError(f"Cell did not set _bench:\n{code}\n---\n{result}")
        return CellRun(ast.literal_eval(result["data"]["text/plain"]), displays)

    @staticmethod
    def _next(get: Any, deadline: float, code: str) -> dict[str, Any]:
        try:
            return get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"The kernel did not finish this cell in time:\n{code}") from None


# -- cells -----------------------------------------------------------------------------------
LOAD_EXT_CELL = """
import hashlib, os, sys, time
_openai_before = "openai" in sys.modules
_t0 = time.perf_counter()
get_ipython().run_line_magic("load_ext", "clarifai_magic")
_bench = {"load_ext_s": time.perf_counter() - _t0, "openai_before": _openai_before,
          "openai_after": "openai" in sys.modules, "python": sys.executable}
"""

MAGIC_CELL = """
_bench_answer = None
_t0 = time.perf_counter()
get_ipython().run_cell_magic("clarifai", {options!r}, {prompt!r})
_bench = {{"elapsed": time.perf_counter() - _t0,
          "sha": _bench_answer and hashlib.sha256(_bench_answer.encode()).hexdigest()}}
"""

RAW_SETUP_CELL = """
import openai
from IPython.display import Markdown, display
_raw_client = openai.OpenAI(base_url={base_url!r}, api_key=os.environ["CLARIFAI_PAT"])
_bench = {{}}
"""

RAW_CELL = """
_t0 = time.perf_counter()
_text = ""
for _chunk in _raw_client.chat.completions.create(
    model={model!r}, messages=[{{"role": "user", "content": {prompt!r}}}],
    stream=True, stream_options={{"include_usage": True}},
):
    if _chunk.choices:
        _text += _chunk.choices[0].delta.content or ""
display(Markdown(_text))
_bench = {{"elapsed": time.perf_counter() - _t0,
          "sha": hashlib.sha256(_text.encode()).hexdigest()}}
"""

PROFILE_CELL = """
import cProfile, io, pstats
_profiler = cProfile.Profile()
_profiler.enable()
{body}
_profiler.disable()
_out = io.StringIO()
_stats = pstats.Stats(_profiler, stream=_out)
_stats.sort_stats("tottime").print_stats({top})
_stats.sort_stats("cumulative").print_stats("clarifai_magic|display", {top})
_bench = {{"profile": _out.getvalue()}}
"""


# -- figures ---------------------------------------------------------------------------------
@dataclass
class MagicRun:
    """What one ``%%clarifai`` run sent to the frontend."""

    elapsed: float
    messages: int
    updates_per_s: float
    peak_per_s: int  # most display messages inside any one-second window
    display_bytes: int
    bytes_ratio: float

    @classmethod
    def of(cls, run: CellRun, answer_bytes: int) -> MagicRun:
        elapsed = run.values["elapsed"]
        sent = sum(d.size for d in run.displays)
        return cls(
            elapsed=elapsed,
            messages=len(run.displays),
            updates_per_s=len(run.displays) / elapsed,
            peak_per_s=peak_per_second([d.at for d in run.displays]),
            display_bytes=sent,
            bytes_ratio=sent / answer_bytes,
        )


def peak_per_second(times: list[datetime]) -> int:
    stamps = sorted(t.timestamp() for t in times)
    best = start = 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass
class StreamCase:
    chunks: int
    delay: float
    answer_bytes: int
    sse_bytes: int
    naive_bytes: int
    naive_bytes_ratio: float
    raw_seconds: list[float] = field(default_factory=list)
    magic: list[MagicRun] = field(default_factory=list)  # --no-history
    magic_history: list[MagicRun] = field(default_factory=list)  # a conversation, so the store

    def runs(self, side: str) -> list[MagicRun]:
        return self.magic_history if side == "magic_history" else self.magic


@dataclass
class Results:
    command: str
    python: str
    openai: str
    ipykernel: str
    cpus: int | None
    load_ext_s: float
    openai_imported_by_load_ext: bool
    first_request_extra_s: float
    small_cell_s: dict[str, float]  # best time of a 10-chunk stream: the fixed cost per cell
    fast: StreamCase
    realistic: StreamCase
    profile: dict[str, str] = field(default_factory=dict)

    def time_ratio(self, side: str = "magic") -> float:
        """Median magic time over median raw time, on the fast stream."""
        magic = statistics.median(r.elapsed for r in self.fast.runs(side))
        return magic / statistics.median(self.fast.raw_seconds)

    def time_ratio_best(self, side: str = "magic") -> float:
        """Best run over best run: the least noisy estimate on a busy machine."""
        return min(r.elapsed for r in self.fast.runs(side)) / min(self.fast.raw_seconds)


# -- the benchmark ---------------------------------------------------------------------------
def stream_case(content: str, chunks: int, delay: float) -> tuple[StreamCase, Script]:
    script = prerendered(content, chunks, delay)
    answer_bytes = len(content.encode())
    naive = naive_bytes(content, chunks)
    sse = sum(len(e) + 8 for e in script.events if isinstance(e, str))
    case = StreamCase(chunks, delay, answer_bytes, sse, naive, naive / answer_bytes)
    return case, script


# The magic as most cells use it (with a conversation, so the store is written) and without.
MAGIC_OPTIONS = {
    "magic": "--no-history --out _bench_answer",
    "magic_history": "--new --out _bench_answer",
}


def run_cell(kernel: Kernel, srv: OfflineServer, side: str, script: Script, sha: str) -> CellRun:
    """Stream ``script`` once through ``side`` ("raw" or a MAGIC_OPTIONS key); check the answer."""
    srv.enqueue(script)
    if side == "raw":
        code = RAW_CELL.format(model=RAW_MODEL, prompt=PROMPT)
    else:
        code = MAGIC_CELL.format(options=MAGIC_OPTIONS[side], prompt=PROMPT)
    run = kernel.run(code)
    if srv.pending:
        srv.clear()
        raise KernelError(f"The {side} cell did not make its request to the offline server.")
    if run.values["sha"] != sha:
        raise KernelError(f"The {side} cell's answer differs from what the server streamed.")
    return run


def kernel_env(api_base: str, workdir: Path) -> dict[str, str]:
    """The benchmark kernel's environment: the offline server, private dirs, a named notebook."""
    env = dict(os.environ)
    for name in ("CLARIFAI_MODEL", "CLARIFAI_API_KEY"):
        env.pop(name, None)
    env.update(
        CLARIFAI_PAT="offline-benchmark-token",
        CLARIFAI_API_BASE=api_base,
        CLARIFAI_MAGIC_HOME=str(workdir / "home"),
        JPY_SESSION_NAME=str(workdir / "benchmark.ipynb"),  # as Jupyter Server sets it
        HOME=str(workdir),  # no real ~/.config/clarifai/config
        IPYTHONDIR=str(workdir / "ipython"),  # no user profile or startup files
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


def benchmark(args: argparse.Namespace, command: str) -> Results:
    import ipykernel
    import openai

    real_chunks = QUICK_REAL_CHUNKS if args.quick else REAL_CHUNKS
    fast_chunks = FAST_CHUNKS
    if args.smoke:
        fast_chunks, real_chunks = SMOKE_FAST_CHUNKS, SMOKE_REAL_CHUNKS
    fast_content = make_answer(fast_chunks * CHUNK_CHARS)
    real_content = make_answer(real_chunks * CHUNK_CHARS)
    fast, fast_script = stream_case(fast_content, fast_chunks, 0.0)
    real, real_script = stream_case(real_content, real_chunks, REAL_DELAY)
    fast_sha = hashlib.sha256(fast_content.encode()).hexdigest()
    real_sha = hashlib.sha256(real_content.encode()).hexdigest()
    tiny_content = make_answer(40)
    tiny_script = prerendered(tiny_content, 10)
    tiny_sha = hashlib.sha256(tiny_content.encode()).hexdigest()
    profile: dict[str, str] = {}

    with OfflineServer() as srv, tempfile.TemporaryDirectory(prefix="clarifai-bench-") as tmp:
        workdir = Path(tmp)
        env = kernel_env(srv.api_base, workdir)
        progress("starting the kernel")
        kernel = Kernel(workdir, env)
        try:
            loaded = kernel.run(LOAD_EXT_CELL).values
            if os.path.realpath(loaded["python"]) != os.path.realpath(sys.executable):
                raise KernelError(f"The kernel runs {loaded['python']}, not {sys.executable}.")
            if loaded["openai_before"]:
                raise KernelError("openai was imported before %load_ext: the timing would be off.")
            progress("first request (imports openai), then warm ones")
            cold = run_cell(kernel, srv, "magic", tiny_script, tiny_sha).values["elapsed"]
            warm = min(
                run_cell(kernel, srv, "magic", tiny_script, tiny_sha).values["elapsed"]
                for _ in range(3)
            )
            kernel.run(RAW_SETUP_CELL.format(base_url=srv.base_url))
            warm_raw = min(
                run_cell(kernel, srv, "raw", tiny_script, tiny_sha).values["elapsed"]
                for _ in range(3)
            )

            sides = ("raw", "magic", "magic_history")
            progress(
                f"fast stream: {fast_chunks} chunks, a warm-up then {args.reps} runs of {sides}"
            )
            for side in sides:
                run_cell(kernel, srv, side, fast_script, fast_sha)
            for rep in range(args.reps):
                # Alternate the order so drift on a noisy machine hits every side alike.
                for side in sides if rep % 2 == 0 else sides[::-1]:
                    run = run_cell(kernel, srv, side, fast_script, fast_sha)
                    if side == "raw":
                        fast.raw_seconds.append(run.values["elapsed"])
                    else:
                        fast.runs(side).append(MagicRun.of(run, fast.answer_bytes))

            seconds = real_chunks * REAL_DELAY
            progress(
                f"realistic stream: {real_chunks} chunks, {REAL_DELAY * 1000:.0f} ms apart "
                f"(~{seconds:.0f} s)"
            )
            run = run_cell(kernel, srv, "magic", real_script, real_sha)
            real.magic.append(MagicRun.of(run, real.answer_bytes))

            if args.profile:
                progress("profiling one fast run of raw and of magic")
                for side in ("raw", "magic"):
                    srv.enqueue(fast_script)
                    if side == "raw":
                        body = RAW_CELL.format(model=RAW_MODEL, prompt=PROMPT)
                    else:
                        body = MAGIC_CELL.format(options=MAGIC_OPTIONS[side], prompt=PROMPT)
                    cell = PROFILE_CELL.format(body=body, top=args.profile)
                    profile[side] = kernel.run(cell).values["profile"]
        finally:
            kernel.close()

    return Results(
        command=command,
        python=platform.python_version(),
        openai=openai.__version__,
        ipykernel=ipykernel.__version__,
        cpus=os.cpu_count(),
        load_ext_s=loaded["load_ext_s"],
        openai_imported_by_load_ext=loaded["openai_after"],
        first_request_extra_s=cold - warm,
        small_cell_s={"raw": warm_raw, "magic": warm},
        fast=fast,
        realistic=real,
        profile=profile,
    )


# -- output ----------------------------------------------------------------------------------
def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def row(label: str, value: str, target: str = "", ok: bool | None = None) -> str:
    mark = "" if ok is None else ("ok" if ok else "MISSED")
    return f"  {label:<58}{value:>12}  {target:<9}{mark}".rstrip()


def report(r: Results) -> str:
    fast, real = r.fast, r.realistic
    median = statistics.median
    raw_s = fast.raw_seconds
    lines = [
        f"$ {r.command}",
        f"python {r.python}, openai {r.openai}, ipykernel {r.ipykernel}, {r.cpus} CPUs",
        "",
        "Extension load (fresh kernel, measured inside it)",
        row(
            "%load_ext clarifai_magic",
            f"{r.load_ext_s * 1000:.1f} ms",
            "< 100 ms",
            r.load_ext_s < 0.1,
        ),
        row("openai imported by %load_ext", str(r.openai_imported_by_load_ext)),
        row(
            "first request's one-off cost (import openai, client)",
            f"{r.first_request_extra_s * 1000:.0f} ms",
        ),
        row("10-chunk answer, raw client (best of 3)", f"{r.small_cell_s['raw'] * 1000:.1f} ms"),
        row("10-chunk answer, %%clarifai (best of 3)", f"{r.small_cell_s['magic'] * 1000:.1f} ms"),
        "",
        f"Fast stream: {fast.chunks:,} chunks, {fast.answer_bytes:,} answer bytes, "
        f"{fast.sse_bytes:,} SSE bytes; {len(raw_s)} interleaved runs of each",
        row("raw openai client: median (best)", f"{median(raw_s):.3f} s", f"({min(raw_s):.3f} s)"),
    ]
    for side, label in (
        ("magic", "%%clarifai --no-history"),
        ("magic_history", "%%clarifai --new"),
    ):
        times = [m.elapsed for m in fast.runs(side)]
        ratio = r.time_ratio(side)
        lines += [
            row(f"{label}: median (best)", f"{median(times):.3f} s", f"({min(times):.3f} s)"),
            row("  time ratio magic/raw, medians", f"{ratio:.3f}", "<= 1.05", ratio <= 1.05),
            row("  time ratio magic/raw, best runs", f"{r.time_ratio_best(side):.3f}"),
        ]
    runs = fast.magic
    peak = max(m.peak_per_s for m in runs)
    lines += [
        row(
            "display messages per --no-history run (median)",
            f"{median(m.messages for m in runs):.0f}",
        ),
        row("display messages in any 1 s window (max)", f"{peak}", "<= 20", peak <= 20),
        row("display bytes sent per run (median)", f"{median(m.display_bytes for m in runs):,.0f}"),
        row("display bytes / answer bytes (median)", f"{median(m.bytes_ratio for m in runs):.1f}"),
        row(
            "naive update-per-chunk renderer: bytes / answer bytes",
            f"{fast.naive_bytes_ratio:,.0f}",
        ),
        "",
    ]
    run = real.magic[0]
    lines += [
        f"Realistic stream: {real.chunks:,} chunks {real.delay * 1000:.0f} ms apart, "
        f"{real.answer_bytes:,} answer bytes (%%clarifai --no-history)",
        row("elapsed", f"{run.elapsed:.2f} s", f"(stream alone ~{real.chunks * real.delay:.0f} s)"),
        row("display messages", f"{run.messages}"),
        row(
            "display updates per second (average)",
            f"{run.updates_per_s:.1f}",
            "<= 20",
            run.updates_per_s <= 20,
        ),
        row("display messages in any 1 s window (max)", f"{run.peak_per_s}"),
        row("display bytes sent", f"{run.display_bytes:,}"),
        row("display bytes / answer bytes", f"{run.bytes_ratio:.1f}"),
        row(
            "naive update-per-chunk renderer: bytes / answer bytes",
            f"{real.naive_bytes_ratio:,.0f}",
        ),
    ]
    for side, stats in r.profile.items():
        lines += ["", f"cProfile inside the kernel, one fast run, {side}", stats]
    return "\n".join(lines)


def to_json(r: Results) -> dict[str, Any]:
    data = asdict(r)
    for side in MAGIC_OPTIONS:
        data[f"time_ratio_{side}"] = r.time_ratio(side)
        data[f"time_ratio_best_{side}"] = r.time_ratio_best(side)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="realistic case with 1,000 chunks, 3 reps"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one rep: checks that it still runs"
    )
    parser.add_argument("--reps", type=int, help="runs of each side on the fast stream (default 5)")
    parser.add_argument(
        "--json", metavar="PATH", help="also write every figure as JSON ('-': stdout)"
    )
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=25,
        default=0,
        metavar="N",
        help="cProfile one fast run of each side inside the kernel; print the top N functions",
    )
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 1 if args.smoke else 3 if args.quick else 5
    command = " ".join(["python", *map(shlex.quote, [os.path.relpath(sys.argv[0]), *sys.argv[1:]])])
    started = time.monotonic()
    results = benchmark(args, command)
    print(report(results))
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.json:
        dumped = json.dumps(to_json(results), indent=2, default=str)
        if args.json == "-":
            print(dumped)
        else:
            Path(args.json).write_text(dumped + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
