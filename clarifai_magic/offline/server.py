"""The offline server: a scripted stand-in for Clarifai's OpenAI-compatible endpoint on 127.0.0.1.

Serves ``{api_base}/v2/ext/openai/v1/chat/completions`` (streamed as SSE, or one JSON object when
the request does not ask to stream) and ``/models``, like Clarifai's endpoint, over real HTTP.
:class:`OfflineServer` is its lifecycle, queue and records; :func:`main` runs it standalone.
Stdlib only.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .handler import Handler, HTTPServer, RecordedRequest, shutdown_socket
from .responder import echo_reply
from .scripts import Script
from .wire import BASE_PATH, is_chat

DEFAULT_MODELS = (
    "https://clarifai.com/openai/chat-completion/models/gpt-4o",
    "https://clarifai.com/anthropic/completion/models/claude-sonnet-4",
    "https://clarifai.com/openai/chat-completion/models/gpt-oss-120b",
    "https://clarifai.com/qwen/qwenLM/models/Qwen3-14B",
)
# serve_forever's shutdown poll: how long stop() may wait for the accept loop.
_POLL_INTERVAL = 0.05


class OfflineServer:
    """A loopback OpenAI-compatible server: ``%clarifai offline``, the demo, tests, benchmarks.

    Scripts given to :meth:`enqueue` answer ``POST .../chat/completions`` in FIFO order; when the
    queue is empty, ``responder(request_json)`` makes one. Chat and model requests need an
    ``Authorization: Bearer <token>`` header (or Clarifai's ``Key <token>``); with
    ``require_token`` set, only that token is accepted. ``record=True`` (for tests) keeps every
    request in :attr:`requests`; long-lived servers (the offline mode, the demo, the CLI) pass
    ``record=False`` so memory does not grow with each image sent. The default responder is the
    stand-in model of :mod:`.responder`.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, record: bool = True) -> None:
        self.host = host
        self.port = port
        self.record = record
        self.models: list[str] = list(DEFAULT_MODELS)
        self.responder: Callable[[dict[str, Any]], Script] = echo_reply
        self.require_token: str | None = None
        self._lock = threading.Lock()
        self._queue: deque[Script] = deque()
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> OfflineServer:
        """Bind (port 0 picks a free one) and serve on a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = HTTPServer((self.host, self.port), Handler, self)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"clarifai-magic-offline-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: abort streams in progress, close every connection, free the port."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()  # streams check it between events
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Unblocks handler threads waiting on idle keep-alive connections or in sendall.
            shutdown_socket(conn)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> OfflineServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        """What ``CLARIFAI_API_BASE`` would be: ``http://HOST:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``api_base + /v2/ext/openai/v1``)."""
        return self.api_base + BASE_PATH

    # -- scripts and records ---------------------------------------------------------------
    def enqueue(self, *scripts: Script) -> None:
        """Queue scripts; each answers one chat request, in order."""
        with self._lock:
            self._queue.extend(scripts)

    @property
    def pending(self) -> int:
        """How many queued scripts have not been played yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a snapshot); always empty with ``record=False``."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Only the ``POST .../chat/completions`` requests."""
        return [r for r in self.requests if r.method == "POST" and is_chat(r.path)]

    def clear(self) -> None:
        """Forget recorded requests, drop scripts still queued, list the default models again."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self.models = list(DEFAULT_MODELS)

    @property
    def open_connections(self) -> int:
        """Client connections the server currently holds open (keep-alive included)."""
        with self._lock:
            return len(self._connections)

    # -- used by the handler ---------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        if not self.record:
            return
        with self._lock:
            self._requests.append(request)

    def _next_script(self, request_json: dict[str, Any]) -> Script:
        with self._lock:
            script = self._queue.popleft() if self._queue else None
        return script if script is not None else self.responder(request_json)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
            stopping = self._stopping.is_set()
        if stopping:  # accepted while stop() was collecting connections
            shutdown_socket(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)


def main(argv: list[str] | None = None, prog: str = "python -m clarifai_magic.offline") -> int:
    """``python -m clarifai_magic.offline``: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Offline OpenAI-compatible server that answers like Clarifai's endpoint.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=None, help="accept only this PAT (default: any)")
    args = parser.parse_args(argv)
    server = OfflineServer(port=args.port, host=args.host, record=False)
    server.require_token = args.token
    try:
        server.start()
    except OSError as err:
        parser.exit(1, f"Cannot listen on {args.host}:{args.port} ({err}); try another --port.\n")
    print(server.base_url, flush=True)
    pat = "any PAT works" if args.token is None else "only the --token PAT works"
    print(f"Set CLARIFAI_API_BASE={server.api_base} ({pat}). Ctrl-C stops the server.", flush=True)
    try:
        while True:
            # A sleep loop, not Event().wait(): on Windows only a sleep wakes for Ctrl-C.
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
