"""The offline server: a scripted stand-in for Clarifai's OpenAI-compatible endpoint, on 127.0.0.1.

For users, ``%clarifai offline`` and ``clarifai-magic demo`` talk to it instead of Clarifai: it
quotes each question back, calls an offered tool with example arguments and reports what the
tool returned, answers a JSON schema (``--schema``) with example JSON the schema accepts, a
request for JSON (``-f json``) with a JSON object and a request for code (``-f code``) with a
Python block, so every feature of the magic can be tried with no PAT, no network and no cost.
Its replies say they are scripted. ``python -m clarifai_magic.offline --port
8765`` serves it standalone (then set ``CLARIFAI_API_BASE`` to the address it prints).

For tests and benchmarks (also importable as ``clarifai_magic.testing``), queue :class:`Script` s
built with :func:`text`, :func:`tool_calls`, :func:`http_error`, :func:`mid_stream_error`,
:func:`drop`, :func:`endless` or :func:`raw`; each answers one chat request over real HTTP, and
``record=True`` keeps every request for assertions.

Modules: :mod:`.server` (lifecycle, queue, records, the command line), :mod:`.handler` (HTTP),
:mod:`.wire` (a script rendered as SSE events or a JSON body), :mod:`.scripts` (the builders),
:mod:`.responder` (the stand-in model used when no script is queued), :mod:`.examples` (example
values for JSON schemas).
"""

from .handler import RecordedRequest
from .responder import echo_reply
from .scripts import (
    Script,
    chunk,
    drop,
    endless,
    http_error,
    mid_stream_error,
    raw,
    split_text,
    text,
    tool_calls,
)
from .server import OfflineServer
from .wire import BASE_PATH, render_events

__all__ = [
    "BASE_PATH",
    "OfflineServer",
    "RecordedRequest",
    "Script",
    "chunk",
    "drop",
    "echo_reply",
    "endless",
    "http_error",
    "mid_stream_error",
    "raw",
    "render_events",
    "split_text",
    "text",
    "tool_calls",
]
