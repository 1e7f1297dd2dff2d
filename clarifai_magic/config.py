"""Credentials and endpoint: where the PAT comes from and which host it is sent to.

The lookup order follows Clarifai's own SDK: the ``CLARIFAI_PAT`` environment variable, then the
Clarifai CLI config file (``~/.config/clarifai/config``, YAML, read only when PyYAML is
importable). A PAT typed at ``%clarifai login`` comes first while it is set: it is the user's
latest word, and the way to replace a stale PAT from the environment without restarting.
The PAT travels inside :class:`Secret`, whose ``repr`` and ``str`` never show it, so it cannot
leak into a cell output, an error or a log by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_API_BASE = "https://api.clarifai.com"
OPENAI_PATH = "/v2/ext/openai/v1"
CONFIG_FILE = Path("~/.config/clarifai/config")

NO_PAT_MESSAGE = (
    "No Clarifai Personal Access Token (PAT) found. Create one at "
    "https://clarifai.com/settings/security, then either set it in the environment before "
    "starting Jupyter (export CLARIFAI_PAT=...), save it with the Clarifai CLI "
    "(`clarifai login`), or run `%clarifai login` in this notebook to paste it for this session."
)


class Secret:
    """A string that never shows itself in a repr, str or format."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Credentials:
    pat: Secret
    source: str  # said to the user, e.g. "CLARIFAI_PAT environment variable"
    api_base: str

    @property
    def base_url(self) -> str:
        return openai_base_url(self.api_base)


def openai_base_url(api_base: str) -> str:
    """Clarifai's OpenAI-compatible base URL for an API host.

    A host copied with the OpenAI path already on it is accepted as is, rather than doubled.
    """
    host = api_base.rstrip("/")
    return host if host.endswith(OPENAI_PATH) else host + OPENAI_PATH


def _config_context(path: Path) -> Mapping[str, Any]:
    """The ``env`` of the current context in the Clarifai CLI config, or {} if unavailable."""
    try:
        import yaml
    except ImportError:
        return {}
    try:
        data = yaml.safe_load(path.expanduser().read_text())
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    contexts = data.get("contexts") or {}
    context = contexts.get(data.get("current_context") or "default") or {}
    if not isinstance(context, dict):
        return {}
    env = context.get("env") if isinstance(context.get("env"), dict) else {}
    # Older files keep the fields directly on the context, some with the short key ``pat``.
    merged = {k: v for k, v in context.items() if k != "env"}
    merged.update(env)
    return merged


def find_credentials(
    environ: Mapping[str, str] | None = None,
    config_path: Path = CONFIG_FILE,
    login_pat: Secret | None = None,
) -> Credentials | None:
    """Find the PAT and API host; None when no PAT is available anywhere."""
    environ = os.environ if environ is None else environ
    context = _config_context(config_path)
    api_base = (
        environ.get("CLARIFAI_API_BASE")
        or _from_context(context, "CLARIFAI_API_BASE", "api_base", environ=environ)
        or DEFAULT_API_BASE
    )
    if login_pat:
        return Credentials(login_pat, "%clarifai login", api_base)
    if environ.get("CLARIFAI_PAT"):
        return Credentials(
            Secret(environ["CLARIFAI_PAT"]), "CLARIFAI_PAT environment variable", api_base
        )
    pat = _from_context(context, "CLARIFAI_PAT", "pat", environ=environ)
    if pat:
        return Credentials(Secret(pat), f"Clarifai CLI config ({config_path})", api_base)
    return None


def _from_context(context: Mapping[str, Any], *keys: str, environ: Mapping[str, str]) -> str | None:
    for key in keys:
        value = context.get(key)
        if isinstance(value, str) and value:
            # "ENVVAR" is the CLI's way of saying "read it from the environment".
            if value == "ENVVAR":
                value = environ.get(keys[0], "")
            if value:
                return value
    return None


# Shorter values are not real PATs or API keys, and replacing them would mangle ordinary words.
MIN_SECRET_CHARS = 8
# A streamed tail this long that could be the start of a secret is held back from the screen.
MIN_HELD_PREFIX = 4


def redact(text: str, secret: Secret | None) -> str:
    """Remove a secret from text that is about to be shown or stored."""
    return Redactor([secret] if secret else []).redact(text)


class Redactor:
    """Scrubs secret values (the PAT, ``%config``-declared secrets) from untrusted text.

    An endpoint can echo the PAT it was sent, and a tool's error can contain a key: whatever is
    shown, stored, sent back to the model or put in ``--out`` passes through :meth:`redact`.
    """

    MASK = "********"

    def __init__(self, secrets: list[Secret] | tuple[Secret, ...] = ()) -> None:
        values = {s.reveal() for s in secrets if s and len(s.reveal()) >= MIN_SECRET_CHARS}
        # Longest first, so a secret that contains another is masked whole.
        self._values = sorted(values, key=len, reverse=True)
        self.longest = len(self._values[0]) if self._values else 0

    def __bool__(self) -> bool:
        return bool(self._values)

    def __repr__(self) -> str:
        return f"Redactor({len(self._values)} secrets)"

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, self.MASK)
        return text

    def holds_prefix(self, text: str) -> bool:
        """Does ``text`` end with the beginning of a secret (so the next chunk may finish it)?"""
        for value in self._values:
            for size in range(min(len(value) - 1, len(text)), MIN_HELD_PREFIX - 1, -1):
                if text.endswith(value[:size]):
                    return True
        return False
