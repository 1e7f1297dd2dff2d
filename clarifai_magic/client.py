"""The ``openai`` client pointed at Clarifai, and faults turned into clear messages.

``openai`` is imported here lazily, on the first request, so that ``%load_ext clarifai_magic``
stays cheap. The client is built without retries of its own: :func:`retry_delay` decides them
(429, 5xx and connection failures, honouring ``Retry-After``, with exponential backoff and
jitter like the client's own loop), so the engine can tell the user while it waits.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

from .config import Credentials, redact

if TYPE_CHECKING:
    import openai

DEFAULT_MAX_RETRIES = 3
MAX_RETRY_AFTER = 60.0  # a server asking for a longer wait is reported, not waited on
DEFAULT_TIMEOUT = 600.0
USER_AGENT = "clarifai-magic"


class ModelStreamError(Exception):
    """A Clarifai runner error that arrived as a chunk rather than as an exception."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def make_client(credentials: Credentials, *, timeout: float = DEFAULT_TIMEOUT) -> openai.OpenAI:
    import openai

    return openai.OpenAI(
        base_url=credentials.base_url,
        api_key=credentials.pat.reveal(),
        max_retries=0,  # see retry_delay
        timeout=timeout,
        default_headers={"X-Clarifai-Client": USER_AGENT},
    )


def retry_delay(exc: BaseException, attempt: int) -> float | None:
    """Seconds to wait before trying a failed request again, or None if it is not worth it.

    Worth it: rate limits (429), timeouts and conflicts (408, 409), server errors (5xx) and
    failures to connect. ``Retry-After`` (or ``retry-after-ms``) is honoured up to a minute;
    otherwise the wait doubles from half a second, capped at 8 s, less up to 25% jitter.
    """
    import openai

    if isinstance(exc, openai.APIStatusError):
        if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
            return None
        asked = _retry_after(exc.response.headers)
        if asked is not None:
            return asked if 0 <= asked <= MAX_RETRY_AFTER else None
    elif not isinstance(exc, openai.APIConnectionError):
        return None
    return min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())


def _retry_after(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) / scale
            except ValueError:
                return None  # an HTTP date: rare for APIs, and backoff is a fine answer
    return None


def retry_reason(exc: BaseException) -> str:
    """A few words for the user while a retry is pending."""
    status = getattr(exc, "status_code", None)
    if status == 429:
        return "Clarifai is rate-limiting requests (HTTP 429)"
    if status:
        return f"Clarifai answered HTTP {status}"
    return "Could not reach Clarifai"


