"""Large images of an exported program: kept in files beside it and read back when it runs.

A program written to a file (``%clarifai export -o FILE``) keeps each image data URL over
:data:`INLINE_IMAGE_MAX_CHARS` in a file of :func:`images_dir` (:func:`externalize_images` puts
an :class:`ImageFile` where the URL stood); smaller images, and every image of a program shown in
the cell, stay inline. This module owns finding the images in the messages, deciding which go
to files, what the program and the cell say about them (:func:`image_notes`, :func:`size_note`),
and the few lines each target uses to read an image back as the exact data URL the notebook
sent, relative to the program's own file rather than the current folder. Pure: no IPython here.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

# A data URL longer than this goes into a file beside a program written with -o (inline, it
# would make the program hard to read and edit); without -o the cell suggests -o.
INLINE_IMAGE_MAX_CHARS = 256 * 1024
# `data:<type>;base64,<data>`: the only data URLs a program can rebuild byte for byte from a file.
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,([A-Za-z0-9+/]*={0,2})", re.ASCII)
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
}

# The readers' calls, `image_url(path, mime)` and `imageURL(url_path, mime)`, are written by
# export.literal for each ImageFile in the messages.
PYTHON_IMAGE_READER = """# Images are beside this file, wherever `python dir/app.py` runs from.
HERE = Path(__file__).resolve().parent


def image_url(path, mime):
    # An image kept beside this program, as the data URL the notebook sent.
    return f"data:{mime};base64," + base64.b64encode((HERE / path).read_bytes()).decode("ascii")
"""

NODE_IMAGE_READER = """// An image kept beside this program (found from this file, not the current
// folder), as the data URL the notebook sent.
function imageURL(path = "", mime = "") {
  const data = readFileSync(new URL(path, import.meta.url)).toString("base64");
  return `data:${mime};base64,${data}`;
}
"""


@dataclass(frozen=True)
class ImageFile:
    """An image a program reads at run time: ``path`` is relative to the program's folder."""

    path: str  # POSIX form, e.g. "app_images/1.png"
    mime: str
    data: bytes = field(repr=False)

    @property
    def url_path(self) -> str:
        """``path`` as a relative URL (Node resolves it against ``import.meta.url``)."""
        return quote(self.path)


def shell_image_reader(files: list[ImageFile]) -> list[str]:
    """The shell lines that check ``files`` are there and define ``data_url MIME PATH``."""
    listed = " ".join(shlex.quote(f.path) for f in files)
    return [
        "# The folder of this script, not the current one: `sh some/dir/app.sh` works from"
        " anywhere.",
        'HERE=$(cd "$(dirname "$0")" && pwd)',
        f"for IMAGE in {listed}; do",
        '  [ -r "$HERE/$IMAGE" ] || { echo "Cannot read $HERE/$IMAGE: keep the images beside'
        ' this script." >&2; exit 1; }',
        "done",
        "# An image kept beside this script, as the data URL the notebook sent.",
        "data_url() {",
        "  printf 'data:%s;base64,' \"$1\"",
        "  base64 < \"$HERE/$2\" | tr -d '\\n'",
        "}",
    ]


def _image_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``image_url`` objects (``{"url": ...}``) of ``messages``' content parts."""
    found = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if (
                isinstance(part, dict)
                and part.get("type") == "image_url"
                and isinstance(part.get("image_url"), dict)
            ):
                found.append(part["image_url"])
    return found


def image_chars(messages: list[dict[str, Any]]) -> int:
    """Characters of image data URLs written inline in ``messages``."""
    urls = [part.get("url") for part in _image_parts(messages)]
    return sum(len(url) for url in urls if isinstance(url, str))


def image_files(messages: list[dict[str, Any]]) -> list[ImageFile]:
    """The :class:`ImageFile` s ``messages`` refer to, once each, in order."""
    found = [p.get("url") for p in _image_parts(messages)]
    return list(dict.fromkeys(f for f in found if isinstance(f, ImageFile)))


def _decode_data_url(url: str) -> tuple[str, bytes] | None:
    """The MIME type and bytes of a base64 data URL, if a program can rebuild it exactly."""
    found = _DATA_URL.fullmatch(url)
    if not found:
        return None
    try:
        data = base64.b64decode(found.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None
    # Non-canonical base64 (stray bits in the padding) would come back different: keep it inline.
    if base64.b64encode(data).decode("ascii") != found.group(2):
        return None
    return found.group(1), data


def images_dir(output: str) -> str:
    """The folder beside ``output`` for its images: the program's stem + ``_images``."""
    return Path(output).stem + "_images"


def externalize_images(
    messages: list[dict[str, Any]], folder: str, inline_max: int = INLINE_IMAGE_MAX_CHARS
) -> tuple[list[dict[str, Any]], list[ImageFile]]:
    """``messages`` with every data URL over ``inline_max`` characters replaced by an
    :class:`ImageFile` under ``folder`` (numbered in order; the same image once). ``messages``
    itself comes back, unchanged, when no image goes to a file."""
    copied = json.loads(json.dumps(messages))  # a deep copy, edited in place
    files: dict[str, ImageFile] = {}
    for part in _image_parts(copied):
        url = part.get("url")
        if not isinstance(url, str) or len(url) <= inline_max:
            continue
        decoded = _decode_data_url(url)
        if decoded is None:
            continue
        if url not in files:
            mime, data = decoded
            ext = _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".bin"
            files[url] = ImageFile(f"{folder}/{len(files) + 1}{ext}", mime, data)
        part["url"] = files[url]
    if not files:
        return messages, []
    return copied, list(files.values())


def image_notes(messages: list[dict[str, Any]]) -> list[str]:
    """What a program says about its large images, as comment lines (none when it has none)."""
    files = image_files(messages)
    if files:
        folder = files[0].path.rsplit("/", 1)[0]
        return [
            f"The conversation's large images are read at run time from {folder}/ beside this "
            "file (keep them together)."
        ]
    if any(
        isinstance(p.get("url"), str) and len(p["url"]) > INLINE_IMAGE_MAX_CHARS
        for p in _image_parts(messages)
    ):
        return [
            "The conversation's images are inline below as data URLs (large): "
            "%clarifai export -o FILE writes them as files beside the program."
        ]
    return []


def size_note(large_images: int, inline_chars: int) -> str:
    """What the cell says when a program holds large images inline ("" when it doesn't)."""
    if not large_images:
        return ""
    size = inline_chars
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{max(size // 1000, 1)} kB"
    images = "a large image" if large_images == 1 else f"{large_images} large images"
    return (
        f"This export is large: it holds {images} inline as data URLs ({shown} of code). "
        "`-o FILE` writes large images as files beside the program, which reads them when "
        "it runs."
    )
