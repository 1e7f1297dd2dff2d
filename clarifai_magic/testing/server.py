"""The offline OpenAI-compatible HTTP server: plays queued :class:`Script` s over real HTTP.

Serves ``{api_base}/v2/ext/openai/v1/chat/completions`` (streamed as SSE, or one JSON object when
the request does not ask to stream) and ``/models``, like Clarifai's endpoint. HTTP/1.1 with
keep-alive; streams use ``Transfer-Encoding: chunked`` so a stream that ends early (``drop``) is
an incomplete body the client notices. Events are encoded up front and, with no delay, written in
one ``sendall``. Stdlib only; never logs requests (they carry the PAT).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from .scripts import Script, echo_reply, prompt_chars

BASE_PATH = "/v2/ext/openai/v1"
DEFAULT_MODEL = "offline-model"
DEFAULT_MODELS = [
    "https://clarifai.com/openai/chat-completion/models/gpt-4o",
    "https://clarifai.com/anthropic/completion/models/claude-sonnet-4",
    "https://clarifai.com/openai/chat-completion/models/gpt-oss-120b",
    "https://clarifai.com/qwen/qwenLM/models/Qwen3-14B",
]

# Compact separators like Python servers (pydantic) send; UTF-8 unescaped, so multi-byte text
# can straddle the client's reads as it does with real servers.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_DONE = b"data: [DONE]\n\n"
_LAST_CHUNK = b"0\r\n\r\n"
# serve_forever's shutdown poll: how long stop() may wait for the accept loop.
_POLL_INTERVAL = 0.05


@dataclass
class RecordedRequest:
    """One request as the server received it (recorded before it is answered)."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)  # lower-case keys; holds the Authorization token
    json: Any = None
    body: bytes = field(default=b"", repr=False)


