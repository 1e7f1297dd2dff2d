"""A real ipykernel driven over ZMQ with jupyter_client, collecting every IOPub message."""

from __future__ import annotations

import os
import queue
import time
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import KernelManager


@dataclass
class Execution:
    msg_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] | None = None

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in types]

    @property
    def displays(self) -> list[dict[str, Any]]:
        return self.of_type("display_data", "update_display_data")

    @property
    def last_markdown(self) -> str:
        found = [m["content"]["data"].get("text/markdown") for m in self.displays]
        found = [f for f in found if f is not None]
        assert found, f"no markdown display in {[m['msg_type'] for m in self.messages]}"
        return found[-1]

    @property
    def stdout(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout"
        )

    @property
    def stderr(self) -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stderr"
        )

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.of_type("error")
        return errors[0]["content"] if errors else None


class Kernel:
    """Start a kernel with extra environment variables; run cells and watch their messages."""

    def __init__(self, env: dict[str, str], cwd: str | None = None) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env={**os.environ, **env}, cwd=cwd)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def start(self, code: str) -> str:
        return self.kc.execute(code, allow_stdin=False)

    def collect(self, msg_id: str, timeout: float = 60) -> Execution:
        """Gather IOPub messages of one execution until the kernel is idle again."""
        run = Execution(msg_id)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"execution did not finish in {timeout}s")
            try:
                msg = self.kc.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            run.messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        # The reply to this request: wait_for_ready may leave an extra kernel_info reply queued.
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                run.reply = reply
                return run

    def wait_for(self, msg_id: str, predicate: Any, timeout: float = 30) -> Execution:
        """Read IOPub until ``predicate(msg)``; the messages so far stay in the result."""
        run = Execution(msg_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            run.messages.append(msg)
            if predicate(msg):
                return run
        raise TimeoutError("condition not met")

    def run(self, code: str, timeout: float = 60) -> Execution:
        return self.collect(self.start(code), timeout)

    def restart(self) -> None:
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=60)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=True)
