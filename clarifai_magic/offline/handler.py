"""The offline server's HTTP handler: routes, credentials, request bodies, and writing a
response (streamed with chunked encoding, delayed, flooded or cut off as its script says).

HTTP/1.1 with keep-alive; streams use ``Transfer-Encoding: chunked`` so a stream that ends early
(``drop``) is an incomplete body the client notices. Events are encoded up front and, with no
delay, written in one ``sendall``. Never logs requests: they carry the PAT.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .scripts import Script
from .wire import (
    BASE_PATH,
    completion_body,
    encode_json,
    is_chat,
    model_entry,
    render_events,
    render_flood,
)

if TYPE_CHECKING:
    from .server import OfflineServer

_LAST_CHUNK = b"0\r\n\r\n"


@dataclass
class RecordedRequest:
    """One request as the server received it (recorded before it is answered)."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)  # lower-case keys; holds the Authorization token
    json: Any = None
    body: bytes = field(default=b"", repr=False)


class HTTPServer(ThreadingHTTPServer):
    """One thread per connection, each answering through ``owner`` (the :class:`OfflineServer`)."""

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


class Handler(BaseHTTPRequestHandler):
    """Answers the requests of one connection: chat completions and the model list."""

    protocol_version = "HTTP/1.1"
    server_version = "clarifai-magic-offline/1"
    sys_version = ""
    # Small SSE writes with delays must not wait for delayed ACKs.
    disable_nagle_algorithm = True
    server: HTTPServer

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
            self._send_error(400, "Malformed request body framing (offline server).", close=True)
            return
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        owner._record(RecordedRequest(self.command, self.path, headers, parsed, body))

        path = urlsplit(self.path).path.rstrip("/")
        if self.command == "POST" and is_chat(path):
            if self._authorized(headers):
                self._chat(parsed)
        elif self.command == "GET" and path == BASE_PATH + "/models":
            if self._authorized(headers):
                models = [model_entry(m) for m in owner.models]
                self._send_json(200, {"object": "list", "data": models})
        elif self.command == "GET" and path.startswith(BASE_PATH + "/models/"):
            if self._authorized(headers):
                # The client percent-encodes ids, and Clarifai ids contain slashes.
                wanted = unquote(path[len(BASE_PATH + "/models/") :])
                if wanted in owner.models:
                    self._send_json(200, model_entry(wanted))
                else:
                    self._send_error(404, f"Model {wanted!r} not found (offline server).")
        else:
            self._send_error(404, f"No route for {self.command} {path} (offline server).")

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
            self._send_error(401, "Invalid PAT (offline server).")
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
            self._stream(script, events, render_flood(script, request, response_id, created))
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
        shutdown_socket(self.connection)

    def _send_error(self, status: int, message: str, *, close: bool = False) -> None:
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
            data = encode_json(body).encode()
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


def _body_size(value: bytes | str, base: int = 10) -> int:
    """A Content-Length or chunk size; ValueError unless it is a non-negative integer."""
    size = int(value, base)
    if size < 0:
        raise ValueError(f"negative body size {size}")
    return size


def shutdown_socket(conn: socket.socket) -> None:
    """End both directions of ``conn`` now, unblocking whoever reads or writes it."""
    with contextlib.suppress(OSError):  # already closed by the peer or by the handler
        conn.shutdown(socket.SHUT_RDWR)
