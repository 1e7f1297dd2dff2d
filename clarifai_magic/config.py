"""Credentials and endpoint: where the PAT comes from, which host it is sent to, and keeping it.

The lookup order follows Clarifai's own SDK: the ``CLARIFAI_PAT`` environment variable, then the
Clarifai CLI config file (``~/.config/clarifai/config``, YAML, read only when PyYAML is
importable). A PAT typed at ``%clarifai login`` comes first while it is set: it is the user's
latest word, and the way to replace a stale PAT from the environment without restarting.
``%clarifai login --save`` keeps a PAT in that same file, in a context of its own
(:data:`MAGIC_CONTEXT`), which is read before the CLI's current context: saving there was the
user's explicit choice for this extension, and it never overwrites what the CLI wrote.
The PAT travels inside :class:`Secret`, whose ``repr`` and ``str`` never show it, so it cannot
leak into a cell output, an error or a log by accident.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_API_BASE = "https://api.clarifai.com"
OPENAI_PATH = "/v2/ext/openai/v1"
CONFIG_FILE = Path("~/.config/clarifai/config")
MAGIC_CONTEXT = "clarifai-magic"  # the CLI config context `%clarifai login --save` writes

NO_PAT_MESSAGE = (
    "No Clarifai Personal Access Token (PAT) found. Create one at "
    "https://clarifai.com/settings/security, then either set it in the environment before "
    "starting Jupyter (export CLARIFAI_PAT=...), save it with the Clarifai CLI "
    "(`clarifai login`) or with `%clarifai login --save`, or run `%clarifai login` in this "
    "notebook to paste it for this session. To try things without an account, "
    "`%clarifai offline on` answers from the built-in offline server (scripted replies)."
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


def api_host(api_base: str) -> str:
    """``api_base`` with a scheme: a bare host (``api.clarifai.com``) means HTTPS.

    Without one, the HTTP client would fail later with an unhelpful "unsupported protocol";
    a bare host has only one sensible reading, so it is completed rather than refused.
    """
    host = api_base.strip()
    return host if "://" in host else "https://" + host


def openai_base_url(api_base: str) -> str:
    """Clarifai's OpenAI-compatible base URL for an API host.

    A host copied with the OpenAI path already on it is accepted as is, rather than doubled.
    """
    host = api_host(api_base).rstrip("/")
    return host if host.endswith(OPENAI_PATH) else host + OPENAI_PATH


class ConfigError(Exception):
    """The Clarifai CLI config could not be written; the message says why and what to do."""


def _read_config(path: Path) -> dict[str, Any]:
    """The CLI config as a mapping, or {} when it is missing, unreadable or PyYAML is absent."""
    try:
        import yaml
    except ImportError:
        return {}
    try:
        data = yaml.safe_load(path.expanduser().read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _context(data: Mapping[str, Any], name: str | None) -> Mapping[str, Any]:
    """The fields of one context (its ``env`` merged over its top level), or {}."""
    contexts = data.get("contexts")
    if not isinstance(contexts, dict):
        return {}
    context = contexts.get(name or data.get("current_context") or "default")
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
    data = _read_config(config_path)
    current = _context(data, None)
    saved = _context(data, MAGIC_CONTEXT)

    def host(context: Mapping[str, Any]) -> str:
        return api_host(
            environ.get("CLARIFAI_API_BASE")
            or _from_context(context, "CLARIFAI_API_BASE", "api_base", environ=environ)
            or DEFAULT_API_BASE
        )

    if login_pat:
        return Credentials(login_pat, "%clarifai login", host(current))
    if environ.get("CLARIFAI_PAT"):
        return Credentials(
            Secret(environ["CLARIFAI_PAT"]), "CLARIFAI_PAT environment variable", host(current)
        )
    # A saved PAT goes to the host it was saved with, never to another context's host.
    for name, context in ((MAGIC_CONTEXT, saved), (None, current)):
        pat = _from_context(context, "CLARIFAI_PAT", "pat", environ=environ)
        if pat:
            where = f", context {name}" if name else ""
            return Credentials(
                Secret(pat), f"Clarifai CLI config ({config_path}{where})", host(context)
            )
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


# -- keeping a PAT (`%clarifai login --save`, `%clarifai logout --forget`) --------------------
def _yaml(doing: str = "Saving the PAT", command: str = "%clarifai login --save") -> Any:
    try:
        import yaml
    except ImportError:
        # Writing another format would leave a file the CLI (and this extension) can't read.
        raise ConfigError(
            f"{doing} needs PyYAML, to write the YAML file Clarifai's CLI reads: run "
            "`pip install pyyaml` in this kernel's environment, restart the kernel, then "
            f"`{command}` again."
        ) from None
    return yaml


def _load_for_update(path: Path, *, forgetting: bool = False) -> dict[str, Any]:
    """The config as it is now, for rewriting: {} if there is none; refused if it can't be
    read as a CLI config, since rewriting it would lose what it holds."""
    yaml = _yaml("Removing the saved PAT", "%clarifai logout --forget") if forgetting else _yaml()
    try:
        # O_NOFOLLOW: a symlinked config is someone's deliberate setup; never write through it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if path.is_symlink():
            raise ConfigError(
                f"{path} is a symbolic link, so it was left alone. Set CLARIFAI_PAT in the "
                "environment instead, or save the PAT with the Clarifai CLI (`clarifai login`)."
            ) from None
        raise ConfigError(
            f"Could not read {path} ({exc.strerror or exc}); it was left alone."
        ) from None
    try:
        with os.fdopen(fd, encoding="utf-8") as file:
            data = yaml.safe_load(file)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = "unreadable"
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("contexts", {}), dict):
        raise ConfigError(
            f"{path} is not a Clarifai CLI config this extension can read, so it was left "
            "alone. Fix or move it, or set CLARIFAI_PAT in the environment instead."
        )
    return data


def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``data`` as YAML: readable by the user only, never half-written."""
    import yaml  # present: the config was read with it just before

    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            yaml.safe_dump(dict(data), file, default_flow_style=False, sort_keys=False)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)  # a rename: atomic, and it never follows a link at `path`
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@dataclass(frozen=True)
class SavedLogin:
    path: Path
    context: str
    current: bool  # the CLI's current context too (no other one was), so its tools use it


