"""Model names and what each model can do.

A model is named by its Clarifai URL (``https://clarifai.com/USER/APP/models/MODEL``), the short
path ``USER/APP/models/MODEL`` (optionally followed by ``/versions/ID``), an alias the user made,
or the bare model id of a model in the built-in tables (``gpt-4o``, ``gpt-oss-120b``). Everything
is resolved to the full URL, which is what Clarifai's OpenAI-compatible endpoint expects as
``model``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

CLARIFAI_WEB = "https://clarifai.com/"
DEFAULT_MODEL = "openai/chat-completion/models/gpt-4o"

_PATH = re.compile(r"^[\w.\-]+/[\w.\-]+/models/[\w.\-]+(/versions/[\w.\-]+)?$")
_ALIAS = re.compile(r"^[A-Za-z_][\w.\-]*$")


@dataclass(frozen=True)
class Capabilities:
    """What Clarifai publishes about a model: image input, tool use, streamed tool calls."""

    image_input: bool
    tools: bool
    tool_streaming: bool


_ALL = Capabilities(True, True, True)
_NO_IMAGES = Capabilities(False, True, True)
_NO_TOOLS = Capabilities(True, False, False)

# Clarifai's published capability list (for the Vercel AI SDK), keyed by short path.
CAPABILITIES: Mapping[str, Capabilities] = MappingProxyType(
    {
        "deepseek-ai/deepseek-chat/models/DeepSeek-R1-0528-Qwen3-8B": _ALL,
        "meta/Llama-3/models/Llama-3_2-3B-Instruct": _ALL,
        "anthropic/completion/models/claude-sonnet-4": _ALL,
        "anthropic/completion/models/claude-opus-4": _ALL,
        "anthropic/completion/models/claude-3_5-haiku": _ALL,
        "qwen/qwenLM/models/Qwen3-14B": _ALL,
        "qwen/qwenLM/models/Qwen3-30B-A3B-GGUF": _ALL,
        "qwen/qwenLM/models/QwQ-32B-AWQ": _ALL,
        "mistralai/completion/models/Devstral-Small-2505_gguf-4bit": _ALL,
        "openai/chat-completion/models/gpt-4o": _ALL,
        "openai/chat-completion/models/gpt-4_1": _ALL,
        "openai/chat-completion/models/o4-mini": _ALL,
        "openai/chat-completion/models/o3": _ALL,
        "gcp/generate/models/gemini-2_5-flash": _ALL,
        "gcp/generate/models/gemini-2_0-flash": _ALL,
        "gcp/generate/models/gemini-2_0-flash-lite": _ALL,
        "gcp/generate/models/gemma-3-12b-it": _ALL,
        "microsoft/text-generation/models/Phi-4-reasoning-plus": _ALL,
        "microsoft/text-generation/models/phi-4-mini-instruct": _ALL,
        "microsoft/text-generation/models/phi-4": _ALL,
        "xai/chat-completion/models/grok-2-vision-1212": _ALL,
        "xai/chat-completion/models/grok-3": _NO_IMAGES,
        "xai/chat-completion/models/grok-2-1212": _NO_IMAGES,
        "qwen/qwenCoder/models/Qwen2_5-Coder-7B-Instruct": _ALL,
        "qwen/qwen-VL/models/Qwen2_5-VL-7B-Instruct": _NO_TOOLS,
        "openbmb/miniCPM/models/MiniCPM-o-2_6-language": _NO_TOOLS,
        "deepseek-ai/deepseek-chat/models/DeepSeek-R1-Distill-Qwen-7B": _NO_TOOLS,
    }
)


# Models Clarifai hosts (its docs' examples) that the published capability table leaves out:
# their bare ids resolve like the table's, and their capabilities show as unknown.
OTHER_MODELS: tuple[str, ...] = ("openai/chat-completion/models/gpt-oss-120b",)


class ModelNameError(ValueError):
    """A model name that is neither a Clarifai URL, a short path, nor a known alias."""


def short_path(url_or_path: str) -> str:
    """``USER/APP/models/MODEL[/versions/V]`` for a full URL or a short path."""
    name = url_or_path.strip()
    for prefix in ("https://clarifai.com/", "http://clarifai.com/", "https://www.clarifai.com/"):
        if name.startswith(prefix):
            return name[len(prefix) :].rstrip("/")
    return name.rstrip("/")


def model_id(name: str) -> str:
    """The bare model id: ``gpt-4o`` for ``openai/chat-completion/models/gpt-4o``."""
    parts = short_path(name).split("/")
    return parts[3] if len(parts) >= 4 and parts[2] == "models" else parts[-1]


def _by_model_id(ids: Iterable[str]) -> Mapping[str, str]:
    table: dict[str, str] = {}
    for path in ids:
        table.setdefault(model_id(path), path)
    return MappingProxyType(table)


_KNOWN_IDS = _by_model_id((*CAPABILITIES, *OTHER_MODELS))


def resolve_model(name: str, aliases: Mapping[str, str] | None = None) -> str:
    """The full Clarifai URL for a model name, alias or known model id."""
    name = name.strip()
    if not name:
        raise ModelNameError(
            "No model given. Pass -m USER/APP/models/MODEL or set a default model."
        )
    aliases = aliases or {}
    if name in aliases:
        return resolve_model(aliases[name])
    path = short_path(name)
    if _PATH.match(path):
        return CLARIFAI_WEB + path
    known = _KNOWN_IDS.get(name)
    if known:
        return CLARIFAI_WEB + known
    raise ModelNameError(
        f"Unknown model {name!r}. Give the model's Clarifai URL "
        "(https://clarifai.com/USER/APP/models/MODEL), its short path (USER/APP/models/MODEL), "
        "or an alias made with `%clarifai alias NAME MODEL`; `%clarifai models` lists models."
    )


def capabilities(name: str) -> Capabilities | None:
    """Published capabilities for a model (any version of it), or None if unknown."""
    path = short_path(name).split("/versions/")[0]
    return CAPABILITIES.get(path)


def check_alias_name(name: str) -> None:
    if not _ALIAS.match(name) or "/" in name:
        raise ModelNameError(
            f"{name!r} can't be an alias: use letters, digits, '_', '-' or '.', "
            "starting with a letter."
        )


@dataclass(frozen=True)
class ModelInfo:
    """A row of ``%clarifai models``: a model the server listed and/or the table knows."""

    path: str
    capabilities: Capabilities | None
    listed: bool  # returned by GET /models
    aliases: tuple[str, ...] = ()


def merge_model_list(listed_ids: Iterable[str], aliases: Mapping[str, str]) -> list[ModelInfo]:
    """Models from ``GET /models`` merged with the capability table, sorted by path."""
    listed = {short_path(i) for i in listed_ids}
    by_path: dict[str, list[str]] = {}
    for alias, target in aliases.items():
        try:
            by_path.setdefault(short_path(resolve_model(target)), []).append(alias)
        except ModelNameError:
            continue
    paths = listed | set(CAPABILITIES) | set(OTHER_MODELS) | set(by_path)
    return [
        ModelInfo(
            path=path,
            capabilities=capabilities(path),
            listed=path in listed,
            aliases=tuple(sorted(by_path.get(path, ()))),
        )
        for path in sorted(paths, key=str.lower)
    ]
