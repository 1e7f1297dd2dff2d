"""Benchmark: what a streaming answer sends to the front end, per byte of answer.

Starts the offline server in this process and one real ipykernel (this interpreter), and streams
the same answers through, side by side in that kernel:

* ``cell``: ``%%clarifai --no-history`` (the cell view: sealed blocks, only the tail redrawn);
* ``panel``: the chat panel (``ChatPanel.send``, a new conversation each time), whose answer
  is Output widgets updated by comm messages;
* ``naive``: a full-redraw view, the raw ``openai`` client redrawing the whole answer (escaped by
  ``safe_markdown``) at most 20 times a second: what the cell view did before.

For each it prints, from the IOPub messages the kernel sent: bytes sent ÷ answer bytes (display
MIME bundles as JSON, UTF-8; for the panel, the ``data`` of every comm message, widget creation
included), messages per second (and the most in any one second) and the time from the cell's
start to the first message showing answer text (next to when the raw client got its first chunk).

Run ``python benchmarks/widget_stream.py`` (about 2 minutes); ``--smoke`` runs tiny sizes (the
test suite does, so it cannot rot); ``--json PATH`` dumps every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_overhead import (  # noqa: E402
    LOAD_EXT_CELL,
    PROMPT,
    RAW_MODEL,
    RAW_SETUP_CELL,
    CellRun,
    Display,
    Kernel,
    KernelError,
    kernel_env,
    make_answer,
    peak_per_second,
    prerendered,
)

from clarifai_magic.offline import OfflineServer  # noqa: E402
from clarifai_magic.widget import MODEL_LABEL  # noqa: E402

CHUNK_CHARS = 4  # about one token of English


@dataclass(frozen=True)
class Case:
    name: str
    chars: int
    chunks: int
    delay: float  # seconds between chunks


# The table, and a short fast answer. 3,000 chunks 15 ms apart is a model at 67 tokens/s
# for 45 s: real models stream 20-100 tokens/s.
CASES = (
    Case("short, model-like (400 chunks, 5 ms)", 1_600, 400, 0.005),
    Case("short, fast", 1_600, 400, 0.0),
    Case("long, model-like (3,000 chunks, 15 ms)", 12_000, 3_000, 0.015),
    Case("long, fast (80,000 chunks)", 320_000, 80_000, 0.0),
)
SMOKE_CASES = (
    Case("short, model-like", 400, 100, 0.003),
    Case("long, fast", 8_000, 2_000, 0.0),
)

MAGIC_CELL = """
_bench_answer = None
_t0 = time.time()
get_ipython().run_cell_magic("clarifai", "--no-history --out _bench_answer", {prompt!r})
_bench = {{"t0": _t0, "elapsed": time.time() - _t0,
          "sha": _bench_answer and hashlib.sha256(_bench_answer.encode()).hexdigest()}}
"""

PANEL_SETUP_CELL = """
from clarifai_magic.widget import ChatPanel as _ChatPanel
_session = get_ipython()._clarifai_magics.session
_panel = _ChatPanel(_session, chat={chat!r}, list_models=False)
_bench = {{}}
"""

PANEL_CELL = """
_t0 = time.time()
_panel.send({prompt!r}).join()
_context = _session.store.context(_session.conversation({chat!r}))
_text = _context.messages[-1].message["content"]
_bench = {{"t0": _t0, "elapsed": time.time() - _t0,
          "sha": hashlib.sha256(_text.encode()).hexdigest()}}
"""

NAIVE_CELL = """
from IPython.display import display as _display
from clarifai_magic.safe_markdown import safe_markdown as _safe
_t0 = time.time()
_first = None
_handle = _display({{"text/markdown": "*Waiting…*", "text/plain": "…"}}, raw=True, display_id=True)
_pieces, _next = [], 0.0
for _chunk in _raw_client.chat.completions.create(
    model={model!r}, messages=[{{"role": "user", "content": {prompt!r}}}], stream=True
):
    if _chunk.choices and _chunk.choices[0].delta.content:
        _pieces.append(_chunk.choices[0].delta.content)
        if _first is None:
            _first = time.time() - _t0
        if time.monotonic() >= _next:
            _handle.update(
                {{"text/markdown": _safe("".join(_pieces)), "text/plain": "…"}}, raw=True
            )
            _next = time.monotonic() + 0.05
_text = "".join(_pieces)
_handle.update({{"text/markdown": _safe(_text), "text/plain": _text}}, raw=True)
_bench = {{"t0": _t0, "elapsed": time.time() - _t0, "first_chunk": _first,
          "sha": hashlib.sha256(_text.encode()).hexdigest()}}