def save_pat(pat: Secret, api_base: str, config_path: Path = CONFIG_FILE) -> SavedLogin:
    """Keep ``pat`` (for ``api_base``) in the CLI config's :data:`MAGIC_CONTEXT`.

    Other contexts and keys are kept as they are; the context becomes the current one only
    when no other context is. Raises :class:`ConfigError` with the reason.
    """
    path = config_path.expanduser()
    data = _load_for_update(path)
    contexts = dict(data.get("contexts") or {})
    ours = contexts.get(MAGIC_CONTEXT)
    ours = dict(ours) if isinstance(ours, dict) else {}
    env = dict(ours.get("env") or {}) if isinstance(ours.get("env"), dict) else {}
    env.update(CLARIFAI_PAT=pat.reveal(), CLARIFAI_API_BASE=api_host(api_base))
    contexts[MAGIC_CONTEXT] = {**ours, "env": env}
    current = data.get("current_context")
    ours_current = current == MAGIC_CONTEXT or current not in contexts
    rest = {k: v for k, v in data.items() if k not in ("current_context", "contexts")}
    updated = {
        "current_context": MAGIC_CONTEXT if ours_current else current,
        "contexts": contexts,
        **rest,
    }
    try:
        _write_atomically(path, updated)
    except OSError as exc:
        raise ConfigError(f"Could not write {path} ({exc.strerror or exc}).") from None
    return SavedLogin(path, MAGIC_CONTEXT, ours_current)


def forget_pat(config_path: Path = CONFIG_FILE) -> bool:
    """Remove :data:`MAGIC_CONTEXT` from the CLI config (nothing else); False if it wasn't there.

    A file left with nothing else in it is removed; if the removed context was current,
    ``default`` (or the first one left) becomes current, as the CLI needs one.
    """
    path = config_path.expanduser()
    data = _load_for_update(path, forgetting=True)
    contexts = dict(data.get("contexts") or {})
    if contexts.pop(MAGIC_CONTEXT, None) is None:
        return False
    updated = {**data, "contexts": contexts}
    if data.get("current_context") == MAGIC_CONTEXT:
        fallback = "default" if "default" in contexts else next(iter(contexts), "")
        updated["current_context"] = fallback
    try:
        if not contexts and set(updated) <= {"current_context", "contexts"}:
            path.unlink()
        else:
            _write_atomically(path, updated)
    except OSError as exc:
        raise ConfigError(f"Could not update {path} ({exc.strerror or exc}).") from None
    return True


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
        """Does ``text`` end with the beginning of a secret (so the next chunk may finish it)?

        Called for every chunk, so it looks only where the secret's first character is, in the
        last ``len(secret) - 1`` characters: rarely more than a find or two.
        """
        for value in self._values:
            tail = text[-(len(value) - 1) :]
            at = tail.find(value[0])
            while at != -1 and len(tail) - at >= MIN_HELD_PREFIX:
                if value.startswith(tail[at:]):
                    return True
                at = tail.find(value[0], at + 1)
        return False