class OfflineServer:
    """A loopback OpenAI-compatible server for tests, benchmarks and the offline demo.

    Scripts given to :meth:`enqueue` answer ``POST .../chat/completions`` in FIFO order; when the
    queue is empty, ``responder(request_json)`` makes one. Chat and model requests need an
    ``Authorization: Bearer <token>`` header (or Clarifai's ``Key <token>``); with
    ``require_token`` set, only that token is accepted. ``record=True`` (for tests) keeps every
    request in :attr:`requests`; long-lived servers (the offline mode, the demo, the CLI) pass
    ``record=False`` so memory does not grow with each image sent.
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
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> OfflineServer:
        """Bind (port 0 picks a free one) and serve on a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler, self)
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
            _shutdown_socket(conn)
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
        return [r for r in self.requests if r.method == "POST" and _is_chat(r.path)]

    def clear(self) -> None:
        """Forget recorded requests and drop scripts still queued."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()

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
            _shutdown_socket(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, owner: OfflineServer) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response is normal here (interrupts, drops): stay silent.
        # Anything else (say, a test's responder raising) keeps socketserver's traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "clarifai-magic-offline/1"
    sys_version = ""
    # Small SSE writes with delays must not wait for delayed ACKs.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        # Never log: request lines and errors could carry prompts or the PAT.
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._untrack(self.connection)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    do_PUT = do_DELETE = do_PATCH = do_POST

    # -- request ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        owner = self.server.owner
        try:
            body = self._read_body()
        except ValueError:  # a bad Content-Length or chunk size: the body's end is unknown
            self._send_error(400, "Malformed request body framing (offline test server).", True)
            return
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._record(RecordedRequest(self.command, self.path, headers, parsed, body))

        path = urlsplit(self.path).path.rstrip("/")
        if self.command == "POST" and _is_chat(path):
            if self._authorized(headers):
                self._chat(parsed)
        elif self.command == "GET" and path == BASE_PATH + "/models":
            if self._authorized(headers):
                self._send_json(200, {"object": "list", "data": [_model(m) for m in owner.models]})
        elif self.command == "GET" and path.startswith(BASE_PATH + "/models/"):
            if self._authorized(headers):
                # The client percent-encodes ids, and Clarifai ids contain slashes.
                wanted = unquote(path[len(BASE_PATH + "/models/") :])
                if wanted in owner.models:
                    self._send_json(200, _model(wanted))
                else:
                    self._send_error(404, f"Model {wanted!r} not found (offline test server).")
        else:
            self._send_error(404, f"No route for {self.command} {path} (offline test server).")

    def _read_body(self) -> bytes:
        """The request body; ValueError when its framing cannot be parsed."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = _body_size(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = _body_size(self.headers.get("Content-Length") or "0")
        return self.rfile.read(length) if length > 0 else b""

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        required = self.server.owner.require_token
        if scheme.lower() not in ("bearer", "key") or not token:
            self._send_error(401, "Missing credentials: send 'Authorization: Bearer <PAT>'.")
            return False
        if required is not None and token != required:
            self._send_error(401, "Invalid PAT (offline test server).")
            return False
        return True

    # -- responses -------------------------------------------------------------------------
    def _chat(self, request: Any) -> None:
        if not isinstance(request, dict):
            self._send_error(400, "The request body must be a JSON object.")
            return
        owner = self.server.owner
        script = owner._next_script(request)
        if not script.streamed:
            self._send_body(script.status, script.body, script.headers)
            return
        response_id = f"chatcmpl-offline{owner._next_id():06d}"
        created = int(time.time())
        if request.get("stream") is True:
            events = render_events(script, request, response_id, created)
            flood = None
            if script.flood > 0 and script.flood_event is not None:
                one = replace(script, events=[script.flood_event], usage=None, done=False)
                flood = b"".join(render_events(one, request, response_id, created) * 64)
            self._stream(script, events, flood)
        elif script.drop:
            self._abort()
        else:
            if not self._wait(script.delay_first + script.delay * max(len(script.events) - 1, 0)):
                self._abort()
                return
            status, body = completion_body(script, request, response_id, created)
            self._send_body(status, body, script.headers)

    def _stream(self, script: Script, events: list[bytes], flood: bytes | None = None) -> None:
        chunked = self.request_version != "HTTP/1.0"
        self.send_response(script.status)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        for name, value in script.headers.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
        self.end_headers()

        def frame(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

        ending = _LAST_CHUNK if chunked and not script.drop else b""
        try:
            if script.delay <= 0 and script.delay_first <= 0:
                # The fast path: the whole stream in one write.
                data = b"".join(events)
                self.wfile.write(
                    (frame(data) if data else b"") + (ending if flood is None else b"")
                )
                if flood is None:
                    ending = b""
            else:
                for i, event in enumerate(events):
                    if not self._wait(script.delay_first if i == 0 else script.delay):
                        self._abort()
                        return
                    self.wfile.write(frame(event))
            if flood is not None:
                deadline = time.monotonic() + script.flood
                stopping = self.server.owner._stopping
                while time.monotonic() < deadline and not stopping.is_set():
                    self.wfile.write(frame(flood))
            if ending:
                self.wfile.write(ending)
        except OSError:  # the client went away (interrupt, closed stream)
            self.close_connection = True
            return
        if script.drop:
            self._abort()

    def _wait(self, seconds: float) -> bool:
        """Sleep, waking early on stop(); False when the server is stopping."""
        stopping = self.server.owner._stopping
        if seconds > 0:
            stopping.wait(seconds)
        return not stopping.is_set()

    def _abort(self) -> None:
        # A FIN mid-body: the client reads what was sent, then an incomplete-body error.
        self.close_connection = True
        _shutdown_socket(self.connection)

    def _send_error(self, status: int, message: str, close: bool = False) -> None:
        error_type = "authentication_error" if status == 401 else "invalid_request_error"
        if status == 404:
            error_type = "not_found_error"
        payload = {"error": {"message": message, "type": error_type, "code": status}}
        # "Connection: close" also makes the handler close the connection after the reply.
        self._send_body(status, payload, {"Connection": "close"} if close else {})

    def _send_json(self, status: int, payload: Any) -> None:
        self._send_body(status, payload, {})

    def _send_body(self, status: int, body: Any, headers: dict[str, str]) -> None:
        if isinstance(body, str | bytes):
            data = body.encode() if isinstance(body, str) else body
            content_type = "text/plain; charset=utf-8"
        else:
            data = _encode_json(body).encode()
            content_type = "application/json"
        self.send_response(status)
        lowered = {k.lower() for k in headers}
        if "content-type" not in lowered:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


def render_events(
    script: Script, request: dict[str, Any], response_id: str, created: int
) -> list[bytes]:
    """The SSE events of ``script`` for ``request``, encoded, usage and ``[DONE]`` included."""
    envelope = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": request.get("model") or DEFAULT_MODEL,
    }
    usage = resolve_usage(script, request)
    usage_on_finish = usage is not None and script.usage_on == "finish"
    out = []
    for event in script.events:
        if isinstance(event, str):
            payload = event
        elif "choices" in event:
            body = {**envelope, **event}
            if usage_on_finish:
                body["usage"] = usage if _finishes(event) else None
            payload = _encode_json(body)
        else:
            payload = _encode_json(event)
        out.append(b"data: " + payload.encode() + b"\n\n")
    if usage is not None and script.usage_on == "final":
        # Sent whether or not the request asked for stream_options.include_usage: Clarifai's
        # runner forces include_usage when streaming.
        final = _encode_json({**envelope, "choices": [], "usage": usage})
        out.append(b"data: " + final.encode() + b"\n\n")
    if script.done:
        out.append(_DONE)
    return out


