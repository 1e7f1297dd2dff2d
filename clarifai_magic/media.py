"""Images to OpenAI chat content parts.

Owns turning what a notebook user has at hand (a PIL image, a NumPy array, raw bytes, a local
path, an http(s) or ``data:`` URL) into ``{"type": "image_url", ...}`` parts, downscaling large
local images first. PIL and NumPy are optional: they are imported only when an object needs them,
so importing this module never pulls them in.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

DEFAULT_MAX_SIDE = 1568
JPEG_QUALITY = 90
DETAILS = ("auto", "low", "high")
ACCEPTED_KINDS = (
    "a PIL image, a NumPy array (H×W×3 RGB, H×W×4 RGBA or H×W grayscale), bytes of a "
    "PNG/JPEG/GIF/WEBP file, a local file path, an http(s) URL or a data: URL"
)

# Formats every vision model behind the OpenAI-compatible endpoint accepts as-is.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_KEEP_MODES = ("RGB", "RGBA", "L", "LA")
_EXIF_ORIENTATION = 0x0112


class MediaError(ValueError):
    """An image could not be turned into a content part; the message says what to do."""


def sniff_mime(data: bytes) -> str | None:
    """The MIME type of an accepted image format from its first bytes, or None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _import_pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise MediaError(
            "Encoding this image needs Pillow, which is not installed. Run `pip install pillow` "
            "in the notebook's environment, restart the kernel, and run the cell again."
        ) from None
    return Image


def _is_pil_image(obj: Any) -> bool:
    # Checked by module name first so that a plain str or bytes never triggers a PIL import.
    module = type(obj).__module__ or ""
    if not module.startswith("PIL."):
        return False
    return isinstance(obj, _import_pil().Image)


def _is_ndarray(obj: Any) -> bool:
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


def _has_alpha(img: Any) -> bool:
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return True
    return img.mode == "P" and "transparency" in img.info


def _to_8bit(img: Any) -> Any:
    """A 16-bit, 32-bit integer or float grayscale image scaled into an 8-bit ``L`` image.

    ``convert("L")`` would clip such values, turning most pixels white. The rules, shared with
    NumPy arrays: 16-bit data is divided by 256 (65535 is white); integers already within 0-255
    stay as they are; floats within 0-1 are multiplied by 255; any other range is stretched so
    its minimum is black and its maximum white.
    """
    if img.mode.startswith("I;16"):
        return img.convert("I").point(lambda v: v / 256).convert("L")
    low, high = img.getextrema()
    if img.mode == "F" and low >= 0 and high <= 1:
        scale, offset = 255.0, 0.0
    elif img.mode == "I" and low >= 0 and high <= 255:
        scale, offset = 1.0, 0.0
    else:
        scale = 255.0 / (high - low) if high > low else 0.0
        offset = -low * scale
    return img.point(lambda v: v * scale + offset).convert("L")


def _encode(img: Any, max_side: int, lossless: bool) -> str:
    """Downscale a PIL image (never mutating the caller's) and encode it as a data URL."""
    from PIL import Image  # present: img came from Pillow

    try:
        return _encode_decoded(img, max_side, lossless)
    except Image.DecompressionBombError as exc:
        raise MediaError(_too_large(exc)) from None
    except OSError as exc:
        # Pillow decodes lazily, so a truncated or corrupt file only fails here.
        raise MediaError(
            f"The image could not be decoded ({exc}); the file looks truncated or corrupt. "
            "Download or save it again, or open it in an image viewer to check it."
        ) from None


def _too_large(exc: Exception) -> str:
    return (
        f"The image is too large to decode safely ({exc}). Downscale it before sending it, "
        "or raise `PIL.Image.MAX_IMAGE_PIXELS` if you trust the file."
    )


def _encode_decoded(img: Any, max_side: int, lossless: bool) -> str:
    from PIL import Image, ImageOps

    alpha = _has_alpha(img)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    elif img.mode not in _KEEP_MODES:
        # Palette and 1-bit images would resize with NEAREST; CMYK etc. cannot be saved as PNG.
        img = img.convert("RGBA" if alpha else "RGB")
    if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        # Phone photos store rotation in EXIF, which re-encoding drops: apply it to the pixels.
        img = ImageOps.exif_transpose(img)
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if alpha or lossless:
        img.save(out, format="PNG", optimize=True)
        return _data_url(out.getvalue(), "image/png")
    if img.mode != "L":
        img = img.convert("RGB")
    img.save(out, format="JPEG", quality=JPEG_QUALITY)
    return _data_url(out.getvalue(), "image/jpeg")


