"""How fast the stop button ends a streaming ``%%clarifai`` cell (target: within 0.5 s).

Run: ``python benchmarks/interrupt.py [--repeat 5]``. One real ipykernel (jupyter_client) asks
the offline server for two kinds of answer: a slow one (a chunk every 50 ms, ~20 s in all) and a
hostile flood (4 kB chunks as fast as the kernel reads, never finishing, with the answer limit
raised out of the way). Once some text has been drawn, the benchmark sends the kernel interrupt
and times, on the client side, how long until the kernel reports idle, and checks that the
server saw the HTTP connection closed. (That the partial answer is kept, marked "Interrupted",
is checked in tests/test_kernel.py and tests/test_hostile.py.)
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import time

from jupyter_client.manager import KernelManager

from clarifai_magic.testing import OfflineServer, endless, text


def _until(kc, msg_id: str, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id and predicate(msg):
            return msg
    raise TimeoutError("the kernel did not get there in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"$ python benchmarks/interrupt.py --repeat {args.repeat}")
    timings: dict[str, list[float]] = {"slow stream": [], "hostile flood": []}
    with OfflineServer() as server, tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "CLARIFAI_PAT": "benchmark-pat-000000",
            "CLARIFAI_API_BASE": server.api_base,
            "CLARIFAI_MAGIC_HOME": home,
            "HOME": home,
        }
        km = KernelManager(kernel_name="python3")
        km.start_kernel(env=env)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            kc.execute_interactive("%load_ext clarifai_magic", timeout=60)
            kc.execute_interactive("%config ClarifaiMagics.max_answer_chars = 10**10", timeout=60)
            for _ in range(args.repeat):
                for kind, script in (
                    ("slow stream", text("tick " * 400, chunk_size=5, delay=0.05)),
                    ("hostile flood", endless("tick ", seconds=60)),
                ):
                    server.enqueue(script)
                    msg_id = kc.execute("%%clarifai --no-history\nCount.")
                    _until(kc, msg_id, lambda m: "tick tick" in str(m["content"].get("data", "")))
                    if kind == "hostile flood":
                        time.sleep(0.5)  # let the flood build up
                    started = time.monotonic()
                    km.interrupt_kernel()
                    _until(kc, msg_id, lambda m: m["content"].get("execution_state") == "idle")
                    timings[kind].append(time.monotonic() - started)
                deadline = time.monotonic() + 5
                while server.open_connections and time.monotonic() < deadline:
                    time.sleep(0.01)
                if server.open_connections:
                    print("the HTTP connection was not closed", file=sys.stderr)
                    return 1
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    print(f"interrupt -> kernel idle, {args.repeat} runs each (seconds)")
    for kind, runs in timings.items():
        print(
            f"  {kind:<14} median {statistics.median(runs):.3f}   max {max(runs):.3f}"
            "   target < 0.5"
        )
    print("  every run: HTTP connection closed by the client")
    return 0


if __name__ == "__main__":
    sys.exit(main())
