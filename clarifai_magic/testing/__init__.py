"""The offline server under the name tests, benchmarks and older docs import it by.

Everything here is :mod:`clarifai_magic.offline`, which is the feature users see (``%clarifai
offline``, the demo); see its docstring for the script builders.
"""

from ..offline import (
    BASE_PATH,
    OfflineServer,
    RecordedRequest,
    Script,
    chunk,
    drop,
    echo_reply,
    endless,
    http_error,
    mid_stream_error,
    raw,
    render_events,
    split_text,
    text,
    tool_calls,
)

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