"""


@dataclass
class ViewRun:
    view: str
    case: str
    answer_bytes: int
    display_bytes: int
    bytes_ratio: float
    messages: int
    updates_per_s: float
    peak_per_s: int
    first_text_ms: float | None  # cell start to the first display holding answer text
    first_chunk_ms: float | None  # cell start to the raw client's first chunk (naive only)
    longest_gap_ms: float  # the longest time between two messages: how long text can stall


def measure(run: CellRun, view: str, case: Case, answer: str, first_text: float | None) -> ViewRun:
    answer_bytes = len(answer.encode())
    sent = sum(d.size for d in run.displays)
    elapsed = run.values["elapsed"]
    first_chunk = run.values.get("first_chunk")
    return ViewRun(
        view=view,
        case=case.name,
        answer_bytes=answer_bytes,
        display_bytes=sent,
        bytes_ratio=sent / answer_bytes,
        messages=len(run.displays),
        updates_per_s=len(run.displays) / elapsed,
        peak_per_s=peak_per_second([d.at for d in run.displays]),
        first_text_ms=None if first_text is None else first_text * 1000,
        first_chunk_ms=None if first_chunk is None else first_chunk * 1000,
        longest_gap_ms=longest_gap([d.at for d in run.displays]) * 1000,
    )


def longest_gap(times: list[datetime]) -> float:
    ordered = sorted(times)
    gaps = (b - a for a, b in zip(ordered, ordered[1:], strict=False))
    return max((gap.total_seconds() for gap in gaps), default=0.0)


class TextKernel(Kernel):
    """The benchmark kernel, also noting when a display first shows a given text, and keeping
    the comm messages (widget updates: sent from the panel's thread, with no cell as parent)."""

    def run_watching(
        self, code: str, needle: str, *, comms: bool = False
    ) -> tuple[CellRun, float | None]:
        self.needle, self.first_seen, self.watch_comms = needle, None, comms
        self.comms: list[Display] = []
        run = self.run(code)
        if comms:
            run.displays = self.comms
        return run, self.first_seen

    def _next(self, get, deadline, code):  # type: ignore[no-untyped-def, override]
        msg = super()._next(get, deadline, code)
        needle = getattr(self, "needle", None)
        kind = msg["msg_type"]
        if getattr(self, "watch_comms", False) and kind in ("comm_open", "comm_msg"):
            data = json.dumps(msg["content"]["data"], ensure_ascii=False)
            self.comms.append(Display(kind, len(data.encode()), msg["header"]["date"]))
            if self.first_seen is None and needle and json.dumps(needle)[1:-1] in data:
                self.first_seen = msg["header"]["date"]
        elif (
            needle
            and self.first_seen is None
            and kind in ("display_data", "update_display_data")
            and needle in msg["content"]["data"].get("text/markdown", "")
        ):
            self.first_seen = msg["header"]["date"]
        return msg


def run_case(kernel: TextKernel, srv: OfflineServer, case: Case) -> list[ViewRun]:
    answer = make_answer(case.chars)
    sha = hashlib.sha256(answer.encode()).hexdigest()
    needle = answer[: CHUNK_CHARS - 1]
    chat = f"bench-{hashlib.sha256(case.name.encode()).hexdigest()[:8]}-{id(case)}"
    results = []
    for view, code in (
        ("cell", MAGIC_CELL.format(prompt=PROMPT)),
        ("panel", PANEL_CELL.format(prompt=PROMPT, chat=chat)),
        ("naive", NAIVE_CELL.format(model=RAW_MODEL, prompt=PROMPT)),
    ):
        if view == "panel":  # the panel's own widgets are made once, not per answer
            kernel.run(PANEL_SETUP_CELL.format(chat=chat))
        srv.enqueue(prerendered(answer, case.chunks, case.delay))
        watched = MODEL_LABEL + needle if view == "panel" else needle
        run, seen = kernel.run_watching(code, watched, comms=view == "panel")
        if run.values["sha"] != sha:
            raise KernelError(f"The {view} cell's answer differs from what the server streamed.")
        first = None if seen is None else seen.timestamp() - run.values["t0"]
        results.append(measure(run, view, case, answer, first))
    return results


def report(runs: list[ViewRun]) -> None:
    print(
        f"{'case':42} {'view':6} {'bytes ÷ answer':>14} {'msgs':>6} {'updates/s':>9} "
        f"{'peak/s':>6} {'first text':>10} {'raw 1st chunk':>13} {'max gap':>8}"
    )
    for r in runs:
        first = "-" if r.first_text_ms is None else f"{r.first_text_ms:.0f} ms"
        chunk = "-" if r.first_chunk_ms is None else f"{r.first_chunk_ms:.0f} ms"
        print(
            f"{r.case:42} {r.view:6} {r.bytes_ratio:14.2f} {r.messages:6d} "
            f"{r.updates_per_s:9.1f} {r.peak_per_s:6d} {first:>10} {chunk:>13} "
            f"{r.longest_gap_ms / 1000:7.2f}s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    cases = SMOKE_CASES if args.smoke else CASES
    with OfflineServer() as srv, tempfile.TemporaryDirectory(prefix="clarifai-bench-") as tmp:
        workdir = Path(tmp)
        env = kernel_env(srv.api_base, workdir)
        kernel = TextKernel(workdir, env)
        try:
            kernel.run(LOAD_EXT_CELL)
            kernel.run(RAW_SETUP_CELL.format(base_url=srv.base_url))
            warm = Case("warm-up", 200, 20, 0.0)  # the first request imports openai: not timed
            run_case(kernel, srv, warm)
            runs: list[ViewRun] = []
            for case in cases:
                print(f"… {case.name}", file=sys.stderr, flush=True)
                runs.extend(run_case(kernel, srv, case))
        finally:
            kernel.close()
    report(runs)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))


if __name__ == "__main__":
    main()