def _array_to_uint8(arr: Any) -> Any:
    """A NumPy image as uint8, by the rules of :func:`_to_8bit` (booleans become 0 or 255)."""
    import numpy as np  # present: arr is a NumPy array

    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if kind not in "iuf":
        raise MediaError(
            f"A NumPy image must hold integers, floats or booleans; this array is {arr.dtype}."
        )
    finite = arr[np.isfinite(arr)] if kind == "f" else arr
    if finite.size == 0:
        raise MediaError("This NumPy image holds no finite values (all NaN or infinite).")
    low, high = finite.min(), finite.max()
    if kind in "iu" and low >= 0 and high <= 255:
        return arr.astype(np.uint8)
    values = arr.astype(np.float32)
    if kind == "f" and low >= 0 and high <= 1:
        values *= 255
    else:
        values -= low
        values *= 255 / (high - low) if high > low else 0
    # NaN (masked pixels) become black, infinities the nearest end of the range.
    return np.nan_to_num(values, nan=0, posinf=255, neginf=0).clip(0, 255).astype(np.uint8)


def _from_array(arr: Any, max_side: int) -> str:
    Image = _import_pil()
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    channels_ok = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))
    if not channels_ok or 0 in arr.shape:
        shape = "×".join(map(str, arr.shape)) or "a scalar"
        raise MediaError(
            "A NumPy image must be shaped H×W×3 (RGB), H×W×4 (RGBA) or H×W (grayscale); "
            f"this array is {shape}."
        )
    # Pillow infers L / RGB / RGBA from a uint8 array's shape.
    return _encode(Image.fromarray(_array_to_uint8(arr)), max_side, lossless=False)


def _from_bytes(data: bytes, max_side: int, source: str) -> str:
    mime = sniff_mime(data)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        if mime is None:
            raise MediaError(
                f"{source} is not a PNG, JPEG, GIF or WEBP image. Other formats can be converted "
                "when Pillow is installed (`pip install pillow`)."
            ) from None
        # Without Pillow the size is unknown: send the file as it is.
        return _data_url(data, mime)
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise MediaError(_too_large(exc)) from None
    except (UnidentifiedImageError, OSError):
        if mime is None:
            raise MediaError(
                f"{source} is not an image Pillow can read. Pass {ACCEPTED_KINDS}."
            ) from None
        # A format this Pillow build cannot decode (e.g. WEBP without libwebp): let the model try.
        return _data_url(data, mime)
    if mime is not None and max(img.size) <= max_side:
        return _data_url(data, mime)
    # GIF is a lossless graphics format like PNG: JPEG would smear its flat colours and text.
    return _encode(img, max_side, lossless=img.format in ("PNG", "GIF"))


def _from_path(path: Path, max_side: int) -> str:
    path = path.expanduser()
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError):  # a name too long for the OS, or with a NUL byte
        is_file = is_dir = False
    if not is_file:
        what = "is a directory, not an image file" if is_dir else "does not exist"
        raise MediaError(
            f"The image path {str(path)!r} {what} (resolved from {str(Path.cwd())!r}). "
            "Check the path, or pass an http(s) URL or a variable holding an image."
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"Could not read the image file {str(path)!r}: {exc.strerror}.") from None
    return _from_bytes(data, max_side, f"The file {str(path)!r}")


def image_part(
    obj: Any, *, max_side: int = DEFAULT_MAX_SIDE, detail: str | None = None
) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part for ``obj``.

    Local data becomes a base64 data URL, downscaled so its longest side is at most ``max_side``;
    small PNG/JPEG/GIF/WEBP files and bytes go through unchanged. URLs are passed through, not
    downloaded. ``detail`` ("auto", "low", "high") is forwarded to the model when given.
    16-bit, 32-bit integer and float images or arrays are scaled to 8 bits: 16-bit values are
    divided by 256, floats within 0-1 multiplied by 255, and other ranges beyond 0-255 stretched
    from their minimum (black) to their maximum (white).
    """
    if max_side < 1:
        raise MediaError(f"The largest image side must be at least 1 pixel; got {max_side}.")
    if detail is not None and detail not in DETAILS:
        raise MediaError(f"Image detail must be one of {', '.join(DETAILS)}; got {detail!r}.")
    if isinstance(obj, str) and obj.startswith(("http://", "https://", "data:")):
        url = obj
    elif isinstance(obj, (str, os.PathLike)):
        url = _from_path(Path(obj), max_side)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        url = _from_bytes(bytes(obj), max_side, "These bytes")
    elif _is_pil_image(obj):
        url = _encode(obj, max_side, lossless=obj.format in ("PNG", "GIF"))
    elif _is_ndarray(obj):
        url = _from_array(obj, max_side)
    else:
        raise MediaError(
            f"Cannot send a {type(obj).__module__}.{type(obj).__qualname__} as an image. "
            f"Pass {ACCEPTED_KINDS}."
        )
    image_url: dict[str, Any] = {"url": url}
    if detail is not None:
        image_url["detail"] = detail
    return {"type": "image_url", "image_url": image_url}


def user_content(text: str, images: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A user message's ``content``: plain text, or a text part followed by the image parts."""
    if not images:
        return text
    return [{"type": "text", "text": text}, *images]
