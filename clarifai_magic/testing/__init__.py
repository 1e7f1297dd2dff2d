"""Test aid: an offline OpenAI-compatible server that answers like Clarifai's endpoint.

Used by the test suite, the benchmarks and ``clarifai-magic demo``. Queue :class:`Script` s built
with :func:`text`, :func:`tool_calls`, :func:`http_error`, :func:`mid_stream_error`,
:func:`drop`, :func:`endless` or :func:`raw`; each answers one chat request over real HTTP.
"""

from .scripts import (
    Script,
    drop,
    echo_reply,
    endless,
    http_error,
    mid_stream_error,
    raw,
    text,
    tool_calls,
)
from .server import BASE_PATH, OfflineServer, RecordedRequest

__all__ = [
    "BASE_PATH",
    "OfflineServer",
    "RecordedRequest",
    "Script",
    "drop",
    "echo_reply",
    "endless",
    "http_error",
    "mid_stream_error",
    "raw",
    "text",
    "tool_calls",
]