def _server_detail(exc: BaseException) -> str:
    """The server's own words about an error, if it gave any."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "description", "details"):
                if isinstance(inner.get(key), str) and inner[key]:
                    return inner[key]
        elif isinstance(inner, str):
            return inner
    message = getattr(exc, "message", None) or str(exc)
    return message


def _is_connection_error(exc: BaseException) -> bool:
    # A stream cut mid-way surfaces as the HTTP library's own error, not as an openai one.
    modules = {c.__module__.split(".")[0] for c in type(exc).__mro__}
    return bool(modules & {"httpx", "httpx2", "httpcore", "h11"}) or isinstance(
        exc, ConnectionError
    )


# The server's own words go into our paragraph: enough to act on, never a flood.
MAX_DETAIL_CHARS = 500

# One paragraph per kind of fault, first match wins: (what the fault is, what to tell the user).
# Placeholders: {model}, {detail} (the server's words), {status}, {source} (where the PAT is from).
_FAULTS: tuple[tuple[str, str], ...] = (
    (
        "AuthenticationError",
        "Clarifai rejected the Personal Access Token from {source} (HTTP 401). Check that it is "
        "current at https://clarifai.com/settings/security; `%clarifai login` replaces it for "
        "this session.",
    ),
    (
        "PermissionDeniedError",
        "Your PAT is not allowed to use {model} (HTTP 403: {detail}). Check the token's scopes "
        "and that your account can access this model.",
    ),
    (
        "NotFoundError",
        "Clarifai has no model {model} (HTTP 404: {detail}). Check the spelling, or run "
        "`%clarifai models` to see the models you can use.",
    ),
    (
        "RateLimitError",
        "Clarifai kept answering 'too many requests' (HTTP 429) after retrying: {detail}. Wait a "
        "minute and run the cell again, or check your plan's rate limits.",
    ),
    (
        "server error",
        "Clarifai's server failed (HTTP {status}) and kept failing after retries: {detail}. Try "
        "again shortly or pick another model with -m.",
    ),
    ("APIStatusError", "Clarifai refused the request (HTTP {status}): {detail}."),
    (
        "APITimeoutError",
        "The request to Clarifai timed out. Run the cell again; long answers may need "
        "--max-tokens.",
    ),
    (
        "dropped mid-stream",
        "The connection to Clarifai dropped before the answer was complete; what arrived is "
        "kept above. Run the cell again to retry.",
    ),
    (
        "APIConnectionError",
        "Could not reach Clarifai's API. Check your network connection (and CLARIFAI_API_BASE if "
        "you set it), then run the cell again.",
    ),
    (
        "model error",
        "The model reported an error while answering: {detail}. What arrived before the error "
        "is kept above; run the cell again to retry, or try another model with -m.",
    ),
    (
        "malformed event",
        "The server sent a malformed streaming event, so the answer was cut short. Run the cell "
        "again.",
    ),
    (
        "connection dropped",
        "The connection to Clarifai dropped before the answer was complete. Run the cell again "
        "to retry.",
    ),
)


def _fault_kind(exc: BaseException, mid_stream: bool) -> str | None:
    """Which row of :data:`_FAULTS` ``exc`` is, or None for an unexpected error."""
    import openai

    status = getattr(exc, "status_code", None)
    dropped = isinstance(exc, openai.APIConnectionError) or _is_connection_error(exc)
    for kind in (
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "RateLimitError",
    ):
        if isinstance(exc, getattr(openai, kind)):
            return kind
    if isinstance(exc, openai.APIStatusError):
        return "server error" if status and status >= 500 else "APIStatusError"
    if isinstance(exc, openai.APITimeoutError):
        return "APITimeoutError"
    if mid_stream and dropped:
        return "dropped mid-stream"
    if isinstance(exc, openai.APIConnectionError):
        return "APIConnectionError"
    if isinstance(exc, openai.APIError | ModelStreamError):
        return "model error"
    if isinstance(exc, json.JSONDecodeError):
        return "malformed event"
    return "connection dropped" if dropped else None


def explain_error(
    exc: BaseException,
    model: str,
    credentials: Credentials | None = None,
    *,
    mid_stream: bool = False,
) -> str:
    """One paragraph saying what went wrong and what to do about it; never contains the PAT.

    ``mid_stream`` says part of the answer had already arrived, which turns a connection error
    into "the connection dropped" rather than "could not reach".
    """
    detail = _server_detail(exc).rstrip(".")
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[:MAX_DETAIL_CHARS] + "…"
    kind = _fault_kind(exc, mid_stream)
    if kind is None:
        text = f"Unexpected error while talking to Clarifai: {type(exc).__name__}: {detail}"
    else:
        text = dict(_FAULTS)[kind].format(
            model=model,
            detail=detail,
            status=getattr(exc, "status_code", None),
            source=credentials.source if credentials else "your settings",
        )
    return redact(text, credentials.pat if credentials else None)


_FORMAT_WORDS = (
    "response_format",
    "response format",
    "json_schema",
    "json schema",
    "structured output",
    "guided_json",
)


def rejects_response_format(error_message: str, status: int | None) -> bool:
    """Whether a failed request means "this model does not take ``response_format``".

    True when the server's message names the parameter or structured output (with any status but
    auth, not-found and rate limits, since runners report it as 400, 422 or 500). A failure that
    does not mention it, however it is worded, is left alone. The caller then retries once with
    :func:`clarifai_magic.structured.instruction_for` instead.
    """
    if status in (401, 403, 404, 429):
        return False
    message = error_message.lower()
    return any(word in message for word in _FORMAT_WORDS)


def status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)