def completion_body(
    script: Script, request: dict[str, Any], response_id: str, created: int
) -> tuple[int, dict[str, Any]]:
    """``script`` as one non-streamed ``chat.completion`` (status 500 if it streams an error)."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = None
    for event in script.events:
        if isinstance(event, str):
            continue
        if "choices" not in event:
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            message = error.get("message") or event.get("details") or event.get("description")
            body = {"error": {"message": message, "type": "server_error", "code": 500}}
            return 500, body
        for choice in event.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or "")
            for part in delta.get("tool_calls") or []:
                call = calls.setdefault(
                    part.get("index", 0),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = part.get("id") or call["id"]
                fn = part.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            finish_reason = choice.get("finish_reason") or finish_reason
    text = "".join(content)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": request.get("model") or DEFAULT_MODEL,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
    }
    usage = resolve_usage(script, request)
    if usage is not None:
        body["usage"] = usage
    return 200, body


def resolve_usage(script: Script, request: dict[str, Any]) -> dict[str, int] | None:
    """The usage object ``script`` reports for ``request``, or None when it sends none."""
    if script.usage is None or script.usage_on is None:
        return None
    if script.usage == "auto":
        prompt, completion = prompt_chars(request) // 4, script.completion_units
    else:
        prompt, completion = script.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _finishes(event: dict[str, Any]) -> bool:
    return any(c.get("finish_reason") for c in event.get("choices") or [])


def _is_chat(path: str) -> bool:
    return urlsplit(path).path.rstrip("/") == BASE_PATH + "/chat/completions"


def _model(model_id: str) -> dict[str, Any]:
    # Clarifai URLs name the owner first: https://clarifai.com/USER/APP/models/MODEL.
    owner = model_id.removeprefix("https://clarifai.com/").split("/", 1)[0] or "clarifai"
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def _body_size(value: bytes | str, base: int = 10) -> int:
    """A Content-Length or chunk size; ValueError unless it is a non-negative integer."""
    size = int(value, base)
    if size < 0:
        raise ValueError(f"negative body size {size}")
    return size


def _shutdown_socket(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer or by the handler
        conn.shutdown(socket.SHUT_RDWR)


def main(argv: list[str] | None = None) -> int:
    """``python -m clarifai_magic.testing``: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m clarifai_magic.testing",
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
    print(
        f"Set CLARIFAI_API_BASE={server.api_base} (any PAT works). Ctrl-C stops the server.",
        flush=True,
    )
    try:
        while True:
            # A sleep loop, not Event().wait(): on Windows only a sleep wakes for Ctrl-C.
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
