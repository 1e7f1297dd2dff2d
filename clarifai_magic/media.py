"""Images to OpenAI chat content parts.

Owns turning what a notebook user has at hand (a PIL image, a NumPy array, raw bytes, a local
path, an http(s) or ``data:`` URL) into ``{"type": "image_url", ...}`` parts, downscaling large
local images first. PIL and NumPy are optional: they are imported only when an object needs them,
so importing this module never pulls them in.

Local images are bounded before any work: a file or bytes object larger than ``max_bytes`` is
refused before it is read, and an image whose header says it has more than ``max_pixels`` pixels
is refused before it is decoded (a small PNG can decode to gigabytes). Images within the bounds
are decoded at a reduced scale where the format allows (JPEG), and downscaled before any mode
conversion, so the memory they take stays close to what the decoded image needs.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from pathlib import Path
from typing import Any

from .options import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE

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
# Modes LANCZOS resamples as they are; downscaling these first keeps later conversions small.
_SMOOTH_MODES = ("RGB", "RGBA", "L", "LA", "CMYK", "YCbCr")
_REDUCIBLE_MODES = ("RGB", "RGBA", "L", "LA", "CMYK", "I", "F")
_EXIF_ORIENTATION = 0x0112


class MediaError(ValueError):
    """An image could not be turned into a content part; the message says what to do."""


def _size_text(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


def _check_bytes(n: int, max_bytes: int, source: str) -> None:
    if n > max_bytes:
        verb = "are" if source == "These bytes" else "is"
        raise MediaError(
            f"{source} {verb} {_size_text(n)}, over the {_size_text(max_bytes)} limit for an "
            "image, so it was not read. Downscale or compress it first (an image the model sees "
            "needs far less), or raise the limit with "
            "`%config ClarifaiMagics.image_max_bytes = ...` if you mean to send it."
        )


def _check_pixels(size: tuple[int, int], max_pixels: int, source: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise MediaError(
            f"{source} is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels), over "
            f"the {max_pixels / 1e6:g}-megapixel limit for an image, so it was not sent (decoding "
            "and downscaling take several bytes of memory per pixel). Downscale it first, or "
            "raise the limit with `%config ClarifaiMagics.image_max_pixels = ...` if you trust "
            "it."
        )


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


def _encode(img: Any, max_side: int, *, lossless: bool, owned: bool = False) -> str:
    """Downscale a PIL image and encode it as a data URL.

    ``owned`` says the image was opened here and may be changed in place (its pixels are then
    decoded at a reduced scale where the format allows); a caller's image is never changed.
    """
    from PIL import Image  # present: img came from Pillow

    try:
        return _encode_decoded(img, max_side, lossless, owned)
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


def _shrink(img: Any, max_side: int, owned: bool) -> Any:
    """``img`` with its longest side at most ``max_side``: in place when owned, else a new image."""
    from PIL import Image

    if max(img.size) <= max_side:
        return img
    if not owned:
        # reduce() averages blocks straight into a smaller image, so the caller's large image is
        # never copied whole; thumbnail() then resamples from twice the target size.
        factor = max(img.size) // (2 * max_side)
        img = img.reduce(factor) if factor >= 2 and img.mode in _REDUCIBLE_MODES else img.copy()
    # On an image not yet loaded this also asks JPEG for a reduced-scale decode (draft).
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def _encode_decoded(img: Any, max_side: int, lossless: bool, owned: bool) -> str:
    from PIL import ImageOps

    original = img
    alpha = _has_alpha(img)
    if img.mode in _SMOOTH_MODES:
        # Downscaled first, so the conversions below touch only the pixels that are sent.
        img = _shrink(img, max_side, owned)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    elif img.mode not in _KEEP_MODES:
        # Palette and 1-bit images would resize with NEAREST; CMYK etc. cannot be saved as PNG.
        img = img.convert("RGBA" if alpha else "RGB")
    if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        # Phone photos store rotation in EXIF, which re-encoding drops: apply it to the pixels.
        img = ImageOps.exif_transpose(img)
    img = _shrink(img, max_side, owned or img is not original)
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


def _from_array(arr: Any, max_side: int, max_pixels: int) -> str:
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
    _check_pixels((arr.shape[1], arr.shape[0]), max_pixels, "This NumPy image")
    # Pillow infers L / RGB / RGBA from a uint8 array's shape.
    return _encode(Image.fromarray(_array_to_uint8(arr)), max_side, lossless=False)


def _from_bytes(data: bytes, max_side: int, source: str, max_pixels: int) -> str:
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
        with warnings.catch_warnings():
            # Pillow warns about large images on open; max_pixels below decides, with a reason.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
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
    # Opening read only the header: the size is known before any pixel is decoded.
    _check_pixels(img.size, max_pixels, source)
    if mime is not None and max(img.size) <= max_side:
        return _data_url(data, mime)
    # GIF is a lossless graphics format like PNG: JPEG would smear its flat colours and text.
    return _encode(img, max_side, lossless=img.format in ("PNG", "GIF"), owned=True)


def _from_path(path: Path, max_side: int, max_bytes: int, max_pixels: int) -> str:
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
    source = f"The file {str(path)!r}"
    try:
        with path.open("rb") as file:
            _check_bytes(os.fstat(file.fileno()).st_size, max_bytes, source)
            # Bounded even if the file grows after the check.
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise MediaError(f"Could not read the image file {str(path)!r}: {exc.strerror}.") from None
    _check_bytes(len(data), max_bytes, source)
    return _from_bytes(data, max_side, source, max_pixels)


def image_part(
    obj: Any,
    *,
    max_side: int = DEFAULT_MAX_SIDE,
    detail: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """An OpenAI ``image_url`` content part for ``obj``.

    Local data becomes a base64 data URL, downscaled so its longest side is at most ``max_side``;
    small PNG/JPEG/GIF/WEBP files and bytes go through unchanged. URLs are passed through, not
    downloaded. ``detail`` ("auto", "low", "high") is forwarded to the model when given.
    16-bit, 32-bit integer and float images or arrays are scaled to 8 bits: 16-bit values are
    divided by 256, floats within 0-1 multiplied by 255, and other ranges beyond 0-255 stretched
    from their minimum (black) to their maximum (white).

    A file or bytes object over ``max_bytes`` is refused before it is read, and an image (file,
    bytes, PIL image or NumPy array) of more than ``max_pixels`` pixels before it is decoded.
    """
    if max_side < 1:
        raise MediaError(f"The largest image side must be at least 1 pixel; got {max_side}.")
    if detail is not None and detail not in DETAILS:
        raise MediaError(f"Image detail must be one of {', '.join(DETAILS)}; got {detail!r}.")
    if isinstance(obj, str) and obj.startswith(("http://", "https://", "data:")):
        # A data: URL goes as it is; base64 takes 4 characters for every 3 bytes.
        _check_bytes(len(obj) * 3 // 4, max_bytes, "This data: URL")
        url = obj
    elif isinstance(obj, (str, os.PathLike)):
        url = _from_path(Path(obj), max_side, max_bytes, max_pixels)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _check_bytes(memoryview(obj).nbytes, max_bytes, "These bytes")
        url = _from_bytes(bytes(obj), max_side, "These bytes", max_pixels)
    elif _is_pil_image(obj):
        _check_pixels(obj.size, max_pixels, "This PIL image")
        url = _encode(obj, max_side, lossless=obj.format in ("PNG", "GIF"))
    elif _is_ndarray(obj):
        url = _from_array(obj, max_side, max_pixels)
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
